"""An app as it was at any entry: its env var names (with value fingerprints), domains and the server's deploy keys,
rebuilt by replaying the log up to that entry, and the difference to today."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from intercity.extensions import db
from intercity.models import AuditEntry, DeployKey, Domain, EnvVar

ROW_VERBS = ("created", "updated", "deleted")
# The fields of each target type the replay keeps: the name people know it by and what tells values apart.
FIELDS = {
    "env_var": ("key", "value_fingerprint"),
    "domain": ("hostname",),
    "deploy_key": ("name", "fingerprint"),
}


@dataclass
class State:
    """env: key -> value fingerprint; domains: hostnames; deploy_keys: name -> SHA256 fingerprint."""

    env: dict[str, str] = field(default_factory=dict)
    domains: set[str] = field(default_factory=set)
    deploy_keys: dict[str, str] = field(default_factory=dict)


def _entries(app_id: int, server_id: int | None, seq: int):
    """The row entries that shaped the app and its server's keys up to `seq`, in chain order (two index scans)."""
    actions = [f"{kind}.{verb}" for kind in FIELDS for verb in ROW_VERBS]
    app_rows = select(AuditEntry).where(AuditEntry.app_id == app_id, AuditEntry.seq <= seq,
                                        AuditEntry.target_type.in_(("env_var", "domain")),
                                        AuditEntry.action.in_(actions))
    found = list(db.session.scalars(app_rows))
    if server_id is not None:
        found += db.session.scalars(select(AuditEntry).where(
            AuditEntry.server_id == server_id, AuditEntry.seq <= seq, AuditEntry.target_type == "deploy_key",
            AuditEntry.action.in_(actions)))
    return sorted(found, key=lambda entry: entry.seq)


def replay(entries) -> dict[tuple[str, str], dict]:
    """{(target_type, target_id): {field: value}} after these entries, each applied as its diff says."""
    rows: dict[tuple[str, str], dict] = {}
    for entry in entries:
        ident = (entry.target_type, entry.target_id)
        verb = entry.action.rsplit(".", 1)[1]
        if verb == "deleted":
            rows.pop(ident, None)
            continue
        row = rows.setdefault(ident, {}) if verb == "created" else rows.get(ident)
        if row is None:
            continue  # an update of a row the log never created (cannot happen in an intact chain)
        for name, (_, new) in entry.changes.items():
            if name in FIELDS[entry.target_type]:
                row[name] = new
    return rows


def as_of(app_id: int, server_id: int | None, seq: int) -> State:
    """The app (and its server's deploy keys) right after entry `seq`, from the log alone."""
    state = State()
    for (kind, _), row in replay(_entries(app_id, server_id, seq)).items():
        if kind == "env_var" and row.get("key") is not None:
            state.env[row["key"]] = row.get("value_fingerprint")
        elif kind == "domain" and row.get("hostname") is not None:
            state.domains.add(row["hostname"])
        elif kind == "deploy_key" and row.get("name") is not None:
            state.deploy_keys[row["name"]] = row.get("fingerprint")
    return state


def today(app_id: int, server_id: int | None) -> State:
    """What the panel holds now (the desired state), in the same shape."""
    state = State()
    for var in db.session.scalars(select(EnvVar).where(EnvVar.app_id == app_id)):
        state.env[var.key] = var.value_fingerprint
    state.domains = set(db.session.scalars(select(Domain.hostname).where(Domain.app_id == app_id)))
    if server_id is not None:
        for key in db.session.scalars(select(DeployKey).where(DeployKey.server_id == server_id)):
            state.deploy_keys[key.name] = key.fingerprint
    return state


@dataclass
class Line:
    """One name on the page: its state then, now, and how they differ (same, added, removed, changed)."""

    name: str
    then: str | None
    now: str | None

    @property
    def change(self) -> str:
        if self.then == self.now:
            return "same"
        if self.then is None:
            return "added since"
        if self.now is None:
            return "removed since"
        return "changed since"


def compare(then: dict, now: dict) -> list[Line]:
    return [Line(name, then.get(name), now.get(name)) for name in sorted(set(then) | set(now))]


def compare_sets(then: set, now: set) -> list[Line]:
    return compare({name: "present" for name in then}, {name: "present" for name in now})
