"""In headless Chromium: setting up two-factor login from the account page, then logging in with a code."""
from __future__ import annotations

import pyotp
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


def test_a_member_sets_up_two_factor_login_and_logs_in_with_a_code(app, live_server, page, member, now):
    page.add_init_script(WATCH_CSP)
    page.goto("/login")
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/apps")  # a member starts at every app
    page.goto("/account")
    page.get_by_role("link", name="Set up two-factor login").click()
    qr = page.get_by_alt_text("QR code to add Intercity to an authenticator app")
    expect(qr).to_be_visible()
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")  # the data: SVG rendered under the CSP
    secret = page.locator("#totp-key").inner_text().replace(" ", "")
    page.get_by_label("Code the app shows").fill(pyotp.TOTP(secret).at(now.t))
    page.get_by_role("button", name="Turn on two-factor login").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    assert page.locator("ul.codes li").count() == 10
    page.get_by_role("link", name="Done").click()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")

    now.t += 30
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/login/code")
    page.get_by_label("Code from your phone, or a recovery code").fill("000000")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("That code is not right")).to_be_visible()
    page.get_by_label("Code from your phone, or a recovery code").fill(pyotp.TOTP(secret).at(now.t))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/apps")  # a member starts at every app
    assert page.evaluate("window.__csp") == []
