"""Applying operations: drain one scope's queue, oldest first (filled in by the Dokku layer)."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from intercity.extensions import db
from intercity.models import Operation
from intercity.models.base import utcnow

STALL_AFTER = timedelta(minutes=1)


def drain(scope: str) -> None:
    raise NotImplementedError


def stalled_operations() -> int:
    """Operations queued for longer than a minute: no worker is consuming the queue."""
    return db.session.scalar(
        select(func.count(Operation.id)).where(Operation.status == "queued",
                                               Operation.created_at < utcnow() - STALL_AFTER)
    ) or 0


def recover_after_restart() -> None:
    """Single-process mode: work left running by a previous process is dead; queued work resumes."""
