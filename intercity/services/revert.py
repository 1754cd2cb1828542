"""Undoing a change from its audit entry: the inverse change, made through the normal services as "revert of #N".

A revert is a change like any other: the same service call a person would make (with its role
check, validation and its own operation), whose entries carry `caused_by = "revert:N"` so the
timeline links the two both ways. Earlier env values and removed deploy keys come from the
value history; once the retention pruned them, the change can no longer be reverted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from intercity.audit import capture
from intercity.extensions import db
from intercity.models import App, AuditEntry, DeployKey, Domain, Operation, Server
from intercity.services import deploy_keys, domains, env, retention, value_history
from intercity.services.permissions import require
from intercity.validation import ValidationError

# Action -> role needed to make (so to revert) that change.
REVERTABLE = {
    "env_var.created": "member",
    "env_var.updated": "member",
    "env_var.deleted": "member",
    "domain.created": "member",
    "domain.deleted": "member",
    "deploy_key.created": "admin",
    "deploy_key.deleted": "admin",
}
PREFIX = "revert:"


def cause_of(seq: int) -> str:
    return f"{PREFIX}{seq}"


def reverted_seq(entry: AuditEntry) -> int | None:
    """The seq this entry's change reverts, or None."""
    cause = entry.caused_by or ""
    if cause.startswith(PREFIX) and cause[len(PREFIX):].isdigit():
        return int(cause[len(PREFIX):])
    return None


def reverted_by(seq: int) -> list[int]:
    """Seqs of the entries that revert entry `seq` (its link back), oldest first."""
    return list(db.session.scalars(select(AuditEntry.seq).where(AuditEntry.caused_by == cause_of(seq))
                                   .order_by(AuditEntry.seq)))


def reverted_by_many(seqs: list[int]) -> list[tuple[int, int]]:
    """(reverted seq, reverting seq) pairs for these entries, in one query."""
    if not seqs:
        return []
    rows = db.session.execute(select(AuditEntry.caused_by, AuditEntry.seq)
                              .where(AuditEntry.caused_by.in_([cause_of(seq) for seq in seqs]))
                              .order_by(AuditEntry.seq))
    return [(int(cause[len(PREFIX):]), seq) for cause, seq in rows]


@dataclass
class Plan:
    """What reverting an entry would do, or why it cannot; `superseded_by` asks for a confirmation first."""

    entry: AuditEntry
    role: str
    does: str | None = None  # "set TOKEN back to its value before #12", None when impossible
    reason: str | None = None  # why it cannot be reverted
    superseded_by: list[int] = field(default_factory=list)
    reverted_by: list[int] = field(default_factory=list)
    # value history: kept or not, and how many values it keeps (for the page's wording)
    value_kept: bool | None = None
    keep: int = retention.DEFAULT
    _apply: object = None

    @property
    def possible(self) -> bool:
        return self.does is not None

    @property
    def needs_confirmation(self) -> bool:
        return self.possible and bool(self.superseded_by)


def _fingerprints(entry: AuditEntry, name: str) -> tuple:
    value = entry.changes.get(name)
    return tuple(value) if isinstance(value, list) and len(value) == 2 else (None, None)


def _later_changes(entry: AuditEntry) -> list[int]:
    """Later entries that changed the same variable, domain or key (by name, in the same app or server)."""
    kind = entry.target_type
    where = [AuditEntry.seq > entry.seq, AuditEntry.target_type == kind,
             AuditEntry.target_label == entry.target_label,
             AuditEntry.action.in_([f"{kind}.created", f"{kind}.updated", f"{kind}.deleted"])]
    where.append(AuditEntry.server_id == entry.server_id if kind == "deploy_key" else AuditEntry.app_id == entry.app_id)
    return list(db.session.scalars(select(AuditEntry.seq).where(*where).order_by(AuditEntry.seq)))


def plan(entry: AuditEntry) -> Plan | None:
    """How the entry's change would be reverted (None: its action is not one a revert undoes)."""
    role = REVERTABLE.get(entry.action)
    if role is None:
        return None
    result = Plan(entry=entry, role=role, reverted_by=reverted_by(entry.seq), keep=retention.keep())
    if entry.target_type == "deploy_key":
        server = db.session.get(Server, entry.server_id) if entry.server_id is not None else None
        if server is None:
            result.reason = f"The server {entry.server_name} is no longer in the panel."
            return result
        _plan_key(result, server)
    else:
        app = db.session.get(App, entry.app_id) if entry.app_id is not None else None
        if app is None:
            result.reason = f"The app {entry.app_name} is no longer in the panel."
            return result
        if app.status == "destroying":
            result.reason = f"{app.name} is being destroyed."
            return result
        (_plan_env if entry.target_type == "env_var" else _plan_domain)(result, app)
    if result.possible:
        result.superseded_by = _later_changes(entry)
    return result


