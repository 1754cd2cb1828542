"""How a model is audited, declared once on the model as `__audit__`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

CATEGORIES = ("security", "app", "server", "team")


@dataclass(frozen=True)
class Scope:
    """The server and app an entry concerns, by id and copied name."""

    server_id: int | None = None
    server_name: str | None = None
    app_id: int | None = None
    app_name: str | None = None


@dataclass(frozen=True)
class AuditRule:
    """One model's audit declaration.

    `name` prefixes actions (`env_var` -> `env_var.created`); `category` applies to every
    action unless `classify` says otherwise; `ignore` fields are operational state whose
    changes are not entries; `parent` names the relationship whose deletion cascades to this
    model (the children's entries say `caused_by="app:12"`).

    `secret` values never reach an entry. An update that changes one is still recorded: the
    diff names the field with "[redacted]" on both sides, unless an audited fingerprint field
    of the same stem shows the change (`value_encrypted` -> `value_fingerprint`).
    """

    name: str
    category: str
    label: Callable[[Any], str]
    scope: Callable[[Any], Scope]
    secret: frozenset[str] = frozenset()
    ignore: frozenset[str] = frozenset({"created_at", "updated_at"})
    parent: str | None = None
    # (obj, verb, diff) -> (action, category), or None for "no entry"; default is `name.verb`.
    classify: Callable[[Any, str, dict], tuple[str, str] | None] | None = None
    verbs: tuple[str, ...] = ("created", "updated", "deleted")
    # Bulk UPDATE/DELETE is refused unless no audited field can change that way.
    bulk_ok: bool = False

    def __post_init__(self):
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown audit category {self.category!r}")

    def action(self, obj, verb: str, diff: dict) -> tuple[str, str] | None:
        if verb not in self.verbs:
            return None
        if self.classify is not None:
            return self.classify(obj, verb, diff)
        return f"{self.name}.{verb}", self.category


# Explicit events (not row changes) declare their category here, so every action has one.
EVENT_CATEGORIES: dict[str, str] = {
    "user.login": "security",
    "user.login_failed": "security",
    "user.logout": "security",
    "server.host_key_mismatch": "security",
    "audit.verified": "security",
    "audit.verify_failed": "security",
    "audit.exported": "security",
    "env_var.revealed": "security",
}

# Notifications write these (targets and preferences are audited models: notification_target.added/removed,
# notification_preference.updated, digest.unsubscribed).
EVENT_CATEGORIES.update({
    "settings.changed": "security",
    "notification.test_sent": "team",
    "notification.retried": "team",
    "digest.sent_on_demand": "team",
})

# Entries mailed at once to everyone who wants security alerts. A minimal table: the category table of the
# timeline's search work replaces it with per-action flags.
ALERTED_ACTIONS = frozenset({
    "env_var.created", "env_var.updated", "env_var.deleted", "env_var.revealed",
    "deploy_key.created", "deploy_key.deleted",
    "server.host_key_mismatch",
    "user.invited", "user.deleted", "user.deactivated", "user.role_changed", "user.2fa_disabled",
    "user.login_failures_repeated",
})


def is_alerted(action: str) -> bool:
    """Whether entries of this action are sent as security alerts at once."""
    return action in ALERTED_ACTIONS
