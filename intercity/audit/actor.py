"""Who is acting right now: the logged-in person, or a system actor and the person it acts for."""
from __future__ import annotations

import getpass
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from flask import g, has_request_context, request


@dataclass(frozen=True)
class Actor:
    kind: str  # user, worker, scheduler, cli, system, anonymous
    user_id: int | None = None
    email: str | None = None
    role: str | None = None
    os_user: str | None = None

    @classmethod
    def for_user(cls, user, kind: str = "user", os_user: str | None = None) -> "Actor":
        if user is None:
            return cls(kind, os_user=os_user)
        return cls(kind, user.id, user.email, user.role, os_user)

    @classmethod
    def system(cls, kind: str = "system", on_behalf_of=None) -> "Actor":
        return cls.for_user(on_behalf_of, kind=kind, os_user=_os_user())

    def on_behalf(self, kind: str) -> "Actor":
        """The same person, acted for by a system actor (e.g. the worker running their operation)."""
        return Actor(kind, self.user_id, self.email, self.role, _os_user() if kind == "cli" else None)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


_current: ContextVar[Actor | None] = ContextVar("intercity_actor", default=None)


@contextmanager
def acting_as(actor: Actor):
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)


def current_actor() -> Actor:
    actor = _current.get()
    if actor is not None:
        return actor
    if has_request_context():
        from flask_login import current_user

        if current_user and current_user.is_authenticated:
            return Actor.for_user(current_user)
        return Actor("anonymous")
    return Actor("system", os_user=_os_user())


def request_meta() -> dict:
    """IP, user agent and request id of the current request (empty outside one)."""
    if not has_request_context():
        return {"request_ip": None, "request_user_agent": None, "request_id": None}
    if "request_id" not in g:
        g.request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
    return {
        "request_ip": request.remote_addr,
        "request_user_agent": (request.user_agent.string or "")[:512] or None,
        "request_id": g.request_id,
    }
