"""Apps on a server, with their environment variables and domains (the desired state)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from intercity import crypto
from intercity.audit.rules import AuditRule, Scope
from intercity.extensions import db
from intercity.models.base import NEVER_REUSE_IDS, UTCDateTime, audited, utcnow


def _app_scope(app: "App") -> Scope:
    return Scope(server_id=app.server_id, server_name=app.server.name, app_id=app.id, app_name=app.name)


def _classify_app(app: "App", verb: str, diff: dict) -> str:
    # An app read from the server by an import was not created by anyone in the panel.
    if verb == "created" and app.imported:
        return "app.imported"
    return f"app.{verb}"


class App(db.Model):
    __tablename__ = "apps"
    __table_args__ = (UniqueConstraint("server_id", "name"), NEVER_REUSE_IDS)
    __audit__ = AuditRule(
        name="app",
        label=lambda a: a.name,
        scope=_app_scope,
        # Status follows operations (creating, destroying); the request itself is the entry.
        ignore=frozenset({"created_at", "updated_at", "status", "ps_status", "ps_checked_at",
                          "on_server", "applied_seen_at"}),
        parent="server",
        classify=_classify_app,
        actions=("app.created", "app.updated", "app.deleted", "app.imported"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    server_id: Mapped[int] = audited(ForeignKey("servers.id"))
    name: Mapped[str] = audited(String(255))
    imported: Mapped[bool] = audited(default=False)
    status: Mapped[str] = mapped_column(String(24), default="active")
    # What `ps:report` last said (JSON: deployed, running, processes), refreshed by operations.
    ps_status: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    ps_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the server was last seen to have (None: never looked), beside what the panel wants.
    on_server: Mapped[bool | None] = mapped_column()
    applied_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Where "Deploy now" builds from (git:sync --build), and the image last deployed (git:from-image).
    deploy_repo_url: Mapped[str | None] = audited(String(2048))
    deploy_repo_ref: Mapped[str | None] = audited(String(255))
    deploy_image: Mapped[str | None] = audited(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    server = relationship("Server", back_populates="apps")
    env_vars = relationship("EnvVar", back_populates="app", cascade="all, delete-orphan", order_by="EnvVar.key")
    domains = relationship("Domain", back_populates="app", cascade="all, delete-orphan", order_by="Domain.hostname")

    def __repr__(self) -> str:
        return f"<App {self.name}>"


class EnvVar(db.Model):
    __tablename__ = "env_vars"
    __table_args__ = (UniqueConstraint("app_id", "key"), NEVER_REUSE_IDS)
    __audit__ = AuditRule(
        name="env_var",
        label=lambda e: e.key,
        scope=lambda e: _app_scope(e.app),
        secret=frozenset({"value_encrypted"}),
        ignore=frozenset({"created_at", "updated_at", "applied_fingerprint", "applied_seen_at"}),
        parent="app",
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = audited(ForeignKey("apps.id"))
    key: Mapped[str] = audited(String(255))
    value_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    # A keyed fingerprint: the audit log shows that a value changed without showing it.
    value_fingerprint: Mapped[str] = audited(String(32))
    # "postgres shop-db" when a service link set this variable: only an unlink removes it.
    linked_service: Mapped[str | None] = audited(String(80))
    # The fingerprint of the value the server was last seen to hold (None: not seen there).
    applied_fingerprint: Mapped[str | None] = mapped_column(String(32))
    applied_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    app = relationship("App", back_populates="env_vars")

    @property
    def value(self) -> str:
        return crypto.decrypt(self.value_encrypted)

    @property
    def empty(self) -> bool:
        """An empty value is no secret: pages show it as empty rather than masked."""
        return self.value_fingerprint == crypto.fingerprint("")

    @value.setter
    def value(self, plaintext: str) -> None:
        fingerprint = crypto.fingerprint(plaintext)
        if fingerprint == self.value_fingerprint:
            return  # same value: leave the row clean so no entry is written
        self.value_encrypted = crypto.encrypt(plaintext)
        self.value_fingerprint = fingerprint

    def __repr__(self) -> str:
        return f"<EnvVar {self.key}>"


class Domain(db.Model):
    __tablename__ = "domains"
    __table_args__ = (UniqueConstraint("app_id", "hostname"), NEVER_REUSE_IDS)
    __audit__ = AuditRule(
        name="domain",
        label=lambda d: d.hostname,
        scope=lambda d: _app_scope(d.app),
        ignore=frozenset({"created_at", "updated_at", "on_server", "applied_seen_at"}),
        parent="app",
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = audited(ForeignKey("apps.id"))
    hostname: Mapped[str] = audited(String(253))
    # Whether the server was last seen to have this domain (None: never looked).
    on_server: Mapped[bool | None] = mapped_column()
    applied_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    app = relationship("App", back_populates="domains")

    def __repr__(self) -> str:
        return f"<Domain {self.hostname}>"
