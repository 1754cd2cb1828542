"""Automatic capture: session hooks turn every change of an audited model into an AuditEntry.

after_flush builds entries from session.new/dirty/deleted while attribute history is still
there. The outermost commit's before_commit flushes what is left, takes the chain lock, gives
each entry its seq and hash and inserts them in the same transaction; anything flushed after
that (another before_commit listener) is chained at once under the lock already held.
Releasing a savepoint writes nothing: its entries wait for the outermost commit, so the chain
lock is only held for the final flush and commit. Rolling back a savepoint or the transaction
drops its unwritten entries.
"""
from __future__ import annotations

import enum
import weakref
from datetime import datetime

from sqlalchemy import Integer, String, event, insert, inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, scoped_session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.interfaces import MANYTOONE

from intercity.audit import chain
from intercity.audit.actor import current_actor, request_meta
from intercity.audit.rules import CATEGORIES, EVENT_CATEGORIES, Scope

PENDING = "audit_pending"
NEW_OPERATIONS = "audit_new_operations"
MARKS = "audit_savepoint_marks"
# Set once this transaction's entries are chained: (seq, hash) of its newest entry.
HEAD = "audit_head"
# Actions of the entries this transaction wrote (notifications look after commit whether any is alerted).
WRITTEN = "audit_written_actions"
# What a changed secret looks like in a diff when no fingerprint shows the change.
REDACTED = "[redacted]"


class UnauditedChange(RuntimeError):
    """A statement would change audited rows without leaving entries."""