def _plan_env(result: Plan, app: App) -> None:
    entry, key = result.entry, result.entry.target_label
    changes = entry.changes
    renamed = entry.action == "env_var.updated" and "key" in changes
    if renamed or any(side for side in changes.get("linked_service") or ()):
        result.reason = "Renames and service links are undone where they were made, not from the log."
        return
    before, after = _fingerprints(entry, "value_fingerprint")
    var = env.get_var(app, key)
    if entry.action == "env_var.created":
        if var is None:
            result.reason = f"{key} is no longer set on {app.name}: there is nothing to undo."
            return
        result.does = f"remove {key} from {app.name}"
        result._apply = lambda user: env.remove_var(app, user, key=key)
        return
    if before is None:
        result.reason = f"#{entry.seq} records no value of {key} to go back to."
        return
    current = var.value_fingerprint if var is not None else None
    if current == before:
        result.reason = f"{key} already has the value it had before #{entry.seq}."
        return
    kept = value_history.find("env", server_id=app.server_id, app_id=app.id, name=key, fingerprint=before)
    result.value_kept = kept is not None
    if kept is None:
        result.reason = (f"The value {key} had before #{entry.seq} is no longer kept (the panel keeps the last "
                         f"{result.keep} values per variable), so this change can no longer be reverted.")
        return
    result.does = f"set {key} on {app.name} back to the value it had before #{entry.seq}"
    result._apply = lambda user: env.set_var(app, user, key=key, value=kept.value)


def _plan_domain(result: Plan, app: App) -> None:
    entry, hostname = result.entry, result.entry.target_label
    domain = db.session.scalar(select(Domain).where(Domain.app_id == app.id, Domain.hostname == hostname))
    if entry.action == "domain.created":
        if domain is None:
            result.reason = f"{hostname} is no longer a domain of {app.name}: there is nothing to undo."
            return
        result.does = f"remove domain {hostname} from {app.name}"
        result._apply = lambda user: domains.remove_domain(app, user, domain=domain)
        return
    if domain is not None:
        result.reason = f"{hostname} is a domain of {app.name} again: there is nothing to undo."
        return
    result.does = f"add domain {hostname} to {app.name} again"
    result._apply = lambda user: domains.add_domain(app, user, hostname=hostname)[1]


def _plan_key(result: Plan, server: Server) -> None:
    entry, name = result.entry, result.entry.target_label
    key = db.session.scalar(select(DeployKey).where(DeployKey.server_id == server.id, DeployKey.name == name))
    fingerprint = _fingerprints(entry, "fingerprint")[1 if entry.action == "deploy_key.created" else 0]
    if entry.action == "deploy_key.created":
        if key is None:
            result.reason = f"{server.name} no longer has a deploy key named {name}: there is nothing to undo."
        elif key.fingerprint != fingerprint:
            result.reason = f"The deploy key named {name} on {server.name} is another key now ({key.fingerprint})."
        else:
            result.does = f"remove deploy key {name} from {server.name}"
            result._apply = lambda user: deploy_keys.remove_key(server, user, deploy_key=key)
        return
    if key is not None:
        result.reason = (f"{server.name} has a deploy key named {name} again" +
                         (": there is nothing to undo." if key.fingerprint == fingerprint else
                          f" ({key.fingerprint}, another key). Remove it first."))
        return
    kept = value_history.find("deploy_key", server_id=server.id, app_id=None, name=name, fingerprint=fingerprint)
    result.value_kept = kept is not None
    if kept is None:
        result.reason = (f"The public key of {name} is no longer kept (the panel keeps the last {result.keep} keys "
                         "per name), so its removal can no longer be reverted. Add the key again by hand.")
        return
    result.does = f"add deploy key {name} to {server.name} again"
    result._apply = lambda user: deploy_keys.add_key(server, user, name=name, public_key=kept.value)[1]


def revert(entry: AuditEntry, user, *, confirmed: bool = False) -> Operation:
    """Apply the inverse of the entry's change as `user`; the caller commits. A superseded change needs `confirmed`."""
    found = plan(entry)
    if found is None:
        raise ValidationError(f"Entry #{entry.seq} ({entry.action}) is not a change that can be reverted.", None)
    require(user, found.role)
    if not found.possible:
        raise ValidationError(found.reason, None)
    if found.needs_confirmation and not confirmed:
        raise ValidationError(superseded_sentence(found), "confirmed")
    with capture.caused(db.session, cause_of(entry.seq)):
        result = found._apply(user)
    operation = result.operation if isinstance(result, env.EnvResult) else result
    if operation is None:  # the value is already wanted: nothing to send
        raise ValidationError(found.reason or "There is nothing to change.", None)
    return operation


def superseded_sentence(found: Plan) -> str:
    later = ", ".join(f"#{seq}" for seq in found.superseded_by)
    return (f"{found.entry.target_label} was changed again after #{found.entry.seq} (by {later}); reverting now "
            f"will {found.does}, undoing those later changes too.")
