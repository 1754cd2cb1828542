"""Panel-wide settings an admin changes on /settings (such as requiring two-factor login), one row per key."""
from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from intercity.audit.rules import AuditRule, Scope
from intercity.extensions import db
from intercity.models.base import audited


class PanelSetting(db.Model):
    __tablename__ = "panel_settings"
    __audit__ = AuditRule(
        name="settings",
        label=lambda s: s.key,
        scope=lambda s: Scope(),
        ignore=frozenset(),
        classify=lambda s, verb, diff: "settings.changed",
        actions=("settings.changed",),
    )

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = audited(String(255))

    @property
    def id(self) -> str:
        # Audit entries name their target by id; a setting's is its key.
        return self.key