def _value(value):
    if isinstance(value, datetime):
        return chain.timestamp(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "[binary]"
    return value


class _Plan:
    """What capture needs of one audited class, worked out once (rule, diffable and secret fields)."""

    __slots__ = ("rule", "fields", "secret", "witness", "is_operation", "parents", "parent")

    def __init__(self, cls, rule):
        from intercity.models import Operation

        mapper = inspect(cls)
        self.rule = rule
        self.fields = tuple(attr.key for attr in mapper.column_attrs
                            if attr.key not in rule.secret and attr.key not in rule.ignore and attr.key != "id")
        self.secret = tuple(sorted(key for key in rule.secret if key in mapper.column_attrs))
        # A secret whose change shows through an audited fingerprint (value_encrypted -> value_fingerprint)
        # needs no marker of its own.
        self.witness = {key: f"{key.rsplit('_', 1)[0]}_fingerprint" for key in self.secret}
        self.is_operation = issubclass(cls, Operation)
        # Many-to-one relationships (key, parent class, foreign key attributes): a row created with
        # only `app_id=` set has no `app` yet, and labels and scopes read through it.
        self.parents = tuple(
            (rel.key, rel.mapper.class_, tuple(mapper.get_property_by_column(c).key for c in rel.local_columns))
            for rel in mapper.relationships if rel.direction is MANYTOONE
        )
        # The relationship whose deletion cascades here, read through its foreign key (no load).
        self.parent = next((p for p in self.parents if p[0] == rule.parent), None) if rule.parent else None


_PLANS: dict[type, _Plan | None] = {}


def _plan(cls) -> _Plan | None:
    try:
        return _PLANS[cls]
    except KeyError:
        rule = getattr(cls, "__audit__", None)
        plan = _PLANS[cls] = _Plan(cls, rule) if rule is not None else None
        return plan


def _load_parents(session, obj, plan: _Plan) -> None:
    """Fill unloaded many-to-one relationships of a just-inserted row from their foreign keys."""
    values = obj.__dict__
    for key, parent_cls, columns in plan.parents:
        if values.get(key) is not None:
            continue
        ident = tuple(values.get(column) for column in columns)
        if None not in ident:
            set_committed_value(obj, key, session.get(parent_cls, ident if len(ident) > 1 else ident[0]))


def _snapshot(obj, plan: _Plan, *, deleted: bool) -> dict:
    diff = {}
    values = obj.__dict__
    for key in plan.fields:
        value = values[key] if key in values else getattr(obj, key)
        if value is not None:
            diff[key] = [_value(value), None] if deleted else [None, _value(value)]
    return diff


def _changes(state, plan: _Plan) -> dict:
    attrs = state.attrs
    diff = {}
    for key in plan.fields:
        history = attrs[key].history
        if not history.has_changes():
            continue
        old = history.deleted[0] if history.deleted else None
        new = history.added[0] if history.added else None
        if old != new:
            diff[key] = [_value(old), _value(new)]
    for key in plan.secret:
        # The change is recorded, never the value (a password set, a private key replaced).
        if plan.witness[key] not in diff and attrs[key].history.has_changes():
            diff[key] = [REDACTED, REDACTED]
    return diff


def make_entry(action: str, category: str, *, scope: Scope = Scope(), target_type=None, target_id=None,
               target_label=None, diff: dict | None = None, caused_by=None, operation_id=None, actor=None,
               meta: dict | None = None) -> dict:
    if category not in CATEGORIES:
        raise ValueError(f"unknown audit category {category!r} for {action}: use one of {', '.join(CATEGORIES)}")
    actor = actor or current_actor()
    return {
        "actor_kind": actor.kind,
        "actor_user_id": actor.user_id,
        "actor_email": actor.email,
        "actor_role": actor.role,
        "actor_os_user": actor.os_user,
        "action": action,
        "category": category,
        "server_id": scope.server_id,
        "server_name": scope.server_name,
        "app_id": scope.app_id,
        "app_name": scope.app_name,
        "target_type": target_type,
        "target_id": None if target_id is None else str(target_id),
        "target_label": target_label,
        "diff": chain.canonical_json(diff or {}),
        "caused_by": caused_by,
        "operation_id": operation_id,
        **(meta if meta is not None else request_meta()),
    }


class _Context:
    """The actor and request metadata, looked up once per flush and only when an entry needs them."""

    __slots__ = ("_actor", "_meta")

    def __init__(self):
        self._actor = self._meta = None

    @property
    def actor(self):
        if self._actor is None:
            self._actor = current_actor()
        return self._actor

    @property
    def meta(self) -> dict:
        if self._meta is None:
            self._meta = request_meta()
        return self._meta


def _entry_for(obj, plan: _Plan, verb: str, diff: dict, context: _Context, caused_by=None) -> dict | None:
    rule = plan.rule
    decided = rule.action(obj, verb, diff)
    if decided is None:
        return None
    action, category = decided
    return make_entry(
        action, category, scope=rule.scope(obj), target_type=rule.name, target_id=obj.id,
        target_label=rule.label(obj), diff=diff, caused_by=caused_by,
        operation_id=obj.id if plan.is_operation else None, actor=context.actor, meta=context.meta,
    )


def _deleted_parent(obj, plan: _Plan, deleted: dict) -> str | None:
    """`app:12` when this row goes because its parent, deleted in the same flush, took it along."""
    if plan.parent is None:
        return None
    key, parent_cls, columns = plan.parent
    values = obj.__dict__
    ident = tuple(values[c] if c in values else getattr(obj, c) for c in columns)
    parent = deleted.get((parent_cls, ident))
    if parent is None:
        return None
    return f"{parent_cls.__audit__.name}:{parent.id}"


def pending(session) -> list[dict]:
    return session.info.setdefault(PENDING, [])


def _after_flush(session, flush_context):
    entries = None
    context = _Context()
    for obj in session.new:
        plan = _plan(type(obj))
        if plan is None:
            continue
        if plan.is_operation:
            session.info.setdefault(NEW_OPERATIONS, []).append(obj)
        if plan.parents:
            _load_parents(session, obj, plan)
        entry = _entry_for(obj, plan, "created", _snapshot(obj, plan, deleted=False), context)
        if entry:
            entries = entries if entries is not None else pending(session)
            entries.append(entry)
    for obj in session.dirty:
        plan = _plan(type(obj))
        if plan is None:
            continue
        state = inspect(obj)
        if not state.modified:
            continue
        diff = _changes(state, plan)
        if diff:
            entry = _entry_for(obj, plan, "updated", diff, context)
            if entry:
                entries = entries if entries is not None else pending(session)
                entries.append(entry)
    deleted = session.deleted
    if deleted:
        by_identity = {}
        for obj in deleted:
            identity = inspect(obj).identity
            if identity is not None:
                by_identity[(type(obj), identity)] = obj
        for obj in deleted:
            plan = _plan(type(obj))
            if plan is None:
                continue
            entry = _entry_for(obj, plan, "deleted", _snapshot(obj, plan, deleted=True), context,
                               caused_by=_deleted_parent(obj, plan, by_identity))
            if entry:
                entries = entries if entries is not None else pending(session)
                entries.append(entry)
    if entries and HEAD in session.info:
        _write(session)  # flushed during our own commit: the chain lock is held, chain it now


def _link_operations(session, entries: list[dict]) -> None:
    """An entry whose change an operation of the same transaction applies points at it."""
    operations = session.info.get(NEW_OPERATIONS)
    if not operations:
        return
    for entry in entries:
        if entry["operation_id"] is not None:
            continue
        for op in reversed(operations):
            if op.app_id is not None and op.app_id == entry["app_id"]:
                entry["operation_id"] = op.id
                break
            if op.app_id is None and entry["app_id"] is None and op.server_id == entry["server_id"] \
                    and entry["server_id"] is not None:
                entry["operation_id"] = op.id
                break


_COLUMNS: list[tuple[str, bool, int | None]] = []


def _fit(row: dict) -> dict:
    """Give each value its column's type and length before hashing, so the hashed and stored bytes agree.

    (An id passed as "3" would be stored as 3; a label longer than its column would fail on
    PostgreSQL, and an over-long label must not make a person's change fail.)
    """
    if not _COLUMNS:
        from intercity.models import AuditEntry

        for column in AuditEntry.__table__.columns:
            if column.name in chain.HASHED_FIELDS and column.name not in ("seq", "created_at"):
                is_int = isinstance(column.type, Integer)
                length = column.type.length if isinstance(column.type, String) else None
                _COLUMNS.append((column.name, is_int, length))
    for name, is_int, length in _COLUMNS:
        value = row.get(name)
        if value is None:
            continue
        if is_int:
            if type(value) is not int:
                row[name] = int(value)
        elif type(value) is not str:
            row[name] = value = str(value)
        if length is not None and len(value) > length:
            row[name] = value[: length - 1] + "…"
    return row


class _Insert:
    """The INSERT of audit entries for one driver, rendered once, with each column's bind processor.

    Entries are written on every commit; going to the driver with a statement rendered once
    (values still converted by their types' own processors) costs a fraction of a Core insert.
    On PostgreSQL a second form inserts a row only if it extends the chain head it was hashed
    against (see _append_postgresql).
    """

    def __init__(self, dialect, marker: str):
        from intercity.models import AuditEntry

        table = AuditEntry.__table__
        self.columns = tuple(c.name for c in table.columns if c.name != "id")
        self.processors = tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                                for name in self.columns)
        names = ", ".join(dialect.identifier_preparer.quote(name) for name in self.columns)
        self.sql = f"INSERT INTO audit_entries ({names}) VALUES ({', '.join([marker] * len(self.columns))})"
        self.guarded_sql = None
        if dialect.name == "postgresql" and dialect.driver == "psycopg":  # psycopg 3 has pipeline mode
            casts = []
            for name in self.columns:
                impl = table.c[name].type.dialect_impl(dialect)
                casts.append("text" if isinstance(impl, String) else impl.compile(dialect=dialect))
            values = ", ".join(f"{marker}::{cast}" for cast in casts)
            # Inserted only when the previous entry is the one this row was chained to and nothing
            # follows it: all rows of a batch go in, or (the guessed head was stale) none does.
            self.guarded_sql = (
                f"INSERT INTO audit_entries ({names}) SELECT {values} "
                f"WHERE NOT EXISTS (SELECT 1 FROM audit_entries WHERE seq >= {marker}::bigint) "
                f"AND ({marker}::bigint = 1 OR EXISTS (SELECT 1 FROM audit_entries "
                f"WHERE seq = {marker}::bigint - 1 AND hash = {marker}::text))"
            )

    def params(self, row: dict) -> tuple:
        return tuple(row[name] if process is None or row[name] is None else process(row[name])
                     for name, process in zip(self.columns, self.processors))


