"""Keeping the values a server was seen to hold, so a failed change can be discarded and a change reverted."""
from __future__ import annotations

from sqlalchemy import delete, select

from intercity import crypto
from intercity.extensions import db
from intercity.models import AppliedValue
from intercity.services import retention

# How many values per variable (or deploy key name) are kept when the admin has not said (see services.retention).
DEFAULT_KEEP = retention.DEFAULT


def _conditions(kind: str, server_id: int, app_id: int | None, name: str) -> tuple:
    app = AppliedValue.app_id == app_id if app_id is not None else AppliedValue.app_id.is_(None)
    return AppliedValue.kind == kind, AppliedValue.server_id == server_id, app, AppliedValue.name == name


def _scope(kind: str, server_id: int, app_id: int | None, name: str):
    return select(AppliedValue).where(*_conditions(kind, server_id, app_id, name))


def remember(kind: str, *, server_id: int, app_id: int | None, name: str, value: str, fingerprint: str,
             operation_id: int | None = None, keep: int | None = None) -> AppliedValue:
    """Record that the server holds `value` for `name` (once per change: the same value seen again is not a new row).

    Without `keep`, the admin's retention (services.retention) says how many values of `name` stay.
    """
    if keep is None:
        keep = retention.keep()
    newest = db.session.scalar(_scope(kind, server_id, app_id, name).order_by(AppliedValue.id.desc()).limit(1))
    if newest is not None and newest.fingerprint == fingerprint:
        return newest
    row = AppliedValue(kind=kind, server_id=server_id, app_id=app_id, name=name,
                       value_encrypted=crypto.encrypt(value), fingerprint=fingerprint, operation_id=operation_id)
    db.session.add(row)
    db.session.flush()
    _prune(kind, server_id, app_id, name, keep)
    return row


def remember_env(app, key: str, value: str, *, operation_id: int | None = None,
                 keep: int | None = None) -> AppliedValue:
    return remember("env", server_id=app.server_id, app_id=app.id, name=key, value=value,
                    fingerprint=crypto.fingerprint(value), operation_id=operation_id, keep=keep)


def latest(kind: str, *, server_id: int, app_id: int | None, name: str) -> AppliedValue | None:
    """The newest value the server was seen to hold for `name`, or None."""
    return db.session.scalar(_scope(kind, server_id, app_id, name).order_by(AppliedValue.id.desc()).limit(1))


def find(kind: str, *, server_id: int, app_id: int | None, name: str, fingerprint: str) -> AppliedValue | None:
    """The kept value with this fingerprint (an audit entry's before or after), or None once it was pruned."""
    return db.session.scalar(_scope(kind, server_id, app_id, name)
                             .where(AppliedValue.fingerprint == fingerprint)
                             .order_by(AppliedValue.id.desc()).limit(1))


def _prune(kind: str, server_id: int, app_id: int | None, name: str, keep: int) -> None:
    conditions = _conditions(kind, server_id, app_id, name)
    ids = list(db.session.scalars(select(AppliedValue.id).where(*conditions)
                                  .order_by(AppliedValue.id.desc()).limit(keep)))
    if len(ids) == keep:
        db.session.execute(delete(AppliedValue).where(*conditions, AppliedValue.id < min(ids)))
