"""Audit entries (append-only, hash-chained) and verified checkpoints of the chain."""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from intercity.extensions import db
from intercity.models.base import UTCDateTime, utcnow


class AuditEntry(db.Model):
    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_category_seq", "category", "seq"),
        Index("ix_audit_entries_server_seq", "server_name", "seq"),
        Index("ix_audit_entries_app_seq", "server_name", "app_name", "seq"),
        Index("ix_audit_entries_app_id_seq", "app_id", "seq"),
        Index("ix_audit_entries_server_id_seq", "server_id", "seq"),
        # Pattern order on PostgreSQL, so actor: by prefix is a range scan (migration 0007).
        Index("ix_audit_entries_actor_seq", "actor_email", "seq",
              postgresql_ops={"actor_email": "varchar_pattern_ops"}),
        Index("ix_audit_entries_action_seq", "action", "seq"),
        Index("ix_audit_entries_operation", "operation_id"),
        Index("ix_audit_entries_created", "created_at"),
        # Timeline filters (migration 0003)
        Index("ix_audit_entries_app_name_seq", "app_name", "seq"),
        Index("ix_audit_entries_operation_action", "operation_id", "action"),
        Index("ix_audit_entries_actor_kind_seq", "actor_kind", "seq"),
        # Search (migration 0007): key:, domain:, target:. PostgreSQL also has a trigram index over
        # query.SENTENCE_SQL for free text, created by the migration only (an expression index).
        Index("ix_audit_entries_target_label_seq", "target_label", "seq"),
        # Reverts name what they revert as caused_by "revert:<seq>" (migration 0016).
        Index("ix_audit_entries_caused_by", "caused_by"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who: a person, or a system actor (worker, scheduler, cli) and the person it acts for.
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_user_id: Mapped[int | None] = mapped_column(Integer)
    actor_email: Mapped[str | None] = mapped_column(String(254))
    actor_role: Mapped[str | None] = mapped_column(String(16))
    actor_os_user: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[int | None] = mapped_column(Integer)
    server_name: Mapped[str | None] = mapped_column(String(63))
    app_id: Mapped[int | None] = mapped_column(Integer)
    app_name: Mapped[str | None] = mapped_column(String(255))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    target_label: Mapped[str | None] = mapped_column(String(255))
    # Canonical JSON text {field: [old, new]}; text, not JSONB, so the hashed bytes survive.
    diff: Mapped[str] = mapped_column(Text, default="{}")
    request_ip: Mapped[str | None] = mapped_column(String(64))
    request_user_agent: Mapped[str | None] = mapped_column(String(512))
    request_id: Mapped[str | None] = mapped_column(String(64))
    # Why the change happened: "app:12" on a child's entry when its parent's deletion removed it,
    # "revert:34" on the entries of a revert of entry #34 (services.revert).
    caused_by: Mapped[str | None] = mapped_column(String(64))
    operation_id: Mapped[int | None] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    @property
    def changes(self) -> dict:
        return json.loads(self.diff or "{}")

    @property
    def actor_display(self) -> str:
        who = self.actor_email or self.actor_os_user or "someone"
        if self.actor_kind == "user":
            return who
        if self.actor_email:
            return f"{self.actor_kind} on behalf of {self.actor_email}"
        if self.actor_os_user:
            return f"{self.actor_kind} ({self.actor_os_user})"
        return self.actor_kind

    def __repr__(self) -> str:
        return f"<AuditEntry {self.seq} {self.action}>"


class AuditCheckpoint(db.Model):
    """A chain position verified earlier, so the next verification starts there."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))
    entries: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
