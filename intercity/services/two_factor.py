"""Two-factor login with TOTP: enrolment, checking codes once each, recovery codes, turning off and resets."""
from __future__ import annotations

import hmac
import secrets

import pyotp
import segno
from sqlalchemy import select

from intercity import clock, crypto
from intercity.audit.capture import record_event
from intercity.extensions import db
from intercity.models import PanelSetting, RecoveryCode, User
from intercity.models.base import utcnow
from intercity.notify.outbox import send_mail
from intercity.services import permissions, sessions, users
from intercity.validation import ValidationError

ISSUER = "Intercity"
RECOVERY_CODES = 10
# Codes of the step before and after the current one are accepted too: phones' clocks drift.
DRIFT_STEPS = 1
REQUIRED_KEY = "require_2fa"
# Recovery codes: 10 characters of an alphabet without look-alikes (about 50 bits), shown as xxxxx-xxxxx.
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def _totp(user: User) -> pyotp.TOTP:
    return pyotp.TOTP(crypto.decrypt(user.totp_secret_encrypted))


# Enrolment -----------------------------------------------------------------------------------------------

def begin_enrolment(user: User) -> None:
    """Give a user without 2FA a new secret to enrol with (kept until confirmed or replaced)."""
    if user.two_factor_enabled:
        raise ValidationError("Two-factor login is already on.", None)
    if user.totp_secret_encrypted is None:
        user.totp_secret_encrypted = crypto.encrypt(pyotp.random_base32())


def enrolment(user: User) -> dict:
    """What the enrolment page shows: the QR code as an SVG data URI, and the secret for typing in by hand."""
    secret = crypto.decrypt(user.totp_secret_encrypted)
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    grouped = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    return {"qr": segno.make(uri, error="m").svg_data_uri(scale=5, border=2), "secret": grouped}


def confirm_enrolment(user: User, code: str) -> list[str]:
    """Turn 2FA on once the phone shows a right code; returns the new recovery codes (shown once)."""
    if user.two_factor_enabled or user.totp_secret_encrypted is None:
        raise ValidationError("Start the set-up again: this page is out of date.", "code")
    if not _accept_totp(user, code):
        raise ValidationError("That code is not right. Check the phone's clock and type the code it shows now.",
                              "code")
    user.totp_enabled_at = utcnow()
    return _new_recovery_codes(user)


def _new_recovery_codes(user: User) -> list[str]:
    for row in db.session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)):
        db.session.delete(row)
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
        db.session.add(RecoveryCode(user_id=user.id, code_hash=crypto.code_hash(raw)))
    return codes


def regenerate_recovery_codes(user: User, password: str, code: str) -> list[str]:
    """New recovery codes for the old ones (which stop working); needs the password and a code."""
    _check_password_and_code(user, password, code)
    record_event(db.session, "user.recovery_codes_regenerated", target_type="user", target_id=user.id,
                 target_label=user.email)
    return _new_recovery_codes(user)


def recovery_codes_left(user: User) -> int:
    return len(db.session.scalars(select(RecoveryCode.id).where(RecoveryCode.user_id == user.id,
                                                                RecoveryCode.used_at.is_(None))).all())


# Checking codes ------------------------------------------------------------------------------------------

def _compact(code: str) -> str:
    # People paste codes with spaces ("123 456"); those never matter.
    return "".join((code or "").split())


def _accept_totp(user: User, code: str) -> bool:
    """Whether `code` is the phone's code now (or a step either side) and newer than the last one accepted."""
    code = _compact(code)
    if len(code) != 6 or not code.isdigit():
        return False
    totp, now = _totp(user), clock.now()
    current = totp.timecode(now)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if user.totp_last_step is not None and step <= user.totp_last_step:
            continue  # a code once accepted stays used, and so do the ones before it
        if hmac.compare_digest(totp.generate_otp(step), code):
            user.totp_last_step = step
            return True
    return False


