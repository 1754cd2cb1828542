"""Work to do on a server (an Operation) and the record of each command it ran (a CommandRun)."""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from intercity.audit.rules import AuditRule, Scope
from intercity.extensions import db
from intercity.models.base import NEVER_REUSE_IDS, UTCDateTime, utcnow


PENDING = ("queued", "running")
FINAL = ("succeeded", "failed")


def _classify_operation(op: Operation, verb: str, diff: dict):
    # Status changes are not entries; only creating a request of its own (or a retry) is.
    if verb != "created":
        return None
    if op.retry_of_id is not None:
        return "operation.retry_requested", op.category
    action = op.kind_info.request_action
    return (action, op.category) if action else None


def _operation_actions() -> tuple[str, ...]:
    # The registry imports the executors, which import the models: ask it only when asked.
    from intercity.jobs.kinds import KINDS

    return ("operation.retry_requested", *sorted({k.request_action for k in KINDS.values() if k.request_action}))


class Operation(db.Model):
    __tablename__ = "operations"
    __table_args__ = (
        Index("ix_operations_scope_status", "scope", "status", "id"),
        Index("ix_operations_status_created", "status", "created_at"),
        Index("ix_operations_updated_at", "updated_at"),
        Index("ix_operations_scope_doubt", "scope", "commands_in_doubt"),
        NEVER_REUSE_IDS,
    )
    __audit__ = AuditRule(
        name="operation",
        label=lambda op: op.title,
        scope=lambda op: Scope(op.server_id, op.server_name, op.app_id, op.app_name),
        ignore=frozenset({"created_at", "updated_at", "status", "attempts", "reason", "warnings",
                          "started_at", "finished_at", "heartbeat_at", "commands_deadline_at",
                          "commands_in_doubt", "doubt_resolved_by_id"}),
        classify=_classify_operation,
        actions=_operation_actions,
        bulk_ok=True,  # status bookkeeping is not audited
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(16))
    # Copied ids and names without foreign keys: an operation outlives its server and app.
    server_id: Mapped[int | None] = mapped_column(Integer)
    server_name: Mapped[str | None] = mapped_column(String(63))
    app_id: Mapped[int | None] = mapped_column(Integer)
    app_name: Mapped[str | None] = mapped_column(String(255))
    # The queue key: operations with the same scope are applied one at a time, oldest first.
    scope: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    requested_by_id: Mapped[int | None] = mapped_column(Integer)
    requested_by_email: Mapped[str | None] = mapped_column(String(254))
    requested_by_role: Mapped[str | None] = mapped_column(String(16))
    retry_of_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # By when every command started so far has certainly ended on the server (its `timeout` plus
    # grace); written before each command starts.
    commands_deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The panel lost sight of a command (it stopped waiting, the connection broke, the worker died):
    # the scope waits until commands_deadline_at, and the next operation reads the server back first.
    commands_in_doubt: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The later operation of the scope that read the server's state back after this one.
    doubt_resolved_by_id: Mapped[int | None] = mapped_column(Integer)

    command_runs = relationship("CommandRun", back_populates="operation", order_by="CommandRun.position")

    @property
    def kind_info(self):
        """This operation's declaration in the registry (intercity/jobs/kinds.py)."""
        from intercity.jobs import kinds  # the registry names executors, which use these models

        return kinds.get(self.kind)

    @property
    def title(self) -> str:
        target = self.app_name or self.server_name or ""
        return f"{self.kind_info.title} ({target})" if target else self.kind_info.title

    @property
    def data(self) -> dict:
        return dict(self.payload or {})

    @property
    def warning_list(self) -> list[str]:
        return list(self.warnings or [])

    @property
    def pending(self) -> bool:
        return self.status in PENDING

    @property
    def outcome(self) -> str:
        """What people see: pending, applied or failed."""
        return {"succeeded": "applied", "failed": "failed"}.get(self.status, "pending")

    @staticmethod
    def scope_for(server_id: int, app_id: int | None) -> str:
        return f"app:{app_id}" if app_id is not None else f"server:{server_id}"

    def __repr__(self) -> str:
        return f"<Operation {self.id} {self.kind} {self.status}>"


class CommandRun(db.Model):
    """One command an operation ran; append-only (the database rejects UPDATE and DELETE)."""

    __tablename__ = "command_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    operation_id: Mapped[int] = mapped_column(ForeignKey("operations.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    server_name: Mapped[str | None] = mapped_column(String(63))
    # argv as shown to people: values replaced by [redacted].
    argv: Mapped[str] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    stdout: Mapped[str] = mapped_column(Text, default="")
    stderr: Mapped[str] = mapped_column(Text, default="")
    # Why the command has no exit code: timeout, connection lost, refused before it ran.
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)

    operation = relationship("Operation", back_populates="command_runs")

    @property
    def argv_list(self) -> list[str]:
        return json.loads(self.argv)

    @property
    def duration_ms(self) -> int:
        return int((self.finished_at - self.started_at).total_seconds() * 1000)
