"""First run and small screens: `make run`, the setup form, the database file, the favicon, 390 px."""
from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support import databases
from tests.support.builders import PASSWORD, make_app, make_server
from tests.support.panel import no_worker  # noqa: F401  (the fixture, used below)

ROOT = Path(__file__).resolve().parent.parent


def _make(*args: str) -> str:
    """What make would run (-n), every target rebuilt (-B) as on a fresh checkout."""
    result = subprocess.run(["make", "-n", "-B", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout


def test_make_run_installs_only_what_the_panel_needs_and_takes_a_port():
    plan = _make("run")
    assert "pip install --quiet -e .\n" in plan and "[test]" not in plan
    assert "intercity run --host 127.0.0.1 --port 5000" in plan
    assert "intercity run --host 0.0.0.0 --port 8080" in _make("run", "PORT=8080", "HOST=0.0.0.0")
    assert "-e '.[test]'" in _make("test")


def test_a_new_sqlite_database_is_private(tmp_path):
    path = tmp_path / "instance" / "intercity.sqlite"
    path.parent.mkdir()
    databases.migrate(f"sqlite:///{path}", tmp_path)
    for file in [path, *path.parent.glob("intercity.sqlite-*")]:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


def _field_error(body: str, field_id: str) -> str:
    match = re.search(rf'<p class="error" id="{re.escape(field_id)}-error">(.*?)</p>', body, re.S)
    assert match, f"no error next to #{field_id}"
    return match.group(1)


def test_setup_shows_every_error_at_once_and_the_first_entry_reads_as_setting_up(client):
    body = client.post("/setup", data={"email": "not-an-email", "password": "short", "confirm": "other"}
                       ).get_data(as_text=True)
    assert "not a valid email address" in _field_error(body, "email")
    assert "at least 12 characters" in _field_error(body, "password")
    assert "The passwords differ." in _field_error(body, "confirm")
    response = client.post("/setup", data={"email": "ops@example.com", "password": PASSWORD, "confirm": PASSWORD})
    assert response.status_code == 302
    page = client.get("/audit").get_data(as_text=True)
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page))
    assert "ops@example.com set up the panel and became its first admin" in words
    assert "Someone added" not in words


def test_every_page_has_a_favicon(client):
    body = client.get("/setup").get_data(as_text=True)
    href = re.search(r'<link rel="icon" href="([^"]+)"', body).group(1)
    response = client.get(href)
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    response.close()


@pytest.mark.postgresql_only
@pytest.mark.usefixtures("no_worker")
def test_pages_fit_a_390_pixel_screen(browser, live_server, admin):
    server = make_server(name="production-eu-west-1")
    app = make_app(server, name="a-rather-long-application-name")
    context = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        page.goto("/login")
        page.get_by_label("Email").fill(admin.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/servers")
        for url in ("/servers", f"/servers/{server.id}", f"/servers/{server.id}/apps/{app.name}",
                    f"/servers/{server.id}/deploy-keys", "/audit"):
            page.goto(url)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (url, width)
            # The header's links and the logout button stay on screen.
            for name in ("Servers", "Audit log"):
                box = page.get_by_role("navigation", name="Main").get_by_role("link", name=name).bounding_box()
                assert box and box["x"] + box["width"] <= 390, (url, name, json.dumps(box))
            box = page.get_by_role("button", name="Log out").bounding_box()
            assert box and box["x"] + box["width"] <= 390, (url, json.dumps(box))
    finally:
        context.close()
