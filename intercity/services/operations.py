"""Registering work for a server: an Operation row, committed with the change, enqueued after commit."""
from __future__ import annotations

import json

from sqlalchemy import select

from intercity.audit.actor import Actor, current_actor
from intercity.extensions import db
from intercity.models import App, Operation, Server
from intercity.models.operation import KINDS, PENDING
from intercity.services.permissions import require
from intercity.validation import ValidationError


def _requester(user) -> Actor:
    """The person the work is done for: the given user, else whoever is acting now."""
    return Actor.for_user(user) if user is not None else current_actor()


def request_operation(kind: str, *, server, app=None, payload: dict | None = None, requested_by=None,
                      retry_of: Operation | None = None) -> Operation:
    """Queue `kind` for a server (and app). The caller commits; the job queue picks it up after commit.

    Payloads name what to apply (keys, hostnames, key names), never secret values: the job
    reads the current desired state from the database when it runs.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown operation kind {kind!r}")
    if KINDS[kind].app_level and app is None:
        raise ValueError(f"{kind} needs an app")
    who = _requester(requested_by)
    if app is not None and app.id is None:
        db.session.flush()  # the app's id is the operation's scope
    op = Operation(
        kind=kind,
        category=KINDS[kind].category,
        server_id=server.id,
        server_name=server.name,
        app_id=app.id if app is not None else None,
        app_name=app.name if app is not None else None,
        scope=Operation.scope_for(server.id, app.id if app is not None else None),
        payload=json.dumps(payload or {}, sort_keys=True),
        requested_by_id=who.user_id,
        requested_by_email=who.email,
        requested_by_role=who.role,
        retry_of_id=retry_of.id if retry_of is not None else None,
        status="queued",
    )
    db.session.add(op)
    db.session.flush()
    return op


# Operations on a server's own access and keys are admin work; the rest is members' work.
ADMIN_KINDS = frozenset({"server.check", "deploy_keys.apply", "server.refresh_keys"})


def role_for(kind: str) -> str:
    """The role a person needs to request (or retry) an operation of this kind."""
    return "admin" if kind in ADMIN_KINDS else "member"


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
        if operation.kind == "app.destroy":
            app.status = "destroying"
    return request_operation(operation.kind, server=server, app=app, payload=operation.data,
                             requested_by=user, retry_of=operation)
