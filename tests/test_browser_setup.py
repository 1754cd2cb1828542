"""The browser harness: complete /setup, log out and log in again in headless Chromium."""
import pytest

pytestmark = pytest.mark.postgresql_only


def test_setup_logout_login(page, live_server):
    page.goto("/")
    assert page.url.endswith("/setup")
    page.get_by_label("Your email").fill("founder@example.com")
    page.get_by_label("Password", exact=True).fill("a long enough password")
    page.get_by_label("Repeat the password").fill("a long enough password")
    page.get_by_role("button", name="Create admin account").click()
    page.wait_for_url("**/servers")
    assert "founder@example.com" in page.content()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    assert page.goto("/setup").status == 404
    page.goto("/login")
    page.get_by_label("Email").fill("founder@example.com")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_text("Email or password is incorrect.").is_visible()
    page.get_by_label("Password").fill("a long enough password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/servers")
    assert page.get_by_role("heading", name="Servers").is_visible()
