"""Keeping the values a server was seen to hold, so a failed change can be discarded and a change reverted."""
from __future__ import annotations

from sqlalchemy import delete, insert, select

from intercity import crypto
from intercity.extensions import db
from intercity.models import AppliedValue
from intercity.services import retention

# How many values per variable (or deploy key name) are kept when the admin has not said (see services.retention).
DEFAULT_KEEP = retention.DEFAULT


def _owner(kind: str, server_id: int, app_id: int | None) -> tuple:
    app = AppliedValue.app_id == app_id if app_id is not None else AppliedValue.app_id.is_(None)
    return AppliedValue.kind == kind, AppliedValue.server_id == server_id, app


def _conditions(kind: str, server_id: int, app_id: int | None, name: str) -> tuple:
    return *_owner(kind, server_id, app_id), AppliedValue.name == name


def _scope(kind: str, server_id: int, app_id: int | None, name: str):
    return select(AppliedValue).where(*_conditions(kind, server_id, app_id, name))


def remember(kind: str, *, server_id: int, app_id: int | None, name: str, value: str, fingerprint: str,
             operation_id: int | None = None, keep: int | None = None) -> AppliedValue:
    """Record that the server holds `value` for `name` (once per change: the same value seen again is not a new row).

    Without `keep`, the admin's retention (services.retention) says how many values of `name` stay.
    """
    remember_many(kind, server_id=server_id, app_id=app_id, values={name: (value, fingerprint)},
                  operation_id=operation_id, keep=keep)
    return latest(kind, server_id=server_id, app_id=app_id, name=name)


def remember_many(kind: str, *, server_id: int, app_id: int | None, values: dict[str, tuple[str, str]],
                  operation_id: int | None = None, keep: int | None = None) -> None:
    """remember() for several names at once, {name: (value, fingerprint)}, in three statements whatever their
    number: a read-back of a whole app's env records every variable."""
    if not values:
        return
    if keep is None:
        keep = retention.keep()
    kept: dict[str, list[tuple[int, str]]] = {}  # name: (id, fingerprint), newest first
    for row_id, name, fingerprint in db.session.execute(
            select(AppliedValue.id, AppliedValue.name, AppliedValue.fingerprint)
            .where(*_owner(kind, server_id, app_id), AppliedValue.name.in_(list(values)))
            .order_by(AppliedValue.id.desc())):
        kept.setdefault(name, []).append((row_id, fingerprint))
    new = [{"kind": kind, "server_id": server_id, "app_id": app_id, "name": name, "fingerprint": fingerprint,
            "value_encrypted": crypto.encrypt(value), "operation_id": operation_id}
           for name, (value, fingerprint) in values.items()
           if not kept.get(name) or kept[name][0][1] != fingerprint]
    if not new:
        return
    # One statement for all rows (no ORM objects, nothing to read back), and the older values each new one
    # pushes past the retention go in one more.
    db.session.execute(insert(AppliedValue), new)
    beyond = [row_id for row in new for row_id, _ in kept.get(row["name"], [])[keep - 1:]]
    if beyond:
        db.session.execute(delete(AppliedValue).where(AppliedValue.id.in_(beyond)))


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
