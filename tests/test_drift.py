"""Drift checks against the Dokku double: changes made outside the panel, who made them, outages."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from intercity import crypto
from intercity.audit.timeline import row_for
from intercity.extensions import db
from intercity.models import App, AuditEntry, DeployKey, Domain, EnvVar, Operation, Server
from intercity.services import drift as drift_service
from intercity.services import value_history
from tests.support.audit import public_key
from tests.support.builders import make_app
from tests.support.operations import run_op, settle
from tests.support.ssh_fixtures import make_dokku_server

pytestmark = [pytest.mark.ssh, pytest.mark.postgresql_only]

SECRET = "drift-secret-value-9f3a"
CHANGED = "changed-on-server-71c2"
ADDED = "added-by-hand-5d0e"


def check(app, server, user=None) -> Operation:
    return run_op(app, "server.drift_check", server=db.session.get(Server, server.id), user=user)


def drift_entries(since: int = 0) -> list[AuditEntry]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEntry).where(
        AuditEntry.seq > since, AuditEntry.action.like("%_outside") | AuditEntry.action.like("server.%reachable"))
        .order_by(AuditEntry.seq)))


def head() -> int:
    return db.session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1)) or 0


def managed_app(server, dokku, name="api", env=None, domains=()):
    """An app the panel manages and the server has, both holding the same (as after an import)."""
    env = env or {}
    dokku.create_app(name)
    dokku.set_env(name, env)
    dokku.set_domains(name, list(domains))
    row = make_app(server, name=name)
    for key, value in env.items():
        var = EnvVar(app=row, key=key)
        var.value = value
        db.session.add(var)
    for host in domains:
        db.session.add(Domain(app=row, hostname=host))
    db.session.commit()
    return row


def assert_no_values(entries):
    for entry in entries:
        for secret in (SECRET, CHANGED, ADDED):
            assert secret not in entry.diff and secret not in str(row_for(entry).sentence)


def test_each_outside_change_is_one_entry_with_actor_server_and_nothing_when_nothing_changed(
        smtp, app, member, dokku, dokku_server):
    managed_app(dokku_server, dokku, "api", env={"SECRET_KEY": SECRET, "GONE": SECRET + "-2", "SAME": "x"},
                domains=["api.example.com", "old.example.com"])
    managed_app(dokku_server, dokku, "doomed")
    dokku.add_key("ci-bot", public_key(7)[0])  # on the server before the first check
    first = check(app, dokku_server, member)
    assert first.status == "succeeded", first.reason
    assert drift_entries() == []  # nothing changed: nothing recorded
    start = head()
    assert check(app, dokku_server, member).status == "succeeded"
    assert head() == start  # a repeated check records nothing at all

    # Someone changes things by hand on the server.
    dokku.set_env("api", {"SECRET_KEY": CHANGED, "SAME": "x", "NEW_ONE": ADDED})
    dokku.set_domains("api", ["api.example.com", "new.example.com"])
    dokku._state.destroy_app("doomed")
    dokku.create_app("sneaky")
    dokku.set_env("sneaky", {"TOKEN": ADDED})
    fingerprint = dokku.add_key("laptop", public_key(8)[0])
    settle(app)
    smtp.clear()
    done = check(app, dokku_server, member)
    assert done.status == "succeeded", done.reason
    found = drift_entries(start)
    by_action = {}
    for entry in found:
        by_action.setdefault(entry.action, []).append(entry.target_label)
    assert by_action == {
        "env_var.changed_outside": ["SECRET_KEY"], "env_var.removed_outside": ["GONE"],
        "env_var.added_outside": ["NEW_ONE"], "domain.added_outside": ["new.example.com"],
        "domain.removed_outside": ["old.example.com"], "app.destroyed_outside": ["doomed"],
        "app.created_outside": ["sneaky"], "deploy_key.added_outside": ["laptop"],
    }
    assert {e.actor_kind for e in found} == {"server"}
    categories = {e.action: e.category for e in found}
    assert categories["env_var.changed_outside"] == "security" and categories["deploy_key.added_outside"] == "security"
    assert categories["domain.added_outside"] == "app" and categories["app.created_outside"] == "app"
    assert_no_values(found)
    changed = next(e for e in found if e.action == "env_var.changed_outside")
    assert json.loads(changed.diff)["value_fingerprint"] == [crypto.fingerprint(SECRET), crypto.fingerprint(CHANGED)]
    # The panel now holds what the server has, as wanted and as applied, and remembers the value.
    api = db.session.scalar(select(App).where(App.name == "api"))
    values = {v.key: (v.value, v.applied_fingerprint == v.value_fingerprint) for v in api.env_vars}
    assert values == {"SECRET_KEY": (CHANGED, True), "SAME": ("x", True), "NEW_ONE": (ADDED, True)}
    assert sorted(d.hostname for d in api.domains) == ["api.example.com", "new.example.com"]
    assert value_history.latest("env", server_id=api.server_id, app_id=api.id, name="SECRET_KEY").value == CHANGED
    assert db.session.scalar(select(App).where(App.name == "doomed")) is None
    sneaky = db.session.scalar(select(App).where(App.name == "sneaky"))
    assert [v.key for v in sneaky.env_vars] == ["TOKEN"]
    key = db.session.scalar(select(DeployKey).where(DeployKey.fingerprint == fingerprint))
    assert key.adopted and key.on_server
    # The event log is off: the entries say who did it cannot be told, deploy keys never can.
    assert "event log is off" in str(row_for(changed).sentence)
    laptop = next(e for e in found if e.action == "deploy_key.added_outside")
    assert "fire no trigger" in str(row_for(laptop).sentence)
    # Security changes made outside are mailed at once, like any security change; no value in the mail.
    settle(app)
    [message] = smtp.wait_for(1)
    assert "Security alert" in message["Subject"]
    text = message.get_body(("plain",)).get_content()
    assert "SECRET_KEY on api" in text and "changed outside the panel" in text
    assert CHANGED not in message.as_string() and SECRET not in message.as_string()
    # Each change recorded once: the next check finds nothing new.
    again = head()
    assert check(app, dokku_server, member).status == "succeeded"
    assert drift_entries(again) == []
    # Removing the key by hand is one more entry.
    dokku._state.write_key_lines([line for line in dokku._state.key_lines() if "laptop" not in line])
    check(app, dokku_server, member)
    assert [e.action for e in drift_entries(again)] == ["deploy_key.removed_outside"]


def test_apps_with_pending_work_or_a_lost_command_are_skipped_and_the_page_says_so(app, member, dokku, dokku_server):
    from intercity.jobs.drift import skipped_apps
    from intercity.models.base import utcnow
    from intercity.services.operations import request_operation

    row = managed_app(dokku_server, dokku, "busy", env={"A": "1"})
    request_operation("app.restart", server=dokku_server, app=row, requested_by=member)
    db.session.flush()
    assert "still working on it (restart the app)" in skipped_apps(dokku_server.id)["busy"]
    db.session.rollback()
    # A restart the panel lost sight of, whose deadline lies ahead: the server may still change.
    lost = run_op(app, "app.refresh", server=dokku_server, user=member, target=db.session.get(App, row.id))
    lost.commands_in_doubt, lost.commands_deadline_at = True, utcnow() + timedelta(minutes=10)
    db.session.commit()
    dokku.set_env("busy", {"A": "2"})
    start = head()
    check(app, dokku_server, member)
    assert drift_entries(start) == []
    summary = drift_service.summary(db.session.get(Server, dokku_server.id))
    assert "lost sight" in summary["skipped"]["busy"]


def test_an_unreachable_server_is_one_entry_per_outage(app, member, sshd, dokku):
    server = make_dokku_server(sshd)
    real_port = server.port
    server.port = 1  # nothing listens there
    db.session.commit()
    start = head()
    for _ in range(3):
        check(app, server, member)
    server = db.session.get(Server, server.id)
    server.port = real_port
    db.session.commit()
    check(app, server, member)
    check(app, server, member)
    down, back = drift_entries(start)
    assert (down.action, back.action) == ("server.unreachable", "server.reachable")
    assert {down.category, back.category} == {"server"} and down.actor_kind == "server"
    words = str(row_for(down).sentence)
    assert words.startswith(f"server: {server.name} could not be reached (") and "[" not in words
    assert str(row_for(back).sentence) == f"server: {server.name} can be reached again"


def test_attribution_from_event_lines_in_both_time_formats(app, member, dokku, dokku_server):
    app.config["DOKKU_EVENTS_LOG"] = str(dokku.events_log)  # the log file this test writes
    managed_app(dokku_server, dokku, "web", env={"SECRET_KEY": SECRET}, domains=["web.example.com"])
    managed_app(dokku_server, dokku, "old", env={"SECRET_KEY": SECRET})
    dokku.set_events(True)
    # Before any command of the panel's ran: these lines cannot be the panel's own.
    now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1)
    check(app, dokku_server, member)
    start = head()
    dokku.set_env("web", {"SECRET_KEY": CHANGED})
    dokku.write_event("post-config-update", "web", "set", "SECRET_KEY", name="ci-bot",
                      fingerprint="SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", dokku_pid=9001, at=now)
    dokku.set_domains("web", ["web.example.com", "by-root.example.com"])
    dokku.write_event("post-domains-update", "web", "add", "by-root.example.com", dokku_pid=9002,
                      at=now + timedelta(seconds=1))
    # A host whose rsyslog writes the traditional format (no year, no zone: read from the server).
    dokku.set_env("old", {"SECRET_KEY": CHANGED})
    dokku.write_event("post-config-update", "old", "set", "SECRET_KEY", name="laptop",
                      fingerprint="SHA256:traditionaltraditionaltraditionaltradition1", dokku_pid=9003,
                      at=now + timedelta(seconds=2), traditional=True)
    check(app, dokku_server, member)
    found = {(e.action, e.app_name): e for e in drift_entries(start)}
    changed = str(row_for(found["env_var.changed_outside", "web"]).sentence)
    assert "changed outside the panel by key ci-bot (SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG)" in changed
    assert "by someone with root on" in str(row_for(found["domain.added_outside", "web"]).sentence)
    outside = json.loads(found["env_var.changed_outside", "web"].diff)["outside"]
    assert outside["by"] == "key" and outside["dokku_pid"] == 9001
    old = json.loads(found["env_var.changed_outside", "old"].diff)["outside"]
    assert (old["by"], old["name"], old["dokku_pid"]) == ("key", "laptop", 9003)
    assert datetime.fromisoformat(old["at"]) == now + timedelta(seconds=2)
    assert_no_values(found.values())


def test_lines_inside_the_panels_own_command_runs_are_the_panels(app, member, dokku, dokku_server):
    from intercity.services.operations import request_operation
    from tests.support.operations import set_env as panel_set_env

    app.config["DOKKU_EVENTS_LOG"] = str(dokku.events_log)
    row = managed_app(dokku_server, dokku, "own", env={"TOKEN": SECRET})
    dokku.set_events(True)
    check(app, dokku_server, member)
    # The panel changes TOKEN itself: the double logs a root line (empty NAME) inside that command run.
    panel_set_env(db.session.get(App, row.id), TOKEN=SECRET + "-new")
    request_operation("env.apply", server=dokku_server, app=db.session.get(App, row.id),
                           payload={"set": ["TOKEN"], "unset": [], "restart": False}, requested_by=member)
    db.session.commit()
    settle(app)
    assert "post-config-update( own set TOKEN )" in dokku.events_log.read_text()
    # Then someone changes it by hand without any line (a root shell editing nothing Dokku logs).
    dokku.set_env("own", {"TOKEN": CHANGED})
    start = head()
    check(app, dokku_server, member)
    [entry] = drift_entries(start)
    sentence = str(row_for(entry).sentence)
    assert "other than the panel's own commands" in sentence and "root" not in sentence


def test_a_failed_change_keeps_its_wanted_value_and_offers_retry_or_keeping_the_servers(
        app, member, dokku, dokku_server):
    from intercity.services.operations import request_operation

    row = managed_app(dokku_server, dokku, "stuck", env={"API_KEY": SECRET})
    check(app, dokku_server, member)
    var = db.session.scalar(select(EnvVar).where(EnvVar.app_id == row.id))
    var.value = SECRET + "-wanted"
    dokku.fail("config:set", stderr=" !     disk full\n")
    request_operation("env.apply", server=dokku_server, app=db.session.get(App, row.id),
                      payload={"set": ["API_KEY"], "unset": [], "restart": False}, requested_by=member)
    db.session.commit()
    settle(app)
    dokku.clear_faults()
    dokku.set_env("stuck", {"API_KEY": CHANGED})
    start = head()
    check(app, dokku_server, member)
    [entry] = drift_entries(start)
    assert entry.action == "env_var.changed_outside" and json.loads(entry.diff)["kept_wanted"] is True
    var = db.session.scalar(select(EnvVar).where(EnvVar.app_id == row.id))
    assert var.value == SECRET + "-wanted" and var.applied_fingerprint == crypto.fingerprint(CHANGED)
    from tests.support.sessions import log_in

    client = app.test_client()
    log_in(client, member)
    page = client.get(f"/servers/{dokku_server.id}/apps/stuck").get_data(as_text=True)
    assert "differs on the server" in page and "Keep the server&#39;s value" in page
    assert CHANGED not in page and SECRET not in page
    answer = client.post(f"/servers/{dokku_server.id}/apps/stuck/env/API_KEY/keep-server-value")
    assert answer.status_code == 303
    db.session.expire_all()
    var = db.session.scalar(select(EnvVar).where(EnvVar.app_id == row.id))
    assert var.value == CHANGED
    kept = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "env_var.server_value_kept")).all()
    assert len(kept) == 1 and kept[0].actor_email == member.email and CHANGED not in kept[0].diff
    page = client.get(f"/servers/{dokku_server.id}/apps/stuck").get_data(as_text=True)
    assert "differs on the server" not in page


def test_the_server_page_offers_check_now_the_interval_and_turning_the_event_log_on(
        app, admin, dokku, dokku_server):
    from tests.support.sessions import log_in

    client = app.test_client()
    log_in(client, admin)
    assert client.post(f"/servers/{dokku_server.id}/drift/check").status_code == 303
    settle(app)
    page = client.get(f"/servers/{dokku_server.id}").get_data(as_text=True)
    assert "Last compared with the server" in page and "event log is off" in page
    assert "dokku events:on" in page
    assert client.post(f"/servers/{dokku_server.id}/drift/interval", data={"interval": "abc"}).status_code == 303
    assert db.session.get(Server, dokku_server.id).drift_interval_minutes == 15
    client.post(f"/servers/{dokku_server.id}/drift/interval", data={"interval": "30"})
    db.session.expire_all()
    assert db.session.get(Server, dokku_server.id).drift_interval_minutes == 30
    assert db.session.scalars(select(AuditEntry).where(AuditEntry.action == "server.updated")).all()[-1] \
        .diff == '{"drift_interval_minutes":[15,30]}'
    client.post(f"/servers/{dokku_server.id}/drift/events-on")
    settle(app)
    assert dokku._state.events_enabled()
    assert db.session.scalars(select(AuditEntry).where(AuditEntry.action == "server.events_on_requested")).all()
    client.post(f"/servers/{dokku_server.id}/drift/check")
    settle(app)
    page = client.get(f"/servers/{dokku_server.id}").get_data(as_text=True)
    assert "event log is on" in page


def test_the_schedule_requests_a_check_per_server_when_its_interval_has_passed(app, dokku, dokku_server):
    from intercity.models.base import utcnow

    server = db.session.get(Server, dokku_server.id)
    server.status = "ready"
    db.session.commit()
    first = drift_service.request_due(utcnow())
    assert len(first) == 1
    assert drift_service.request_due(utcnow()) == []  # one pending is enough
    settle(app)
    server = db.session.get(Server, dokku_server.id)
    assert server.drift_checked_at is not None
    assert not drift_service.due(server, utcnow())  # just checked
    assert drift_service.due(server, utcnow() + timedelta(minutes=16))
    server.drift_interval_minutes = 0
    assert not drift_service.due(server, utcnow() + timedelta(days=1))  # scheduled checks off


def test_an_import_is_app_imported_and_the_next_check_finds_nothing(app, member, dokku, dokku_server):
    dokku.create_app("legacy")
    dokku.set_env("legacy", {"SECRET_KEY": SECRET})
    dokku.set_domains("legacy", ["legacy.example.com"])
    check(app, dokku_server, member)  # an app the panel does not manage yet is left alone
    start = head()
    assert run_op(app, "server.import", server=dokku_server, user=member, payload={"apps": None}).status == "succeeded"
    check(app, dokku_server, member)
    actions = [e.action for e in db.session.scalars(select(AuditEntry).where(AuditEntry.seq > start))]
    assert "app.imported" in actions and "app.created" not in actions
    assert drift_entries(start) == []
