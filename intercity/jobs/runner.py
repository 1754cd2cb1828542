"""Applying operations: drain one scope's queue oldest first under a lock, and sweep up after dead workers.

The operations table is the queue. A job only names a scope (`app:7`, `server:3`); `drain`
takes the scope's lock, applies its queued operations one at a time in id order, releases the
lock and looks again, so an operation committed while the lock was held is never stranded (the
job enqueued for it found the lock taken and left the work to the holder). `sweep` fails
operations left `running` by a worker that died (its lock has expired) and re-enqueues scopes
whose queued operations lost their job.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from intercity.audit.actor import Actor, acting_as
from intercity.audit.capture import record_event
from intercity.audit.rules import Scope
from intercity.database import begin_writing
from intercity.dokku.transcript import commands_sha256
from intercity.extensions import db
from intercity.jobs import deadlines, locks
from intercity.models import CommandRun, Operation
from intercity.models.base import utcnow

log = logging.getLogger(__name__)

STALL_AFTER = timedelta(minutes=1)
# A queued operation this old with nobody draining its scope has lost its job.
REQUEUE_AFTER = timedelta(seconds=20)

DEAD_WORKER = ("The worker applying this operation stopped before it finished (it was killed, crashed or lost "
               "its connection). The commands it finished are listed; retry to apply the current settings.")


def drain(scope: str) -> None:
    """Apply the queued operations of one scope, oldest first; return when none is left or another worker has it."""
    from intercity.jobs.executors import drain_pool

    app = current_app._get_current_object()
    while True:
        lock = locks.scope_lock(scope)
        if not lock.acquire():
            return  # the holder looks again after releasing, so our operation is not stranded
        pool = drain_pool()
        try:
            with locks.Heartbeat(app, lock) as heartbeat:
                _fail_abandoned(scope)
                while (op_id := _next_queued(scope)) is not None:
                    if _wait_for_deadline(scope):
                        return  # resumed at the deadline; never sleep on it
                    _apply(op_id, lock, pool, heartbeat)
                    if lock.lost:
                        break
        finally:
            pool.idle()
            db.session.rollback()
            lock.release()
        if _next_queued(scope) is None:
            return


def _wait_for_deadline(scope: str) -> bool:
    """True when an earlier command of the scope may still be running: drain it again once it has certainly ended."""
    blocker = deadlines.blocking(scope)
    db.session.commit()
    if blocker is None:
        return False
    from intercity.jobs import schedule

    wait = (blocker.commands_deadline_at - utcnow()).total_seconds()
    # A timed job (RQ's scheduler, or the in-process runner's timer); the sweeper is the backstop.
    schedule.submit("intercity.jobs.runner.resume", scope, delay=max(wait, 0) + 0.5)
    log.info("%s waits %.1f s for operation %s's command to have certainly ended", scope, wait, blocker.id)
    return True


def resume(scope: str) -> None:
    """The timed job of a scope whose earlier command has certainly ended now: drain it."""
    from intercity.jobs import enqueue

    enqueue(scope)


def _next_queued(scope: str) -> int | None:
    op_id = db.session.scalar(select(Operation.id).where(Operation.scope == scope, Operation.status == "queued")
                              .order_by(Operation.id).limit(1))
    db.session.commit()
    return op_id


def _worker_actor(op: Operation) -> Actor:
    return Actor(kind="worker", user_id=op.requested_by_id, email=op.requested_by_email, role=op.requested_by_role)


def _claim(op_id: int, status: str) -> Operation | None:
    """The operation, locked for update, if it still has `status`; a fresh read on SQLite too."""
    begin_writing(db.session.connection())
    op = db.session.scalars(select(Operation).where(Operation.id == op_id).with_for_update()
                            .execution_options(populate_existing=True)).first()
    if op is None or op.status != status:
        db.session.rollback()
        return None
    return op


def _apply(op_id: int, lock, pool, heartbeat) -> None:
    from intercity.jobs.executors import OperationContext, failure_reason, read_back_first

    op = _claim(op_id, "queued")
    if op is None:
        return
    now = utcnow()
    op.status = "running"
    op.attempts = (op.attempts or 0) + 1
    op.started_at = now
    op.heartbeat_at = now
    db.session.commit()
    locks.running_here.add(op_id)
    heartbeat.op_id = op_id
    reason = None
    ctx = None
    failure = None
    try:
        with acting_as(_worker_actor(op)):
            try:
                ctx = OperationContext(op, lock, pool)
                ctx.after_doubt = deadlines.after_doubt(op)
                if ctx.after_doubt:
                    read_back_first(ctx)
                op.kind_info.executor(ctx)
            except Exception as error:  # every failure ends the operation with a reason
                db.session.rollback()
                failure = error
                # The panel's wording, never run through the value redactor: Dokku's text
                # quoted in it was redacted where the parser quoted it.
                reason = failure_reason(error)
            finally:
                if ctx is not None:
                    ctx.close(failure)
            _finish(op_id, "failed" if reason else "succeeded", reason, ctx.warnings if ctx else [])
    finally:
        heartbeat.op_id = None
        locks.running_here.discard(op_id)


def _finish(op_id: int, status: str, reason: str | None, warnings: list[str], *, worker_died: bool = False) -> None:
    """End a running operation and write its outcome entry (with the digest of its command runs)."""
    db.session.rollback()
    op = _claim(op_id, "running")
    if op is None:
        log.warning("operation %s was no longer running when it ended (the sweeper failed it?)", op_id)
        return
    if worker_died and op.commands_deadline_at is not None:
        # It may have died with a command running: nobody saw that command end.
        op.commands_in_doubt = True
    if op.commands_in_doubt and op.commands_deadline_at is not None and reason:
        reason = f"{reason} {deadlines.held_sentence(op)}"
    op.status = status
    op.reason = reason
    op.warnings = list(warnings)
    op.finished_at = utcnow()
    if status == "succeeded" and op.kind_info.read:
        # A read that worked says so through what it stored; only its failure is an entry.
        db.session.commit()
        return
    runs = db.session.scalars(select(CommandRun).where(CommandRun.operation_id == op_id)).all()
    with acting_as(_worker_actor(op)):
        record_event(
            db.session, f"operation.{status}", category=op.category,
            scope=Scope(op.server_id, op.server_name, op.app_id, op.app_name),
            target_type="operation", target_id=op.id, target_label=op.title, operation_id=op.id,
            diff={"status": ["running", status], "reason": [None, reason],
                  "commands_sha256": [None, commands_sha256(runs)]},
        )
        db.session.commit()


def _fail_abandoned(scope: str) -> None:
    """Under the scope's lock: anything of this scope still `running` has no worker (we hold the lock)."""
    ids = db.session.scalars(select(Operation.id).where(Operation.scope == scope, Operation.status == "running")
                             .order_by(Operation.id)).all()
    db.session.commit()
    for op_id in ids:
        if op_id not in locks.running_here:
            _finish(op_id, "failed", DEAD_WORKER, [], worker_died=True)


