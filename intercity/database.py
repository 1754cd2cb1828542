"""Engine setup (SQLite pragmas and write transactions) and startup checks of the database."""
from __future__ import annotations

from functools import cache
import os
from pathlib import Path

from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from intercity.config import ConfigError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def configure_engine(engine) -> None:
    """SQLite: WAL, a busy timeout and foreign keys; transactions begin deferred (readers never wait)."""
    if engine.dialect.name != "sqlite":
        return
    _create_private(engine.url.database)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, record):
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN")
        connection.info["writing"] = False

    @event.listens_for(engine, "savepoint")
    def _savepoint(connection, name):
        # Savepoints are taken to write; upgrading later would COMMIT them away (see begin_writing).
        begin_writing(connection)


def _create_private(database: str | None) -> None:
    """Create a new SQLite file mode 0600 (like the key files): it holds encrypted secrets and the audit log.

    SQLite gives its -wal and -shm files the database file's mode.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.exists() or not path.parent.is_dir():
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # another process created it first


def begin_writing(connection) -> None:
    """Turn a SQLite transaction into a write transaction before its first write.

    A deferred transaction that has read and then writes fails at once (SQLITE_BUSY_SNAPSHOT)
    when another writer committed in between; so the first write ends the read-only part and
    starts BEGIN IMMEDIATE, which waits its turn (busy_timeout). Writers are thereby serialised,
    which also serialises the audit chain head. Later reads see the newest data, as PostgreSQL's
    READ COMMITTED does. The restart must happen before any SAVEPOINT, which COMMIT would
    discard: configure_engine upgrades when a savepoint is taken.
    """
    if connection.dialect.name != "sqlite" or connection.info.get("writing", True):
        return
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.execute("COMMIT")
        cursor.execute("BEGIN IMMEDIATE")
    finally:
        cursor.close()
    connection.info["writing"] = True


def _before_flush(session, flush_context, instances):
    begin_writing(session.connection())


def _before_bulk(orm_execute_state):
    if orm_execute_state.is_update or orm_execute_state.is_delete or orm_execute_state.is_insert:
        begin_writing(orm_execute_state.session.connection())


def register_session_hooks() -> None:
    from sqlalchemy.orm import Session

    for name, fn in (("before_flush", _before_flush), ("do_orm_execute", _before_bulk)):
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)


def safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable)"


def validate_url(url: str) -> None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL={url!r} is not a database URL (e.g. postgresql+psycopg://user@host/db).") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(f"DATABASE_URL uses {parsed.get_backend_name()!r}: Intercity runs on SQLite or PostgreSQL.")


@cache
def head_revision() -> str:
    """The newest migration, read from the scripts once per process (they do not change under it)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def state(engine) -> tuple[str, str]:
    """('ok'|'unreachable'|'not_migrated', a one-line explanation)."""
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return "not_migrated", "the database has no tables yet: run `intercity db upgrade`"
            current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        return "unreachable", f"cannot reach the database at {safe_url(str(engine.url))}: {reason}"
    if current != head_revision():
        return "not_migrated", f"the database is at revision {current}, not {head_revision()}: run `intercity db upgrade`"
    return "ok", "reachable and migrated"
