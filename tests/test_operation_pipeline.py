"""The operation pipeline: kinds declared once, enqueue after commit, entries naming the operation that applies them."""
from __future__ import annotations

import inspect

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import JSON, select
from sqlalchemy import inspect as sa_inspect

from intercity.extensions import db
from intercity.jobs import kinds
from intercity.models import AuditEntry, EnvVar, Operation
from intercity.services import operations as operation_service
from intercity.services.operations import request_operation
from tests.support.builders import make_app, make_server, make_user


def queued_scopes(queue_name: str, app) -> list[str]:
    queue = Queue(queue_name, connection=Redis.from_url(app.config["REDIS_URL"]))
    return [job.args[0] for job in queue.get_jobs()]


def add_var(app_row, key: str, value: str) -> EnvVar:
    var = EnvVar(app=app_row, key=key)
    var.value = value
    db.session.add(var)
    db.session.flush()
    return var


# -- the registry -------------------------------------------------------------------------------


def test_every_kind_is_declared_with_what_the_panel_needs():
    assert set(kinds.KINDS) == {"server.check", "server.import", "server.refresh_keys", "deploy_keys.apply",
                                "app.create", "app.destroy", "app.restart", "app.refresh", "env.apply",
                                "domains.apply", "services.refresh", "service.create", "service.link",
                                "service.unlink", "service.destroy", "service.plugin_install",
                                "service.backup_auth", "service.backup_encryption", "service.backup",
                                "service.backup_schedule",
                                "app.deploy_from_repo", "app.deploy_image",
                                "app.builds", "app.scale", "app.rebuild", "app.stop", "app.start", "app.build_output",
                                "server.drift_check", "server.events_on", "tls.refresh", "tls.install",
                                "tls.set_email", "tls.cron_add", "tls.app_refresh", "tls.enable", "tls.renew",
                                "tls.disable", "tls.revoke", "certificate.add", "certificate.remove"}
    for name, kind in kinds.KINDS.items():
        assert kind.name == name
        assert list(inspect.signature(kind.executor).parameters) == ["ctx"], name
        assert kind.deadline > 0 and kind.title and kind.refreshes
        assert name in kinds.in_region(kind.region)
    assert {name for name, kind in kinds.KINDS.items() if kind.read} == {"app.refresh", "server.refresh_keys",
                                                                          "services.refresh", "app.builds",
                                                                          "app.build_output", "server.drift_check",
                                                                          "tls.refresh", "tls.app_refresh"}
    assert {name for name, kind in kinds.KINDS.items() if kind.role == "admin"} == {
        "server.check", "deploy_keys.apply", "server.refresh_keys", "service.destroy", "service.plugin_install",
        "service.backup_auth", "service.backup_encryption", "service.backup_schedule", "server.events_on",
        "tls.cron_add", "tls.install", "tls.set_email"}


def test_a_kind_is_declared_once_and_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="declared twice"):
        kinds.declare("app.restart", category="app", title="again", executor=lambda ctx: None)
    with pytest.raises(kinds.UnknownKind):
        kinds.get("app.teleport")
    with pytest.raises(ValueError, match="role"):
        kinds.OperationKind(name="x", category="app", title="x", executor=lambda ctx: None, role="owner")


def test_roles_and_retry_follow_the_declaration(app):
    for name, kind in kinds.KINDS.items():
        assert operation_service.role_for(name) == kind.role


# -- enqueue after commit -----------------------------------------------------------------------


def test_an_operation_is_enqueued_once_its_transaction_commits(redis_queue, app):
    server = make_server()
    api = make_app(server, name="api")
    request_operation("app.restart", server=server, app=api)
    request_operation("app.refresh", server=server, app=api)
    db.session.flush()
    assert queued_scopes(redis_queue, app) == []  # nothing before the commit
    db.session.commit()
    assert queued_scopes(redis_queue, app) == [f"app:{api.id}"]  # one job drains the scope


def test_a_rolled_back_request_is_never_enqueued(redis_queue, app):
    server = make_server()
    api = make_app(server, name="api")
    request_operation("app.restart", server=server, app=api)
    db.session.rollback()
    db.session.commit()  # a later, empty commit does not pick it up
    with db.session.begin_nested():
        request_operation("server.check", server=server)
    savepoint = db.session.begin_nested()
    request_operation("app.refresh", server=server, app=api)
    savepoint.rollback()
    db.session.commit()
    assert queued_scopes(redis_queue, app) == [f"server:{server.id}"]
    assert db.session.scalars(select(Operation.kind)).all() == ["server.check"]


# -- entries name the operation that applies them -------------------------------------------------


def test_only_the_rows_an_operation_applies_point_at_it(redis_queue, app):
    server = make_server()
    api = make_app(server, name="api")
    applied = add_var(api, "APPLIED", "one")
    add_var(api, "LATER", "two")  # same app, same transaction, applied by nobody yet
    op = request_operation("env.apply", server=server, app=api, applies=[applied],
                           payload={"set": ["APPLIED"], "unset": [], "restart": False})
    db.session.commit()
    linked = dict(db.session.execute(select(AuditEntry.target_label, AuditEntry.operation_id)
                                     .where(AuditEntry.action == "env_var.created")).all())
    assert linked == {"APPLIED": op.id, "LATER": None}


def test_a_service_names_the_rows_it_changed(redis_queue, app):
    from intercity.services import env as env_service

    server = make_server()
    api = make_app(server, name="api")
    member = make_user("member")
    add_var(api, "OTHER", "x")  # changed in this transaction by something else
    result = env_service.set_var(api, member, key="K", value="v", restart=False)
    db.session.commit()
    linked = dict(db.session.execute(select(AuditEntry.target_label, AuditEntry.operation_id)
                                     .where(AuditEntry.action == "env_var.created")).all())
    assert linked == {"K": result.operation.id, "OTHER": None}


def test_applies_refuses_rows_that_are_not_audited(redis_queue, app):
    server = make_server()
    api = make_app(server, name="api")
    with pytest.raises(TypeError, match="not audited"):
        request_operation("app.restart", server=server, app=api, applies=[object()])


# -- data columns ---------------------------------------------------------------------------------


def test_payloads_warnings_and_observed_state_are_json(redis_queue, app):
    server = make_server(remote_keys=[{"name": "ci", "fingerprint": "SHA256:" + "c" * 43}])
    api = make_app(server, name="api", ps_status={"deployed": True, "running": False, "processes": 0})
    op = request_operation("domains.apply", server=server, app=api, payload={"add": ["a.example.com"], "remove": []})
    op.warnings = ["Dokku said something"]
    db.session.commit()
    db.session.expire_all()
    assert (op.payload, op.warnings) == ({"add": ["a.example.com"], "remove": []}, ["Dokku said something"])
    assert server.remote_keys[0]["name"] == "ci" and api.ps_status["running"] is False
    types = {(table, column["name"]): column["type"] for table in ("operations", "servers", "apps")
             for column in sa_inspect(db.engine).get_columns(table)}
    wanted = [("operations", "payload"), ("operations", "warnings"), ("servers", "remote_keys"), ("apps", "ps_status")]
    if db.engine.dialect.name == "postgresql":  # SQLite keeps JSON as text; PostgreSQL has the type
        assert all(isinstance(types[name], JSON) for name in wanted)
