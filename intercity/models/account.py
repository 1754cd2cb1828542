"""Login sessions the server knows and invitations to join the team."""
from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from intercity.audit.rules import AuditRule, Scope
from intercity.extensions import db
from intercity.models.base import NEVER_REUSE_IDS, UTCDateTime, audited, utcnow


def token_hash(token: str) -> str:
    """Tokens are stored hashed: a copy of the database opens no session and accepts no invitation."""
    return hashlib.sha256(token.encode()).hexdigest()


_BROWSERS = (("Firefox", "Firefox"), ("Edg", "Edge"), ("Chrome", "Chrome"), ("Safari", "Safari"), ("curl", "curl"))
# iPhone before Mac OS X and Android before Linux: their agents name both.
_SYSTEMS = (("Windows", "Windows"), ("iPhone", "iPhone"), ("Mac OS X", "macOS"), ("Android", "Android"),
            ("Linux", "Linux"))


class UserSession(db.Model):
    """One login: both cookies name it, and ending it here logs out every copy of them (not audited)."""

    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_user_ended", "user_id", "ended_at"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_reason: Mapped[str | None] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    remember: Mapped[bool] = mapped_column(Boolean, default=False)

    user = relationship("User")

    @property
    def device(self) -> str:
        """A person's words for the browser and system this session runs on ("Firefox on Linux")."""
        agent = self.user_agent or ""
        # Order matters: Edge's agent also names Chrome and Safari, Chrome's names Safari.
        browser = next((label for needle, label in _BROWSERS if needle in agent), agent[:40] or "Unknown browser")
        system = next((label for needle, label in _SYSTEMS if needle in agent), None)
        return f"{browser} on {system}" if system else browser


def _classify_invitation(invitation: "Invitation", verb: str, diff: dict):
    if verb == "created":
        return "user.invited", "security"
    if verb == "updated" and "revoked_at" in diff:
        return "invitation.revoked", "security"
    if verb == "updated" and "accepted_at" in diff:
        return "invitation.accepted", "team"
    return None


class Invitation(db.Model):
    """An admin's invitation: a link mailed to `email`, good once, for 72 hours."""

    __tablename__ = "invitations"
    __table_args__ = (Index("ix_invitations_email", "email"), NEVER_REUSE_IDS)
    __audit__ = AuditRule(
        name="invitation",
        category="security",
        label=lambda i: i.email,
        scope=lambda i: Scope(),
        secret=frozenset({"token_hash"}),
        ignore=frozenset({"created_at", "invited_by_id", "invited_by_email"}),
        classify=_classify_invitation,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = audited(String(254))
    role: Mapped[str] = audited(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_id: Mapped[int | None] = mapped_column(Integer)
    invited_by_email: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = audited(UTCDateTime)
    accepted_at: Mapped[datetime | None] = audited(UTCDateTime)
    revoked_at: Mapped[datetime | None] = audited(UTCDateTime)

    @property
    def state(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= utcnow():
            return "expired"
        return "pending"


class RecoveryCode(db.Model):
    """One of a user's one-time codes for logging in without the phone, stored as a keyed hash (not audited)."""

    __tablename__ = "recovery_codes"
    __table_args__ = (Index("ix_recovery_codes_user_id", "user_id"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
