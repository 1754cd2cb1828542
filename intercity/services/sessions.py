"""Login sessions the server knows: started at login, touched at most once a minute, ended on the server."""
from __future__ import annotations

import secrets
from datetime import timedelta

from flask import current_app, has_request_context, request
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from intercity.extensions import db
from intercity.models import User, UserSession
from intercity.models.account import token_hash
from intercity.models.base import utcnow

# Writing last-seen on every request would make every page a write; once a minute is enough to show.
TOUCH_EVERY = timedelta(minutes=1)


def start(user: User, *, remember: bool = False) -> UserSession:
    """A new session for `user` (the caller commits); `user.get_id()` now returns its token."""
    token = secrets.token_urlsafe(32)
    row = UserSession(user_id=user.id, token_hash=token_hash(token), remember=remember, last_seen_at=utcnow())
    if has_request_context():
        row.ip = request.remote_addr
        row.user_agent = (request.user_agent.string or "")[:512] or None
    db.session.add(row)
    db.session.flush()
    user.session_token, user.current_session = token, row
    return row


def lookup(token: str | None) -> UserSession | None:
    """The open session a cookie's token names, with an active user, or None."""
    if not token:
        return None
    # The user in the same query: every request asks for both.
    row = db.session.scalar(select(UserSession).where(UserSession.token_hash == token_hash(token))
                            .options(joinedload(UserSession.user)))
    if row is None or row.ended_at is not None or not row.user.active:
        return None
    # A session lasts as long as its cookie may: the session lifetime, or the remember cookie's days.
    lifetime = current_app.config["REMEMBER_COOKIE_DURATION" if row.remember else "PERMANENT_SESSION_LIFETIME"]
    if utcnow() - row.created_at > lifetime:
        return None
    return row


def current(user) -> UserSession | None:
    token = getattr(user, "session_token", None)
    return db.session.scalar(select(UserSession).where(UserSession.token_hash == token_hash(token))) if token else None


def touch(row: UserSession) -> bool:
    """Note that the session was used; True when that wrote (the caller commits)."""
    now = utcnow()
    if now - row.last_seen_at < TOUCH_EVERY:
        return False
    row.last_seen_at = now
    return True


def end(row: UserSession, reason: str) -> None:
    if row.ended_at is None:
        row.ended_at = utcnow()
        row.ended_reason = reason


def end_all(user: User, reason: str, *, keep: UserSession | None = None) -> int:
    """End every open session of `user` but `keep`; how many ended."""
    rows = db.session.scalars(select(UserSession).where(UserSession.user_id == user.id,
                                                        UserSession.ended_at.is_(None))).all()
    count = 0
    for row in rows:
        if keep is not None and row.id == keep.id:
            continue
        end(row, reason)
        count += 1
    return count


def active(user: User) -> list[UserSession]:
    return list(db.session.scalars(select(UserSession).where(UserSession.user_id == user.id,
                                                             UserSession.ended_at.is_(None))
                                   .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())))
