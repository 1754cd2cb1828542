"""The value history: what a server was seen to hold, encrypted, kept after the row it belonged to is gone."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from intercity import crypto
from intercity.extensions import db
from intercity.models.base import NEVER_REUSE_IDS, UTCDateTime, utcnow

KINDS = ("env", "deploy_key")


class AppliedValue(db.Model):
    """One value a server was seen to hold: an env value (per app) or a deploy key's public key (per server).

    Not audited, on purpose: the audit log must never hold a value, encrypted or not. It serves
    "discard" of a failed change and "revert" of a change, which apply a kept value again through
    the normal, audited service path.
    """

    __tablename__ = "applied_values"
    __table_args__ = (Index("ix_applied_values_lookup", "kind", "server_id", "app_id", "name", "id"),
                      NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    server_id: Mapped[int] = mapped_column(Integer)
    app_id: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    value_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    # crypto.fingerprint of an env value; a deploy key's SHA256 fingerprint.
    fingerprint: Mapped[str] = mapped_column(String(80))
    operation_id: Mapped[int | None] = mapped_column(Integer)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def value(self) -> str:
        return crypto.decrypt(self.value_encrypted)

    def __repr__(self) -> str:
        return f"<AppliedValue {self.kind} {self.name} #{self.id}>"
