"""Signed, expiring unsubscribe tokens: they name a person and work without logging in."""
from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SALT = "intercity-digest-unsubscribe"
MAX_AGE = 60 * 60 * 24 * 30  # a digest's link works for 30 days


class TokenError(ValueError):
    """The link is forged, expired, or names someone who is gone or changed their address."""


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def unsubscribe_token(user) -> str:
    return _serializer().dumps({"u": user.id, "e": user.email})


def user_for(token: str):
    """The active user a token names, or TokenError saying why not."""
    from intercity.extensions import db
    from intercity.models import User

    try:
        data = _serializer().loads(token, max_age=int(current_app.config.get("UNSUBSCRIBE_MAX_AGE", MAX_AGE)))
    except SignatureExpired:
        raise TokenError("This unsubscribe link has expired. Use the link in a newer digest, or change your "
                         "notifications on your account page.") from None
    except BadSignature:
        raise TokenError("This unsubscribe link is not valid. Copy the whole link from the digest.") from None
    user = db.session.get(User, data.get("u")) if isinstance(data, dict) else None
    if user is None or not user.active or user.email != data.get("e"):
        raise TokenError("This unsubscribe link is for an account that no longer exists or has another address.")
    return user
