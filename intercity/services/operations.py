"""Registering work for a server: an Operation row, committed with the change, enqueued after commit."""
from __future__ import annotations

from sqlalchemy import select

from intercity import jobs
from intercity.audit import capture
from intercity.audit.actor import Actor, current_actor
from intercity.extensions import db
from intercity.jobs import kinds
from intercity.models import App, Operation, Server
from intercity.models.operation import FINAL, PENDING
from intercity.services.permissions import require
from intercity.validation import ValidationError


def _requester(user) -> Actor:
    """The person the work is done for: the given user, else whoever is acting now."""
    return Actor.for_user(user) if user is not None else current_actor()


def request_operation(kind: str, *, server, app=None, payload: dict | None = None, requested_by=None,
                      retry_of: Operation | None = None, applies=()) -> Operation:
    """Queue `kind` for a server (and app). The caller commits; the job is enqueued after that commit.

    `applies` names the rows whose change (made in this transaction) the operation brings to the
    server: their audit entries point at it. Payloads name what to apply (keys, hostnames, key
    names), never secret values: the job reads the current desired state when it runs.
    """
    declared = kinds.get(kind)
    if declared.app_level and app is None:
        raise ValueError(f"{kind} needs an app")
    who = _requester(requested_by)
    if app is not None and app.id is None:
        db.session.flush()  # the app's id is the operation's scope
    op = Operation(
        kind=kind,
        category=declared.category,
        server_id=server.id,
        server_name=server.name,
        app_id=app.id if app is not None else None,
        app_name=app.name if app is not None else None,
        scope=Operation.scope_for(server.id, app.id if app is not None else None),
        payload=dict(payload or {}),
        requested_by_id=who.user_id,
        requested_by_email=who.email,
        requested_by_role=who.role,
        retry_of_id=retry_of.id if retry_of is not None else None,
        status="queued",
    )
    db.session.add(op)
    db.session.flush()
    if applies:
        capture.applied_by(db.session, op.id, applies)
    jobs.enqueue_after_commit(db.session, op)
    return op


def role_for(kind: str) -> str:
    """The role a person needs to request (or retry) an operation of this kind."""
    return kinds.get(kind).role


def waiting_for(operation: Operation) -> str | None:
    """Why a queued operation has not started: an earlier command of its scope may still be running."""
    if operation.status != "queued":
        return None
    from intercity.jobs import deadlines

    blocker = deadlines.blocking(operation.scope)
    return deadlines.waiting_sentence(blocker) if blocker is not None and blocker.id != operation.id else None


def retry_of(operation: Operation) -> Operation | None:
    """The newest retry of an operation, if someone asked for one."""
    return db.session.scalar(select(Operation).where(Operation.retry_of_id == operation.id)
                             .order_by(Operation.id.desc()).limit(1))


def retry(operation: Operation, user) -> Operation:
    """Ask again for what a failed operation should have done: a new operation, same kind and payload.

    The job reads the desired state when it runs, so the retry applies today's values, not
    the ones of the failed attempt. The audit capture records it as `operation.retry_requested`.
    """
    require(user, role_for(operation.kind))
    if operation.status != "failed":
        raise ValidationError("Only a failed operation can be retried.", None)
    pending_retry = db.session.scalar(
        select(Operation.id).where(Operation.retry_of_id == operation.id, Operation.status.in_(PENDING)))
    if pending_retry is not None:
        raise ValidationError("A retry of this operation is already on its way.", None)
    server = db.session.get(Server, operation.server_id) if operation.server_id is not None else None
    if server is None:
        raise ValidationError(f"The server {operation.server_name} is no longer in the panel.", None)
    app = None
    if operation.app_id is not None:
        app = db.session.get(App, operation.app_id)
        if app is None:
            raise ValidationError(f"The app {operation.app_name} is no longer in the panel.", None)
        if operation.kind_info.removes_app:
            app.status = "destroying"
    return request_operation(operation.kind, server=server, app=app, payload=operation.data,
                             requested_by=user, retry_of=operation,
                             applies=[app] if app is not None and operation.kind_info.removes_app else ())


def region_operations(region: str, *, server_id: int | None = None, app_id: int | None = None,
                      max_pending: int = 5) -> list[Operation]:
    """What a page region shows: its pending operations and the latest finished one, newest first."""
    query = select(Operation).where(Operation.kind.in_(kinds.in_region(region)))
    if app_id is not None:
        query = query.where(Operation.app_id == app_id)
    else:
        query = query.where(Operation.server_id == server_id, Operation.app_id.is_(None))
    pending = list(db.session.scalars(query.where(Operation.status.in_(PENDING))
                                      .order_by(Operation.id.desc()).limit(max_pending)))
    last = db.session.scalar(query.where(Operation.status.in_(FINAL)).order_by(Operation.id.desc()).limit(1))
    ops = pending + ([last] if last is not None else [])
    return sorted(ops, key=lambda op: op.id, reverse=True)
