"""Servers running Dokku, the panel's key pair for each, and the deploy keys on them."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from intercity import crypto
from intercity.audit.rules import AuditRule, Scope
from intercity.extensions import db
from intercity.models.base import NEVER_REUSE_IDS, UTCDateTime, audited, utcnow

HOST_KEY_FIELDS = {"host_key_type", "host_key_fingerprint"}


def _classify_server(server: "Server", verb: str, diff: dict):
    # Host key and key pair changes are actions of their own (Security in the category table).
    if verb == "updated" and HOST_KEY_FIELDS & diff.keys():
        old = diff.get("host_key_fingerprint", [None])[0]
        return "server.host_key_accepted" if old else "server.host_key_pinned"
    if verb == "updated" and "public_key" in diff:
        return "server.key_regenerated"
    return f"server.{verb}"


class Server(db.Model):
    __tablename__ = "servers"
    __table_args__ = (NEVER_REUSE_IDS,)
    __audit__ = AuditRule(
        name="server",
        label=lambda s: s.name,
        scope=lambda s: Scope(server_id=s.id, server_name=s.name),
        secret=frozenset({"private_key_encrypted"}),
        # Observed state, refreshed by every connection test: not a change anyone made.
        ignore=frozenset({
            "created_at", "updated_at", "status", "status_message", "last_checked_at",
            "dokku_version", "seen_host_key_type", "seen_host_key_fingerprint", "remote_keys",
            "remote_keys_checked_at", "unreachable_since", "services", "services_checked_at",
            "drift_checked_at", "drift_state",
        }),
        classify=_classify_server,
        actions=("server.created", "server.updated", "server.deleted", "server.host_key_accepted",
                 "server.host_key_pinned", "server.key_regenerated"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = audited(String(63), unique=True)
    host: Mapped[str] = audited(String(255))
    port: Mapped[int] = audited(Integer, default=22)
    ssh_user: Mapped[str] = audited(String(32), default="root")
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    public_key: Mapped[str] = audited(Text)
    expected_host_key_fingerprint: Mapped[str | None] = audited(String(80))
    host_key_type: Mapped[str | None] = audited(String(64))
    host_key_fingerprint: Mapped[str | None] = audited(String(80))
    # The key a server presented that did not match the pinned one, kept for an admin to accept.
    seen_host_key_type: Mapped[str | None] = mapped_column(String(64))
    seen_host_key_fingerprint: Mapped[str | None] = mapped_column(String(80))
    dokku_version: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(24), default="new")
    status_message: Mapped[str | None] = mapped_column(Text)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a connection (any operation's, not only a test's) first failed for network reasons;
    # cleared by the next connection that gets through.
    unreachable_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Deploy keys as `ssh-keys:list` last showed them (JSON list of {name, fingerprint, public_key}).
    remote_keys: Mapped[list | None] = mapped_column(JSON(none_as_null=True))
    remote_keys_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Service plugins as the last listing showed them: {plugin: {"installed": bool, "services":
    # [{name, version, status, links}]}}. Never a DSN: `info` is read one flag at a time.
    services: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    services_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Drift checks (intercity/jobs/drift.py): minutes between scheduled checks (0: none), the last
    # check's end, and what it saw that is no row (skipped apps, event log, clock offset, outage).
    drift_interval_minutes: Mapped[int] = audited(Integer, default=15, server_default="15")
    drift_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    drift_state: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    apps = relationship("App", back_populates="server", cascade="all, delete-orphan", order_by="App.name")
    deploy_keys = relationship(
        "DeployKey", back_populates="server", cascade="all, delete-orphan", order_by="DeployKey.name"
    )

    def generate_key_pair(self) -> None:
        private, public = crypto.generate_ssh_key(f"intercity@{self.name}")
        self.private_key_encrypted = crypto.encrypt(private)
        self.public_key = public

    @property
    def private_key(self) -> str:
        """The private key in memory only; it is never shown or logged."""
        return crypto.decrypt(self.private_key_encrypted)

    @property
    def uses_sudo(self) -> bool:
        return self.ssh_user != "root"

    @property
    def public_key_fingerprint(self) -> str:
        from intercity.validation import public_key

        return public_key(self.public_key).fingerprint

    def __repr__(self) -> str:
        return f"<Server {self.name}>"


class DeployKey(db.Model):
    __tablename__ = "deploy_keys"
    __table_args__ = (UniqueConstraint("server_id", "name"), NEVER_REUSE_IDS)
    __audit__ = AuditRule(
        name="deploy_key",
        label=lambda k: k.name,
        scope=lambda k: Scope(server_id=k.server_id, server_name=k.server.name),
        # The public key itself is not secret, but the fingerprint is how people tell keys apart.
        ignore=frozenset({"created_at", "updated_at", "public_key", "on_server", "applied_seen_at"}),
        parent="server",
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    server_id: Mapped[int] = audited(ForeignKey("servers.id"))
    name: Mapped[str] = audited(String(255))
    public_key: Mapped[str] = audited(Text)
    key_type: Mapped[str] = audited(String(64))
    fingerprint: Mapped[str] = audited(String(80))
    # Keys found on the server keep the name Dokku lists, which Dokku never validated.
    adopted: Mapped[bool] = audited(default=False)
    added_by_email: Mapped[str | None] = audited(String(254))
    # Whether the server was last seen to have this key (None: never looked).
    on_server: Mapped[bool | None] = mapped_column()
    applied_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    server = relationship("Server", back_populates="deploy_keys")

    def __repr__(self) -> str:
        return f"<DeployKey {self.name} {self.fingerprint}>"
