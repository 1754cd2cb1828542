"""How a model is audited, declared once on the model as `__audit__`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from intercity.audit.categories import CATEGORIES

# What stands in for a secret wherever one would show: diffs, command lines, transcripts, warnings.
REDACTED = "[redacted]"


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

    `name` prefixes actions (`env_var` -> `env_var.created`); each action's category comes from
    the table in intercity/audit/categories.py (a `category` given here must agree with it);
    `ignore` fields are operational state whose
    changes are not entries; `parent` names the relationship whose deletion cascades to this
    model (the children's entries say `caused_by="app:12"`).

    `secret` values never reach an entry. An update that changes one is still recorded: the
    diff names the field with "[redacted]" on both sides, unless an audited fingerprint field
    of the same stem shows the change (`value_encrypted` -> `value_fingerprint`).
    """

    name: str
    label: Callable[[Any], str]
    scope: Callable[[Any], Scope]
    category: str | None = None
    secret: frozenset[str] = frozenset()
    ignore: frozenset[str] = frozenset({"created_at", "updated_at"})
    parent: str | None = None
    # (obj, verb, diff) -> action, (action, category) or None for "no entry"; default is `name.verb`.
    classify: Callable[[Any, str, dict], str | tuple[str, str] | None] | None = None
    # With `classify`: every action it can return (so a test can check each has a table row), or a
    # function giving them where they are declared elsewhere (operation kinds).
    actions: tuple[str, ...] | Callable[[], tuple[str, ...]] = ()
    verbs: tuple[str, ...] = ("created", "updated", "deleted")
    # Bulk UPDATE/DELETE is refused unless no audited field can change that way.
    bulk_ok: bool = False

    def __post_init__(self):
        if self.category is not None and self.category not in CATEGORIES:
            raise ValueError(f"unknown audit category {self.category!r}")

    def action(self, obj, verb: str, diff: dict) -> tuple[str, str | None] | None:
        """(action, category stated by the model or None), or None for "no entry"."""
        if verb not in self.verbs:
            return None
        if self.classify is not None:
            decided = self.classify(obj, verb, diff)
            if decided is None or isinstance(decided, tuple):
                return decided
            return decided, self.category
        return f"{self.name}.{verb}", self.category

    def possible_actions(self) -> set[str]:
        if self.classify is not None:
            return set(self.actions() if callable(self.actions) else self.actions)
        return {f"{self.name}.{verb}" for verb in self.verbs}
