"""A person's own account: password, email (confirmed by a link to the new address), sessions, activity."""
from __future__ import annotations

from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import or_, select

from intercity import signed_links
from intercity.extensions import db
from intercity.models import AuditEntry, User, UserSession
from intercity.notify.outbox import send_mail
from intercity.services import sessions, users
from intercity.services.team import link
from intercity.validation import ValidationError

# How long a link to confirm a new email address works.
EMAIL_LINK_HOURS = 24


def change_password(user: User, current: str, new: str) -> int:
    """Set a new password; every other session of the user ends. Returns how many ended."""
    if not user.check_password(current or ""):
        raise ValidationError("This is not your current password.", "current_password")
    users.check_password(new, "new_password")
    if user.check_password(new):
        raise ValidationError("The new password is the one you have now.", "new_password")
    user.set_password(new)
    return sessions.end_all(user, "password_changed", keep=user.current_session)


EMAIL_CHANGE_SALT = "intercity-email-change"


def _serializer() -> URLSafeTimedSerializer:
    return signed_links.serializer(EMAIL_CHANGE_SALT)


def request_email_change(user: User, current: str, new_email: str) -> str:
    """Mail a confirmation link to the new address and tell the old one; nothing changes until it is followed."""
    if not user.check_password(current or ""):
        raise ValidationError("This is not your current password.", "email_password")
    new_email = users.check_email(new_email, "new_email")
    if new_email == user.email:
        raise ValidationError("This is already your address.", "new_email")
    if users.email_taken(new_email):
        raise ValidationError(f"{new_email} already has an account.", "new_email")
    # The token names the address it changes from, so it works once: afterwards that address is gone.
    token = _serializer().dumps({"user": user.id, "from": user.email, "to": new_email})
    send_mail(new_email, "Confirm your new Intercity address",
              f"Someone (we hope you) asked to use this address for the Intercity account {user.email}.\n\n"
              f"Confirm it within {EMAIL_LINK_HOURS} hours:\n{link('account.confirm_email', token=token)}\n\n"
              "If this was not you, ignore this message: nothing changes.")
    send_mail(user.email, "Your Intercity address is about to change",
              f"A change of your Intercity account's address to {new_email} was asked for. It takes effect when "
              "the link sent to that address is followed.\n\nIf this was not you, change your password now and "
              "tell an admin.")
    return new_email


def pending_email_change(token: str) -> tuple[User, str]:
    """The user and new address a confirmation link names, or a ValidationError saying why it cannot be used."""
    try:
        user, data = signed_links.load_user(
            token, salt=EMAIL_CHANGE_SALT, max_age=EMAIL_LINK_HOURS * 3600, user_key="user",
            still_applies=lambda user, data: user.email == data.get("from"),
            expired=f"This link has expired (links work for {EMAIL_LINK_HOURS} hours). "
                    "Ask for the change again from your account page.",
            invalid="This link is not valid.", gone="This link was already used or no longer applies.")
    except signed_links.LinkRefused as refused:
        raise ValidationError(refused.message, None) from None
    return user, data["to"]


def confirm_email_change(token: str) -> User:
    users.lock_writes()
    user, new_email = pending_email_change(token)
    if users.email_taken(new_email):
        raise ValidationError(f"{new_email} already has an account.", None)
    old = user.email
    user.email = new_email
    send_mail(old, "Your Intercity address was changed",
              f"Your Intercity account now uses {new_email}. If this was not you, tell an admin at once.")
    return user


def end_session(user: User, session_id: int) -> UserSession | None:
    row = db.session.get(UserSession, session_id)
    if row is None or row.user_id != user.id or row.ended_at is not None:
        return None
    sessions.end(row, "ended_by_user")
    from intercity.audit.capture import record_event

    record_event(db.session, "user.session_ended", target_type="user", target_id=user.id, target_label=user.email,
                 diff={"device": [None, row.device], "ip": [None, row.ip]})
    return row


def recent_activity(user: User, limit: int = 20) -> list[AuditEntry]:
    """What this person did, and what was done to their account, newest first."""
    query = (select(AuditEntry)
             .where(or_(AuditEntry.actor_user_id == user.id,
                        (AuditEntry.target_type == "user") & (AuditEntry.target_id == str(user.id))))
             .order_by(AuditEntry.seq.desc()).limit(limit))
    return list(db.session.scalars(query))