_INSERTS: dict[tuple[str, str, str], _Insert | None] = {}


def _insert_for(dialect) -> _Insert | None:
    key = (dialect.name, dialect.driver, dialect.paramstyle)
    try:
        return _INSERTS[key]
    except KeyError:
        marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
        plan = _INSERTS[key] = _Insert(dialect, marker) if marker else None
        return plan


def _chain(entries: list[dict], seq: int, prev_hash: str, now) -> list[dict]:
    rows = []
    for entry in entries:
        seq += 1
        row = _fit(dict(entry, seq=seq, created_at=now, prev_hash=prev_hash))
        row["hash"] = prev_hash = chain.compute_hash(row)
        rows.append(row)
    return rows


# The head this process last wrote, per engine: on PostgreSQL the next commit guesses it is still
# the head, so locking, reading the head and inserting take one round trip instead of two.
_LAST_HEAD: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _append_postgresql(connection, insert_: _Insert, entries: list[dict], now) -> list[dict]:
    """Take the chain lock, read the head and insert the entries chained to the guessed head, pipelined.

    Each statement runs after the one before it, with its own READ COMMITTED snapshot: the head
    is read once the lock is granted, and the guarded insert adds rows only if the guess was the
    head. Otherwise nothing was inserted, and the entries are chained to the head just read
    (the lock is held now) and inserted with a second round trip.
    """
    dbapi = connection.connection.dbapi_connection
    guess = _LAST_HEAD.get(connection.engine)
    rows = _chain(entries, *guess, now) if guess else None
    try:
        with dbapi.pipeline():
            dbapi.cursor().execute(f"SELECT pg_advisory_xact_lock({chain.CHAIN_LOCK_ID})")
            head_cursor = dbapi.cursor()
            head_cursor.execute(chain.HEAD_SQL)
            if rows:
                insert_cursor = dbapi.cursor()
                insert_cursor.executemany(insert_.guarded_sql, [
                    insert_.params(row) + (row["seq"], row["seq"], row["seq"], row["prev_hash"]) for row in rows])
        found = head_cursor.fetchone()
    except connection.dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(insert_.guarded_sql, None, error, connection.dialect.loaded_dbapi.Error) from error
    head = (int(found[0]), found[1]) if found else (0, chain.GENESIS)
    if rows and head == guess:
        if insert_cursor.rowcount != len(rows):  # cannot happen under the lock; never write half a batch
            raise RuntimeError(f"audit chain: {insert_cursor.rowcount} of {len(rows)} entries inserted")
        return rows
    rows = _chain(entries, *head, now)
    connection.exec_driver_sql(insert_.sql, [insert_.params(row) for row in rows])
    return rows


