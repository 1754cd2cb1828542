"""In headless Chromium: a team set up through the browser and mail, and the CSP with htmx working under it."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.support.builders import PASSWORD

pytestmark = pytest.mark.postgresql_only

WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline'));
});
"""


def login(page, email, password=PASSWORD):
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/servers")


def test_an_admin_invites_a_teammate_who_joins_through_the_mailed_link(mailbox, app, browser, live_server, page,
                                                                      admin):
    login(page, admin.email)
    page.get_by_role("link", name="Team").click()
    page.get_by_label("Email", exact=True).fill("newcomer@example.com")
    page.get_by_label("Role", exact=True).select_option("viewer")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text("Invitation sent to newcomer@example.com")).to_be_visible()
    expect(page.locator("#invitations")).to_contain_text("newcomer@example.com as viewer")
    app.extensions["intercity_jobs"].wait_idle()
    [message] = [m for m in mailbox.messages if m["To"] == "newcomer@example.com"]
    url = re.search(r"https?://\S+", message.get_body(("plain",)).get_content()).group(0)
    path = "/" + url.split("/", 3)[3]

    context = browser.new_context(base_url=live_server.url)
    try:
        _join(context.new_page(), page, path)
    finally:
        context.close()


def _join(invitee, page, path):
    invitee.set_default_timeout(10000)
    invitee.goto(path)
    invitee.get_by_label("Choose a password").fill("short")
    invitee.get_by_label("Repeat the password").fill("short")
    invitee.get_by_role("button", name="Create my account").click()
    expect(invitee.get_by_text("Use a password of at least 12 characters.")).to_be_visible()
    invitee.get_by_label("Choose a password").fill("the newcomer's passphrase")
    invitee.get_by_label("Repeat the password").fill("the newcomer's passphrase")
    invitee.get_by_role("button", name="Create my account").click()
    invitee.wait_for_url("**/apps")  # a viewer starts at every app
    expect(invitee.get_by_text("Welcome to the team, newcomer@example.com")).to_be_visible()
    expect(invitee.get_by_role("link", name="Team")).to_have_count(0)  # viewers do not manage the team

    # the admin makes the newcomer a member; the newcomer's session ends with the old role
    page.reload()
    row = page.locator("tr", has_text="newcomer@example.com")
    row.get_by_label("Role of newcomer@example.com").select_option("member")
    row.get_by_role("button", name="Change role").click()
    expect(page.get_by_text("newcomer@example.com is now member")).to_be_visible()
    invitee.goto("/servers")
    invitee.wait_for_url("**/login**")
    # the Team chip of the timeline shows the account events
    page.goto("/audit?category=team")
    expect(page.locator("#timeline")).to_contain_text("accepted the invitation for newcomer@example.com")
    page.goto("/audit?category=security")
    expect(page.locator("#timeline")).to_contain_text("invited newcomer@example.com as viewer")
    expect(page.locator("#timeline")).to_contain_text("changed the role of newcomer@example.com from viewer to member")


def test_the_csp_allows_the_panel_and_htmx_and_refuses_inline_code(page, admin):
    page.add_init_script(WATCH_CSP)
    login(page, admin.email)
    header = page.goto("/audit").headers["content-security-policy"]
    assert "script-src 'self'" in header and "unsafe-inline" not in header and "frame-ancestors 'none'" in header
    # htmx works: the verify button posts (with the CSRF header) and swaps in the result without a reload
    page.evaluate("window.__stayed = true")
    page.get_by_role("button", name="Verify chain").click()
    expect(page.locator("#verify-result")).to_contain_text("intact")
    assert page.evaluate("window.__stayed") is True
    for path in ("/servers", "/team", "/account", "/audit"):
        page.goto(path)
        page.wait_for_load_state("load")
        assert page.evaluate("window.__csp") == [], (path, page.evaluate("window.__csp"))
    # and inline code is refused: an injected inline script does not run, and the browser reports it
    page.evaluate("""() => { const s = document.createElement('script');
                            s.textContent = 'window.__ran = true'; document.body.appendChild(s); }""")
    page.wait_for_function("window.__csp.length > 0")
    assert page.evaluate("window.__ran === undefined")
    assert page.evaluate("window.__csp")[0].startswith("script-src")
