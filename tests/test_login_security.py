"""Logging in and out safely: sessions the server ends, cookie flags, failed-login entries, the setup race."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from intercity.extensions import db
from intercity.models import AuditEntry, User, UserSession
from tests.support.audit import entries, only
from tests.support.builders import PASSWORD


@pytest.fixture
def web(make_app):
    """The app the browsers talk to: each request gets an app context of its own, so no login is cached."""
    return make_app()


@pytest.fixture
def client(web):
    return web.test_client()


def _login(client, email, password=PASSWORD, remember=False, **kwargs):
    data = {"email": email, "password": password}
    if remember:
        data["remember"] = "y"
    return client.post("/login", data=data, **kwargs)


def _copy(web, client, *names):
    """A second browser holding copies of some of `client`'s cookies."""
    other = web.test_client()
    for name in names:
        cookie = client.get_cookie(name)
        assert cookie is not None, f"no {name} cookie to copy"
        other.set_cookie(name, cookie.value)
    return other


def test_logout_with_keep_me_logged_in_clears_the_remember_cookie(client, member):
    assert _login(client, member.email, remember=True).status_code == 302
    assert client.get_cookie("remember_token") is not None
    response = client.post("/logout")
    assert response.status_code == 302
    cleared = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("remember_token=")]
    assert cleared and "Expires=Thu, 01 Jan 1970" in cleared[0]
    assert client.get_cookie("remember_token") is None
    assert client.get("/servers").status_code == 302


def test_cookies_copied_before_logout_open_nothing_afterwards(web, client, member):
    _login(client, member.email, remember=True)
    session_copy = _copy(web, client, "session")
    remember_copy = _copy(web, client, "remember_token")
    assert session_copy.get("/servers").status_code == 200
    client.post("/logout")
    for copy in (session_copy, remember_copy):
        response = copy.get("/servers")
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    # a POST with the replayed session cookie is refused as well
    response = session_copy.post("/servers/new", data={"name": "x"})
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    db.session.rollback()
    assert db.session.scalar(select(UserSession.ended_reason)) == "logout"


def test_a_remember_cookie_alone_logs_in_until_its_session_ends(web, client, member):
    _login(client, member.email, remember=True)
    remember_copy = _copy(web, client, "remember_token")
    assert remember_copy.get("/servers").status_code == 200
    from intercity.services import sessions

    db.session.rollback()
    assert sessions.end_all(member, "test") == 1
    db.session.commit()
    assert _copy(web, client, "remember_token").get("/servers").status_code == 302


@pytest.mark.parametrize("setting", [{"INTERCITY_ENV": "production"}, {"INTERCITY_BASE_URL": "https://panel.example.com"}])
def test_cookies_are_secure_httponly_and_lax_over_https(make_app, member, monkeypatch, setting):
    for name, value in setting.items():
        monkeypatch.setenv(name, value)
    web = make_app()
    client = web.test_client()
    response = _login(client, member.email, remember=True)
    assert response.status_code == 302
    cookies = {h.split("=", 1)[0]: h for h in response.headers.getlist("Set-Cookie")}
    for name in ("session", "remember_token"):
        flags = [part.strip().lower() for part in cookies[name].split(";")]
        assert "secure" in flags and "httponly" in flags and "samesite=lax" in flags, cookies[name]


def test_plain_http_in_development_keeps_cookies_usable_without_tls(client, member):
    response = _login(client, member.email, remember=True)
    for header in response.headers.getlist("Set-Cookie"):
        flags = [part.strip().lower() for part in header.split(";")]
        assert "httponly" in flags and "samesite=lax" in flags and "secure" not in flags, header


def test_a_password_typed_into_the_email_field_is_never_stored(client, member):
    typed = "Hunter2-Correct-Battery!"
    response = _login(client, typed, password="whatever")
    assert response.status_code == 401
    entry = only("user.login_failed")
    assert entry.target_label == "an unknown address" and entry.target_id is None
    row = db.session.execute(select(AuditEntry.__table__).where(AuditEntry.id == entry.id)).one()
    assert not [value for value in row if isinstance(value, str) and typed.lower() in value.lower()]
    # an account's own address is named
    _login(client, member.email.upper(), password="wrong password")
    db.session.rollback()
    assert entries(action="user.login_failed")[-1].target_label == member.email


def test_twelve_simultaneous_setup_forms_create_one_admin(app, web):
    barrier = threading.Barrier(12)
    codes = []

    def submit(n):
        client = web.test_client()
        barrier.wait()
        response = client.post("/setup", data={"email": f"founder{n}@example.com", "password": "long enough pw 1",
                                               "confirm": "long enough pw 1"})
        codes.append(response.status_code)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    db.session.rollback()
    assert db.session.scalar(select(func.count(User.id))) == 1
    assert sorted(codes) == [302] + [404] * 11


# -- server-known sessions -------------------------------------------------------------------


def test_each_login_is_a_session_the_server_knows_and_last_seen_is_written_once_a_minute(client, member):
    _login(client, member.email, headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"})
    db.session.rollback()
    row = db.session.scalar(select(UserSession))
    assert (row.user_id, row.ended_at, row.remember) == (member.id, None, False)
    assert row.device == "Firefox on Linux" and row.ip == "127.0.0.1"
    # the table is not audited and its token is stored hashed
    assert not [e for e in entries() if e.target_type == "user_session"]
    cookie = client.get_cookie("session").value
    assert row.token_hash not in cookie
    first_seen = row.last_seen_at
    client.get("/servers")
    db.session.expire_all()
    assert db.session.get(UserSession, row.id).last_seen_at == first_seen  # less than a minute: no write

    row.last_seen_at = first_seen - timedelta(minutes=2)
    db.session.commit()
    client.get("/servers")
    db.session.expire_all()
    assert db.session.get(UserSession, row.id).last_seen_at > first_seen - timedelta(seconds=1)


def test_every_page_sends_the_security_headers(client, member):
    _login(client, member.email)
    for path in ("/login", "/servers", "/account", "/static/app.css"):
        response = client.get(path)
        csp = response.headers["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'", path
        assert directives["frame-ancestors"] == "'none'" and "unsafe" not in csp, path
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        response.close()


def test_no_template_carries_inline_script_style_or_handlers():
    """The CSP refuses them; a page template that had one would break in the browser, so none may.

    Mail templates are not pages: mail clients need inline styles, and no CSP applies there."""
    import re
    from pathlib import Path

    import intercity

    pattern = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=|hx-on|\bjs:", re.I)
    templates = Path(intercity.__file__).parent / "templates"
    found = [(path.name, match.group(0)) for path in templates.rglob("*.html") if path.parent.name != "mail"
             for match in pattern.finditer(path.read_text())]
    assert found == []


@pytest.mark.parametrize("remember, age", [(False, "PERMANENT_SESSION_LIFETIME"), (True, "REMEMBER_COOKIE_DURATION")])
def test_a_session_older_than_its_cookie_may_live_is_refused(web, client, member, remember, age):
    _login(client, member.email, remember=remember)
    assert client.get("/servers").status_code == 200
    db.session.rollback()
    row = db.session.scalar(select(UserSession))
    row.created_at = row.created_at - web.config[age] - timedelta(seconds=1)
    db.session.commit()
    copy = _copy(web, client, "remember_token" if remember else "session")
    assert copy.get("/servers").status_code == 302
