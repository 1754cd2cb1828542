"""Signed, expiring links that name a person: one reader that loads such a link or says why it cannot be used."""
from __future__ import annotations

from collections.abc import Callable

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer


class LinkRefused(ValueError):
    """The link is forged, expired, or no longer applies; `message` says which, for people."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def serializer(salt: str, signer: type[TimestampSigner] = TimestampSigner) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt, signer=signer)


def load_user(token: str, *, salt: str, max_age: int, user_key: str, still_applies: Callable[[object, dict], bool],
              expired: str, invalid: str, gone: str, signer: type[TimestampSigner] = TimestampSigner):
    """(the active user the link names, its data), or LinkRefused with `expired`, `invalid` or `gone`.

    `still_applies(user, data)` tells whether what the link was made for still holds (the same
    address, the same password), so that a used or outdated link stops working.
    """
    from intercity.extensions import db
    from intercity.models import User

    try:
        data = serializer(salt, signer).loads(token, max_age=max_age)
    except SignatureExpired:
        raise LinkRefused(expired) from None
    except BadSignature:
        raise LinkRefused(invalid) from None
    user = db.session.get(User, data.get(user_key)) if isinstance(data, dict) else None
    if user is None or not user.active or not still_applies(user, data):
        raise LinkRefused(gone)
    return user, data
