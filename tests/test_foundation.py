"""First run, login, logout, sessions, CSRF, health and settings."""
from __future__ import annotations

import html
import json
import os
import stat

import pytest
from sqlalchemy import select

from intercity.extensions import db
from intercity.models import AuditEntry, User
from tests.support.builders import PASSWORD, make_user


def test_first_run_leads_every_page_to_setup(client):
    for path in ("/", "/servers", "/audit", "/login"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].endswith("/setup")
    assert client.get("/healthz").status_code == 200


def test_setup_creates_the_first_admin_once(client):
    response = client.post("/setup", data={"email": "Founder@Example.com", "password": "long enough pw",
                                           "confirm": "long enough pw"})
    assert response.status_code == 302
    admin = db.session.scalar(select(User))
    assert admin.email == "founder@example.com" and admin.role == "admin"
    # logged in straight away
    assert client.get("/servers").status_code == 200
    # the page is gone: no second admin
    assert client.get("/setup").status_code == 404
    assert client.post("/setup", data={"email": "x@example.com", "password": "long enough pw",
                                       "confirm": "long enough pw"}).status_code == 404
    assert db.session.scalar(select(db.func.count(User.id))) == 1


def test_setup_form_errors_sit_next_to_the_field_and_keep_input(client):
    response = client.post("/setup", data={"email": "founder@example.com", "password": "short", "confirm": "short"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "at least 10 characters" in body
    assert 'value="founder@example.com"' in body
    assert db.session.scalar(select(User)) is None


def test_login_wrong_password_gets_one_generic_message(client, member):
    wrong = client.post("/login", data={"email": member.email, "password": "wrong password"})
    unknown = client.post("/login", data={"email": "nobody@example.com", "password": "wrong password"})
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "Email or password is incorrect." in response.get_data(as_text=True)
    actions = db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)).all()
    assert actions.count("user.login_failed") == 2


def test_login_is_case_insensitive_and_logout_ends_the_session(client, auth, member):
    assert auth.login("DEV@example.com").status_code == 302
    assert client.get("/servers").status_code == 200
    assert auth.logout().status_code == 302
    assert client.get("/servers").status_code == 302
    actions = db.session.scalars(select(AuditEntry.action).where(AuditEntry.category == "security")).all()
    assert "user.login" in actions and "user.logout" in actions


def test_inactive_user_cannot_log_in(client, auth):
    user = make_user("member", active=False)
    assert auth.login(user.email).status_code == 401


def test_login_redirect_only_to_local_paths(client, member):
    response = client.post("/login?next=//evil.example/x", data={"email": member.email, "password": PASSWORD})
    assert response.headers["Location"] == "/"
    response = client.post("/logout")
    response = client.post("/login?next=/audit", data={"email": member.email, "password": PASSWORD})
    assert response.headers["Location"] == "/audit"


def test_sessions_expire(app, member):
    assert app.config["PERMANENT_SESSION_LIFETIME"].total_seconds() == 12 * 3600
    client = app.test_client()
    client.post("/login", data={"email": member.email, "password": PASSWORD})
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.expires is not None


def test_csrf_protects_forms(make_app, member):
    client = make_app(WTF_CSRF_ENABLED=True).test_client()
    response = client.post("/login", data={"email": member.email, "password": PASSWORD})
    assert response.status_code == 400
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    assert client.post("/login", data={"email": member.email, "password": PASSWORD,
                                       "csrf_token": token}).status_code == 302
    # login starts a fresh session, so pages now carry a new token; htmx sends it in a header (the body's hx-headers)
    page = client.get("/servers").get_data(as_text=True)
    token = html.unescape(page.split("<body hx-headers='")[1].split("'")[0])
    token = json.loads(token)["X-CSRFToken"]
    assert client.post("/logout").status_code == 400
    assert client.post("/logout", headers={"X-CSRFToken": token, "HX-Request": "true"}).status_code == 302


