"""Where each row's latest change stands on the server: pending, applied or failed, with its operation."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from intercity.extensions import db
from intercity.models import Operation

# Per operation kind: the payload lists naming rows that are set or added, and those removed.
PAYLOAD_KEYS = {
    "env.apply": ("set", "unset"),
    "domains.apply": ("add", "remove"),
    "deploy_keys.apply": ("add", "remove"),
}


@dataclass
class RowState:
    """What a row's latest change came to on the server, and the operation that carried it."""

    state: str  # pending, applied, failed
    operation: Operation
    removal: bool = False


def _name(item) -> str:
    # deploy_keys.apply names removed keys as {"name", "fingerprint", "adopted"}.
    return item.get("name") if isinstance(item, dict) else item


def latest_states(kind: str, *, app_id: int | None = None, server_id: int | None = None,
                  lookback: int = 100) -> dict[str, RowState]:
    """Per row name, the outcome of the newest operation of `kind` that named it (a retry is newer)."""
    added, removed = PAYLOAD_KEYS[kind]
    query = select(Operation).where(Operation.kind == kind)
    query = query.where(Operation.app_id == app_id) if app_id is not None else query.where(Operation.server_id == server_id)
    states: dict[str, RowState] = {}
    for op in db.session.scalars(query.order_by(Operation.id.desc()).limit(lookback)):
        payload = op.data or {}
        for item in payload.get(added, []):
            states.setdefault(_name(item), RowState(op.outcome, op))
        for item in payload.get(removed, []):
            states.setdefault(_name(item), RowState(op.outcome, op, removal=True))
    return states
