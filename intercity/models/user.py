"""People who use the panel, their roles and password hashes."""
from __future__ import annotations

from datetime import datetime

from argon2 import PasswordHasher
from flask import current_app, has_app_context
from argon2.exceptions import InvalidHashError, VerificationError
from flask_login import UserMixin
from sqlalchemy import BigInteger, Boolean, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from intercity.audit.rules import AuditRule, Scope
from intercity.extensions import db
from intercity.models.base import NEVER_REUSE_IDS, UTCDateTime, audited, utcnow

ROLES = ("admin", "member", "viewer")
_STRONG = PasswordHasher()  # argon2id with the library's RFC 9106 defaults
# Only honoured when TESTING is set: hundreds of tests hash passwords.
_FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
_dummy_hashes: dict[int, str] = {}


def _hasher() -> PasswordHasher:
    config = current_app.config if has_app_context() else {}
    return _FAST if config.get("TESTING") and config.get("FAST_PASSWORD_HASHING") else _STRONG


def _dummy_hash(hasher: PasswordHasher) -> str:
    # Verifying against this keeps "unknown email" as slow as "wrong password".
    if id(hasher) not in _dummy_hashes:
        _dummy_hashes[id(hasher)] = hasher.hash("intercity-dummy-password")
    return _dummy_hashes[id(hasher)]


# Which change of a user is which action, most telling first (roles and access before the rest).
_USER_UPDATES = (
    ("role", "user.role_changed"),
    ("active", None),
    ("password_hash", "user.password_changed"),
    ("email", "user.email_changed"),
)


def _classify_user(user: "User", verb: str, diff: dict):
    # Each action's category is the category table's (intercity.audit.categories).
    if verb in ("created", "deleted"):
        return f"user.{verb}"
    if "totp_enabled_at" in diff and not ({"role", "active"} & diff.keys()):
        if diff["totp_enabled_at"][1] is not None:
            return "user.2fa_enabled"
        # Someone else turning it off (an admin, the CLI) is a reset; the service marks it.
        return "user.2fa_reset" if user.two_factor_reset else "user.2fa_disabled"
    if "password_hash" in diff and user.password_reset and not ({"role", "active"} & diff.keys()):
        return "user.password_reset"
    for field, action in _USER_UPDATES:
        if field in diff:
            if field == "active":
                action = "user.reactivated" if diff["active"][1] else "user.deactivated"
            return action
    return "user.updated"


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (NEVER_REUSE_IDS,)
    __audit__ = AuditRule(
        name="user",
        label=lambda u: u.email,
        scope=lambda u: Scope(),
        secret=frozenset({"password_hash"}),
        ignore=frozenset({"created_at", "updated_at", "last_login_at", "failed_logins", "failed_logins_since",
                          "failures_alerted_at", "totp_secret_encrypted", "totp_last_step"}),
        classify=_classify_user,
        actions=("user.created", "user.deleted", "user.role_changed", "user.reactivated", "user.deactivated",
                 "user.password_changed", "user.email_changed", "user.updated", "user.2fa_enabled",
                 "user.2fa_disabled", "user.2fa_reset", "user.password_reset"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lowercased, so the unique index makes email case-insensitive on both databases.
    email: Mapped[str] = audited(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = audited(String(16), default="member")
    active: Mapped[bool] = audited(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Failed logins in the current 15-minute window, and when the last alert about them was written.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failed_logins_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failures_alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # TOTP: the secret (encrypted like server keys; set while enrolling, before it is enabled), when it was
    # turned on, and the last time step a code was accepted for (an older or equal step is refused).
    totp_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_enabled_at: Mapped[datetime | None] = audited(UTCDateTime)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # The server-known session this object was loaded through (Flask-Login's id is its token).
    session_token = None
    current_session = None
    # Set by the services for this flush only, so the entry names the change for what it was.
    two_factor_reset = False
    password_reset = False

    @property
    def two_factor_enabled(self) -> bool:
        return self.totp_enabled_at is not None

    @staticmethod
    def normalise_email(email: str) -> str:
        return (email or "").strip().lower()

    def set_password(self, password: str) -> None:
        self.password_hash = _hasher().hash(password)

    def check_password(self, password: str) -> bool:
        # argon2 reads its parameters from the hash, so hashes made either way verify.
        try:
            return _STRONG.verify(self.password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    @staticmethod
    def burn_password_check(password: str) -> None:
        hasher = _hasher()
        try:
            hasher.verify(_dummy_hash(hasher), password + "x")
        except VerificationError:
            pass

    def get_id(self) -> str | None:
        # The session and remember cookies carry the server-known session's token, not the user id,
        # so ending that session on the server ends every copy of either cookie.
        return self.session_token

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return bool(self.active)

    def can(self, need: str) -> bool:
        """Whether this user's role reaches `need` (viewer < member < admin)."""
        return ROLES.index(self.role) <= ROLES.index(need)

    def __repr__(self) -> str:
        return f"<User {self.email} {self.role}>"
