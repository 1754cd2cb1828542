"""The panel in headless Chromium against the real sshd and the Dokku double.

Set PANEL_SCREENSHOTS=/some/dir to keep a screenshot of each page the tests reach.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from intercity.extensions import db
from intercity.models import AuditEntry, Operation

from tests.support.builders import PASSWORD, make_app
from tests.support.panel import ED25519, install_panel_key
from tests.support.ssh_fixtures import make_dokku_server

pytestmark = pytest.mark.postgresql_only
# An operation runs over SSH (connect, a few commands) well within this.
DONE = 30_000


def shot(page, name: str) -> None:
    folder = os.environ.get("PANEL_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def login(page, user) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/(servers|apps)$"))  # admins start at the servers, others at every app
    if not page.url.endswith("/servers"):
        page.goto("/servers")


def ready_server(sshd, **overrides):
    server = make_dokku_server(sshd, authorize=False, **overrides)
    install_panel_key(sshd, server)
    return server


def applied(locator) -> None:
    expect(locator).to_have_attribute("data-status", "succeeded", timeout=DONE)


def test_add_a_server_and_test_its_connection(page, admin, sshd, dokku):
    login(page, admin)
    page.get_by_role("link", name="Add a server").first.click()
    page.get_by_label("Name").fill("loopback")
    page.get_by_label("Host", exact=True).fill(sshd.host)
    page.get_by_label("SSH port").fill(str(sshd.port))
    page.get_by_role("button", name="Add server").click()
    page.wait_for_url(re.compile(r"/servers/\d+$"))
    expect(page.get_by_text("Install the panel's key on it, then test the connection.")).to_be_visible()
    shot(page, "server-new")
    # what a person does on the server: paste the line the page shows into root's authorized_keys
    line = page.locator("#authorized-keys-line").inner_text().strip()
    keys_file = sshd.keys_dir / "root"
    keys_file.write_text(line + "\n")
    keys_file.chmod(0o644)
    page.get_by_role("button", name="Test connection").click()
    operation = page.locator("#server-status .operation").first
    applied(operation)
    # the status card reloads itself when the operation ends, and the heading's badge follows
    expect(page.locator("#server-head .badge")).to_have_text("ready", timeout=DONE)
    expect(page.locator("#server-status")).to_contain_text(sshd.host_key_fingerprint)
    expect(page.locator("#server-status")).to_contain_text("Connected as root")
    shot(page, "server-ready")


def test_create_an_app(page, member, sshd, dokku):
    server = ready_server(sshd, name="prod-1")
    login(page, member)
    page.get_by_role("link", name="prod-1").click()
    page.get_by_label("App name").fill("api")
    page.get_by_role("button", name="Create app").click()
    page.wait_for_url(f"**/servers/{server.id}/apps/api")
    expect(page.get_by_text("1 operation pending on api")).to_be_visible()
    applied(page.locator("#app-status .operation").first)
    assert dokku.apps() == ["api"]
    # the pending notice goes when the operation ends
    expect(page.get_by_text("pending on api")).to_have_count(0, timeout=DONE)
    shot(page, "app-created")


def test_paste_three_env_vars_and_watch_the_operation_succeed(page, browser, live_server, member, sshd, dokku):
    server = ready_server(sshd)
    make_app(server, name="api")
    dokku.create_app("api")
    login(page, member)
    page.goto(f"/servers/{server.id}/apps/api")
    page.get_by_label("Paste a .env block").fill(
        "DATABASE_URL=postgres://u:pw@db/app\nSECRET_KEY='s3cr3t value'\nPEM=\"line one\nline two\"\n")
    page.get_by_role("button", name="Preview changes").click()
    expect(page.locator("#env-paste-preview")).to_contain_text("add 3: DATABASE_URL, SECRET_KEY, PEM")
    page.get_by_role("button", name="Apply these changes").click()
    operation = page.locator("#env .operation").first
    applied(operation)
    expect(operation).to_contain_text("Applied")
    # A busy machine may run the whole operation between two looks at the page, so the way there
    # is read from the recorded history: requested, started, applied once, its outcome chained.
    db.session.rollback()
    op = db.session.scalar(select(Operation).where(Operation.kind == "env.apply"))
    assert op.created_at <= op.started_at <= op.finished_at
    assert (op.status, op.attempts) == ("succeeded", 1)
    assert db.session.scalars(select(AuditEntry.action).where(AuditEntry.operation_id == op.id)
                              .order_by(AuditEntry.seq)).all()[-1] == "operation.succeeded"
    expect(page.locator(f"#op-{op.id}")).to_have_count(1)
    assert dokku.env("api") == {"DATABASE_URL": b"postgres://u:pw@db/app", "SECRET_KEY": b"s3cr3t value",
                                "PEM": b"line one\nline two"}
    rows = page.locator("table.env tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("table.env")).not_to_contain_text("s3cr3t")
    # reveal one value (a POST), then hide it again
    page.locator("#env-value-SECRET_KEY").get_by_role("button", name="Reveal").click()
    expect(page.locator("#env-value-SECRET_KEY")).to_contain_text("s3cr3t value")
    shot(page, "env-applied")
    page.locator("#env-value-SECRET_KEY").get_by_role("button", name="Hide").click()
    expect(page.locator("#env-value-SECRET_KEY")).not_to_contain_text("s3cr3t")

    # without JavaScript the same form posts plainly; the browser sends the textarea's CRLF
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    plain = context.new_page()
    try:
        login(plain, member)
        plain.goto(f"/servers/{server.id}/apps/api")
        plain.get_by_label("Paste a .env block").fill('CERT="a\nb"')
        plain.get_by_label("Restart the app to apply").last.uncheck()
        plain.get_by_role("button", name="Preview changes").click()
        expect(plain.locator("#env-paste-preview")).to_contain_text("add 1: CERT")
        plain.get_by_role("button", name="Apply these changes").click()
        expect(plain.get_by_text("Setting CERT on api")).to_be_visible()
    finally:
        context.close()
    page.reload()
    applied(page.locator("#env .operation").first)
    assert dokku.env("api")["CERT"] == b"a\nb"


def test_add_and_remove_a_domain(page, member, sshd, dokku):
    server = ready_server(sshd)
    make_app(server, name="api")
    dokku.create_app("api")
    login(page, member)
    page.goto(f"/servers/{server.id}/apps/api")
    page.get_by_role("textbox", name="Domain").fill("API.Example.com")
    page.get_by_role("button", name="Add domain").click()
    applied(page.locator("#domains .operation").first)
    assert dokku.domains("api") == ["api.example.com"]
    expect(page.locator("ul.domains")).to_contain_text("api.example.com")
    shot(page, "domain-added")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove api.example.com").click()
    expect(page.locator("#flashes")).to_contain_text("Removing api.example.com from api")
    applied(page.locator("#domains .operation").first)
    assert dokku.domains("api") == []


def test_add_a_deploy_key(page, admin, sshd, dokku):
    server = ready_server(sshd)
    login(page, admin)
    page.goto(f"/servers/{server.id}")
    page.get_by_role("link", name="Manage deploy keys").click()
    page.get_by_label("Name").fill("alice-laptop")
    page.get_by_label("Public key").fill(ED25519)
    page.get_by_role("button", name="Check key").click()
    fingerprint = page.locator("#preview-fingerprint")
    expect(fingerprint).to_have_text("SHA256:mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4")
    assert dokku.keys() == []  # nothing saved before the fingerprint was seen
    shot(page, "deploy-key-preview")
    page.get_by_role("button", name="Add key alice-laptop").click()
    applied(page.locator("#deploy-keys-region .operation").first)
    assert [(k["name"], k["fingerprint"]) for k in dokku.keys()] == [
        ("alice-laptop", "SHA256:mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4")]
    expect(page.locator("table.keys")).to_contain_text("alice-laptop")
    shot(page, "deploy-key-added")


def test_a_failing_operation_shows_its_error_and_succeeds_on_retry(page, member, sshd, dokku):
    server = ready_server(sshd)
    make_app(server, name="api")
    dokku.create_app("api")
    dokku.fail("config:set", exit_code=1, stderr=" !     The disk is full\n")
    login(page, member)
    page.goto(f"/servers/{server.id}/apps/api")
    page.get_by_label("Name", exact=True).fill("TOKEN")
    page.get_by_label("Value").fill("tok-browser")
    page.get_by_role("button", name="Set variable").click()
    operation = page.locator("#env .operation").first
    expect(operation).to_have_attribute("data-status", "failed", timeout=DONE)
    expect(operation).to_contain_text("Failed:")
    expect(operation).to_contain_text("The disk is full")
    expect(operation.locator("pre.err")).to_contain_text("The disk is full")  # the command's output
    expect(operation).not_to_contain_text("tok-browser")
    shot(page, "operation-failed")
    assert dokku.env("api") == {}
    dokku.clear_faults()
    operation.get_by_role("button", name="Retry").click()
    retried = page.locator("#env .operation").first
    expect(retried).to_contain_text("retry of")
    applied(retried)
    assert dokku.env("api") == {"TOKEN": b"tok-browser"}
    shot(page, "operation-retried")
