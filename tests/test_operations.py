"""Operations end to end: desired state in the database, the job applies it over SSH to the Dokku double.

Each test changes rows the way the services do (rows plus `request_operation`), commits, lets
the in-process runner apply the operation, then checks the double, the operation, its command
runs and its audit entries. The core kinds run on SQLite and PostgreSQL; failure paths that add
nothing on SQLite run on PostgreSQL only.
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from intercity import crypto, validation
from intercity.audit.actor import Actor, acting_as
from intercity.dokku.transcript import NOT_STORED, commands_sha256
from intercity.extensions import db
from intercity.models import App, AuditEntry, DeployKey, Domain, EnvVar, Operation, Server
from intercity.services.operations import request_operation, retry
from tests.support.builders import make_app
from tests.support.operations import AWKWARD, apply_env, argvs, finished, run_op, runs, set_env, settle
from tests.support.ssh_fixtures import RUN_TAG, SUDO_USER, make_dokku_server
from tests.support.sshd import SshServer

pytestmark = pytest.mark.ssh

SUDO_USER_TO_FIX = f"intercity-ops-fix-{RUN_TAG}"


def retried(app, op: Operation, user) -> Operation:
    again = retry(db.session.get(Operation, op.id), user)
    db.session.commit()
    again_id = again.id
    settle(app)
    return db.session.get(Operation, again_id)


def outcome(op: Operation) -> AuditEntry:
    (entry,) = db.session.scalars(select(AuditEntry).where(AuditEntry.operation_id == op.id,
                                                           AuditEntry.action.like("operation.%")))
    return entry


def entries(action: str) -> list[AuditEntry]:
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))


def assert_succeeded(op: Operation) -> None:
    assert (op.status, op.reason) == ("succeeded", None), op.reason


# --- the record of an operation ------------------------------------------------------------


def test_env_apply_sets_values_and_records_what_ran(app, admin, dokku, dokku_server):
    dokku.create_app("web")
    web = make_app(dokku_server, name="web")
    op = apply_env(app, web, admin, DATABASE_URL="postgres://u:hunter2-secret@db/x", DEBUG="false")

    assert_succeeded(op)
    assert dokku.env("web") == {"DATABASE_URL": b"postgres://u:hunter2-secret@db/x", "DEBUG": b"false"}
    assert op.attempts == 1 and op.started_at <= op.finished_at and op.heartbeat_at is not None
    assert op.warning_list == []
    assert argvs(op) == [
        ["dokku", "--quiet", "config:set", "--encoded", "--no-restart", "web", "DATABASE_URL=[redacted]",
         "DEBUG=[redacted]"],
        ["dokku", "config:export", "web", "--format", "json"],
    ]
    config_set, export = runs(op)
    assert (config_set.exit_code, config_set.server_name, config_set.error) == (0, dokku_server.name, None)
    assert export.stdout == NOT_STORED  # the read-back lists every value

    entry = outcome(op)
    assert (entry.action, entry.category, entry.actor_kind, entry.actor_email) == \
        ("operation.succeeded", "security", "worker", "admin@example.com")
    assert entry.actor_display == "worker on behalf of admin@example.com"
    assert json.loads(entry.diff) == {"status": ["running", "succeeded"], "reason": [None, None],
                                      "commands_sha256": [None, commands_sha256(runs(op))]}


def test_restart_flag_reaches_dokku_only_on_the_last_call(app, admin, dokku, dokku_server):
    dokku.create_app("web")
    dokku.mark_deployed("web")
    web = make_app(dokku_server, name="web")
    set_env(web, GONE="x")
    db.session.commit()
    db.session.delete(db.session.scalar(select(EnvVar).where(EnvVar.key == "GONE")))
    op = apply_env(app, web, admin, restart=True, unset=["GONE"], KEPT="1")
    assert_succeeded(op)
    called = [call["argv"] for call in dokku.calls() if call["command"] in ("config:set", "config:unset")]
    assert called[0][:4] == ["--quiet", "config:set", "--encoded", "--no-restart"]
    assert called[1] == ["--quiet", "config:unset", "web", "GONE"]  # restarts once, with everything in place


def test_readback_warns_when_dokku_stores_another_value(app, admin, dokku, dokku_server):
    dokku.create_app("web")
    web = make_app(dokku_server, name="web")
    op = apply_env(app, web, admin, PORT_PADDED="007", NAME="api")
    assert_succeeded(op)
    assert op.warning_list == [
        "Dokku stored a different value for PORT_PADDED (it writes integer-looking values as numbers)."]
    assert not any("007" in warning for warning in op.warnings)
    # The desired state keeps what the person typed.
    assert db.session.scalar(select(EnvVar).where(EnvVar.key == "PORT_PADDED")).value == "007"


def test_awkward_values_reach_dokku_byte_for_byte_through_an_operation(app, member, dokku, dokku_server):
    dokku.create_app("web")
    web = make_app(dokku_server, name="web")
    op = apply_env(app, web, member, **AWKWARD)
    assert_succeeded(op)
    assert dokku.env("web") == {key: value.encode("utf-8") for key, value in AWKWARD.items()}
    assert [argv[2] for argv in argvs(op)] == ["config:set", "config:set", "web"]  # split at 100 KiB


def test_retry_applies_the_current_desired_state(app, admin, dokku, dokku_server):
    dokku.create_app("web")
    web = make_app(dokku_server, name="web")
    dokku.fail("config:set", exit_code=1, stderr=" !     disk full while writing s3cr3t-token-one\n", times=1)
    failed = apply_env(app, web, admin, TOKEN="s3cr3t-token-one")

    assert failed.status == "failed"
    assert failed.reason == "dokku config:set failed (exit code 1): disk full while writing [redacted]"
    (run,) = runs(failed)
    # A config command's output is never stored: the transcript keeps the panel's reading.
    assert run.exit_code == 1 and run.stderr == failed.reason
    assert outcome(failed).action == "operation.failed"
    assert dokku.env("web") == {}
    assert db.session.scalar(select(EnvVar).where(EnvVar.key == "TOKEN")).value == "s3cr3t-token-one"

    set_env(web, TOKEN="s3cr3t-token-two")  # changed again before the retry
    db.session.commit()
    again = retry(failed, admin)
    db.session.commit()
    again_id = again.id
    settle(app)
    again = db.session.get(Operation, again_id)
    assert_succeeded(again)
    assert (again.retry_of_id, again.kind, again.data) == (failed.id, "env.apply", failed.data)
    assert dokku.env("web") == {"TOKEN": b"s3cr3t-token-two"}  # today's value, not the failed attempt's


def test_domains_apply_adds_and_removes_without_regex_accidents(app, admin, dokku, dokku_server):
    dokku.create_app("web")
    dokku.set_domains("web", ["outside.example.org"])  # added on the server by hand: left alone
    web = make_app(dokku_server, name="web")
    for host in ("a.example.com", "axexample.com"):
        db.session.add(Domain(app=web, hostname=host))
    db.session.flush()
    added = run_op(app, "domains.apply", server=dokku_server, user=admin, target=web,
                   payload={"add": ["a.example.com", "axexample.com"], "remove": []})
    assert_succeeded(added)
    assert dokku.domains("web") == ["outside.example.org", "a.example.com", "axexample.com"]

    db.session.delete(db.session.scalar(select(Domain).where(Domain.hostname == "a.example.com")))
    db.session.flush()
    removed = run_op(app, "domains.apply", server=dokku_server, user=admin, target=web,
                     payload={"add": [], "remove": ["a.example.com"]})
    assert_succeeded(removed)
    assert dokku.domains("web") == ["outside.example.org", "axexample.com"]
    assert [argv[1] for argv in argvs(removed)] == ["domains:report", "domains:set"]


def test_deploy_keys_apply_adds_removes_and_adopted_keys_go_by_fingerprint(app, admin, dokku, dokku_server):
    line = crypto.generate_ssh_key("dev@laptop")[1]
    parsed = validation.public_key(line)
    adopted_line = crypto.generate_ssh_key("someone's old key")[1]
    adopted_fp = dokku.add_key("weird name (from the server)", adopted_line)
    db.session.add(DeployKey(server=dokku_server, name="laptop", public_key=line, key_type=parsed.key_type,
                             fingerprint=parsed.fingerprint))
    db.session.flush()
    op = run_op(app, "deploy_keys.apply", server=dokku_server, user=admin, payload={
        "add": ["laptop"], "remove": [{"name": "weird name (from the server)", "fingerprint": adopted_fp,
                                       "adopted": True}]})
    assert_succeeded(op)
    assert [(k["name"], k["fingerprint"]) for k in dokku.keys()] == [("laptop", parsed.fingerprint)]
    assert ["dokku", "ssh-keys:remove", "--fingerprint", adopted_fp] in argvs(op)
    server = db.session.get(Server, dokku_server.id)
    assert [k["name"] for k in server.remote_keys] == ["laptop"]


def test_create_then_destroy_deletes_the_app_when_dokku_confirms(app, admin, dokku, dokku_server):
    web = make_app(dokku_server, name="web")
    set_env(web, KEY="value")
    db.session.add(Domain(app=web, hostname="web.example.com"))
    db.session.flush()
    created = run_op(app, "app.create", server=dokku_server, user=admin, target=web)
    assert_succeeded(created)
    assert dokku.apps() == ["web"]

    web = db.session.get(App, web.id)
    web.status = "destroying"
    app_id = web.id
    destroyed = run_op(app, "app.destroy", server=dokku_server, user=admin, target=web)
    assert_succeeded(destroyed)
    assert dokku.apps() == [] and db.session.get(App, app_id) is None
    assert argvs(destroyed) == [["dokku", "--force", "apps:destroy", "web"]]
    (deleted,) = entries("app.deleted")
    assert deleted.actor_display == "worker on behalf of admin@example.com"
    assert {e.caused_by for e in entries("env_var.deleted") + entries("domain.deleted")} == {f"app:{app_id}"}


def test_server_check_pins_the_host_key_and_reads_dokku(app, admin, sshd, dokku):
    server = make_dokku_server(sshd, pinned=False, status="new")
    op = run_op(app, "server.check", server=server, user=admin)
    assert_succeeded(op)
    server = db.session.get(Server, server.id)
    assert (server.host_key_type, server.host_key_fingerprint) == ("ssh-ed25519", sshd.host_key_fingerprint)
    assert (server.status, server.dokku_version, server.remote_keys) == ("ready", "0.38.27", [])
    (pinned,) = entries("server.host_key_pinned")
    assert pinned.category == "security" and pinned.actor_display == "worker on behalf of admin@example.com"
    assert [argv[1] for argv in argvs(op)] == ["version", "ssh-keys:list"]


def test_import_brings_apps_env_vars_and_domains_in(app, member, dokku, dokku_server):
    dokku.create_app("legacy_api")
    dokku.set_env("legacy_api", {"SECRET_KEY": "imported-secret-value", "PIN": "007"})
    dokku.set_domains("legacy_api", ["api.example.com"])
    dokku.create_app("known")
    make_app(dokku_server, name="known")
    op = run_op(app, "server.import", server=dokku_server, user=member, payload={"apps": None})
    assert_succeeded(op)
    imported = db.session.scalar(select(App).where(App.name == "legacy_api"))
    assert imported.imported and [d.hostname for d in imported.domains] == ["api.example.com"]
    assert {v.key: v.value for v in imported.env_vars} == {"PIN": "7", "SECRET_KEY": "imported-secret-value"}
    # An import records what was already there: app.imported, not a creation (and not drift).
    assert entries("app.imported")[-1].actor_display == "worker on behalf of dev@example.com"
    assert not db.session.scalars(select(AuditEntry).where(AuditEntry.action.like("%_outside"))).all()
    exports = [run for run in runs(op) if json.loads(run.argv)[1] == "config:export"]
    assert [run.stdout for run in exports] == [NOT_STORED]
    assert db.session.scalar(select(App).where(App.name == "known")).imported is False
    # What was read is what the server has: imported rows start applied, and the values are kept (encrypted).
    from intercity.services import row_state, value_history

    assert imported.on_server is True and {d.hostname: d.on_server for d in imported.domains} == {"api.example.com": True}
    assert {k: v.state for k, v in row_state.env_views(imported).items()} == {"PIN": "applied", "SECRET_KEY": "applied"}
    assert value_history.latest("env", server_id=imported.server_id, app_id=imported.id,
                                name="SECRET_KEY").value == "imported-secret-value"


def test_import_from_an_old_dokku_uses_the_text_formats(app, member, dokku, sshd):
    dokku.set_version("0.35.0")
    server = make_dokku_server(sshd)
    assert server.dokku_version == "0.35.0"
    dokku.create_app("old_style")
    dokku.set_domains("old_style", ["old.example.com"])
    op = run_op(app, "server.import", server=server, user=member, payload={"apps": ["old_style", "missing"]})
    assert_succeeded(op)
    assert argvs(op) == [["dokku", "apps:list"], ["dokku", "config:export", "old_style", "--format", "json"],
                         ["dokku", "domains:report", "old_style"]]
    imported = db.session.scalar(select(App).where(App.name == "old_style"))
    assert [d.hostname for d in imported.domains] == ["old.example.com"]
    assert op.warning_list == ["missing is not on the server, so it was not imported."]


def test_restart_of_an_undeployed_app_fails_and_refresh_reads_ps_report(app, member, dokku, dokku_server):
    dokku.create_app("web")
    web = make_app(dokku_server, name="web")
    failed = run_op(app, "app.restart", server=dokku_server, user=member, target=web)
    assert failed.status == "failed" and "has not been deployed yet" in failed.reason
    assert runs(failed)[0].exit_code == 0  # Dokku says so with exit 0: recognised from the message

    dokku.mark_deployed("web")
    refreshed = run_op(app, "app.refresh", server=dokku_server, user=member, target=web)
    assert_succeeded(refreshed)
    web = db.session.get(App, web.id)
    assert web.ps_status == {"deployed": True, "processes": 1, "running": True,
                             "types": {"web": {"count": 1, "states": {"running": 1}}}}
    assert web.on_server is True and web.applied_seen_at is not None


def test_a_read_writes_its_outcome_entry_only_when_it_fails(app, member, dokku, dokku_server):
    dokku.create_app("web")
    web = make_app(dokku_server, name="web")
    dokku.mark_deployed("web")
    refreshed = run_op(app, "app.refresh", server=dokku_server, user=member, target=web)
    assert_succeeded(refreshed)
    assert runs(refreshed)  # it ran ps:report ...
    assert db.session.scalars(select(AuditEntry.action).where(AuditEntry.operation_id == refreshed.id)).all() == []

    dokku.fail("ps:report", stderr=" !     App web does not exist")  # ... and fails when Dokku says no
    failed = run_op(app, "app.refresh", server=dokku_server, user=member, target=web)
    assert failed.status == "failed"
    assert outcome(failed).action == "operation.failed"


def test_operations_of_one_scope_share_one_connection(app, admin, sshd, dokku, dokku_server):
    dokku.create_app("web")
    web = make_app(dokku_server, name="web")
    logins = sshd.log().count("Accepted publickey")
    ops = []
    for n in range(3):
        set_env(web, COUNTER=str(n) + "x")
        ops.append(request_operation("env.apply", server=dokku_server, app=web, requested_by=admin,
                                     payload={"set": ["COUNTER"], "unset": [], "restart": False}))
    db.session.commit()  # three operations, one drain
    ids = [op.id for op in ops]
    settle(app)
    assert [db.session.get(Operation, i).status for i in ids] == ["succeeded"] * 3
    assert dokku.env("web") == {"COUNTER": b"2x"}
    assert sshd.log().count("Accepted publickey") - logins == 1


# --- failures -------------------------------------------------------------------------------


def test_unreachable_server_fails_after_bounded_retries(app, admin, dokku, sshd):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = make_dokku_server(sshd, port=port)
    web = make_app(server, name="web")
    op = apply_env(app, web, admin, KEY="v")
    assert op.status == "failed"
    assert op.reason == (f"127.0.0.1 port {port} refused the connection: is SSH running on that port, and does a "
                         "firewall allow the panel in? (gave up after 3 attempts)")
    assert runs(op) == [] and op.attempts == 1
    assert db.session.scalar(select(EnvVar).where(EnvVar.key == "KEY")).value == "v"
    # Any operation's failed connection tells the truth about the server, not only a connection test.
    found = db.session.get(Server, server.id)
    assert found.status == "unreachable" and found.unreachable_since is not None
    with app.test_request_context():
        from flask import render_template_string
        badge = render_template_string('{% include "servers/_badge.html" %}', server=found)
    assert ">unreachable<" in badge and "since" in badge and ">ready<" not in badge

    dokku.create_app("web")
    db.session.get(Server, server.id).port = sshd.port  # an admin corrects the port
    db.session.commit()
    assert_succeeded(retried(app, op, admin))
    assert dokku.env("web") == {"KEY": b"v"}
    found = db.session.get(Server, server.id)
    assert (found.status, found.unreachable_since) == ("ready", None)


@pytest.mark.postgresql_only
def test_refused_key_fails_and_a_retry_succeeds_once_installed(app, admin, sshd, dokku):
    server = make_dokku_server(sshd, authorize=False)
    dokku.create_app("web")
    web = make_app(server, name="web")
    op = apply_env(app, web, admin, KEY="v")
    assert op.status == "failed"
    assert op.reason.startswith("The panel's key is not in authorized_keys of root@127.0.0.1.")
    assert runs(op) == [] and dokku.env("web") == {}
    sshd.authorize("root", server.public_key)
    assert_succeeded(retried(app, op, admin))
    assert dokku.env("web") == {"KEY": b"v"}


@pytest.mark.postgresql_only
def test_server_check_reports_what_to_fix(app, admin, sshd, dokku):
    server = make_dokku_server(sshd, authorize=False, pinned=False, status="new")
    op = run_op(app, "server.check", server=server, user=admin)
    server = db.session.get(Server, server.id)
    assert op.status == "failed" and server.status == "error"
    assert server.status_message == op.reason and "authorized_keys of root@127.0.0.1" in op.reason
    assert server.host_key_fingerprint is None  # nothing is pinned without a successful login

    sshd.authorize("root", server.public_key)
    dokku.fail("version", exit_code=127, stderr="sh: 1: dokku: not found\n")
    op = run_op(app, "server.check", server=server, user=admin)
    server = db.session.get(Server, server.id)
    assert (op.status, server.status) == ("failed", "error")
    assert op.reason == "Dokku is not installed on this server: the dokku command was not found."
    assert runs(op)[0].stderr == "sh: 1: dokku: not found\n"


@pytest.mark.postgresql_only
def test_command_timeout_fails_the_operation_and_keeps_earlier_output(app, admin, dokku, dokku_server):
    # The panel stops waiting after 1 s; the server would stop the command after 2 s (plus 1 s grace).
    app.config.update(SSH_COMMAND_TIMEOUT=1, COMMAND_DEADLINES={"env.apply": 2}, COMMAND_KILL_GRACE=1)
    dokku.create_app("web")
    dokku.hang("config:export", 5)
    web = make_app(dokku_server, name="web")
    op = apply_env(app, web, admin, KEY="v")
    assert op.status == "failed"
    assert op.reason.startswith("dokku did not finish within 1 s")
    assert op.commands_in_doubt and "Later work on web waits until" in op.reason
    config_set, export = runs(op)
    assert config_set.exit_code == 0 and (export.exit_code, export.error) == (None, "timed out after 1 s")
    assert db.session.scalar(select(EnvVar).where(EnvVar.key == "KEY")).value == "v"
    dokku.clear_faults()
    again = retry(db.session.get(Operation, op.id), admin)
    db.session.commit()
    done = finished(app, again.id)
    assert_succeeded(done)
    assert done.started_at >= op.commands_deadline_at  # only once the lost command had certainly ended


@pytest.mark.postgresql_only
def test_sudo_user_with_passwordless_sudo_works(app, admin, sshd, dokku):
    server = make_dokku_server(sshd, ssh_user=SUDO_USER)
    line = crypto.generate_ssh_key("ci")[1]
    parsed = validation.public_key(line)
    db.session.add(DeployKey(server=server, name="ci", public_key=line, key_type=parsed.key_type,
                             fingerprint=parsed.fingerprint))
    db.session.flush()
    op = run_op(app, "deploy_keys.apply", server=server, user=admin, payload={"add": ["ci"], "remove": []})
    assert_succeeded(op)
    assert [k["name"] for k in dokku.keys()] == ["ci"]
    assert {call["sudo_user"] for call in dokku.calls()} == {SUDO_USER}
    assert ["sudo", "-n", "dokku", "ssh-keys:add", "ci"] in argvs(op)  # the record shows what ran


@pytest.mark.postgresql_only
def test_sudo_asking_for_a_password_fails_clearly_until_sudoers_is_fixed(app, admin, sshd, dokku):
    # A user of this test's own: its sudoers rule changes below.
    server = make_dokku_server(sshd, ssh_user=SUDO_USER_TO_FIX, passwordless_sudo=False)
    op = run_op(app, "server.check", server=server, user=admin)
    assert op.status == "failed"
    assert op.reason.startswith("sudo asked for a password. The SSH user needs passwordless sudo for dokku")
    (run,) = runs(op)
    assert (run.exit_code, run.stderr) == (1, "sudo: a password is required\n")
    assert db.session.get(Server, server.id).status == "error"
    assert dokku.calls() == []

    sshd.ensure_sudo_user(SUDO_USER_TO_FIX, passwordless=True)  # the admin adds the sudoers line
    assert_succeeded(retried(app, op, admin))
    assert db.session.get(Server, server.id).status == "ready"


@pytest.mark.postgresql_only
def test_dokku_user_is_refused(app, admin, sshd, dokku):
    server = make_dokku_server(sshd)
    server.ssh_user = "dokku"  # forms refuse it; a row changed by hand must still not be used
    db.session.commit()
    op = run_op(app, "server.check", server=server, user=admin)
    assert op.status == "failed" and "The dokku SSH user cannot be used" in op.reason


@pytest.mark.postgresql_only
def test_host_key_mismatch_stops_all_work_until_an_admin_accepts(app, admin, member, dokku, tmp_path):
    from intercity.services.servers import accept_host_key

    with SshServer(tmp_path / "sshd") as other:
        server = make_dokku_server(other, pinned=False, status="new")
        assert_succeeded(run_op(app, "server.check", server=server, user=admin))
        other.dokku.create_app("web")
        web = make_app(db.session.get(Server, server.id), name="web")
        old = other.host_key_fingerprint
        new = other.restart_with_new_host_key()
        other.dokku.clear_calls()

        op = apply_env(app, web, member, KEY="v")
        assert op.status == "failed" and f"presented the host key ssh-ed25519 {new}, not the pinned {old}" in op.reason
        server = db.session.get(Server, server.id)
        assert (server.status, server.host_key_fingerprint) == ("host_key_mismatch", old)
        assert (server.seen_host_key_type, server.seen_host_key_fingerprint) == ("ssh-ed25519", new)
        (event,) = entries("server.host_key_mismatch")
        assert event.category == "security" and json.loads(event.diff)["host_key_fingerprint"] == [old, new]
        assert other.dokku.calls() == []

        # Nothing else reaches the server, not even a connection attempt, until an admin accepts.
        blocked = run_op(app, "app.restart", server=server, user=member, target=web)
        assert blocked.status == "failed" and blocked.reason.startswith("Work on ")
        assert len(entries("server.host_key_mismatch")) == 1

        with acting_as(Actor.for_user(admin)):
            accept_host_key(server, admin)
            db.session.commit()
        settle(app)
        server = db.session.get(Server, server.id)
        assert (server.status, server.host_key_fingerprint, server.seen_host_key_fingerprint) == ("ready", new, None)
        assert entries("server.host_key_accepted")[0].actor_email == "admin@example.com"

        again = retry(db.session.get(Operation, op.id), member)
        db.session.commit()
        again_id = again.id
        settle(app)
        assert_succeeded(db.session.get(Operation, again_id))
        assert other.dokku.env("web") == {"KEY": b"v"}


def test_expected_fingerprint_pasted_in_advance_is_enforced(app, admin, sshd, dokku):
    wrong = make_dokku_server(sshd, pinned=False, status="new", expected_host_key_fingerprint="SHA256:" + "x" * 43)
    op = run_op(app, "server.check", server=wrong, user=admin)
    assert op.status == "failed" and "not the expected SHA256:xxxx" in op.reason
    assert db.session.get(Server, wrong.id).status == "host_key_mismatch"

    right = make_dokku_server(sshd, pinned=False, status="new", expected_host_key_fingerprint=sshd.host_key_fingerprint)
    assert_succeeded(run_op(app, "server.check", server=right, user=admin))
    assert db.session.get(Server, right.id).host_key_fingerprint == sshd.host_key_fingerprint


def test_a_restarted_process_fails_work_left_running_and_resumes_queued_work(app, admin, dokku, dokku_server):
    from datetime import timedelta

    from sqlalchemy import insert

    from intercity.jobs.runner import recover_after_restart
    from intercity.models.base import utcnow

    dokku.create_app("web")
    dokku.mark_deployed("web")
    web = make_app(dokku_server, name="web")
    # Rows as a process that died left them (inserted directly, so nothing is enqueued now).
    long_ago = utcnow() - timedelta(minutes=5)
    common = dict(category="app", server_id=dokku_server.id, server_name=dokku_server.name, app_id=web.id,
                  app_name="web", scope=f"app:{web.id}", payload={}, requested_by_id=admin.id,
                  requested_by_email=admin.email, requested_by_role=admin.role, attempts=0, warnings=[],
                  created_at=long_ago, updated_at=long_ago)
    db.session.commit()
    table = Operation.__table__
    with db.engine.begin() as connection:  # outside the session: not enqueued, not audited
        dead_id = connection.execute(insert(table).values(kind="app.restart", status="running", started_at=long_ago,
                                                          **{**common, "attempts": 1})
                                     .returning(table.c.id)).scalar_one()
        queued_id = connection.execute(insert(table).values(kind="app.refresh", status="queued", **common)
                                       .returning(table.c.id)).scalar_one()

    assert recover_after_restart() == {"failed": [dead_id], "requeued": [f"app:{web.id}"]}
    settle(app)
    dead, queued = db.session.get(Operation, dead_id), db.session.get(Operation, queued_id)
    assert dead.status == "failed" and dead.reason.startswith("The worker applying this operation stopped")
    assert outcome(dead).action == "operation.failed"
    assert_succeeded(queued)
    assert db.session.get(App, web.id).ps_status["deployed"] is True
