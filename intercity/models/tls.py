"""TLS as the server was last seen to have it (per server and per app), and certificates uploaded for apps.

Neither is audited as rows: what people do (enable, upload, remove, revoke) is an operation whose
request entry carries the certificate's public facts; these rows only hold readings and the
encrypted key an upload needs until it is sent (and for a later `certs:update`).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from intercity import crypto
from intercity.extensions import db
from intercity.models.base import UTCDateTime, utcnow


class TlsReading(db.Model):
    """One server's (`app_id` NULL) or one app's TLS as last read; `scope` is "server:<id>" or "app:<id>"."""

    __tablename__ = "tls_readings"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(32), unique=True)
    # Plain ids, no foreign keys: a reading is dropped with nothing and harms nothing when orphaned.
    server_id: Mapped[int] = mapped_column(Integer, index=True)
    app_id: Mapped[int | None] = mapped_column(Integer, index=True)
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Server readings: since when the renewal job has been seen missing (one security entry per outage).
    cron_missing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UploadedCertificate(db.Model):
    """A certificate someone uploaded for an app; the private key is stored encrypted and never shown."""

    __tablename__ = "tls_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    server_id: Mapped[int] = mapped_column(Integer, index=True)
    app_id: Mapped[int] = mapped_column(Integer, index=True)
    certificate_pem: Mapped[str] = mapped_column(Text)
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str] = mapped_column(Text)
    names: Mapped[list] = mapped_column(JSON, default=list)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sha256: Mapped[str] = mapped_column(String(95))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def private_key(self) -> str:
        """In memory only, for the tar sent on stdin."""
        return crypto.decrypt(self.private_key_encrypted)
