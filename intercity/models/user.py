"""People who use the panel, their roles and password hashes."""
from __future__ import annotations

from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask_login import UserMixin
from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from intercity.audit.rules import AuditRule, Scope
from intercity.extensions import db
from intercity.models.base import UTCDateTime, audited, utcnow

ROLES = ("admin", "member", "viewer")
_hasher = PasswordHasher()
# Verifying against this keeps "unknown email" as slow as "wrong password".
_DUMMY_HASH = _hasher.hash("intercity-dummy-password")


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __audit__ = AuditRule(
        name="user",
        category="security",
        label=lambda u: u.email,
        scope=lambda u: Scope(),
        secret=frozenset({"password_hash"}),
        ignore=frozenset({"created_at", "updated_at", "last_login_at"}),
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

    @staticmethod
    def normalise_email(email: str) -> str:
        return (email or "").strip().lower()

    def set_password(self, password: str) -> None:
        self.password_hash = _hasher.hash(password)

    def check_password(self, password: str) -> bool:
        try:
            return _hasher.verify(self.password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    @staticmethod
    def burn_password_check(password: str) -> None:
        try:
            _hasher.verify(_DUMMY_HASH, password + "x")
        except VerificationError:
            pass

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return bool(self.active)

    def can(self, need: str) -> bool:
        """Whether this user's role reaches `need` (viewer < member < admin)."""
        return ROLES.index(self.role) <= ROLES.index(need)

    def __repr__(self) -> str:
        return f"<User {self.email} {self.role}>"
