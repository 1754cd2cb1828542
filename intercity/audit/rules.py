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
    # Roles and access are security; logging in and out is the team's everyday life.
    "user.login": "team",
    "user.logout": "team",
    "user.login_failed": "security",
    "user.login_failures_repeated": "security",
    "user.session_ended": "security",
    "server.host_key_mismatch": "security",
    "audit.verified": "security",
    "audit.verify_failed": "security",
    "audit.exported": "security",
    "env_var.revealed": "security",
}
