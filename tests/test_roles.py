"""Every route of the URL map, for anonymous, viewer, member, admin and deactivated people; and a secret probe of every page.

The routes are read from the app's URL map when the tests are collected, so a route added later is
checked without anyone editing this file. A route's role comes from `require_role` (the
`required_role` its view carries); a route without it needs a login and nothing more.
"""
from __future__ import annotations

import base64
import json
import re

import pytest
from sqlalchemy import select

from intercity.extensions import db
from intercity.models import AuditEntry, DeployKey, Domain, EnvVar, OutboxMessage
from tests.support.builders import make_app, make_server, make_user
from tests.support.panel import ED25519, SECRETS, finish_operation, needles
from tests.support.sessions import client_for
from tests.support.panel import no_worker  # noqa: F401  (the fixture, used below)

pytestmark = pytest.mark.usefixtures("no_worker")

ROLES = ("viewer", "member", "admin")
# Reachable without logging in (the first-run page, the health check, the login form, and the links
# mailed to an invitee, a new address or a digest's reader, whose token is the proof).
OPEN = {"setup.setup", "health.healthz", "auth.login", "team.accept", "account.confirm_email", "account.unsubscribe",
        "auth.login_code", "auth.forgot_password", "auth.reset_password"}
# POSTs every logged-in person may send: they change only their own session or account.
SELF_SERVICE_POSTS = {"auth.logout", "account.change_password", "account.change_email", "account.end_session",
                      "account.notifications_update", "account.two_factor_enable", "account.two_factor_disable",
                      "account.two_factor_recovery_codes"}
# What the panel's own routes need; the behaviour test below holds every route to its declared role,
# this table holds the declarations (viewers read, members manage apps, admins servers and the team).
PANEL_ROLES = {
    "servers.index": "viewer", "servers.show": "viewer", "servers.deploy_keys": "viewer",
    "servers.new": "admin", "servers.check": "admin", "servers.accept_host_key": "admin", "servers.remove": "admin",
    "servers.add_deploy_key": "admin", "servers.remove_deploy_key": "admin", "servers.adopt_deploy_key": "admin",
    "servers.refresh_deploy_keys": "admin",
    "apps.index": "viewer", "apps.show": "viewer",
    "apps.create": "member", "apps.import_apps": "member", "apps.restart": "member", "apps.refresh": "member",
    "apps.destroy": "member", "apps.set_env": "member", "apps.paste_env": "member", "apps.edit_env": "member",
    "apps.remove_env": "member", "apps.reveal_env": "member", "apps.add_domain": "member",
    "apps.remove_domain": "member",
    "databases.refresh": "member", "databases.create": "member", "databases.link": "member",
    "databases.unlink": "member", "databases.destroy": "admin", "databases.reveal_dsn": "member",
    "service_backups.show": "viewer", "service_backups.run": "member", "service_backups.credentials": "admin",
    "service_backups.schedule": "admin", "service_backups.unschedule": "admin", "service_backups.encryption": "admin",
    "service_backups.remove_encryption": "admin", "service_backups.export": "admin", "service_backups.install": "admin",
    "operations.show": "viewer", "operations.retry": "member",
    "account.show": "viewer", "account.notifications_update": "viewer", "account.change_password": "viewer",
    "account.change_email": "viewer", "account.end_session": "viewer", "account.two_factor_show": "viewer",
    "account.two_factor_enable": "viewer", "account.two_factor_disable": "viewer",
    "account.two_factor_recovery_codes": "viewer",
    "settings.show": "admin", "settings.test_mail": "admin", "settings.message_status": "admin",
    "settings.add_target": "admin", "settings.remove_target": "admin", "settings.retry_message": "admin",
    "settings.two_factor_policy": "admin",
    "team.index": "admin", "team.invite": "admin", "team.revoke": "admin", "team.change_role": "admin",
    "team.deactivate": "admin", "team.reactivate": "admin", "team.reset_two_factor": "admin",
}


def _collect_routes():
    from intercity import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "collect",
                      "INTERCITY_ENCRYPTION_KEY": "collect-only-0123456789-abcdefghijklmnop"})
    routes = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append(pytest.param(rule.endpoint, rule.rule, method, getattr(view, "required_role", None),
                                       id=f"{method} {rule.rule}"))
    return routes


