"""Resetting a forgotten password by mail: a signed link that works for an hour, once, and never tells who has an account."""
from __future__ import annotations

import hashlib

from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from intercity import clock, signed_links
from intercity.audit.capture import record_event
from intercity.extensions import db
from intercity.models import User
from intercity.notify.outbox import send_mail
from intercity.services import sessions, two_factor, users
from intercity.services.team import link
from intercity.validation import ValidationError

LINK_HOURS = 1


class _ClockSigner(TimestampSigner):
    # Link ages read the panel's clock, which tests can turn.
    def get_timestamp(self) -> int:
        return int(clock.now())


SALT = "intercity-password-reset"


def _serializer() -> URLSafeTimedSerializer:
    return signed_links.serializer(SALT, _ClockSigner)


def _password_mark(user: User) -> str:
    # The link names the password it replaces, so it stops working once a new one is set: single use.
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def request_reset(email: str) -> None:
    """Mail a reset link when the address has an active account; the caller answers the same either way."""
    user = users.find_by_email(email)
    # Both paths sign a link and write an entry, so the answer takes about as long either way.
    token = _serializer().dumps({"user": getattr(user, "id", 0), "pw": _password_mark(user) if user else ""})
    if user is None or not user.active:
        record_event(db.session, "user.password_reset_requested", target_type="user",
                     target_label=users.UNKNOWN_ADDRESS)
        return
    record_event(db.session, "user.password_reset_requested", target_type="user", target_id=user.id,
                 target_label=user.email)
    send_mail(user.email, "Reset your Intercity password",
              f"Someone (we hope you) asked to reset the password of the Intercity account {user.email}.\n\n"
              f"Choose a new one within {LINK_HOURS} hour:\n{link('auth.reset_password', token=token)}\n\n"
              "The link works once. If this was not you, ignore this message: your password stays as it is.",
              user_id=user.id)


def pending(token: str) -> User:
    """The user a reset link is for, or a ValidationError saying why it cannot be used."""
    try:
        user, _ = signed_links.load_user(
            token, salt=SALT, max_age=LINK_HOURS * 3600, user_key="user", signer=_ClockSigner,
            still_applies=lambda user, data: _password_mark(user) == data.get("pw"),
            expired=f"This link has expired (links work for {LINK_HOURS} hour). Ask for a new one.",
            invalid="This link is not valid.",
            gone="This link was already used or no longer applies. Ask for a new one.")
    except signed_links.LinkRefused as refused:
        raise ValidationError(refused.message, None) from None
    return user


def complete(token: str, new_password: str, code: str = "") -> User:
    """Set the new password (with 2FA on, only with a code or recovery code); every session of the user ends."""
    users.lock_writes()
    user = pending(token)
    users.check_password(new_password, "password")
    if user.two_factor_enabled and not two_factor.check_code(user, code):
        # Rolled back with the rest; the view's throttle counts these failures.
        raise ValidationError("That code is not right (or was already used).", "code")
    user.password_reset = True
    user.set_password(new_password)
    user.failed_logins, user.failed_logins_since = 0, None
    sessions.end_all(user, "password_reset")
    send_mail(user.email, "Your Intercity password was reset",
              f"The password of your Intercity account {user.email} was reset from a link sent to this address, "
              "and every session of the account was ended.\n\nIf this was not you, tell an admin at once.",
              user_id=user.id)
    return user
