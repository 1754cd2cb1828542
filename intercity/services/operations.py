"""Registering work for a server: an Operation row, committed with the change, enqueued after commit."""
from __future__ import annotations

import json

from intercity.audit.actor import Actor, current_actor
from intercity.extensions import db
from intercity.models import Operation
from intercity.models.operation import KINDS


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
