"""Signed, expiring unsubscribe tokens: they name a person and work without logging in."""
from __future__ import annotations

from flask import current_app
from itsdangerous import URLSafeTimedSerializer

from intercity import signed_links

SALT = "intercity-digest-unsubscribe"
MAX_AGE = 60 * 60 * 24 * 30  # a digest's link works for 30 days


class TokenError(ValueError):
    """The link is forged, expired, or names someone who is gone or changed their address."""


def _serializer() -> URLSafeTimedSerializer:
    return signed_links.serializer(SALT)


def unsubscribe_token(user) -> str:
    return _serializer().dumps({"u": user.id, "e": user.email})


def user_for(token: str):
    """The active user a token names, or TokenError saying why not."""
    try:
        user, _ = signed_links.load_user(
            token, salt=SALT, max_age=int(current_app.config.get("UNSUBSCRIBE_MAX_AGE", MAX_AGE)), user_key="u",
            still_applies=lambda user, data: user.email == data.get("e"),
            expired="This unsubscribe link has expired. Use the link in a newer digest, or change your "
                    "notifications on your account page.",
            invalid="This unsubscribe link is not valid. Copy the whole link from the digest.",
            gone="This unsubscribe link is for an account that no longer exists or has another address.")
    except signed_links.LinkRefused as refused:
        raise TokenError(refused.message) from None
    return user