def test_login_is_throttled(make_app, member):
    client = make_app(RATELIMIT_ENABLED=True).test_client()
    codes = [client.post("/login", data={"email": member.email, "password": "nope"}).status_code for _ in range(12)]
    assert codes[:10] == [401] * 10
    assert codes[-1] == 429


def test_healthz_names_each_part(client):
    response = client.get("/healthz")
    data = response.get_json()
    assert response.status_code == 200
    assert data["database"]["state"] == "ok"
    assert data["jobs"]["state"] == "ok"


def test_healthz_reads_the_migration_scripts_once(client):
    from intercity import database

    client.get("/healthz")
    before = database.head_revision.cache_info()
    for _ in range(3):
        assert client.get("/healthz").get_json()["database"]["state"] == "ok"
    after = database.head_revision.cache_info()
    assert after.misses == before.misses and after.hits >= before.hits + 3


def test_healthz_503_when_the_database_is_unreachable(make_app):
    app = make_app(SQLALCHEMY_DATABASE_URI="postgresql+psycopg://nobody@127.0.0.1:1/none")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"]["state"] == "unreachable"


def test_keys_are_generated_once_into_the_instance_folder(tmp_path, monkeypatch, make_app, app_config):
    monkeypatch.setenv("INTERCITY_INSTANCE_PATH", str(tmp_path / "inst"))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("INTERCITY_ENCRYPTION_KEY", raising=False)
    del app_config["SECRET_KEY"], app_config["INTERCITY_ENCRYPTION_KEY"]
    first = make_app()
    second = make_app()
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert first.config["INTERCITY_ENCRYPTION_KEY"] == second.config["INTERCITY_ENCRYPTION_KEY"]
    for name in ("secret_key", "encryption_key"):
        mode = stat.S_IMODE(os.stat(tmp_path / "inst" / name).st_mode)
        assert mode == 0o600


def test_production_refuses_to_start_without_keys(monkeypatch, tmp_path):
    from intercity import create_app
    from intercity.config import ConfigError

    monkeypatch.setenv("INTERCITY_ENV", "production")
    monkeypatch.setenv("INTERCITY_INSTANCE_PATH", str(tmp_path))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("INTERCITY_ENCRYPTION_KEY", raising=False)
    with pytest.raises(ConfigError, match="SECRET_KEY and INTERCITY_ENCRYPTION_KEY"):
        create_app()
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize("name,value,message", [
    ("INTERCITY_ENV", "staging", "INTERCITY_ENV"),
    ("MAIL_USE_TLS", "maybe", "MAIL_USE_TLS"),
    ("MAIL_PORT", "twenty-five", "MAIL_PORT"),
    ("DATABASE_URL", "not a url", "DATABASE_URL"),
    ("DATABASE_URL", "mysql://x/y", "SQLite or PostgreSQL"),
])
def test_bad_settings_get_a_one_line_error(monkeypatch, tmp_path, name, value, message):
    from intercity import create_app
    from intercity.config import ConfigError

    monkeypatch.setenv("INTERCITY_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        create_app()


def test_a_unique_clash_at_commit_is_a_conflict_not_a_crash(app, client, logged_in, member):
    """Two people creating the same name at once: the loser gets a 409 and nothing half-applied."""
    from intercity.models import App
    from tests.support.builders import make_server

    server = make_server(name="race-1")
    db.session.add(App(server=server, name="api"))
    db.session.commit()
    server_id = server.id

    def clash():
        db.session.add(App(server_id=server_id, name="web"))
        db.session.flush()
        db.session.add(App(server_id=server_id, name="api"))
        db.session.commit()

    app.add_url_rule("/_test/clash", "clash", clash, methods=["POST"])
    logged_in(member)
    response = client.post("/_test/clash")
    assert response.status_code == 409
    assert "Someone made the same change at the same moment" in response.get_data(as_text=True)
    db.session.rollback()
    names = db.session.scalars(select(App.name).where(App.server_id == server_id)).all()
    assert names == ["api"]