ROUTES = _collect_routes()


@pytest.fixture
def world(app, admin, member, viewer):
    """One of everything, with distinctive secret values, and the URL arguments that reach each."""
    from intercity.services import team

    deactivated = make_user("member", email="gone@example.com", active=False)
    invitation = team.invite(admin, "newcomer@example.com", "viewer")
    db.session.commit()
    server = make_server(name="prod-1", remote_keys=([
        {"name": "default", "fingerprint": "SHA256:" + "d" * 43, "public_key": None}]))
    app_row = make_app(server, name="api")
    for key, value in SECRETS.items():
        var = EnvVar(app=app_row, key=key)
        var.value = value
        db.session.add(var)
    domain = Domain(app=app_row, hostname="api.example.com")
    db.session.add(domain)
    key = DeployKey(server=server, name="alice", public_key=ED25519, key_type="ssh-ed25519",
                    fingerprint="SHA256:mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4", added_by_email=admin.email)
    db.session.add(key)
    from intercity.models import AppBuild

    db.session.add(AppBuild(server_id=server.id, app_id=app_row.id, app_name="api", build_id="b-1", status="succeeded"))
    db.session.commit()
    from intercity.services import env as env_service

    op = env_service.set_var(app_row, member, key="API_TOKEN", value=SECRETS["API_TOKEN"] + "-v2").operation
    db.session.commit()
    finish_operation(op, "failed", reason="Dokku could not restart api.", runs=[
        (["dokku", "--quiet", "config:set", "--encoded", "api", "API_TOKEN=[redacted]"], 0, "",
         " !     Failure while restarting app: boom")])
    entry = db.session.scalar(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))
    from intercity.notify.tokens import unsubscribe_token
    from intercity.services import notifications

    target = notifications.add_target(admin, "json://127.0.0.1:9/hooks/" + SECRETS["API_TOKEN"], ["alerts"])
    db.session.flush()
    message = OutboxMessage(kind="alert", channel="chat", target_id=target.id, subject="s", text="t",
                            status="failed", attempts=1, last_response="refused")
    db.session.add(message)
    db.session.commit()
    return {
        "users": {"admin": admin, "member": member, "viewer": viewer},
        "deactivated": deactivated,
        "args": {"server_id": server.id, "name": "api", "key": "API_TOKEN", "domain_id": domain.id,
                 "key_id": key.id, "operation_id": op.id, "seq": entry.seq, "target_id": target.id,
                 "message_id": message.id, "token": unsubscribe_token(viewer), "user_id": member.id,
                 "invitation_id": invitation.id, "session_id": 10**6, "plugin": "postgres", "build_id": "b-1"},
    }


def _url(app, endpoint, rule, world):
    adapter = app.url_map.bind("localhost")
    names = {arg for r in app.url_map.iter_rules(endpoint) for arg in r.arguments}
    missing = names - world["args"].keys()
    assert not missing, f"{rule} takes {missing}: give the `world` fixture in tests/test_roles.py a sample value"
    return adapter.build(endpoint, {name: world["args"][name] for name in names})


@pytest.fixture
def web(make_app):
    """A second app object on the test's database for the HTTP clients: requests to it get app contexts
    of their own, so one client's login is never cached in the test's app context for the next client."""
    return make_app()


def _client(app, user=None):
    """A browser of its own; logged in by session (the password login is tested in test_foundation.py)."""
    return client_for(app, user)


def _deactivated_client(app, user):
    """A browser whose session was opened while `user` was active."""
    from intercity.services import sessions

    sessions.start(user)
    db.session.commit()
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = user.session_token
    return client


def test_the_url_map_was_read():
    endpoints = {param.values[0] for param in ROUTES}
    assert set(PANEL_ROLES) <= endpoints, set(PANEL_ROLES) - endpoints


