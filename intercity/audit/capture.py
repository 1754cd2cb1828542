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
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, scoped_session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.interfaces import MANYTOONE

from intercity.audit import chain
from intercity.audit.actor import current_actor, request_meta
from intercity.audit.categories import category_of
from intercity.audit.rules import REDACTED, Scope
from intercity.extensions import db
from intercity.models import Operation
from intercity.models.base import utcnow

PENDING = "audit_pending"
# (target_type, target_id) -> id of the operation that applies that row's change, in order of request.
APPLIES = "audit_applies"
MARKS = "audit_savepoint_marks"
# Set once this transaction's entries are chained: (seq, hash) of its newest entry.
HEAD = "audit_head"
# Actions of the entries this transaction wrote (notifications look after commit whether any is alerted).
WRITTEN = "audit_written_actions"
# Why the changes flushed now happen ("revert:12"): entries without a parent's cause carry it in caused_by.
CAUSE = "audit_cause"


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


def make_entry(action: str, category: str | None = None, *, scope: Scope = Scope(), target_type=None,
               target_id=None, target_label=None, diff: dict | None = None, caused_by=None, operation_id=None,
               actor=None, meta: dict | None = None) -> dict:
    # The category table decides; a category passed (an operation kind's) must fit its row.
    category = category_of(action, category)
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


# Instance attribute set by `explain`: the action (or None) and extra diff of the row's next entry.
EXPLAINED = "_audit_explained"


def explain(row, action: str | None, extra: dict | None = None) -> None:
    """Word the next entry of this row's change as `action` (None: no entry, its parent's entry says it).

    For changes the panel records rather than makes (what a drift check found on the server): the
    row change still becomes its entry, under this action and with `extra` added to its diff.
    """
    row.__dict__[EXPLAINED] = (action, extra or {})


def _entry_for(obj, plan: _Plan, verb: str, diff: dict, context: _Context, caused_by=None) -> dict | None:
    rule = plan.rule
    explained = obj.__dict__.pop(EXPLAINED, None)
    if explained is not None:
        action, extra = explained
        if action is None:
            return None
        diff = {**diff, **extra}
        decided = (action, None)
    else:
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


@contextmanager
def caused(session, cause: str):
    """Entries of the changes flushed inside this block say why they happened (`caused_by`), e.g. "revert:12"."""
    info = session.info
    previous = info.get(CAUSE)
    info[CAUSE] = cause
    try:
        yield
        session.flush()  # while the cause still holds
    finally:
        if previous is None:
            info.pop(CAUSE, None)
        else:
            info[CAUSE] = previous


def _after_flush(session, flush_context):
    entries = None
    context = _Context()
    cause = session.info.get(CAUSE)
    for obj in session.new:
        plan = _plan(type(obj))
        if plan is None:
            continue
        if plan.parents:
            _load_parents(session, obj, plan)
        entry = _entry_for(obj, plan, "created", _snapshot(obj, plan, deleted=False), context, caused_by=cause)
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
            entry = _entry_for(obj, plan, "updated", diff, context, caused_by=cause)
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
                               caused_by=_deleted_parent(obj, plan, by_identity) or cause)
            if entry:
                entries = entries if entries is not None else pending(session)
                entries.append(entry)
    if entries and HEAD in session.info:
        _write(session)  # flushed during our own commit: the chain lock is held, chain it now


def applied_by(session, operation_id: int, rows) -> None:
    """Entries of these rows' changes in this transaction point at the operation that applies them."""
    if isinstance(session, scoped_session):
        session = session()
    links = session.info.setdefault(APPLIES, [])
    for row in rows:
        plan = _plan(type(row))
        if plan is None:
            raise TypeError(f"{type(row).__name__} is not audited, so no entry records its change")
        links.append(((plan.rule.name, str(row.id)), operation_id))


def _link_operations(session, entries: list[dict]) -> None:
    links = session.info.get(APPLIES)
    if not links:
        return
    applies = dict(links)  # the latest request for a row wins
    for entry in entries:
        if entry["operation_id"] is None:
            entry["operation_id"] = applies.get((entry["target_type"], entry["target_id"]))


def _write(session) -> None:
    """Chain and insert the pending entries, taking the chain lock unless this transaction holds it."""
    entries = session.info.get(PENDING)
    if not entries:
        return
    _link_operations(session, entries)
    session.info[HEAD] = chain.append(session.connection(), entries, session.info.get(HEAD), utcnow())
    session.info.setdefault(WRITTEN, []).extend(entry["action"] for entry in entries)
    entries.clear()


def _before_commit(session):
    if session.in_nested_transaction():
        return  # a savepoint is released: its entries wait for the outermost commit
    session.flush()  # capture changes not flushed yet
    _write(session)


def _after_transaction_create(session, transaction):
    if transaction.nested:
        session.info.setdefault(MARKS, {})[transaction] = (
            len(pending(session)), len(session.info.get(APPLIES, ())))


def _after_soft_rollback(session, previous_transaction):
    if not previous_transaction.nested:
        return
    marks = session.info.get(MARKS)
    if marks and previous_transaction in marks:
        entry_mark, link_mark = marks.pop(previous_transaction)
        del pending(session)[entry_mark:]
        del session.info.setdefault(APPLIES, [])[link_mark:]


def _after_transaction_end(session, transaction):
    if transaction.parent is None:  # the outermost transaction ended: committed or rolled back
        info = session.info
        for key in (PENDING, MARKS, APPLIES, HEAD, WRITTEN):
            info.pop(key, None)


# table name -> (model class, audit rule), for refusing bulk statements; filled by register().
_AUDITED_TABLES: dict[str, tuple[type, object]] = {}


def _guard_bulk(orm_execute_state):
    """Refuse INSERT/UPDATE/DELETE statements on audited tables: they bypass the flush, so the log."""
    is_update, is_delete = orm_execute_state.is_update, orm_execute_state.is_delete
    if not (is_update or is_delete or orm_execute_state.is_insert):
        return
    table = getattr(orm_execute_state.statement, "table", None)
    audited = _AUDITED_TABLES.get(getattr(table, "name", None))
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
    if isinstance(session, scoped_session):
        session = session()
    fields.setdefault("caused_by", session.info.get(CAUSE))
    entry = make_entry(action, category, **fields)
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
    """Install the hooks once, for every session (after the models are imported: it maps their tables)."""
    for mapper in db.Model.registry.mappers:
        rule = getattr(mapper.class_, "__audit__", None)
        if rule is not None:
            _AUDITED_TABLES[mapper.local_table.name] = (mapper.class_, rule)
    for name, fn in HOOKS:
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)


def written_actions(session) -> list[str]:
    """Actions of the entries the transaction being committed wrote (read after commit)."""
    return list(session.info.get(WRITTEN, ()))