def _accept_recovery(user: User, code: str) -> bool:
    raw = "".join(_compact(code).lower().split("-"))
    if len(raw) != 10:
        return False
    row = db.session.scalar(select(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                                       RecoveryCode.code_hash == crypto.code_hash(raw),
                                                       RecoveryCode.used_at.is_(None)))
    if row is None:
        return False
    row.used_at = utcnow()
    db.session.flush()  # so the count below leaves this one out
    record_event(db.session, "user.recovery_code_used", target_type="user", target_id=user.id,
                 target_label=user.email, diff={"left": [None, recovery_codes_left(user)]})
    return True


def check_code(user: User, code: str, *, recovery: bool = True) -> bool:
    """A login's second step: a TOTP code, or (when allowed) an unused recovery code, which is then used up."""
    if not user.two_factor_enabled:
        return False
    if _accept_totp(user, code):
        return True
    return recovery and _accept_recovery(user, code)


def code_failed(user: User) -> None:
    """A wrong code after a right password: an entry, and it counts with failed logins towards the alert."""
    users.count_failure(user)
    record_event(db.session, "user.2fa_failed", target_type="user", target_id=user.id, target_label=user.email)


def _check_password_and_code(user: User, password: str, code: str) -> None:
    if not user.check_password(password or ""):
        raise ValidationError("This is not your current password.", "password")
    if not check_code(user, code):
        raise ValidationError("That code is not right (or was already used).", "code")


# Turning off and resets ----------------------------------------------------------------------------------

def _clear(user: User) -> None:
    user.totp_secret_encrypted, user.totp_enabled_at, user.totp_last_step = None, None, None
    for row in db.session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)):
        db.session.delete(row)


def disable(user: User, password: str, code: str) -> None:
    """Turn one's own 2FA off: needs the password and a code (or a recovery code)."""
    if not user.two_factor_enabled:
        raise ValidationError("Two-factor login is not on.", None)
    if required():
        raise ValidationError("An admin requires two-factor login for everyone, so it stays on.", "code")
    _check_password_and_code(user, password, code)
    _clear(user)


def reset(target: User, actor: User | None) -> None:
    """An admin (or the CLI, with actor None) turns off another person's 2FA after they lost their phone."""
    if actor is not None:
        permissions.require(actor, "admin")
        if actor.id == target.id:
            raise ValidationError("Turn your own two-factor login off on your account page.", None)
    if not target.two_factor_enabled:
        raise ValidationError(f"{target.email} has no two-factor login to reset.", None)
    target.two_factor_reset = True
    _clear(target)
    # Whoever holds the old phone or codes could have logged in: those sessions end too.
    sessions.end_all(target, "2fa_reset")
    by = actor.email if actor is not None else "the server's command line"
    send_mail(target.email, "Your Intercity two-factor login was reset",
              f"Two-factor login on your Intercity account {target.email} was turned off by {by}.\n\n"
              "Log in with your password and set it up again from your account page. If you did not ask for "
              "this, tell an admin at once.", user_id=target.id)


# Required for everyone -----------------------------------------------------------------------------------

def required() -> bool:
    row = db.session.get(PanelSetting, REQUIRED_KEY)
    return row is not None and row.value == "on"


def set_required(actor: User, on: bool) -> bool:
    """Require 2FA of everyone (or stop); returns whether the setting changed (a `settings.changed` entry)."""
    permissions.require(actor, "admin")
    if on and not actor.two_factor_enabled:
        raise ValidationError("Set up your own two-factor login first (on your account page).", "required")
    value = "on" if on else "off"
    row = db.session.get(PanelSetting, REQUIRED_KEY)
    if row is None:
        if not on:
            return False
        db.session.add(PanelSetting(key=REQUIRED_KEY, value=value))
        return True
    if row.value == value:
        return False
    row.value = value
    return True


def must_enrol(user: User) -> bool:
    return not user.two_factor_enabled and required()


def users_without() -> list[str]:
    """The active people who have not set up 2FA, by address."""
    return list(db.session.scalars(select(User.email).where(User.active.is_(True), User.totp_enabled_at.is_(None))
                                   .order_by(User.email)))