def sweep() -> dict:
    """Fail operations whose worker died and re-enqueue scopes whose job was lost. Run periodically."""
    from intercity.jobs import enqueue, waiting_scopes

    failed, requeued = [], []
    running = db.session.execute(select(Operation.id, Operation.scope).where(Operation.status == "running")
                                 .order_by(Operation.id)).all()
    db.session.commit()
    for op_id, scope in running:
        if op_id in locks.running_here or locks.scope_locked(scope):
            continue
        # The lock is gone, so its holder is gone; _finish re-reads the row so a just-finished one is left alone.
        before = db.session.scalar(select(Operation.status).where(Operation.id == op_id))
        db.session.commit()
        if before == "running" and not locks.scope_locked(scope):
            _finish(op_id, "failed", DEAD_WORKER, [], worker_died=True)
            failed.append(op_id)
            requeued.append(scope)

    cutoff = utcnow() - REQUEUE_AFTER
    stale = db.session.scalars(select(Operation.scope).where(Operation.status == "queued",
                                                             Operation.created_at < cutoff).distinct()).all()
    db.session.commit()
    queued_jobs = waiting_scopes()
    for scope in stale:
        if scope not in requeued and scope not in queued_jobs and not locks.scope_locked(scope) \
                and deadlines.blocking(scope) is None:  # a blocked scope is re-enqueued once its deadline passed
            requeued.append(scope)
    db.session.commit()
    for scope in requeued:
        enqueue(scope)
    if failed or requeued:
        log.info("sweep: failed %s, re-enqueued %s", failed, requeued)
    return {"failed": failed, "requeued": requeued}


def recover_after_restart() -> dict:
    """Single-process mode: work left running by a previous process is dead; queued work resumes."""
    return sweep()


def stalled_operations() -> int:
    """Operations queued for over a minute while no worker started, finished or reported on anything."""
    cutoff = utcnow() - STALL_AFTER
    waiting = db.session.scalar(
        select(func.count(Operation.id)).where(Operation.status == "queued", Operation.created_at < cutoff)
    ) or 0
    if not waiting:
        return 0
    # Starting, heartbeating and finishing all touch updated_at (indexed), so one range scan of the
    # last minute tells whether any worker did anything; queued rows are new requests, not work.
    recent = db.session.scalar(
        select(Operation.id).where(Operation.updated_at >= cutoff, Operation.status != "queued").limit(1)
    )
    return 0 if recent is not None else waiting