def _write(session) -> None:
    """Chain and insert the pending entries, taking the chain lock unless this transaction holds it."""
    entries = session.info.get(PENDING)
    if not entries:
        return
    _link_operations(session, entries)
    from intercity.models.base import utcnow

    connection = session.connection()
    insert_ = _insert_for(connection.dialect)
    held = session.info.get(HEAD)
    now = utcnow()
    if held is None and insert_ is not None and insert_.guarded_sql is not None:
        rows = _append_postgresql(connection, insert_, entries, now)
    else:
        rows = _chain(entries, *(held if held is not None else chain.lock_head(connection)), now)
        if insert_ is None:
            from intercity.models import AuditEntry

            connection.execute(insert(AuditEntry.__table__), rows)
        else:
            params = [insert_.params(row) for row in rows]
            connection.exec_driver_sql(insert_.sql, params if len(params) > 1 else params[0])
    entries.clear()
    session.info.setdefault(WRITTEN, []).extend(row["action"] for row in rows)
    session.info[HEAD] = head = (rows[-1]["seq"], rows[-1]["hash"])
    _LAST_HEAD[connection.engine] = head


def _before_commit(session):
    if session.in_nested_transaction():
        return  # a savepoint is released: its entries wait for the outermost commit
    session.flush()  # capture changes not flushed yet
    _write(session)


