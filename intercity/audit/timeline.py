"""Presentation of audit entries: sentences a person would write, outcomes folded in, days, scopes.

The timeline reads entries, joins them with the operations they requested and those
operations' command runs, and folds the `operation.succeeded/failed` entry into the entry that
asked for the work. Nothing here writes; `recent()` is what server and app pages call.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from datetime import date, timedelta, timezone

from sqlalchemy import and_, or_, select

from intercity import clock
from intercity.audit import drift_words, query
from intercity.audit.rules import REDACTED
from intercity.extensions import db
from intercity.jobs import kinds
from intercity.models import AuditEntry, CommandRun, Operation

# What a person sees of a field in a diff; secret values never reach an entry, only fingerprints.
FIELD_LABELS = {
    "value_fingerprint": "value",
    "host_key_fingerprint": "host key",
    "host_key_type": "host key type",
    "expected_host_key_fingerprint": "expected host key",
    "public_key": "panel public key",
    "ssh_user": "SSH user",
    "key_type": "key type",
    "added_by_email": "added by",
    "password_hash": "password",
    "private_key_encrypted": "panel private key",
}
FINGERPRINT_FIELDS = {"value_fingerprint"}
# Ids that every child carries; they say nothing a person needs in the diff table.
HIDDEN_FIELDS = {"app_id", "server_id"}


# -- sentences -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Part:
    text: str
    kind: str | None = None  # actor, target, code: how the template emphasises it


class Sentence(list):
    """A list of Parts; str() is the plain sentence."""

    def __str__(self) -> str:
        return "".join(part.text for part in self)


def _actor(entry: AuditEntry) -> list[Part]:
    if entry.actor_kind == "anonymous":
        return [Part("Someone", "actor")]
    if entry.actor_kind != "user" and entry.actor_email:
        return [Part(entry.actor_kind, "system"), Part(" on behalf of "), Part(entry.actor_email, "actor")]
    return [Part(entry.actor_display, "actor")]


def _app_place(entry: AuditEntry, preposition: str = "on") -> list[Part]:
    """" on api (prod-1)", " on prod-1" or nothing."""
    if entry.app_name:
        parts = [Part(f" {preposition} "), Part(entry.app_name, "target")]
        if entry.server_name:
            parts.append(Part(f" ({entry.server_name})"))
        return parts
    if entry.server_name:
        return [Part(f" {preposition} "), Part(entry.server_name, "target")]
    return []


def _server_place(entry: AuditEntry, preposition: str) -> list[Part]:
    return [Part(f" {preposition} "), Part(entry.server_name, "target")] if entry.server_name else []


def _new(changes: dict, key: str):
    value = changes.get(key)
    return value[1] if isinstance(value, list) and len(value) == 2 else None


def _old(changes: dict, key: str):
    value = changes.get(key)
    return value[0] if isinstance(value, list) and len(value) == 2 else None


def _label(entry: AuditEntry) -> str:
    return entry.target_label or entry.target_id or "?"


def _op_title(entry: AuditEntry, operation: Operation | None) -> str:
    if operation is not None and operation.kind in kinds.KINDS:
        return operation.kind_info.title
    label = entry.target_label or "an operation"
    return label.split(" (")[0]


def _user_update(entry: AuditEntry, changes: dict) -> list[Part]:
    who = Part(_label(entry), "target")
    if "role" in changes:
        return [Part(" changed the role of "), who, Part(f" from {_old(changes, 'role')} to {_new(changes, 'role')}")]
    if "active" in changes:
        return [Part(" deactivated " if not _new(changes, "active") else " reactivated "), who]
    if "email" in changes:
        return [Part(" changed the email of "), Part(str(_old(changes, "email")), "target"),
                Part(" to "), Part(str(_new(changes, "email")), "target")]
    return [Part(" updated user "), who]


def _server_created(entry: AuditEntry, changes: dict) -> list[Part]:
    parts = [Part(" added server "), Part(_label(entry), "target")]
    host = _new(changes, "host")
    if host:
        user, port = _new(changes, "ssh_user") or "root", _new(changes, "port") or 22
        parts.append(Part(f" ({user}@{host}:{port})"))
    return parts


def _deploy(entry: AuditEntry, changes: dict) -> list[Part]:
    """" deployed web (prod-1) by a git push with deploy key alice: 1a2b3c4 in 42 s"."""
    from intercity.dokku.builds import SOURCE_WORDS

    failed = entry.action == "app.deploy_failed"
    source = _event_detail(changes, "source") or ""
    parts = [Part(" failed to deploy " if failed else " deployed "), Part(entry.app_name or _label(entry), "target")]
    if entry.server_name:
        parts.append(Part(f" ({entry.server_name})"))
    parts.append(Part(f" by {SOURCE_WORDS.get(source, source) or 'a deploy'}"))
    key, by = _event_detail(changes, "deployed_by"), _event_detail(changes, "by")
    if key:
        parts += [Part(" with deploy key "), Part(key, "actor")]
    elif by:
        parts.append(Part(f" ({by})"))
    sha = _event_detail(changes, "git_sha")
    if sha:
        parts += [Part(": "), Part(sha[:12], "code")]
    seconds = _event_detail(changes, "duration_seconds")
    if seconds is not None:
        parts.append(Part(f" in {seconds} s"))
    return parts


def _changed_fields(changes: dict) -> str:
    names = [FIELD_LABELS.get(key, key.replace("_", " ")) for key in sorted(changes) if key not in HIDDEN_FIELDS]
    return ", ".join(names) if names else "settings"


def _event_detail(changes: dict, key: str) -> str | None:
    value = _new(changes, key)
    return None if value in (None, "") else str(value)


def _service_backup_predicate(entry: AuditEntry, action: str, data: dict) -> list[Part]:
    """The service backup and plugin requests: what was asked of which service (never a credential)."""
    data = data if isinstance(data, dict) else {}
    plugin, service = str(data.get("plugin", "database")), Part(str(data.get("service", "")), "target")
    if action == "service.plugin_install_requested":
        return [Part(f" installed the {plugin} plugin"), *_server_place(entry, "on")]
    if action == "service.backup_auth_requested":
        return [Part(f" set the backup credentials of {plugin} service "), service, *_server_place(entry, "on")]
    if action == "service.backup_encryption_requested":
        verb = " set a backup passphrase for " if data.get("encrypted") else " turned off backup encryption of "
        return [Part(f"{verb}{plugin} service "), service, *_server_place(entry, "on")]
    if action == "service.backup_requested":
        return [Part(f" backed up {plugin} service "), service, Part(" to bucket "),
                Part(str(data.get("bucket", "")), "code"), *_server_place(entry, "on")]
    if data.get("schedule"):
        return [Part(f" scheduled backups of {plugin} service "), service, Part(" at "),
                Part(str(data["schedule"]), "code"), *_server_place(entry, "on")]
    return [Part(f" unscheduled the backups of {plugin} service "), service, *_server_place(entry, "on")]


def predicate(entry: AuditEntry, operation: Operation | None = None) -> list[Part]:
    """What the actor did, starting with a space: " set DATABASE_URL on api (prod-1)"."""
    changes = entry.changes
    action = entry.action
    label = Part(_label(entry), "code" if entry.target_type == "env_var" else "target")
    caused = []
    if entry.caused_by and not entry.caused_by.startswith("revert:"):
        parent = entry.caused_by.split(":")[0]
        caused = [Part(f", with its {parent.replace('_', ' ')}")]

    if action in drift_words.ACTIONS:
        return drift_words.predicate(entry, label)
    match action:
        case "env_var.created" if _new(changes, "linked_service"):
            plugin, _, service = str(_new(changes, "linked_service")).partition(" ")
            return [Part(": "), label, Part(f" set by linking {plugin} service "), Part(service, "target"),
                    *_app_place(entry)]
        case "env_var.created":
            return [Part(" set "), label, *_app_place(entry)]
        case "env_var.deleted" if _old(changes, "linked_service"):
            plugin, _, service = str(_old(changes, "linked_service")).partition(" ")
            return [Part(": "), label, Part(f" removed by unlinking {plugin} service "), Part(service, "target"),
                    *_app_place(entry, "from")]
        case "env_var.updated":
            if "key" in changes:
                return [Part(" renamed "), Part(str(_old(changes, "key")), "code"), Part(" to "), label,
                        *_app_place(entry)]
            return [Part(" changed "), label, *_app_place(entry)]
        case "env_var.deleted":
            return [Part(" removed "), label, *_app_place(entry, "from"), *caused]
        case "env_var.revealed" if _new(changes, "as_of"):
            return [Part(" revealed the value of "), label, Part(f" as of #{_new(changes, 'as_of')}"),
                    *_app_place(entry)]
        case "env_var.revealed":
            return [Part(" revealed the value of "), label, *_app_place(entry)]
        case "domain.created":
            return [Part(" added domain "), label, *_app_place(entry, "to")]
        case "domain.updated":
            return [Part(" changed domain "), label, *_app_place(entry)]
        case "domain.deleted":
            return [Part(" removed domain "), label, *_app_place(entry, "from"), *caused]
        case "deploy_key.created":
            if _new(changes, "adopted"):
                return [Part(" adopted deploy key "), label, Part(" found"), *_server_place(entry, "on")]
            return [Part(" added deploy key "), label, *_server_place(entry, "to")]
        case "deploy_key.updated":
            return [Part(" changed deploy key "), label, *_server_place(entry, "on")]
        case "deploy_key.deleted":
            return [Part(" removed deploy key "), label, *_server_place(entry, "from"), *caused]
        case "app.imported" | "app.created":
            if _new(changes, "imported"):
                return [Part(" imported app "), label, *_server_place(entry, "from")]
            return [Part(" created app "), label, *_server_place(entry, "on")]
        case "app.updated":
            if "name" in changes:
                return [Part(" renamed app "), Part(str(_old(changes, "name")), "target"), Part(" to "), label,
                        *_server_place(entry, "on")]
            return [Part(f" changed {_changed_fields(changes)} of app "), label, *_server_place(entry, "on")]
        case "app.deleted":
            return [Part(" removed app "), label, *_server_place(entry, "from"), *caused]
        case "app.destroy_requested":
            return [Part(" destroyed app "), Part(entry.app_name or _label(entry), "target"),
                    *_server_place(entry, "on")]
        case "app.restart_requested":
            return [Part(" restarted "), Part(entry.app_name or _label(entry), "target"), *_server_place(entry, "on")]
        case "app.deploy_from_repo_requested" | "app.deploy_image_requested":
            target = Part(entry.app_name or _label(entry), "target")
            if action == "app.deploy_image_requested":
                data = _new(changes, "payload") or {}
                image = data.get("image") if isinstance(data, dict) else None
                return [Part(" deployed "), *([Part("image "), Part(str(image), "code"), Part(" to ")] if image
                                              else [Part("an image to ")]), target, *_server_place(entry, "on")]
            return [Part(" deployed "), target, Part(" from its repository"), *_server_place(entry, "on")]
        case "app.deployed" | "app.deploy_failed":
            return _deploy(entry, changes)
        case "app.scale_requested" | "app.rebuild_requested" | "app.stop_requested" | "app.start_requested":
            verb = {"app.scale_requested": "scaled", "app.rebuild_requested": "rebuilt",
                    "app.stop_requested": "stopped", "app.start_requested": "started"}[action]
            return [Part(f" {verb} "), Part(entry.app_name or _label(entry), "target"), *_server_place(entry, "on")]
        case "server.created":
            return _server_created(entry, changes)
        case "server.updated":
            return [Part(f" changed {_changed_fields(changes)} of server "), label]
        case "server.deleted":
            return [Part(" removed server "), label, Part(" from the panel (the server itself is untouched)")]
        case "server.host_key_pinned":
            fingerprint = _new(changes, "host_key_fingerprint")
            return [Part(" pinned the host key of "), label, *([Part(" as "), Part(fingerprint, "code")]
                                                              if fingerprint else [])]
        case "server.host_key_accepted":
            parts = [Part(" accepted a new host key for "), label]
            if _new(changes, "host_key_fingerprint"):
                parts += [Part(": "), Part(str(_new(changes, "host_key_fingerprint")), "code")]
            return parts
        case "server.host_key_mismatch":
            seen = (_event_detail(changes, "seen_host_key_fingerprint") or _event_detail(changes, "fingerprint")
                    or _event_detail(changes, "seen"))
            parts = [Part(" found an unexpected host key on "), Part(entry.server_name or _label(entry), "target")]
            if seen:
                parts += [Part(" ("), Part(seen, "code"), Part(")")]
            return parts + [Part("; work on it is stopped")]
        case "server.key_regenerated":
            return [Part(" regenerated the panel's SSH key for "), label]
        case "server.connection_test_requested":
            return [Part(" tested the connection to "), Part(entry.server_name or _label(entry), "target")]
        case "server.import_requested":
            return [Part(" imported apps from "), Part(entry.server_name or _label(entry), "target")]
        case "service.create_requested" | "service.destroy_requested":
            verb = "created" if action == "service.create_requested" else "destroyed"
            data = _new(changes, "payload") or {}
            version = data.get("version") if isinstance(data, dict) else None
            return [Part(f" {verb} {data.get('plugin', 'database')} service "), Part(str(data.get("service", "")),
                    "target"), *([Part(f" (image version {version})")] if version else []),
                    *_server_place(entry, "on")]
        case "service.link_requested" | "service.unlink_requested":
            verb, prep = ("linked", "to") if action == "service.link_requested" else ("unlinked", "from")
            data = _new(changes, "payload") or {}
            return [Part(f" {verb} {data.get('plugin', 'database')} service "), Part(str(data.get("service", "")),
                    "target"), Part(f" {prep} "), Part(entry.app_name or "", "target"),
                    *([] if data.get("restart", True) else [Part(" without restarting it")]),
                    *_server_place(entry, "on")]
        case "service.dsn_revealed":
            plugin, _, service = _label(entry).partition(" ")
            return [Part(f" revealed the connection URL of {plugin} service "), Part(service, "target"),
                    *_server_place(entry, "on")]
        case ("service.plugin_install_requested" | "service.backup_auth_requested" | "service.backup_requested"
              | "service.backup_encryption_requested" | "service.backup_schedule_requested"):
            return _service_backup_predicate(entry, action, _new(changes, "payload") or {})
        case "service.exported" | "service.export_failed":
            plugin, _, service = _label(entry).partition(" ")
            size = _event_detail(changes, "bytes")
            done = (f" downloaded an export of {plugin} service " if action == "service.exported"
                    else f" tried to download an export of {plugin} service ")
            tail = ([Part(f" ({size} bytes)")] if size and action == "service.exported"
                    else [Part(f"; it failed: {_event_detail(changes, 'reason')}")] if action == "service.export_failed"
                    else [])
            return [Part(done), Part(service, "target"), *_server_place(entry, "from"), *tail]
        # HTTPS: the request entries of the TLS kinds, and the renewal job found missing
        case "tls.enabled" | "tls.renewed" | "tls.disabled" | "tls.revoked" | "certificate.removed":
            verb = {"tls.enabled": " enabled HTTPS with Let's Encrypt for ", "tls.renewed": " renewed the certificate of ",
                    "tls.disabled": " turned Let's Encrypt off for ", "tls.revoked": " revoked the certificate of ",
                    "certificate.removed": " removed the certificate of "}[action]
            return [Part(verb), Part(entry.app_name or _label(entry), "target"), *_server_place(entry, "on")]
        case "certificate.added":
            data = _new(changes, "payload") or {}
            cert = data.get("certificate") or {} if isinstance(data, dict) else {}
            details = [", ".join(cert.get("names") or []), f"expires {str(cert.get('expires_at', ''))[:10]}",
                       f"SHA-256 {cert.get('sha256', '')}"]
            return [Part(" installed an uploaded certificate for "), Part(entry.app_name or _label(entry), "target"),
                    *_server_place(entry, "on"), Part(f" ({'; '.join(d for d in details if d.strip())})")]
        case "tls.enabled_outside" | "tls.disabled_outside":
            verb = " turned HTTPS on for " if action == "tls.enabled_outside" else " turned HTTPS off for "
            return [Part(verb), Part(entry.app_name or _label(entry), "target"), *_server_place(entry, "on"),
                    Part(" outside the panel (found by a check)")]
        case "tls.cron_missing":
            return [Part(" found the certificate renewal job missing on "),
                    Part(entry.server_name or _label(entry), "target"), Part(": certificates there will not renew")]
        case "operation.discarded":
            return [Part(" discarded the failed change to "), Part(str(_new(changes, "discarded")), "code"),
                    Part(f" (#{_new(changes, 'of_operation')})"), *_app_place(entry)]
        case "operation.retry_requested":
            return [Part(" retried "), Part(f"“{_op_title(entry, operation)}”"), *_app_place(entry)]
        case "operation.succeeded" | "operation.failed":
            return [Part(" ran "), Part(f"“{_op_title(entry, operation)}”"), *_app_place(entry)]
        case "user.created":
            role = _new(changes, "role")
            return [Part(" added "), label, *([Part(f" as {role}")] if role else [])]
        case "user.updated":
            return _user_update(entry, changes)
        case "user.deleted":
            return [Part(" removed user "), label]
        case "user.login":
            return [Part(" logged in")]
        case "user.logout":
            return [Part(" logged out")]
        case "user.login_failed":
            return [Part(" failed to log in as "), label]
        case "user.login_failures_repeated":
            count = _event_detail(changes, "failures") or "several"
            minutes = _event_detail(changes, "minutes") or "15"
            return [Part(f" failed to log in {count} times within {minutes} minutes as "), label]
        case "user.session_ended":
            device = _event_detail(changes, "device")
            return [Part(" ended a session of "), label, *([Part(f" ({device})")] if device else [])]
        case "user.invited":
            role = _new(changes, "role")
            return [Part(" invited "), label, *([Part(f" as {role}")] if role else [])]
        case "invitation.accepted":
            return [Part(" accepted the invitation for "), label]
        case "invitation.revoked":
            return [Part(" withdrew the invitation for "), label]
        case "user.role_changed" | "user.deactivated" | "user.reactivated" | "user.email_changed":
            return _user_update(entry, changes)
        case "user.password_changed":
            return [Part(" changed the password of "), label]
        case "user.password_reset":
            return [Part(" reset the password of "), label, Part(" from a mailed link")]
        case "user.password_reset_requested":
            return [Part(" asked for a password reset link for "), label]
        case "user.2fa_enabled":
            return [Part(" turned on two-factor login for "), label]
        case "user.2fa_disabled":
            return [Part(" turned off two-factor login for "), label]
        case "user.2fa_reset":
            return [Part(" reset the two-factor login of "), label]
        case "user.2fa_failed":
            return [Part(" typed a wrong two-factor code for "), label]
        case "user.recovery_code_used":
            left = _event_detail(changes, "left")
            return [Part(" used a recovery code of "), label, *([Part(f" ({left} left)")] if left is not None else [])]
        case "user.recovery_codes_regenerated":
            return [Part(" made new recovery codes for "), label]
        case "settings.changed" if entry.target_label == "value_history_keep":
            return [Part(f" set the panel to keep the last {_new(changes, 'value')} values per variable")]
        case "settings.changed" if entry.target_label == "require_2fa":
            on = _new(changes, "value") == "on"
            return [Part(" required two-factor login for everyone" if on else
                         " stopped requiring two-factor login for everyone")]
        case "audit.exported":
            fmt = (_event_detail(changes, "format") or "").upper() or "a file"
            scope = _event_detail(changes, "filter")
            return [Part(f" exported the audit log as {fmt}"),
                    Part(f" (filtered: {scope})" if scope else " (everything)")]
        case "audit.verified":
            checked = _event_detail(changes, "checked")
            head = _event_detail(changes, "head_seq")
            text = " verified the audit chain: intact"
            if head:
                text += f" up to entry {head}"
            if checked is not None:
                text += f" ({checked} new entries checked)"
            return [Part(text)]
        case "audit.verify_failed":
            problem = _event_detail(changes, "problem")
            return [Part(" verified the audit chain and found it broken"), *([Part(f": {problem}")] if problem else [])]
    # An action this module does not know yet still reads as a sentence.
    noun, _, verb = action.partition(".")
    verb_text = {"created": "created", "updated": "changed", "deleted": "removed"}.get(verb, verb.replace("_", " "))
    return [Part(f" {verb_text} {noun.replace('_', ' ')} "), label, *_app_place(entry)]


def sentence(entry: AuditEntry, operation: Operation | None = None) -> Sentence:
    if entry.action == "user.created" and entry.actor_kind == "anonymous":
        # Only the first-run page creates a user without a logged-in actor: the person setting up.
        return Sentence([Part(_label(entry), "actor"), Part(" set up the panel and became its first admin")])
    revert = [Part(f" (revert of #{entry.caused_by[7:]})")] if (entry.caused_by or "").startswith("revert:") else []
    return Sentence([*_actor(entry), *predicate(entry, operation), *revert])


# -- rows: an entry with its operation, outcome and command runs ----------------------------------

@dataclass
class DiffRow:
    field: str
    old: str | None
    new: str | None
    secret: bool = False


@dataclass
class Run:
    command: str
    exit_code: int | None
    duration_ms: int
    stdout: str
    stderr: str
    error: str | None
    server_name: str | None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class Row:
    entry: AuditEntry
    sentence: Sentence
    operation: Operation | None = None
    outcome: str | None = None  # pending, applied, failed
    outcome_entry: "Outcome | None" = None
    runs: list[Run] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.entry.id

    @property
    def seq(self) -> int:
        """The entry's number (chained): what permalinks and "#N" use."""
        return self.entry.seq

    @property
    def day(self) -> date:
        return self.entry.created_at.astimezone(timezone.utc).date()

    @property
    def pending(self) -> bool:
        return self.outcome == "pending"

    @property
    def reason(self) -> str | None:
        if self.outcome_entry is not None:
            return _new(self.outcome_entry.changes, "reason")
        if self.operation is not None and self.operation.reason:
            return self.operation.reason
        return None

    @property
    def warnings(self) -> list[str]:
        return self.operation.warning_list if self.operation is not None else []

    @property
    def diff(self) -> list[DiffRow]:
        if self.entry.target_type == "operation":
            return []  # the request's own fields (kind, scope, payload) say less than its sentence and commands
        rows = []
        for key, value in sorted(self.entry.changes.items()):
            if key in HIDDEN_FIELDS or not isinstance(value, list) or len(value) != 2:
                continue
            old, new = value
            label = FIELD_LABELS.get(key, key.replace("_", " "))
            if REDACTED in (old, new):
                # A secret without a fingerprint (password, private key): only that it changed.
                rows.append(DiffRow(label, None if old is None else "set", "changed", secret=True))
            elif key in FINGERPRINT_FIELDS:
                # The value itself is never stored: say it changed and show the keyed fingerprints.
                rows.append(DiffRow(label, _fingerprint(old), _fingerprint(new), secret=True))
            else:
                rows.append(DiffRow(label, _show(old), _show(new)))
        return rows

    @property
    def has_details(self) -> bool:
        return bool(self.diff or self.runs or self.reason or self.warnings or self.entry.request_ip)

    @property
    def text(self) -> str:
        return str(self.sentence)


