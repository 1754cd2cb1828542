"""Where each row's latest change stands on the server: pending, applied or failed, with its operation."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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


# --- what each row shows: the latest change beside the last reading of the server ------------------

STATES = ("applied", "pending", "failed", "differs", "unread")


@dataclass
class RowView:
    """Exactly one of: applied, pending (with its operation), failed (with its operation, hence reason
    and Retry), differs (the last reading disagrees with the wanted state and nothing is pending) or
    unread (no reading yet: rows from before readings existed); `seen_at` is the time of that reading."""

    state: str
    operation: Operation | None = None
    seen_at: datetime | None = None
    removal: bool = False

    @property
    def discardable(self) -> bool:
        return self.state == "failed"


def view(latest: RowState | None, *, seen_at: datetime | None, matches: bool) -> RowView:
    """One row's state. A failed change stays failed while the server was last seen without it; once the
    wanted state is what the server was last seen to have (a later read-back, a discard), it is applied."""
    operation = latest.operation if latest is not None else None
    removal = bool(latest and latest.removal)
    if latest is not None and latest.state == "pending":
        return RowView("pending", operation, seen_at, removal)
    if seen_at is not None and matches:
        return RowView("applied", operation, seen_at, removal)
    if latest is not None and latest.state == "failed":
        return RowView("failed", operation, seen_at, removal)
    if seen_at is None:
        return RowView("unread", operation, None, removal)
    return RowView("differs", operation, seen_at, removal)


def removals(states: dict[str, RowState], present: set[str]) -> list[tuple[str, RowView]]:
    """Rows removed from the panel whose removal has not reached the server (pending or failed)."""
    return [(name, RowView(st.state, st.operation, None, True)) for name, st in sorted(states.items())
            if st.removal and st.state != "applied" and name not in present]


def env_views(app) -> dict[str, RowView]:
    states = latest_states("env.apply", app_id=app.id)
    return {var.key: view(states.get(var.key), seen_at=var.applied_seen_at,
                          matches=var.applied_fingerprint is not None
                          and var.applied_fingerprint == var.value_fingerprint)
            for var in app.env_vars}


def env_removals(app) -> list[tuple[str, RowView]]:
    return removals(latest_states("env.apply", app_id=app.id), {var.key for var in app.env_vars})


def domain_views(app) -> dict[str, RowView]:
    states = latest_states("domains.apply", app_id=app.id)
    return {d.hostname: view(states.get(d.hostname), seen_at=d.applied_seen_at, matches=d.on_server is True)
            for d in app.domains}


def domain_removals(app) -> list[tuple[str, RowView]]:
    return removals(latest_states("domains.apply", app_id=app.id), {d.hostname for d in app.domains})


def key_views(server) -> dict[str, RowView]:
    states = latest_states("deploy_keys.apply", server_id=server.id)
    return {k.name: view(states.get(k.name), seen_at=k.applied_seen_at, matches=k.on_server is True)
            for k in server.deploy_keys}


def key_removals(server) -> list[tuple[str, RowView]]:
    return removals(latest_states("deploy_keys.apply", server_id=server.id), {k.name for k in server.deploy_keys})


def app_view(app) -> RowView:
    """An app's own row: its create (or destroy) beside whether the server was seen to have it."""
    op = db.session.scalar(select(Operation).where(Operation.app_id == app.id,
                                                   Operation.kind.in_(("app.create", "app.destroy")))
                           .order_by(Operation.id.desc()).limit(1))
    latest = RowState(op.outcome, op, removal=op.kind == "app.destroy") if op is not None else None
    wanted = app.status != "destroying"
    return view(latest, seen_at=app.applied_seen_at, matches=app.on_server is (True if wanted else False))
