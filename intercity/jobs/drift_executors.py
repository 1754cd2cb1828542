"""Executors beside the drift check: turning Dokku's event log on, so changes made outside can be attributed."""
from __future__ import annotations

from intercity.dokku import drift_commands
from intercity.extensions import db


def events_on(ctx) -> None:
    ctx.run(drift_commands.events_on())
    server = ctx.server()
    state = dict(server.drift_state or {})
    state["events"] = {**(state.get("events") or {}), "enabled": True, "problem": None}
    server.drift_state = state
    db.session.commit()
