"""The whole record under the chain: transcripts, outcomes, checkpoints and permalinks resist tampering.

Each test does what someone with database access could, on each database where it reproduces,
and shows that the database refuses it or that verification and the pages tell the truth.
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from intercity.audit import integrity
from intercity.audit.timeline import rows
from intercity.extensions import db
from intercity.models import AuditCheckpoint, AuditEntry, CommandRun, Operation
from intercity.models.base import utcnow
from intercity.services.operations import request_operation
from tests.support.audit import drop_append_only_triggers, raw
from tests.support.builders import make_app, make_server
from tests.support.panel import no_worker  # noqa: F401  (the fixture)

pytestmark = pytest.mark.usefixtures("no_worker")


def finished_operation(status: str = "failed", reason: str | None = "Dokku said no.") -> Operation:
    """An app.restart with two command runs, ended the way the worker ends one (outcome entry and digest)."""
    from intercity.jobs.runner import _finish

    web = make_app(make_server(name="prod-1"), name="api")
    op = request_operation("app.restart", server=web.server, app=web, payload={})
    db.session.commit()
    op.status, op.started_at = "running", utcnow()
    for position, stdout in enumerate(["-----> Restarting api", "=====> Application deployed"]):
        db.session.add(CommandRun(operation_id=op.id, position=position, server_name="prod-1",
                                  argv=json.dumps(["dokku", "ps:restart", "api"]), exit_code=0, stdout=stdout,
                                  stderr="", started_at=utcnow(), finished_at=utcnow()))
    db.session.commit()
    _finish(op.id, status, reason if status == "failed" else None, [])
    return db.session.get(Operation, op.id)


def refused(sql: str, **params) -> str:
    db.session.commit()  # an open read would block TRUNCATE and DROP TRIGGER on PostgreSQL
    with pytest.raises(DBAPIError) as caught:
        raw(sql, **params)
    return str(caught.value)


def verify(runner):
    db.session.commit()
    return runner.invoke(args=["audit", "verify"])


def drop_command_run_triggers(backend: str) -> None:
    db.session.commit()
    names = (["command_runs_append_only ON command_runs"] if backend == "postgresql"
             else ["command_runs_no_update", "command_runs_no_delete", "command_runs_no_replace"])
    with db.engine.begin() as connection:
        for name in names:
            connection.execute(text(f"DROP TRIGGER {name}"))


def test_a_finished_operation_verifies(app, runner):
    finished_operation()
    result = verify(runner)
    assert result.exit_code == 0, result.output
    assert integrity.verify().ok


def test_a_transcript_cannot_be_rewritten_by_replacing_its_row(app, runner, backend):
    op = finished_operation()
    run_id = db.session.scalar(select(CommandRun.id).where(CommandRun.operation_id == op.id, CommandRun.position == 0))
    values = ("(:id, :op, 0, 'prod-1', '[]', 0, 'rewritten', '', '2026-01-01 00:00:00', '2026-01-01 00:00:00')")
    columns = "(id, operation_id, position, server_name, argv, exit_code, stdout, stderr, started_at, finished_at)"
    if backend == "sqlite":
        # REPLACE deletes the old row without firing DELETE triggers: a trigger of its own refuses it.
        for verb in ("INSERT OR REPLACE", "REPLACE"):
            assert "append-only" in refused(f"{verb} INTO command_runs {columns} VALUES {values}", id=run_id, op=op.id)
        assert "append-only" in refused(
            f"INSERT OR REPLACE INTO audit_entries (id, seq, created_at, actor_kind, action, category, diff, "
            "prev_hash, hash) SELECT id, seq, created_at, actor_kind, 'env_var.viewed', category, diff, prev_hash, "
            "hash FROM audit_entries WHERE seq = 1")
    # An upsert updates the row in place, which the UPDATE triggers refuse on both databases.
    assert "append-only" in refused(
        f"INSERT INTO command_runs {columns} VALUES {values} ON CONFLICT (id) DO UPDATE SET stdout = 'rewritten'",
        id=run_id, op=op.id)
    assert db.session.scalar(select(CommandRun.stdout).where(CommandRun.id == run_id)) == "-----> Restarting api"
    assert verify(runner).exit_code == 0


def test_checkpoints_are_append_only(app, backend):
    finished_operation()
    assert integrity.verify().ok
    db.session.commit()
    assert db.session.scalar(select(AuditCheckpoint.id)) is not None
    for sql in ("UPDATE audit_checkpoints SET hash = 'f'", "DELETE FROM audit_checkpoints"):
        assert "append-only" in refused(sql)
    if backend == "postgresql":
        assert "append-only" in refused("TRUNCATE audit_checkpoints")
    else:
        assert "append-only" in refused(
            "INSERT OR REPLACE INTO audit_checkpoints (id, seq, hash, entries, verified_at) "
            "SELECT id, seq, 'f', entries, verified_at FROM audit_checkpoints")


def test_verify_names_the_operation_whose_transcript_was_altered(app, runner, backend):
    op = finished_operation()
    drop_command_run_triggers(backend)
    raw("UPDATE command_runs SET stdout = 'all fine' WHERE operation_id = :op AND position = 1", op=op.id)
    result = verify(runner)
    assert result.exit_code == 1
    assert f"command runs of operation {op.id} (“restart the app (api)”) were altered" in result.output
    check = integrity.verify()
    assert not check.ok and f"operation {op.id}" in check.problem


def test_verify_finds_a_removed_command_run(app, runner, backend):
    op = finished_operation()
    drop_command_run_triggers(backend)
    raw("DELETE FROM command_runs WHERE operation_id = :op AND position = 0", op=op.id)
    result = verify(runner)
    assert result.exit_code == 1 and f"operation {op.id}" in result.output


def test_verify_finds_a_command_run_added_to_a_finished_operation(app, runner):
    op = finished_operation(status="succeeded")
    db.session.commit()
    # Inserting is allowed (runs are appended while an operation runs), so no trigger has to go.
    raw("INSERT INTO command_runs (operation_id, position, server_name, argv, exit_code, stdout, stderr, "
        "started_at, finished_at) VALUES (:op, 2, 'prod-1', '[\"dokku\", \"config:unset\", \"api\", \"X\"]', 0, '', "
        "'', '2026-01-01 00:00:00', '2026-01-01 00:00:00')", op=op.id)
    result = verify(runner)
    assert result.exit_code == 1 and f"command runs of operation {op.id}" in result.output


def test_a_status_rewritten_on_the_operations_row_does_not_change_the_outcome(app, client, logged_in, member):
    op = finished_operation(status="failed", reason="Dokku said no.")
    db.session.commit()
    raw("UPDATE operations SET status = 'succeeded', reason = NULL WHERE id = :op", op=op.id)
    db.session.expire_all()
    request = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "app.restart_requested"))
    [row] = rows([request])
    assert (row.outcome, row.reason) == ("failed", "Dokku said no.")
    logged_in(member)
    body = client.get(f"/audit/{request.seq}").get_data(as_text=True)
    assert ">failed<" in body and ">applied<" not in body and "Dokku said no." in body


def test_swapping_two_entries_ids_cannot_move_a_permalink(app, client, logged_in, member, runner, backend):
    make_server(name="prod-1")
    make_server(name="prod-2")
    first, second = db.session.scalars(select(AuditEntry).where(AuditEntry.target_type == "server")
                                       .order_by(AuditEntry.seq)).all()[:2]
    first_seq, second_seq, first_id, second_id = first.seq, second.seq, first.id, second.id
    db.session.commit()
    drop_append_only_triggers()
    raw("UPDATE audit_entries SET id = -1 WHERE id = :a", a=first_id)
    raw("UPDATE audit_entries SET id = :a WHERE id = :b", a=first_id, b=second_id)
    raw("UPDATE audit_entries SET id = :b WHERE id = -1", b=second_id)
    db.session.expire_all()
    assert verify(runner).exit_code == 0  # ids are not part of the chain...
    logged_in(member)
    body = client.get(f"/audit/{first_seq}").get_data(as_text=True)
    assert "prod-1" in body and "prod-2" not in body  # ...so permalinks name the seq
    assert f"#{first_seq}" in body
    assert "prod-2" in client.get(f"/audit/{second_seq}").get_data(as_text=True)
