"""Team members: creating them, checking passwords, logging in and out, and alerts on repeated failures."""
from __future__ import annotations

from datetime import timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select, text

from intercity import database
from intercity.audit.actor import Actor
from intercity.audit.capture import record_event
from intercity.extensions import db
from intercity.models import ROLES, User
from intercity.models.base import utcnow
from intercity.services import passwords
from intercity.validation import ValidationError

MIN_PASSWORD = passwords.MIN_LENGTH
# The failed-login window: the 5th failure in it alerts once, then at most once per window.
FAILURE_WINDOW = timedelta(minutes=15)
FAILURES_TO_ALERT = 5
# What a failed login says about an address that belongs to no account: nothing of what was typed
# (it may be a password typed into the wrong field).
UNKNOWN_ADDRESS = "an unknown address"


def check_email(email: str, field: str = "email") -> str:
    email = User.normalise_email(email)
    if not email:
        raise ValidationError("Enter an email address.", field)
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValidationError(f"{email} is not a valid email address: {error}", field) from None
    return email


def check_password(password: str, field: str = "password") -> str:
    return passwords.check(password, field)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationError(f"Role must be one of {', '.join(ROLES)}.", "role")
    return role


def email_taken(email: str) -> bool:
    return db.session.scalar(select(User.id).where(User.email == email)) is not None


def create_user(email: str, password: str, role: str = "member") -> User:
    """Add a user (the caller commits); the audit capture records `user.created`."""
    email = check_email(email)
    check_password(password)
    check_role(role)
    if email_taken(email):
        raise ValidationError(f"{email} already has an account.", "email")
    user = User(email=email, role=role, active=True)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    return user


def lock_writes() -> None:
    """Serialise this transaction with other writers before reading what it will decide on.

    SQLite: BEGIN IMMEDIATE now, so a check-then-insert cannot interleave with another one.
    PostgreSQL callers lock the rows they decide on (FOR UPDATE) or an advisory lock.
    """
    database.begin_writing(db.session.connection())


def create_first_admin(email: str, password: str) -> User | None:
    """The /setup form: create the first admin, or None when someone already did."""
    if db.engine.dialect.name == "postgresql":
        # Two setup forms submitted at once must not both create an admin.
        db.session.execute(text("SELECT pg_advisory_xact_lock(7270002)"))
    else:
        lock_writes()
    if db.session.scalar(select(User.id).limit(1)) is not None:
        return None
    return create_user(email, password, "admin")


def find_by_email(email: str) -> User | None:
    email = User.normalise_email(email)
    return db.session.scalar(select(User).where(User.email == email)) if email else None


def authenticate(email: str, password: str) -> User | None:
    """The user these credentials belong to, or None; failures are audited, never explained."""
    user = find_by_email(email)
    if user is None:
        User.burn_password_check(password or "")
    elif user.active and user.check_password(password or ""):
        if not user.two_factor_enabled:  # with 2FA the count is cleared by the right code
            user.failed_logins, user.failed_logins_since = 0, None
        return user
    login_failed(user)
    return None


def logged_in(user: User) -> None:
    """A login (by password, on first setup, or on accepting an invitation): an entry, and the time."""
    user.last_login_at = utcnow()
    record_event(db.session, "user.login", target_type="user", target_id=user.id, target_label=user.email,
                 actor=Actor.for_user(user))


def login_failed(user: User | None) -> None:
    """One failed login: an entry naming the account if there is one, and an alert on the 5th in 15 minutes."""
    if user is None:
        record_event(db.session, "user.login_failed", target_type="user", target_label=UNKNOWN_ADDRESS)
        return
    record_event(db.session, "user.login_failed", target_type="user", target_id=user.id, target_label=user.email)
    count_failure(user)


def count_failure(user: User) -> None:
    """Count a failed password or code in the user's window; the 5th in 15 minutes alerts (once per window)."""
    now = utcnow()
    if user.failed_logins_since is None or now - user.failed_logins_since > FAILURE_WINDOW:
        user.failed_logins, user.failed_logins_since = 0, now
    user.failed_logins = (user.failed_logins or 0) + 1
    recently_alerted = user.failures_alerted_at is not None and now - user.failures_alerted_at < FAILURE_WINDOW
    if user.failed_logins >= FAILURES_TO_ALERT and not recently_alerted:
        user.failures_alerted_at = now
        record_event(db.session, "user.login_failures_repeated", target_type="user", target_id=user.id,
                     target_label=user.email, diff={"failures": [None, user.failed_logins],
                                                    "minutes": [None, int(FAILURE_WINDOW.total_seconds() // 60)]})


def logged_out(user: User) -> None:
    record_event(db.session, "user.logout", target_type="user", target_id=user.id, target_label=user.email,
                 actor=Actor.for_user(user))
