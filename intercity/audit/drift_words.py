"""How the timeline words what a drift check found on a server, and who Dokku's event log says did it."""
from __future__ import annotations

# action -> (what happened to the target, preposition before the app or server, noun before the label)
_WORDS = {
    "env_var.changed_outside": ("changed", "on", ""),
    "env_var.added_outside": ("set", "on", ""),
    "env_var.removed_outside": ("removed", "from", ""),
    "app.created_outside": ("created", "on", "app "),
    "app.destroyed_outside": ("destroyed", "on", "app "),
    "domain.added_outside": ("added", "to", "domain "),
    "domain.removed_outside": ("removed", "from", "domain "),
    "deploy_key.added_outside": ("added", "to", "deploy key "),
    "deploy_key.removed_outside": ("removed", "from", "deploy key "),
}
ACTIONS = frozenset({*_WORDS, "server.unreachable", "server.reachable", "env_var.server_value_kept"})


def attribution_text(outside: dict | None, server_name: str | None) -> str:
    """" by key ci-bot (SHA256:…)", " by someone with root on prod-1", or why nobody can be named."""
    outside = outside or {}
    by = outside.get("by")
    if by == "key":
        fingerprint = outside.get("fingerprint")
        return f" by key {outside.get('name')}" + (f" ({fingerprint})" if fingerprint else "")
    if by == "root":
        return f" by someone with root on {server_name or 'the server'}"
    note = outside.get("note")
    return f" ({note})" if note else ""


def predicate(entry, label) -> list:
    from intercity.audit.timeline import Part, _app_place, _new, _server_place

    changes = entry.changes
    action = entry.action
    if action == "server.unreachable":
        reason = _new(changes, "reason")
        return [Part(": "), Part(entry.server_name or "the server", "target"), Part(" could not be reached"),
                *([Part(f" ({reason})")] if reason else [])]
    if action == "server.reachable":
        return [Part(": "), Part(entry.server_name or "the server", "target"), Part(" can be reached again")]
    if action == "env_var.server_value_kept":
        return [Part(" kept the server's value of "), label, *_app_place(entry)]
    verb, preposition, noun = _WORDS[action]
    # An app's own entry names the server; its rows' entries name the app (and server).
    on_app = entry.app_name and noun != "app "
    place = _app_place(entry, preposition) if on_app else _server_place(entry, preposition)
    return [Part(f": {noun}"), label, *place, Part(f" {verb} outside the panel"),
            Part(attribution_text(changes.get("outside"), entry.server_name))]
