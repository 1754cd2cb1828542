"""Logging a test client in without the password form: a real server-known session, as a login makes."""
from __future__ import annotations

from intercity.extensions import db


def log_in(client, user, remember: bool = False) -> str:
    """Give `client` the session cookie of a new session of `user`; returns the session's token."""
    from intercity.services import sessions

    sessions.start(user, remember=remember)
    db.session.commit()
    with client.session_transaction() as session:
        session["_user_id"] = user.session_token
        session["_fresh"] = True
    return user.session_token


def client_for(app, user=None):
    """A browser of its own on `app`, logged in as `user` when one is given."""
    client = app.test_client()
    if user is not None:
        log_in(client, user)
    return client
