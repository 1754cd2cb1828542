"""Automatic capture: every change of an audited model leaves its entry in the same transaction.

Covers entries for inserts, updates and deletes (action, category,
scope, target, diff), no entries for no-op updates, rollbacks and savepoints, cascaded deletes
marked with their cause, operation requests, the actor and request metadata, explicit
events, and the guard against bulk statements that would bypass the log.
"""
from __future__ import annotations

import getpass
import json

import pytest
from flask_login import login_required
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from intercity import crypto
from intercity.audit.actor import Actor, acting_as
from intercity.audit.capture import UnauditedChange, record_event
from intercity.audit.categories import CATEGORIES, category_of
from intercity.extensions import db
from intercity.jobs.kinds import KINDS
from intercity.models import App, AuditEntry, DeployKey, Domain, EnvVar, Operation, Server, User
from intercity.services.operations import request_operation
from tests.support.audit import actions, count_entries, entries, make_deploy_key, only, public_key, raw
from tests.support.builders import make_app as build_app
from tests.support.builders import make_server, make_user


def diff(entry: AuditEntry) -> dict:
    return json.loads(entry.diff)


def set_env(app, key, value):
    var = db.session.scalar(select(EnvVar).where(EnvVar.app_id == app.id, EnvVar.key == key))
    if var is None:
        var = EnvVar(app=app, key=key)
        db.session.add(var)
    var.value = value
    return var


# -- one entry per insert, update and delete, for each audited model ----------------------------------

def test_user_created_updated_deleted(app):
    user = make_user("member", email="dev@example.com")
    created = only("user.created")
    assert (created.category, created.target_type, created.target_id, created.target_label) == \
        ("team", "user", str(user.id), "dev@example.com")
    assert (created.server_id, created.app_id) == (None, None)
    assert diff(created) == {"email": [None, "dev@example.com"], "role": [None, "member"], "active": [None, True]}

    user.role = "admin"
    db.session.commit()
    changed = only("user.role_changed")
    assert diff(changed) == {"role": ["member", "admin"]} and changed.category == "security"

    user_id = user.id
    db.session.delete(user)
    db.session.commit()
    deleted = only("user.deleted")
    assert deleted.target_id == str(user_id) and deleted.category == "security"
    assert diff(deleted) == {"email": ["dev@example.com", None], "role": ["admin", None], "active": [True, None]}


def test_a_password_change_alone_is_an_entry_without_the_hash(app):
    user = make_user("member", email="dev@example.com")
    old_hash = user.password_hash
    user.set_password("another long password")
    db.session.commit()
    entry = only("user.password_changed")
    assert entry.category == "security"
    assert diff(entry) == {"password_hash": ["[redacted]", "[redacted]"]}
    assert old_hash not in entry.diff and user.password_hash not in entry.diff


def test_server_created_updated_deleted(app):
    server = make_server(name="web-1", host="10.0.0.5")
    created = only("server.created")
    assert created.category == "server"
    assert (created.server_id, created.server_name, created.app_id) == (server.id, "web-1", None)
    assert (created.target_type, created.target_id, created.target_label) == ("server", str(server.id), "web-1")
    assert diff(created) == {"name": [None, "web-1"], "host": [None, "10.0.0.5"], "port": [None, 22],
                             "ssh_user": [None, "root"], "public_key": [None, server.public_key],
                             "drift_interval_minutes": [None, 15]}

    server.host = "10.0.0.6"
    server.port = 2222
    db.session.commit()
    updated = only("server.updated")
    assert updated.category == "server"
    assert diff(updated) == {"host": ["10.0.0.5", "10.0.0.6"], "port": [22, 2222]}

    db.session.delete(server)
    db.session.commit()
    deleted = only("server.deleted")
    assert deleted.server_name == "web-1" and diff(deleted)["host"] == ["10.0.0.6", None]


