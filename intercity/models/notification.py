"""Notifications: each person's preferences and digest watermark, chat targets, and the outbox of messages to send."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from intercity.audit.rules import AuditRule, Scope
from intercity.extensions import db
from intercity.models.base import NEVER_REUSE_IDS, UTCDateTime, audited, utcnow

FREQUENCIES = ("off", "hourly", "daily", "weekly")
DEFAULT_FREQUENCY = "daily"
# What a chat target can receive.
TARGET_FEEDS = ("alerts", "digest", "failures")
# Outbox states: pending (to send, maybe after next_attempt_at), sending (a worker has it), sent, failed (5xx,
# until an admin retries it).
STATUSES = ("pending", "sending", "sent", "failed")
SEQ = BigInteger().with_variant(Integer, "sqlite")


def _classify_preference(pref: "NotificationPreference", verb: str, diff: dict):
    # Unsubscribing through a mail link is its own action; the watermark moving is never an entry.
    return getattr(pref, "audit_action", None) or f"notification_preference.{verb}"


class NotificationPreference(db.Model):
    """One person's notification choices, and how far their digest has got (a row of its own, not users columns)."""

    __tablename__ = "notification_preferences"
    __table_args__ = (NEVER_REUSE_IDS,)
    __audit__ = AuditRule(
        name="notification_preference",
        category="team",
        label=lambda p: p.user_email or f"user {p.user_id}",
        scope=lambda p: Scope(),
        ignore=frozenset({"created_at", "updated_at", "digest_seq", "last_digest_at", "user_email", "user_id"}),
        classify=_classify_preference,
        actions=("notification_preference.updated", "digest.unsubscribed"),
        # Rows are made on first need (the scheduler, the account page); only a person's change is an entry.
        verbs=("updated",),
        bulk_ok=False,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    # Copied for the entry's label; kept current by the services.
    user_email: Mapped[str | None] = mapped_column(String(254))
    digest_frequency: Mapped[str] = audited(String(8), default=DEFAULT_FREQUENCY)
    security_alerts: Mapped[bool] = audited(Boolean, default=True)
    # The last seq a digest the SMTP server accepted covered; moves only after acceptance.
    digest_seq: Mapped[int] = mapped_column(SEQ, default=0)
    last_digest_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class NotificationTarget(db.Model):
    """A chat or webhook destination (an Apprise URL, encrypted: it holds tokens) and what it receives."""

    __tablename__ = "notification_targets"
    __table_args__ = (NEVER_REUSE_IDS,)
    __audit__ = AuditRule(
        name="notification_target",
        category="security",
        label=lambda t: t.service,
        scope=lambda t: Scope(),
        secret=frozenset({"url_encrypted"}),
        ignore=frozenset({"created_at", "updated_at", "digest_seq", "last_digest_at", "url_hint"}),
        classify=lambda t, verb, diff: {"created": "notification_target.added",
                                        "deleted": "notification_target.removed"}[verb],
        actions=("notification_target.added", "notification_target.removed"),
        verbs=("created", "deleted"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The Apprise service name (slack, discord, json, ...): all an entry or a page shows of the URL.
    service: Mapped[str] = audited(String(32))
    url_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    # What the page shows to tell targets apart: scheme and host only, never a path or a token.
    url_hint: Mapped[str] = mapped_column(String(120))
    alerts: Mapped[bool] = audited(Boolean, default=True)
    digest: Mapped[bool] = audited(Boolean, default=False)
    failures: Mapped[bool] = audited(Boolean, default=False)
    digest_seq: Mapped[int] = mapped_column(SEQ, default=0)
    last_digest_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def url(self) -> str:
        from intercity import crypto

        return crypto.decrypt(self.url_encrypted)

    @url.setter
    def url(self, value: str) -> None:
        from intercity import crypto

        self.url_encrypted = crypto.encrypt(value)

    @property
    def feeds(self) -> list[str]:
        return [feed for feed in TARGET_FEEDS if getattr(self, feed)]


class OutboxMessage(db.Model):
    """One message to one recipient (a mail address or a chat target), sent by a job after commit.

    A digest's body is built when it is sent, so a retry after an outage covers everything up to
    then; its watermark moves in the transaction that marks it sent.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index("ix_outbox_messages_status_next", "status", "next_attempt_at"),
        Index("ix_outbox_messages_user_kind", "user_id", "kind", "status"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # account (invitations, email changes), test, alert, failure, digest
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(8), default="mail")  # mail or chat
    recipient: Mapped[str | None] = mapped_column(String(254))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    target_id: Mapped[int | None] = mapped_column(ForeignKey("notification_targets.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(255), default="")
    text: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The SMTP server's (or chat service's) last answer, shown on the settings page.
    last_response: Mapped[str | None] = mapped_column(String(500))
    # A digest: the last seq the sent message covered.
    covered_seq: Mapped[int | None] = mapped_column(SEQ)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class NotifyCursor(db.Model):
    """How far a scanner of the audit log has got (the security alerts: the last seq turned into messages)."""

    __tablename__ = "notify_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(SEQ, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class NotifyThrottle(db.Model):
    """Until when an alert of one kind is not sent again (reveals: per person and app, an hour)."""

    __tablename__ = "notify_throttles"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
