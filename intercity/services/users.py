"""Team members: creating them, checking passwords, logging in and out."""
from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select, text

from intercity.audit.actor import Actor
from intercity.audit.capture import record_event
from intercity.extensions import db
from intercity.models import ROLES, User
from intercity.models.base import utcnow
from intercity.validation import ValidationError

MIN_PASSWORD = 10


def check_email(email: str) -> str:
    email = User.normalise_email(email)
    if not email:
        raise ValidationError("Enter an email address.", "email")
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValidationError(f"{email} is not a valid email address: {error}", "email") from None
    return email


def check_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise ValidationError(f"Use a password of at least {MIN_PASSWORD} characters.", "password")
    return password


def create_user(email: str, password: str, role: str = "member") -> User:
    """Add a user (the caller commits); the audit capture records `user.created`."""
    email = check_email(email)
    check_password(password)
    if role not in ROLES:
        raise ValidationError(f"Role must be one of {', '.join(ROLES)}.", "role")
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        raise ValidationError(f"{email} already has an account.", "email")
    user = User(email=email, role=role, active=True)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    return user


def create_first_admin(email: str, password: str) -> User | None:
    """The /setup form: create the first admin, or None when someone already did."""
    if db.engine.dialect.name == "postgresql":
        # Two setup forms submitted at once must not both create an admin.
        db.session.execute(text("SELECT pg_advisory_xact_lock(7270002)"))
    if db.session.scalar(select(User.id).limit(1)) is not None:
        return None
    return create_user(email, password, "admin")


def authenticate(email: str, password: str) -> User | None:
    """The user these credentials belong to, or None; failures are audited, never explained."""
    email = User.normalise_email(email)
    user = db.session.scalar(select(User).where(User.email == email)) if email else None
    if user is None:
        User.burn_password_check(password or "")
    elif user.active and user.check_password(password or ""):
        user.last_login_at = utcnow()
        record_event(db.session, "user.login", target_type="user", target_id=user.id, target_label=user.email,
                     actor=Actor.for_user(user))
        return user
    record_event(db.session, "user.login_failed", target_type="user",
                 target_id=user.id if user else None, target_label=email[:254] or "(empty)")
    return None


def logged_out(user: User) -> None:
    record_event(db.session, "user.logout", target_type="user", target_id=user.id, target_label=user.email,
                 actor=Actor.for_user(user))