def _fingerprint(value) -> str | None:
    return None if value is None else f"changed · fingerprint {value}"


def _show(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _chunks(values: list, size: int = 500):
    for start in range(0, len(values), size):
        yield values[start:start + size]


@dataclass
class Outcome:
    """What the timeline needs of an operation's outcome entry."""

    seq: int
    action: str
    diff: str

    @property
    def changes(self) -> dict:
        return json.loads(self.diff or "{}")


@dataclass(frozen=True)
class Chained:
    """An operation as its chained request entry tells it (what sentences need), not as its mutable row says."""

    kind: str

    @property
    def kind_info(self):
        return kinds.get(self.kind)


def rows(entries: list[AuditEntry], session=None) -> list[Row]:
    """Rows for entries, with their operations, request and outcome entries and command runs (two queries a chunk)."""
    session = session or db.session
    operation_ids = sorted({e.operation_id for e in entries if e.operation_id is not None})
    operations: dict[int, Operation] = {}
    outcomes: dict[int, Outcome] = {}
    requested: dict[int, tuple[int, str | None]] = {}  # operation id -> (seq, kind) of its request entry
    runs: dict[int, list[Run]] = {}

    def entry_seen(op_id: int, seq: int | None, action: str | None, diff: str) -> None:
        if seq is None:
            return
        if action not in query.OUTCOME_ACTIONS:  # the request entry: an operation's kind (hence title) is read there
            if op_id not in requested or requested[op_id][0] > seq:
                requested[op_id] = (seq, _new(json.loads(diff or "{}"), "kind"))
        elif op_id not in outcomes or outcomes[op_id].seq < seq:
            outcomes[op_id] = Outcome(seq, action, diff)

    chained = or_(AuditEntry.action.in_(query.OUTCOME_ACTIONS), AuditEntry.target_type == "operation")
    for chunk in _chunks(operation_ids):
        # The operations with their request and outcome entries in one round trip (a page asks for all).
        # No ORDER BY: it would tempt SQLite into walking the seq index; the newest outcome wins.
        for op, seq, action, diff in session.execute(
                select(Operation, AuditEntry.seq, AuditEntry.action, AuditEntry.diff)
                .outerjoin(AuditEntry, and_(AuditEntry.operation_id == Operation.id, chained))
                .where(Operation.id.in_(chunk))):
            operations[op.id] = op
            entry_seen(op.id, seq, action, diff)
        missing = [op_id for op_id in chunk if op_id not in operations]
        if missing:  # an entry whose operation row is gone still shows its outcome
            for op_id, seq, action, diff in session.execute(
                    select(AuditEntry.operation_id, AuditEntry.seq, AuditEntry.action, AuditEntry.diff)
                    .where(AuditEntry.operation_id.in_(missing), chained)):
                entry_seen(op_id, seq, action, diff)
        for run in session.scalars(select(CommandRun).where(CommandRun.operation_id.in_(chunk))
                                   .order_by(CommandRun.operation_id, CommandRun.position)):
            runs.setdefault(run.operation_id, []).append(Run(
                _command_text(run.argv_list), run.exit_code, run.duration_ms, run.stdout or "", run.stderr or "",
                run.error, run.server_name))
    result = []
    for entry in entries:
        op = operations.get(entry.operation_id) if entry.operation_id is not None else None
        if entry.action in query.OUTCOME_ACTIONS:
            outcome_entry = Outcome(entry.seq, entry.action, entry.diff)
        else:
            outcome_entry = outcomes.get(entry.operation_id)
        # A finished operation's outcome is read from its chained entry, never from the mutable row;
        # the row only says what has no entry yet (pending work, a read that succeeded).
        if outcome_entry is not None:
            outcome = "applied" if outcome_entry.action == "operation.succeeded" else "failed"
        elif op is not None:
            outcome = op.outcome
        else:
            outcome = None
        kind = requested.get(entry.operation_id, (None, None))[1] if entry.operation_id is not None else None
        chained = Chained(kind) if kind in kinds.KINDS else op
        result.append(Row(entry, sentence(entry, chained), op, outcome, outcome_entry,
                          runs.get(entry.operation_id, []) if entry.operation_id is not None else []))
    return result


def _command_text(argv: list[str]) -> str:
    return shlex.join(argv) if isinstance(argv, list) else str(argv)


def row_for(entry: AuditEntry) -> Row:
    return rows([entry])[0]


# -- days ----------------------------------------------------------------------------------------

def day_label(day: date, today: date | None = None) -> str:
    today = today or clock.utcnow().date()
    if day == today:
        return "Today"
    if day == today - timedelta(days=1):
        return "Yesterday"
    text = f"{day:%A}, {day.day} {day:%B}"
    return text if day.year == today.year else f"{text} {day.year}"


def with_days(page_rows: list[Row], previous_day: date | None = None) -> list[tuple[str | None, Row]]:
    """(day label or None, row) pairs: a label wherever a new UTC day starts."""
    out = []
    today = clock.utcnow().date()
    for row in page_rows:
        if row.day != previous_day:
            out.append((day_label(row.day, today), row))
            previous_day = row.day
        else:
            out.append((None, row))
    return out


# -- scopes: which entries a page is about ---------------------------------------------------------

@dataclass
class Scope:
    """The server or app a timeline is about; names are copied into entries, so they outlive rows."""

    server_id: int | None = None
    server_name: str | None = None
    app_name: str | None = None
    server_exists: bool = True

    @property
    def conditions(self) -> list:
        if self.server_id is None:
            return []
        if self.app_name is not None:
            # By name: an app destroyed and created again shows its older history too.
            return [AuditEntry.server_name == self.server_name, AuditEntry.app_name == self.app_name]
        if self.server_exists:
            return [AuditEntry.server_name == self.server_name]
        return [AuditEntry.server_id == self.server_id]

    @property
    def title(self) -> str:
        if self.app_name is not None:
            return f"{self.app_name} on {self.server_name}"
        if self.server_name is not None:
            return self.server_name
        return "All servers"

    @property
    def kind(self) -> str:
        return "app" if self.app_name is not None else ("server" if self.server_id is not None else "all")


def server_scope(server_id: int, app_name: str | None = None) -> Scope | None:
    """The scope of /servers/<id>[/apps/<name>]: the server's name from the panel, or from its entries."""
    from intercity.models import Server

    server = db.session.get(Server, server_id)
    if server is not None:
        return Scope(server.id, server.name, app_name, True)
    name = db.session.scalar(select(AuditEntry.server_name).where(AuditEntry.server_id == server_id)
                             .order_by(AuditEntry.seq.desc()).limit(1))
    if name is None:
        return None
    return Scope(server_id, name, app_name, False)


def recent(server_id: int | None = None, app_name: str | None = None, limit: int = 10) -> list[Row]:
    """The latest entries for a server or app page (outcomes folded), newest first."""
    scope = server_scope(server_id, app_name) if server_id is not None else Scope()
    if scope is None:
        return []
    entries = db.session.scalars(query.entries_statement(scope.conditions, limit=limit)).all()
    return rows(list(entries))
