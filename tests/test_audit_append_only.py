"""Append-only in the database: triggers refuse UPDATE, DELETE (and TRUNCATE) of entries and transcripts.

The schema comes from the migrations (tests/support/databases.py), so these tests
also show the migrations create the triggers and that they survive to the head revision.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from intercity import database
from intercity.extensions import db
from tests.support.audit import count_entries, raw
from tests.support.builders import make_server

TRIGGERS = {
    "sqlite": {"audit_entries_no_update", "audit_entries_no_delete", "command_runs_no_update",
               "command_runs_no_delete", "audit_checkpoints_no_update", "audit_checkpoints_no_delete",
               # INSERT OR REPLACE deletes without firing DELETE triggers: refused before the insert.
               "audit_entries_no_replace", "command_runs_no_replace", "audit_checkpoints_no_replace"},
    "postgresql": {"audit_entries_append_only", "audit_entries_no_truncate", "command_runs_append_only",
                   "command_runs_no_truncate", "audit_checkpoints_append_only", "audit_checkpoints_no_truncate"},
}


def add_command_run() -> None:
    """One operation and one command run, inserted with raw SQL (no job is queued for it)."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    raw("INSERT INTO operations (id, kind, category, server_name, scope, payload, status, attempts, warnings, "
        "created_at, updated_at) VALUES (1, 'app.restart', 'app', 'web-1', 'app:1', '{}', 'succeeded', 1, '[]', "
        ":now, :now)", now=now)
    raw("INSERT INTO command_runs (operation_id, position, server_name, argv, exit_code, stdout, stderr, "
        "started_at, finished_at) VALUES (1, 0, 'web-1', '[\"dokku\", \"ps:restart\", \"api\"]', 0, 'ok', '', "
        ":now, :now)", now=now)


def refused(sql: str) -> str:
    with pytest.raises(DBAPIError) as caught:
        raw(sql)
    return str(caught.value)


def test_the_triggers_exist_at_the_head_revision(app, backend):
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == \
            database.head_revision()
        if backend == "sqlite":
            names = connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars()
        else:
            names = connection.execute(text(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
                "AND tgrelid IN ('audit_entries'::regclass, 'command_runs'::regclass, "
                "'audit_checkpoints'::regclass)")).scalars()
        assert TRIGGERS[backend] <= set(names)


@pytest.mark.parametrize("table", ["audit_entries", "command_runs"])
def test_raw_update_and_delete_are_refused(app, table):
    make_server(name="web-1")  # an entry
    add_command_run()
    column = "action" if table == "audit_entries" else "stdout"
    for sql in (f"UPDATE {table} SET {column} = 'rewritten'", f"DELETE FROM {table}"):
        message = refused(sql)
        assert "append-only" in message and table in message
    with db.engine.connect() as connection:
        assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 1
        assert connection.execute(text(f"SELECT {column} FROM {table}")).scalar_one() != "rewritten"


@pytest.mark.postgresql_only
@pytest.mark.parametrize("table", ["audit_entries", "command_runs"])
def test_truncate_is_refused_on_postgresql(app, table):
    make_server(name="web-1")
    add_command_run()
    assert "append-only" in refused(f"TRUNCATE {table}")
    with db.engine.connect() as connection:
        assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 1


def test_deleting_a_server_leaves_its_entries_in_place(app):
    """Entries copy ids and names instead of referencing rows, so no cascade reaches them."""
    server = make_server(name="web-1")
    before = count_entries()
    db.session.delete(server)
    db.session.commit()
    assert count_entries() == before + 1
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT server_name FROM audit_entries")).scalars().all() == ["web-1"] * 2
