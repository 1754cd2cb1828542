"""Drift checks as people use them: check now, how often, the event log switch, and rows that differ on the server."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from intercity.audit.actor import Actor, acting_as
from intercity.audit.capture import explain
from intercity.extensions import db
from intercity.models import App, EnvVar, Operation, Server
from intercity.models.base import utcnow
from intercity.models.operation import PENDING
from intercity.services import row_state, value_history
from intercity.services.operations import request_operation
from intercity.services.permissions import require
from intercity.validation import ValidationError

KIND = "server.drift_check"
MAX_INTERVAL = 7 * 24 * 60
# Servers the scheduler leaves alone: never connected, or stopped by a changed host key.
NOT_SCHEDULED = ("new", "host_key_mismatch")


def pending_check(server: Server) -> Operation | None:
    return db.session.scalar(select(Operation).where(Operation.server_id == server.id, Operation.kind == KIND,
                                                     Operation.status.in_(PENDING)).limit(1))


def check_now(server: Server, user) -> Operation:
    require(user, "member")
    waiting = pending_check(server)
    if waiting is not None:
        return waiting  # one check at a time is enough: it reads everything
    return request_operation(KIND, server=server, requested_by=user)


def set_interval(server: Server, user, minutes) -> int:
    require(user, "admin")
    try:
        value = int(str(minutes).strip())
    except (TypeError, ValueError):
        raise ValidationError("Enter a whole number of minutes (0 turns scheduled checks off).", "interval") from None
    if not 0 <= value <= MAX_INTERVAL:
        raise ValidationError(f"Enter between 0 and {MAX_INTERVAL} minutes (0 turns scheduled checks off).",
                              "interval")
    server.drift_interval_minutes = value  # audited: server.updated
    return value


def turn_events_on(server: Server, user) -> Operation:
    require(user, "admin")
    return request_operation("server.events_on", server=server, requested_by=user)


def due(server: Server, now: datetime) -> bool:
    interval = server.drift_interval_minutes or 0
    if interval <= 0 or server.status in NOT_SCHEDULED:
        return False
    last = server.drift_checked_at
    return last is None or last + timedelta(minutes=interval) <= now


def request_due(now: datetime | None = None) -> list[int]:
    """The scheduler's part: a check for every server whose interval has passed (and none pending). Commits."""
    now = now or utcnow()
    requested = []
    with acting_as(Actor("scheduler")):
        for server in db.session.scalars(select(Server).order_by(Server.id)):
            if due(server, now) and pending_check(server) is None:
                requested.append(request_operation(KIND, server=server).id)
        db.session.commit()
    return requested


def differs_on_server(app: App) -> dict[str, Operation]:
    """Variables whose last change failed and that a later reading found holding another value: key -> the operation.

    A reading older than the failure says only what the server had before it: that row is simply failed.
    """
    states = row_state.latest_states("env.apply", app_id=app.id)
    found = {}
    for var in app.env_vars:
        latest = states.get(var.key)
        if (latest is not None and latest.state == "failed" and not latest.removal
                and var.applied_fingerprint and var.applied_fingerprint != var.value_fingerprint
                and var.applied_seen_at and latest.operation.finished_at
                and var.applied_seen_at > latest.operation.finished_at):
            found[var.key] = latest.operation
    return found


def keep_server_value(app: App, user, key: str) -> EnvVar:
    """The panel takes the value the server holds as wanted (nothing runs: the server has it already)."""
    require(user, "member")
    var = db.session.scalar(select(EnvVar).where(EnvVar.app_id == app.id, EnvVar.key == key))
    if var is None or key not in differs_on_server(app):
        raise ValidationError(f"{key} does not differ on the server any more.", "key")
    kept = value_history.find("env", server_id=app.server_id, app_id=app.id, name=key,
                              fingerprint=var.applied_fingerprint)
    if kept is None:
        raise ValidationError(f"The server's value of {key} is no longer kept by the panel; run a check again "
                              "to read it, or apply the panel's value.", "key")
    var.value = kept.value
    explain(var, "env_var.server_value_kept")
    return var


def summary(server: Server) -> dict:
    """What the server page says about drift checks."""
    state = server.drift_state or {}
    events = state.get("events") or {}
    return {
        "checked_at": server.drift_checked_at,
        "interval": server.drift_interval_minutes,
        "skipped": state.get("skipped") or {},
        "events_enabled": events.get("enabled"),
        "events_source": events.get("source"),
        "events_problem": events.get("problem"),
        "clock_offset": state.get("clock_offset_seconds"),
        "down_since": state.get("down_since"),
        "differences": state.get("differences"),
    }