# Which role a route needs is decided in the web layer: one database is enough for the per-route walk
# (the 5xx sweep and every other test still run on both).
@pytest.mark.sqlite_only
@pytest.mark.parametrize("endpoint, rule, method, required", ROUTES)
def test_route_roles(app, web, world, endpoint, rule, method, required):
    url = _url(app, endpoint, rule, world)

    def call(client):
        response = client.open(url, method=method, data={})
        response.get_data()  # read streamed bodies (exports) inside this request
        response.close()
        return response

    if endpoint in PANEL_ROLES:
        assert (required or "viewer") == PANEL_ROLES[endpoint], f"{endpoint} should need {PANEL_ROLES[endpoint]}"
    if method == "POST" and endpoint not in OPEN | SELF_SERVICE_POSTS:
        assert required in ("member", "admin"), f"POST {rule} must need at least the member role"
    if endpoint in OPEN:
        return
    # anonymous, and a deactivated person whose session was open: to the login page
    for client in (_client(web), _deactivated_client(web, world["deactivated"])):
        response = call(client)
        assert response.status_code == 302 and "/login" in response.headers["Location"], (rule, response.status_code)
    needed = ROLES.index(required or "viewer")
    for role in ROLES:
        response = call(_client(web, world["users"][role]))
        if ROLES.index(role) < needed:
            assert response.status_code == 403, (role, method, rule, response.status_code)
        elif method == "GET":
            assert response.status_code < 400, (role, rule, response.status_code)
        else:
            assert response.status_code not in (403, 500), (role, method, rule, response.status_code)


def test_viewers_see_no_buttons(web, world):
    client = _client(web, world["users"]["viewer"])
    server_id = world["args"]["server_id"]
    for url in (f"/servers", f"/servers/{server_id}", f"/servers/{server_id}/apps/api",
                f"/servers/{server_id}/deploy-keys", f"/operations/{world['args']['operation_id']}"):
        body = client.get(url).get_data(as_text=True)
        # the only form that changes anything a viewer gets is logging out
        forms = re.findall(r'<form\b[^>]*method="post"[^>]*>', body)
        assert len(forms) == 1 and "/logout" in forms[0], (url, forms)
        assert "hx-post" not in body, url
        for label in ("Add a server", "Create app", "Reveal", "Retry", "Remove", "Destroy", "Test connection"):
            assert f">{label}<" not in body, (url, label)


# --- secret probe ------------------------------------------------------------------------


def _needles() -> dict[str, str]:
    # a value changed later (the failed operation's) counts as well
    return needles({"API_TOKEN v2": SECRETS["API_TOKEN"] + "-v2"})


def test_secret_values_never_reach_a_page(app, web, world):
    """Every GET page of the URL map as every role, with and without htmx: no value, in any form."""
    needles = _needles()
    pages = [(endpoint, rule) for endpoint, rule, method, _ in (p.values for p in ROUTES)
             if method == "GET" and endpoint not in OPEN]
    assert len(pages) >= 10
    for role in ROLES:
        client = _client(web, world["users"][role])
        for endpoint, rule in pages:
            url = _url(app, endpoint, rule, world)
            for headers in ({}, {"HX-Request": "true"}):
                response = client.get(url, headers=headers)
                body = response.get_data(as_text=True)
                response.close()
                for name, needle in needles.items():
                    assert needle not in body, f"{name} appears on {url} ({role}, {headers})"


def test_only_the_reveal_response_shows_a_value_and_only_to_members_and_admins(web, world):
    needles = _needles()
    server_id = world["args"]["server_id"]
    for key, value in SECRETS.items():
        url = f"/servers/{server_id}/apps/api/env/{key}/reveal"
        assert _client(web, world["users"]["viewer"]).post(url).status_code == 403
        for role in ("member", "admin"):
            client = _client(web, world["users"][role])
            for headers in ({}, {"HX-Request": "true"}):
                body = client.post(url, headers=headers).get_data(as_text=True)
                assert value in body
                others = [n for name, n in needles.items() if not name.startswith(key)]
                assert not [n for n in others if n in body], f"revealing {key} showed another value"
    db.session.rollback()  # see what the requests committed
    reveals = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "env_var.revealed")).all()
    assert len(reveals) == len(SECRETS) * 4
    for entry in reveals:
        assert not [n for n in needles.values() if n in entry.diff]
