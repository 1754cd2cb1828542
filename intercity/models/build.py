"""Builds seen on a server (Dokku's build history), once each, and when an app's history was last read."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from intercity.extensions import db
from intercity.models.base import NEVER_REUSE_IDS, UTCDateTime, utcnow


class AppBuild(db.Model):
    """One Dokku build record of an app. Not audited: the `app.deployed` entry it leads to is the record."""

    __tablename__ = "app_builds"
    __table_args__ = (UniqueConstraint("server_id", "app_name", "build_id", name="uq_app_builds_build"),
                      Index("ix_app_builds_app", "server_id", "app_name", "started_at"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    server_id: Mapped[int] = mapped_column(Integer)
    app_id: Mapped[int | None] = mapped_column(Integer)
    app_name: Mapped[str] = mapped_column(String(255))
    build_id: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str | None] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    git_sha: Mapped[str | None] = mapped_column(String(64))
    deployed_by: Mapped[str | None] = mapped_column(String(255))
    # The action of the entry this build gave ("app.deployed", "app.deploy_failed"); None: history only.
    recorded_as: Mapped[str | None] = mapped_column(String(32))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def duration(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0, int((self.finished_at - self.started_at).total_seconds()))

    @property
    def running(self) -> bool:
        return self.status == "running"

    def __repr__(self) -> str:
        return f"<AppBuild {self.app_name} {self.build_id}>"


class AppDeployRead(db.Model):
    """When an app's builds were last read, and what a Dokku without build history said instead."""

    __tablename__ = "app_deploy_reads"

    app_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    info: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
