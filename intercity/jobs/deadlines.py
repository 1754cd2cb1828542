"""Server-side deadlines: how long a kind's commands may run on the server, and when a scope may go on.

Every dokku command runs under coreutils `timeout` (see `Deadline` in intercity/dokku/commands.py).
Before a command starts, its operation's `commands_deadline_at` is moved to the moment by which
the command has certainly ended on the server. When the panel loses sight of a command (it stopped
waiting, the connection broke, the worker died), the operation is marked `commands_in_doubt` and
its scope stays blocked until that moment: a later operation must not race a command that may
still land.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from intercity.dokku.commands import Deadline
from intercity.extensions import db
from intercity.models import Operation
from intercity.models.base import utcnow

# The panel's wait for a command stays this much longer than the server-side deadline and its grace,
# so that normally the panel sees the command end (exit 124) instead of timing out itself.
WAIT_MARGIN = 5


def for_kind(kind) -> Deadline:
    """The deadline of one kind's commands: its declaration, kept shorter than the panel's own wait.

    `COMMAND_DEADLINES` (kind name -> seconds) overrides a declaration as given, without that
    limit: tests use it to make the panel stop waiting before the server stops the command.
    """
    config = current_app.config
    grace = int(config["COMMAND_KILL_GRACE"])
    override = (config.get("COMMAND_DEADLINES") or {}).get(kind.name)
    if override is not None:
        return Deadline(int(override), grace)
    if getattr(kind, "long_wait", False):
        return Deadline(int(kind.deadline), grace)  # a build: the panel waits for it as long (`wait_for`)
    longest = int(config["SSH_COMMAND_TIMEOUT"]) - grace - WAIT_MARGIN
    return Deadline(max(1, min(int(kind.deadline), longest)), grace)


def wait_for(kind, deadline: Deadline) -> float | None:
    """How long the panel waits for one command of `kind`: None (SSH_COMMAND_TIMEOUT), or past a build's deadline."""
    return deadline.total + WAIT_MARGIN if getattr(kind, "long_wait", False) else None


def ends_by(deadline: Deadline, parts: int, now: datetime | None = None) -> datetime:
    """When `parts` invocations started one after another from now have certainly ended on the server.

    The connect timeout is added for the time the request may take to reach the server (the
    server's `timeout` starts when the command does, not when the panel asks).
    """
    now = now or utcnow()
    return now + timedelta(seconds=parts * deadline.total + int(current_app.config["SSH_CONNECT_TIMEOUT"]))


def blocking(scope: str, now: datetime | None = None) -> Operation | None:
    """The earlier operation of `scope` whose command may still be running on the server, if any."""
    now = now or utcnow()
    return db.session.scalars(
        select(Operation).where(Operation.scope == scope, Operation.commands_in_doubt.is_(True),
                                Operation.commands_deadline_at > now)
        .order_by(Operation.commands_deadline_at.desc()).limit(1)
    ).first()


def after_doubt(op: Operation) -> list[Operation]:
    """Earlier operations of the same scope that lost sight of a command and that no operation since
    has read back after: the server may hold what their command did."""
    earlier = db.session.scalars(
        select(Operation).where(Operation.scope == op.scope, Operation.id < op.id,
                                Operation.commands_in_doubt.is_(True), Operation.doubt_resolved_by_id.is_(None))
        .order_by(Operation.id)
    ).all()
    return list(earlier)


def _clock(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S UTC") if moment else "its deadline"


def held_sentence(op: Operation) -> str:
    """What a failed operation that lost sight of its command adds to its reason."""
    target = op.app_name or op.server_name or "this scope"
    return (f"Later work on {target} waits until {_clock(op.commands_deadline_at)}, when the server has certainly "
            "stopped it, and reads the server's state back before it applies.")


def waiting_sentence(blocker: Operation) -> str:
    """What a card waiting behind a command in doubt says."""
    where = blocker.server_name or "the server"
    return f"Waiting until the earlier command on {where} has certainly ended (by {_clock(blocker.commands_deadline_at)})"
