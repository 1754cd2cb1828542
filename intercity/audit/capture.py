"""Automatic capture: session hooks turn every change of an audited model into an AuditEntry.

after_flush builds entries from session.new/dirty/deleted while attribute history is still
there; before_commit flushes what is left, takes the chain lock, gives each entry its seq
and hash and inserts them in the same transaction. Rollbacks drop unwritten entries.
"""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import event, insert, inspect
from sqlalchemy.orm import Session

from intercity.audit import chain
from intercity.audit.actor import current_actor, request_meta
from intercity.audit.rules import EVENT_CATEGORIES, Scope

PENDING = "audit_pending"
NEW_OPERATIONS = "audit_new_operations"
MARKS = "audit_savepoint_marks"


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


def _fields(obj, rule):
    for attr in inspect(obj).mapper.column_attrs:
        if attr.key not in rule.secret and attr.key not in rule.ignore and attr.key != "id":
            yield attr.key


def _snapshot(obj, rule, *, deleted: bool) -> dict:
    diff = {}
    for key in _fields(obj, rule):
        value = getattr(obj, key)
        if value is not None:
            diff[key] = [_value(value), None] if deleted else [None, _value(value)]
    return diff


def _changes(obj, rule) -> dict:
    state = inspect(obj)
    diff = {}
    for key in _fields(obj, rule):
        history = state.attrs[key].history
        if not history.has_changes():
            continue
        old = history.deleted[0] if history.deleted else None
        new = history.added[0] if history.added else None
        if old != new:
            diff[key] = [_value(old), _value(new)]
    return diff


def make_entry(action: str, category: str, *, scope: Scope = Scope(), target_type=None, target_id=None,
               target_label=None, diff: dict | None = None, caused_by=None, operation_id=None, actor=None) -> dict:
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
        **request_meta(),
    }


def _entry_for(session, obj, verb: str, diff: dict, caused_by=None) -> dict | None:
    rule = type(obj).__audit__
    decided = rule.action(obj, verb, diff)
    if decided is None:
        return None
    action, category = decided
    from intercity.models import Operation

    return make_entry(
        action, category, scope=rule.scope(obj), target_type=rule.name, target_id=obj.id,
        target_label=rule.label(obj), diff=diff, caused_by=caused_by,
        operation_id=obj.id if isinstance(obj, Operation) else None,
    )


def _deleted_parent(obj, rule, deleted: set) -> str | None:
    if not rule.parent:
        return None
    parent = getattr(obj, rule.parent)
    if parent is not None and parent in deleted:
        return f"{type(parent).__audit__.name}:{parent.id}"
    return None


def pending(session) -> list[dict]:
    return session.info.setdefault(PENDING, [])


def _after_flush(session, flush_context):
    from intercity.models import Operation

    entries = pending(session)
    for obj in session.new:
        if isinstance(obj, Operation):
            session.info.setdefault(NEW_OPERATIONS, []).append(obj)
        rule = getattr(type(obj), "__audit__", None)
        if rule is not None:
            entry = _entry_for(session, obj, "created", _snapshot(obj, rule, deleted=False))
            if entry:
                entries.append(entry)
    for obj in session.dirty:
        rule = getattr(type(obj), "__audit__", None)
        if rule is None or not session.is_modified(obj, include_collections=False):
            continue
        diff = _changes(obj, rule)
        if diff:
            entry = _entry_for(session, obj, "updated", diff)
            if entry:
                entries.append(entry)
    deleted = set(session.deleted)
    for obj in session.deleted:
        rule = getattr(type(obj), "__audit__", None)
        if rule is not None:
            entry = _entry_for(session, obj, "deleted", _snapshot(obj, rule, deleted=True),
                               caused_by=_deleted_parent(obj, rule, deleted))
            if entry:
                entries.append(entry)


def _link_operations(session, entries: list[dict]) -> None:
    """An entry whose change an operation of the same transaction applies points at it."""
    operations = session.info.get(NEW_OPERATIONS, [])
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


def _before_commit(session):
    session.flush()  # capture changes not flushed yet
    entries = session.info.get(PENDING)
    if not entries:
        return
    _link_operations(session, entries)
    from intercity.models import AuditEntry
    from intercity.models.base import utcnow

    connection = session.connection()
    seq, prev_hash = chain.lock_head(connection)
    now = utcnow()
    rows = []
    for entry in entries:
        seq += 1
        row = dict(entry, seq=seq, created_at=now, prev_hash=prev_hash)
        row["hash"] = prev_hash = chain.compute_hash(row)
        rows.append(row)
    connection.execute(insert(AuditEntry.__table__), rows)
    entries.clear()


def _after_transaction_create(session, transaction):
    if transaction.nested:
        session.info.setdefault(MARKS, {})[transaction] = (
            len(pending(session)), len(session.info.get(NEW_OPERATIONS, [])))


def _after_soft_rollback(session, previous_transaction):
    marks = session.info.get(MARKS, {})
    if previous_transaction.nested and previous_transaction in marks:
        entry_mark, op_mark = marks.pop(previous_transaction)
        del pending(session)[entry_mark:]
        del session.info.setdefault(NEW_OPERATIONS, [])[op_mark:]


def _after_transaction_end(session, transaction):
    if transaction.parent is None:  # the outermost transaction ended: committed or rolled back
        session.info.pop(PENDING, None)
        session.info.pop(MARKS, None)
        session.info.pop(NEW_OPERATIONS, None)


def _guard_bulk(orm_execute_state):
    if not (orm_execute_state.is_update or orm_execute_state.is_delete):
        return
    for mapper in orm_execute_state.all_mappers:
        rule = getattr(mapper.class_, "__audit__", None)
        if rule is not None and not rule.bulk_ok:
            verb = "UPDATE" if orm_execute_state.is_update else "DELETE"
            raise UnauditedChange(
                f"Bulk {verb} on {mapper.local_table.name} would bypass the audit log: every change of an "
                f"audited model must have its entry, so change {mapper.class_.__name__} rows through the session."
            )


def record_event(session, action: str, *, category: str | None = None, **fields) -> dict:
    """Write an entry for an event that is not a row change (login, host key mismatch, ...)."""
    category = category or EVENT_CATEGORIES.get(action)
    if category is None:
        raise ValueError(f"explicit audit event {action!r} has no declared category")
    entry = make_entry(action, category, **fields)
    pending(session).append(entry)
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


def new_operations(session) -> list:
    """Operations inserted in the current transaction (read by the job queue after commit)."""
    return list(session.info.get(NEW_OPERATIONS, []))