def _after_transaction_create(session, transaction):
    if transaction.nested:
        session.info.setdefault(MARKS, {})[transaction] = (
            len(pending(session)), len(session.info.get(NEW_OPERATIONS, ())))


def _after_soft_rollback(session, previous_transaction):
    if not previous_transaction.nested:
        return
    marks = session.info.get(MARKS)
    if marks and previous_transaction in marks:
        entry_mark, op_mark = marks.pop(previous_transaction)
        del pending(session)[entry_mark:]
        del session.info.setdefault(NEW_OPERATIONS, [])[op_mark:]


def _after_transaction_end(session, transaction):
    if transaction.parent is None:  # the outermost transaction ended: committed or rolled back
        info = session.info
        for key in (PENDING, MARKS, NEW_OPERATIONS, HEAD, WRITTEN):
            info.pop(key, None)


_AUDITED_TABLES: dict[str, tuple[type, object]] = {}
_MAPPERS_SEEN = [0]


def _audited_table(table_name: str | None):
    found = _AUDITED_TABLES.get(table_name)
    if found is None:
        from intercity.extensions import db

        mappers = db.Model.registry.mappers
        if len(mappers) != _MAPPERS_SEEN[0]:  # models imported since the last look
            for mapper in mappers:
                rule = getattr(mapper.class_, "__audit__", None)
                if rule is not None:
                    _AUDITED_TABLES[mapper.local_table.name] = (mapper.class_, rule)
            _MAPPERS_SEEN[0] = len(mappers)
            found = _AUDITED_TABLES.get(table_name)
    return found


def _guard_bulk(orm_execute_state):
    """Refuse INSERT/UPDATE/DELETE statements on audited tables: they bypass the flush, so the log."""
    is_update, is_delete = orm_execute_state.is_update, orm_execute_state.is_delete
    if not (is_update or is_delete or orm_execute_state.is_insert):
        return
    table = getattr(orm_execute_state.statement, "table", None)
    audited = _audited_table(getattr(table, "name", None))
    if audited is None:
        return
    cls, rule = audited
    if rule.bulk_ok and (is_update or is_delete):
        return  # e.g. operation status bookkeeping, which is never an entry
    verb = "UPDATE" if is_update else "DELETE" if is_delete else "INSERT"
    raise UnauditedChange(
        f"Bulk {verb} on {table.name} would bypass the audit log (audit rule '{rule.name}' of "
        f"{cls.__name__}): every change of an audited model must have its entry, so change "
        f"{cls.__name__} rows through the session."
    )


def record_event(session, action: str, *, category: str | None = None, **fields) -> dict:
    """Write an entry for an event that is not a row change (login, host key mismatch, ...).

    The entry belongs to the current transaction: it is written at commit and dropped by a rollback.
    """
    category = category or EVENT_CATEGORIES.get(action)
    if category is None:
        raise ValueError(f"explicit audit event {action!r} has no declared category: add it to "
                         "intercity.audit.rules.EVENT_CATEGORIES or pass category=")
    entry = make_entry(action, category, **fields)
    if isinstance(session, scoped_session):
        session = session()
    if not session.in_transaction():
        session.begin()  # so that rollback() or close() discards the entry with the rest
    pending(session).append(entry)
    if HEAD in session.info:
        _write(session)
    return entry


# (event, listener): the benchmark removes these to measure the panel without capture.
HOOKS = (
    ("after_flush", _after_flush),
    ("before_commit", _before_commit),
    ("after_transaction_create", _after_transaction_create),
    ("after_soft_rollback", _after_soft_rollback),
    ("after_transaction_end", _after_transaction_end),
    ("do_orm_execute", _guard_bulk),
)


def register() -> None:
    """Install the hooks once, for every session."""
    for name, fn in HOOKS:
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)


def written_actions(session) -> list[str]:
    """Actions of the entries the transaction being committed wrote (read after commit)."""
    return list(session.info.get(WRITTEN, ()))


def new_operations(session) -> list:
    """Operations inserted in the current transaction (read by the job queue after commit)."""
    return list(session.info.get(NEW_OPERATIONS, []))
