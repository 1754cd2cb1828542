"""A database service's backup settings: S3 credentials and passphrase (encrypted), bucket, schedule, last run."""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from intercity import crypto
from intercity.extensions import db
from intercity.models.base import NEVER_REUSE_IDS, UTCDateTime, utcnow


class ServiceBackup(db.Model):
    """What the panel asked a service's plugin to do about backups, and what it saw.

    Not audited as rows, on purpose: the operations that apply these settings are the audited
    record (their payloads name the bucket and schedule, never a credential), and the audit log
    must not hold a credential, encrypted or not. The credentials and passphrase are never shown
    back: the page says only whether they are set and when they were sent.
    """

    __tablename__ = "service_backups"
    __table_args__ = (UniqueConstraint("server_id", "plugin", "service"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    plugin: Mapped[str] = mapped_column(String(16))
    service: Mapped[str] = mapped_column(String(64))
    # JSON {"access_key", "secret_key"}, encrypted with the panel key.
    credentials_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    region: Mapped[str | None] = mapped_column(String(32))
    signature: Mapped[str | None] = mapped_column(String(8))
    endpoint: Mapped[str | None] = mapped_column(String(255))
    credentials_set_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    credentials_applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    passphrase_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    passphrase_applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bucket: Mapped[str | None] = mapped_column(String(63))
    check_size: Mapped[bool] = mapped_column(Boolean, default=True)
    # The schedule asked for, and the one `backup-schedule-cat` last showed (None: none there).
    schedule: Mapped[str | None] = mapped_column(String(100))
    schedule_bucket: Mapped[str | None] = mapped_column(String(63))
    schedule_seen: Mapped[str | None] = mapped_column(String(100))
    schedule_seen_bucket: Mapped[str | None] = mapped_column(String(63))
    schedule_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last backup the panel itself ran ("Back up now"); scheduled runs are not observed.
    last_backup_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_backup_status: Mapped[str | None] = mapped_column(String(16))
    last_backup_bytes: Mapped[int | None] = mapped_column(Integer)
    last_backup_message: Mapped[str | None] = mapped_column(Text)
    last_backup_operation_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def set_credentials(self, access_key: str, secret_key: str) -> None:
        self.credentials_encrypted = crypto.encrypt(json.dumps({"access_key": access_key, "secret_key": secret_key}))
        self.credentials_set_at = utcnow()
        self.credentials_applied_at = None

    def credentials(self) -> tuple[str, str] | None:
        if self.credentials_encrypted is None:
            return None
        data = json.loads(crypto.decrypt(self.credentials_encrypted))
        return data["access_key"], data["secret_key"]

    def set_passphrase(self, passphrase: str | None) -> None:
        self.passphrase_encrypted = crypto.encrypt(passphrase) if passphrase else None
        self.passphrase_applied_at = None

    def passphrase(self) -> str | None:
        return crypto.decrypt(self.passphrase_encrypted) if self.passphrase_encrypted is not None else None

    def __repr__(self) -> str:
        return f"<ServiceBackup {self.plugin} {self.service} on server {self.server_id}>"