def test_server_keys_are_security_entries(app):
    server = make_server(name="web-1")
    old_public = server.public_key
    server.host_key_type, server.host_key_fingerprint = "ssh-ed25519", "SHA256:" + "a" * 43
    db.session.commit()
    pinned = only("server.host_key_pinned")
    assert pinned.category == "security"
    server.host_key_fingerprint = "SHA256:" + "b" * 43
    db.session.commit()
    accepted = only("server.host_key_accepted")
    assert accepted.category == "security"
    assert diff(accepted) == {"host_key_fingerprint": ["SHA256:" + "a" * 43, "SHA256:" + "b" * 43]}
    server.generate_key_pair()
    db.session.commit()
    regenerated = only("server.key_regenerated")
    assert regenerated.category == "security"
    # the private key is named as replaced, never shown
    assert diff(regenerated) == {"public_key": [old_public, server.public_key],
                                 "private_key_encrypted": ["[redacted]", "[redacted]"]}


def test_app_created_updated_deleted(app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    created = only("app.created")
    assert created.category == "app"
    assert (created.server_id, created.server_name, created.app_id, created.app_name) == \
        (server.id, "web-1", api.id, "api")
    assert (created.target_type, created.target_id, created.target_label) == ("app", str(api.id), "api")
    assert diff(created) == {"server_id": [None, server.id], "name": [None, "api"], "imported": [None, False]}

    api.imported = True
    db.session.commit()
    assert diff(only("app.updated")) == {"imported": [False, True]}

    db.session.delete(api)
    db.session.commit()
    deleted = only("app.deleted")
    assert (deleted.app_name, deleted.caused_by) == ("api", None)
    assert diff(deleted) == {"server_id": [server.id, None], "name": ["api", None], "imported": [True, None]}


def test_env_var_created_updated_deleted(app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    set_env(api, "DATABASE_URL", "postgres://one")
    db.session.commit()
    var = db.session.scalar(select(EnvVar))
    created = only("env_var.created")
    assert created.category == "security"
    assert (created.server_name, created.app_id, created.app_name) == ("web-1", api.id, "api")
    assert (created.target_type, created.target_id, created.target_label) == ("env_var", str(var.id), "DATABASE_URL")
    first = crypto.fingerprint("postgres://one")
    assert diff(created) == {"app_id": [None, api.id], "key": [None, "DATABASE_URL"],
                             "value_fingerprint": [None, first]}

    set_env(api, "DATABASE_URL", "postgres://two")
    db.session.commit()
    assert diff(only("env_var.updated")) == {"value_fingerprint": [first, crypto.fingerprint("postgres://two")]}

    db.session.delete(var)
    db.session.commit()
    deleted = only("env_var.deleted")
    assert deleted.target_label == "DATABASE_URL" and deleted.app_name == "api"
    assert diff(deleted)["key"] == ["DATABASE_URL", None]


def test_domain_created_updated_deleted(app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    domain = Domain(app=api, hostname="api.example.com")
    db.session.add(domain)
    db.session.commit()
    created = only("domain.created")
    assert created.category == "app"
    assert (created.app_name, created.target_type, created.target_label) == ("api", "domain", "api.example.com")
    assert diff(created) == {"app_id": [None, api.id], "hostname": [None, "api.example.com"]}

    domain.hostname = "www.example.com"
    db.session.commit()
    assert diff(only("domain.updated")) == {"hostname": ["api.example.com", "www.example.com"]}

    db.session.delete(domain)
    db.session.commit()
    assert diff(only("domain.deleted")) == {"app_id": [api.id, None], "hostname": ["www.example.com", None]}


def test_deploy_key_created_updated_deleted_by_name_and_fingerprint(app):
    server = make_server(name="web-1")
    key = make_deploy_key(server, 1, name="alice-laptop", added_by_email="alice@example.com")
    db.session.commit()
    line, key_type, fingerprint = public_key(1)
    created = only("deploy_key.created")
    assert created.category == "security"
    assert (created.server_name, created.app_id, created.target_label) == ("web-1", None, "alice-laptop")
    assert diff(created) == {"server_id": [None, server.id], "name": [None, "alice-laptop"],
                             "key_type": [None, key_type], "fingerprint": [None, fingerprint],
                             "adopted": [None, False], "added_by_email": [None, "alice@example.com"]}
    # The key body is left out: people recognise keys by fingerprint.
    assert line.split()[1] not in created.diff

    key.name = "alice-desktop"
    db.session.commit()
    assert diff(only("deploy_key.updated")) == {"name": ["alice-laptop", "alice-desktop"]}

    db.session.delete(key)
    db.session.commit()
    deleted = only("deploy_key.deleted")
    assert diff(deleted)["fingerprint"] == [fingerprint, None]
    assert line.split()[1] not in deleted.diff


def test_rows_created_with_only_foreign_keys_are_scoped_and_labelled(app):
    """Services may set `app_id=` instead of `app=`: the entry still names the server and app."""
    server = make_server(name="web-1")
    db.session.add(App(server_id=server.id, name="api"))
    db.session.commit()
    api_id = db.session.scalar(select(App.id))
    var = EnvVar(app_id=api_id, key="K")
    var.value = "v"
    db.session.add_all([var, Domain(app_id=api_id, hostname="api.example.com"),
                        DeployKey(server_id=server.id, name="ci", public_key=public_key(4)[0],
                                  key_type=public_key(4)[1], fingerprint=public_key(4)[2])])
    db.session.commit()
    for action in ("app.created", "env_var.created", "domain.created"):
        entry = only(action)
        assert (entry.server_name, entry.app_id, entry.app_name) == ("web-1", api_id, "api"), action
    assert only("deploy_key.created").server_name == "web-1"


def test_the_entry_is_written_in_the_same_transaction_as_the_change(app):
    """If the entry cannot be written, the change is not committed either."""
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    if db.engine.dialect.name == "postgresql":
        raw("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$")
        raw("CREATE TRIGGER refuse_entries BEFORE INSERT ON audit_entries FOR EACH ROW EXECUTE FUNCTION refuse()")
    else:
        raw("CREATE TRIGGER refuse_entries BEFORE INSERT ON audit_entries BEGIN SELECT RAISE(ABORT, 'refused'); END")
    before = count_entries()
    set_env(api, "SECRET", "x")
    with pytest.raises(DBAPIError, match="refused"):
        db.session.commit()
    db.session.rollback()
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM env_vars")).scalar_one() == 0
    assert count_entries() == before


# -- no-op updates, rollbacks and savepoints ------------------------------------------------------------

def test_no_op_updates_record_nothing(app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    set_env(api, "TOKEN", "same value")
    user = make_user("member", email="dev@example.com")
    db.session.commit()
    before = count_entries()

    set_env(api, "TOKEN", "same value")  # the same value again
    api.name = "api"  # assigned, not changed
    user.role = "member"
    server.host = server.host
    db.session.commit()
    # operational state is not a change anyone made
    api.status = "destroying"
    server.status, server.dokku_version = "ready", "0.35.0"
    user.last_login_at = api.created_at
    db.session.commit()
    assert count_entries() == before


def test_a_rolled_back_transaction_leaves_no_entry(app):
    server = make_server(name="web-1")
    before = count_entries()
    api = App(server=server, name="api")
    db.session.add(api)
    db.session.flush()
    set_env(api, "KEY", "value")
    db.session.flush()
    record_event(db.session, "user.login_failed", target_label="x@example.com")
    db.session.rollback()
    db.session.commit()
    assert count_entries() == before


def test_a_rolled_back_savepoint_leaves_no_entry_in_a_committed_transaction(app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    set_env(api, "KEPT", "1")
    db.session.flush()
    with pytest.raises(RuntimeError):
        with db.session.begin_nested():
            set_env(api, "DROPPED", "2")
            db.session.add(Domain(app=api, hostname="dropped.example.com"))
            db.session.flush()
            raise RuntimeError("undo this part")
    set_env(api, "ALSO_KEPT", "3")
    db.session.commit()
    assert [e.target_label for e in entries(action="env_var.created")] == ["KEPT", "ALSO_KEPT"]
    assert entries(action="domain.created") == []
    assert sorted(db.session.scalars(select(EnvVar.key))) == ["ALSO_KEPT", "KEPT"]


def test_a_released_savepoint_inside_a_rolled_back_savepoint_leaves_nothing_but_earlier_changes_keep_theirs(app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    set_env(api, "BEFORE", "1")
    db.session.flush()
    outer = db.session.begin_nested()
    set_env(api, "OUTER", "2")
    with db.session.begin_nested():  # released: its entries belong to the outer savepoint now
        set_env(api, "INNER", "3")
    outer.rollback()
    db.session.commit()
    assert sorted(db.session.scalars(select(EnvVar.key))) == ["BEFORE"]
    assert [e.target_label for e in entries(action="env_var.created")] == ["BEFORE"]


def test_released_savepoints_keep_their_entries(app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    with db.session.begin_nested():
        set_env(api, "A", "1")
    with db.session.begin_nested():
        set_env(api, "B", "2")
    db.session.begin_nested()
    set_env(api, "C", "3")
    db.session.commit()  # commits the open savepoint, then the transaction
    assert [e.target_label for e in entries(action="env_var.created")] == ["A", "B", "C"]


def test_changes_flushed_by_other_before_commit_hooks_are_still_captured(app):
    """A listener that changes audited rows while the commit runs must not slip past the log."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    server = make_server(name="web-1")
    api = build_app(server, name="api")

    def late_change(session):
        if session.info.pop("late", False):
            session.add(Domain(app=api, hostname="late.example.com"))

    event.listen(Session, "before_commit", late_change)
    try:
        db.session.info["late"] = True
        set_env(api, "EARLY", "1")
        db.session.commit()
    finally:
        event.remove(Session, "before_commit", late_change)
    assert db.session.scalar(select(Domain.hostname)) == "late.example.com"
    assert only("domain.created").target_label == "late.example.com"
    from intercity.audit import chain

    with db.engine.connect() as connection:
        assert chain.verify(connection).ok


# -- cascades -------------------------------------------------------------------------------------------

def test_deleting_a_server_deletes_its_apps_keys_vars_and_domains_each_with_an_entry(app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    set_env(api, "K", "v")
    db.session.add(Domain(app=api, hostname="api.example.com"))
    make_deploy_key(server, 2, name="ci")
    db.session.commit()
    server_id, app_id = server.id, api.id

    db.session.delete(server)
    db.session.commit()
    for model in (Server, App, EnvVar, Domain, DeployKey):
        assert db.session.scalar(select(db.func.count()).select_from(model)) == 0
    by_action = {e.action: e for e in entries() if e.action.endswith(".deleted")}
    assert set(by_action) == {"server.deleted", "app.deleted", "env_var.deleted", "domain.deleted",
                              "deploy_key.deleted"}
    assert by_action["server.deleted"].caused_by is None
    assert by_action["app.deleted"].caused_by == f"server:{server_id}"
    assert by_action["deploy_key.deleted"].caused_by == f"server:{server_id}"
    assert by_action["env_var.deleted"].caused_by == f"app:{app_id}"
    assert by_action["domain.deleted"].caused_by == f"app:{app_id}"
    # names are copies: the entries read well after the rows are gone
    for entry in by_action.values():
        assert entry.server_name == "web-1"
    assert by_action["env_var.deleted"].app_name == "api"


def test_deleting_an_app_alone_marks_only_its_children(app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    set_env(api, "K", "v")
    set_env(api, "L", "w")
    db.session.commit()
    db.session.delete(api)
    db.session.commit()
    assert only("app.deleted").caused_by is None
    assert [e.caused_by for e in entries(action="env_var.deleted")] == [f"app:{api.id}"] * 2


def test_deleting_one_env_var_is_not_caused_by_anything(app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    var = set_env(api, "K", "v")
    db.session.commit()
    db.session.delete(var)
    db.session.commit()
    assert only("env_var.deleted").caused_by is None


# -- operations -----------------------------------------------------------------------------------------

REQUEST_KINDS = {
    "app.restart": "app.restart_requested",
    "app.destroy": "app.destroy_requested",
    "server.import": "server.import_requested",
    "server.check": "server.connection_test_requested",
    "app.scale": "app.scale_requested",
    "app.rebuild": "app.rebuild_requested",
    "app.stop": "app.stop_requested",
    "app.start": "app.start_requested",
}
NOT_REQUESTS = ["app.create", "env.apply", "domains.apply", "deploy_keys.apply", "app.refresh",
                "server.refresh_keys", "app.builds", "app.build_output"]


def test_an_operation_that_is_a_request_of_its_own_is_an_entry(redis_queue, app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    user = make_user("member", email="dev@example.com")
    for kind, action in REQUEST_KINDS.items():
        with acting_as(Actor.for_user(user)):
            op = request_operation(kind, server=server, app=api if KINDS[kind].app_level else None)
            db.session.commit()
        entry = only(action)
        assert entry.category == KINDS[kind].category
        assert entry.operation_id == op.id
        assert (entry.target_type, entry.target_id) == ("operation", str(op.id))
        assert entry.server_name == "web-1"
        assert entry.app_name == ("api" if KINDS[kind].app_level else None)
        assert entry.actor_email == "dev@example.com"


def test_operations_that_apply_a_recorded_change_are_not_entries_of_their_own(redis_queue, app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    before = count_entries()
    for kind in NOT_REQUESTS:
        request_operation(kind, server=server, app=api if KINDS[kind].app_level else None)
        db.session.commit()
    assert count_entries() == before


def test_a_retry_is_an_entry_and_status_changes_never_are(redis_queue, app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    op = request_operation("env.apply", server=server, app=api, payload={"set": ["K"], "unset": [], "restart": False})
    db.session.commit()
    before = count_entries()
    op.status, op.attempts, op.reason = "running", 1, None
    db.session.commit()
    op.status, op.reason = "failed", "connection refused"
    db.session.commit()
    db.session.execute(update(Operation).where(Operation.id == op.id).values(status="failed", reason="again"))
    db.session.commit()
    assert count_entries() == before

    retry = request_operation(op.kind, server=server, app=api, payload=op.data, retry_of=op)
    db.session.commit()
    entry = only("operation.retry_requested")
    assert (entry.operation_id, entry.category, entry.app_name) == (retry.id, "security", "api")


def test_changes_point_at_the_operation_that_applies_them(redis_queue, app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    other = build_app(server, name="other")
    set_env(api, "K", "v")
    set_env(other, "K", "w")
    db.session.flush()
    var = db.session.scalar(select(EnvVar).where(EnvVar.app_id == api.id))
    op = request_operation("env.apply", server=server, app=api, payload={"set": ["K"], "unset": [], "restart": False},
                           applies=[var])
    db.session.commit()
    by_app = {e.app_name: e for e in entries(action="env_var.created")}
    assert by_app["api"].operation_id == op.id
    assert by_app["other"].operation_id is None


# -- actor and request metadata -------------------------------------------------------------------------

def test_a_change_made_in_a_request_names_the_logged_in_user_and_the_request(app, client, logged_in):
    server = make_server(name="web-1")
    api = build_app(server, name="api")

    @login_required
    def change():
        set_env(db.session.get(App, api.id), "FROM_THE_WEB", "1")
        set_env(db.session.get(App, api.id), "ALSO_FROM_THE_WEB", "2")
        db.session.commit()
        return "done"

    app.add_url_rule("/_test/change", "test_change", change, methods=["POST"])
    member = make_user("member", email="dev@example.com")
    logged_in(member)
    response = client.post("/_test/change", headers={"User-Agent": "audit-test/1.0", "X-Request-ID": "req-42"},
                           environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 200
    web = entries(action="env_var.created")
    assert len(web) == 2
    for entry in web:
        assert (entry.actor_kind, entry.actor_user_id, entry.actor_email, entry.actor_role) == \
            ("user", member.id, "dev@example.com", "member")
        assert entry.actor_display == "dev@example.com"
        assert (entry.request_ip, entry.request_user_agent, entry.request_id) == \
            ("203.0.113.9", "audit-test/1.0", "req-42")


def test_a_request_id_is_generated_once_per_request(app, client, logged_in):
    server = make_server(name="web-1")
    api = build_app(server, name="api")

    @login_required
    def change():
        set_env(db.session.get(App, api.id), "A", "1")
        db.session.commit()
        set_env(db.session.get(App, api.id), "B", "1")
        db.session.commit()
        return "done"

    app.add_url_rule("/_test/change", "test_change", change, methods=["POST"])
    logged_in(make_user("member", email="dev@example.com"))
    client.post("/_test/change")
    client.post("/_test/change")  # updates nothing: same values
    web = entries(action="env_var.created")
    assert len(web) == 2
    assert web[0].request_id and web[0].request_id == web[1].request_id
    login = entries(action="user.login")[0]
    assert login.request_id and login.request_id != web[0].request_id


def test_failed_logins_are_security_and_logins_and_logouts_team_events_with_metadata(app, client, auth):
    member = make_user("member", email="dev@example.com")
    client.post("/login", data={"email": "dev@example.com", "password": "wrong password"},
                headers={"User-Agent": "curl/8"}, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    failed = only("user.login_failed")
    assert (failed.category, failed.actor_kind, failed.target_label) == ("security", "anonymous", "dev@example.com")
    assert (failed.request_ip, failed.request_user_agent) == ("198.51.100.7", "curl/8")
    assert failed.request_id
    auth.login("dev@example.com")
    auth.logout()
    for action in ("user.login", "user.logout"):
        entry = only(action)
        assert (entry.category, entry.actor_kind, entry.actor_email) == ("team", "user", "dev@example.com")
        assert entry.target_id == str(member.id)
    assert actions()[-3:] == ["user.login_failed", "user.login", "user.logout"]


def test_a_worker_acting_for_a_person_names_both(app):
    member = make_user("member", email="dev@example.com")
    server = make_server(name="web-1")
    with acting_as(Actor.system("worker", on_behalf_of=member)):
        build_app(server, name="imported", imported=True)
    entry = only("app.imported")
    assert (entry.actor_kind, entry.actor_user_id, entry.actor_email, entry.actor_role) == \
        ("worker", member.id, "dev@example.com", "member")
    assert entry.actor_display == "worker on behalf of dev@example.com"


def test_outside_requests_and_jobs_the_actor_is_the_system_and_its_os_user(app):
    make_server(name="web-1")
    entry = only("server.created")
    assert (entry.actor_kind, entry.actor_email, entry.actor_os_user) == ("system", None, getpass.getuser())
    assert (entry.request_ip, entry.request_user_agent, entry.request_id) == (None, None, None)


def test_the_cli_records_cli_and_the_os_user(app, runner):
    result = runner.invoke(args=["create-user", "--email", "ops@example.com", "--role", "viewer", "--password-stdin"],
                           input="a long enough password\n")
    assert result.exit_code == 0, result.output
    entry = only("user.created")
    assert (entry.actor_kind, entry.actor_os_user, entry.actor_email) == ("cli", getpass.getuser(), None)
    assert entry.actor_display == f"cli ({getpass.getuser()})"
    assert diff(entry)["role"] == [None, "viewer"]


# -- categories and explicit events ---------------------------------------------------------------------

def test_every_operation_kind_has_a_known_category():
    assert {kind.category for kind in KINDS.values()} <= set(CATEGORIES)
    # failed logins are security; logging in and out is the team's everyday life
    assert {category_of(a) for a in ("user.login_failed", "user.login_failures_repeated",
                                     "server.host_key_mismatch")} == {"security"}
    assert {category_of(a) for a in ("user.login", "user.logout")} == {"team"}


def test_record_event_writes_an_entry_with_its_declared_category(app):
    server = make_server(name="web-1")
    from intercity.audit.rules import Scope

    record_event(db.session, "server.host_key_mismatch", scope=Scope(server.id, server.name),
                 target_type="server", target_id=server.id, target_label=server.name,
                 diff={"host_key_fingerprint": ["SHA256:old", "SHA256:new"]})
    db.session.commit()
    entry = only("server.host_key_mismatch")
    assert (entry.category, entry.server_name, entry.target_id) == ("security", "web-1", str(server.id))
    assert diff(entry) == {"host_key_fingerprint": ["SHA256:old", "SHA256:new"]}


def test_an_operation_outcome_takes_its_request_category(app):
    record_event(db.session, "operation.failed", category="security", diff={"status": [None, "failed"]})
    db.session.commit()
    assert only("operation.failed").category == "security"


def test_an_undeclared_event_or_unknown_category_is_refused(app):
    with pytest.raises(ValueError, match="no row in the category table"):
        record_event(db.session, "user.did_something")
    with pytest.raises(ValueError, match="unknown audit category"):
        record_event(db.session, "operation.failed", category="misc")
    with pytest.raises(ValueError, match="is security in the category table, not app"):
        record_event(db.session, "server.host_key_mismatch", category="app")
    db.session.commit()
    assert count_entries() == 0


def test_an_explicit_event_dropped_by_rollback_does_not_reach_the_next_transaction(app):
    record_event(db.session, "user.login_failed", target_label="x@example.com")
    db.session.rollback()
    make_server(name="web-1")
    assert actions() == ["server.created"]


# -- completeness guard ---------------------------------------------------------------------------------

BULK = [
    (EnvVar, "env_var", {"key": "X"}),
    (App, "app", {"name": "x"}),
    (Domain, "domain", {"hostname": "x.example.com"}),
    (DeployKey, "deploy_key", {"name": "x"}),
    (Server, "server", {"host": "x"}),
    (User, "user", {"role": "admin"}),
]


def test_bulk_statements_on_audited_tables_are_refused(app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    set_env(api, "K", "v")
    db.session.commit()
    before = count_entries()
    for model, rule, values in BULK:
        for statement in (update(model).values(**values), delete(model),
                          update(model.__table__).values(**values), delete(model.__table__)):
            with pytest.raises(UnauditedChange, match=rf"audit rule '{rule}'"):
                db.session.execute(statement)
            db.session.rollback()
        with pytest.raises(UnauditedChange, match=rf"audit rule '{rule}'"):
            db.session.execute(insert(model), [{}])
        db.session.rollback()
    assert db.session.scalar(select(EnvVar.key)) == "K" and count_entries() == before


def test_bulk_updates_of_operation_status_are_allowed(redis_queue, app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    request_operation("app.refresh", server=server, app=api)
    db.session.commit()
    before = count_entries()
    db.session.execute(update(Operation).where(Operation.status == "queued").values(status="failed"))
    db.session.commit()
    assert db.session.scalar(select(Operation.status)) == "failed"
    assert count_entries() == before


def test_ids_of_deleted_rows_are_never_handed_out_again(app):
    """Entries name rows by id after they are gone: a new row must not take a deleted row's id."""
    from tests.support.builders import make_app, make_server

    server = make_server()
    first = make_app(server, name="first")
    newest = make_app(server, name="newest")
    gone_id = newest.id
    db.session.delete(newest)
    db.session.commit()
    replacement = make_app(server, name="replacement")
    assert replacement.id > gone_id
    assert first.id < gone_id
    labels = db.session.scalars(select(AuditEntry.target_label).where(
        AuditEntry.target_type == "app", AuditEntry.target_id == str(gone_id))).all()
    assert set(labels) == {"newest"}
