"""The "as of this entry" page's logic: an app then and now, and revealing a value it held then (audited, if kept)."""
from __future__ import annotations

from dataclasses import dataclass

from intercity.audit import as_of
from intercity.audit.capture import record_event
from intercity.audit.rules import Scope
from intercity.extensions import db
from intercity.models import App, AuditEntry
from intercity.services import retention, value_history
from intercity.services.permissions import require
from intercity.validation import ValidationError


@dataclass
class View:
    """An app as of an entry: names then and now, per part, and which earlier values are still kept."""

    entry: AuditEntry
    app: App | None
    env: list[as_of.Line]
    domains: list[as_of.Line]
    deploy_keys: list[as_of.Line]
    kept: set[str]  # env keys whose value then the history still holds
    keep: int


def view(entry: AuditEntry) -> View:
    """The app of `entry` as of that entry, compared with today (the app may be gone since: today is then empty)."""
    if entry.app_id is None:
        raise ValidationError(f"Entry #{entry.seq} does not concern an app.", None)
    app = db.session.get(App, entry.app_id)
    then = as_of.as_of(entry.app_id, entry.server_id, entry.seq)
    now = as_of.today(entry.app_id, entry.server_id) if app is not None else as_of.State()
    kept = {key for key, fingerprint in then.env.items() if fingerprint and entry.server_id is not None and
            value_history.find("env", server_id=entry.server_id, app_id=entry.app_id, name=key,
                               fingerprint=fingerprint) is not None}
    return View(entry, app, as_of.compare(then.env, now.env), as_of.compare_sets(then.domains, now.domains),
                as_of.compare(then.deploy_keys, now.deploy_keys), kept, retention.keep())


def reveal(entry: AuditEntry, user, *, key: str) -> str:
    """The value `key` had as of `entry`, if the history still keeps it; recorded like any reveal."""
    require(user, "member")
    if entry.app_id is None or entry.server_id is None:
        raise ValidationError(f"Entry #{entry.seq} does not concern an app.", "key")
    fingerprint = as_of.as_of(entry.app_id, entry.server_id, entry.seq).env.get(key)
    if fingerprint is None:
        raise ValidationError(f"{entry.app_name} had no variable {key} as of #{entry.seq}.", "key")
    kept = value_history.find("env", server_id=entry.server_id, app_id=entry.app_id, name=key, fingerprint=fingerprint)
    if kept is None:
        raise ValidationError(f"The value {key} had as of #{entry.seq} is no longer kept.", "key")
    record_event(db.session, "env_var.revealed", target_type="env_var", target_label=key,
                 scope=Scope(server_id=entry.server_id, server_name=entry.server_name, app_id=entry.app_id,
                             app_name=entry.app_name),
                 diff={"as_of": [None, entry.seq]})
    return kept.value
