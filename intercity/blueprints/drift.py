"""Drift checks on the server page: check now, how often, Dokku's event log; an env row that differs on the server."""
from __future__ import annotations

from flask import Blueprint, request, url_for
from sqlalchemy import select

from intercity.blueprints.panel_support import attempt, back
from intercity.blueprints.panel_support import signed_in_user as _user, server_or_404 as _server
from intercity.extensions import db
from intercity.models import App, Server
from intercity.services import drift as drift_service
from intercity.services.operations import region_operations
from intercity.web import require_role

bp = Blueprint("drift", __name__, url_prefix="/servers/<int:server_id>")


def drift_context(server: Server) -> dict:
    """What servers/_drift.html needs, for the server page and its `drift` region."""
    return dict(drift=drift_service.summary(server),
                drift_operations=region_operations("drift", server_id=server.id))


def _page(server: Server) -> str:
    return url_for("servers.show", server_id=server.id)


@bp.post("/drift/check")
@require_role("member")
def check_now(server_id: int):
    server = _server(server_id)
    op, error = attempt(lambda: drift_service.check_now(server, _user()))
    if error is not None:
        return back(_page(server), error.message, "error")
    return back(_page(server), f"Checking {server.name} for changes made outside the panel…", "info", operation=op)


@bp.post("/drift/interval")
@require_role("admin")
def interval(server_id: int):
    server = _server(server_id)
    minutes, error = attempt(lambda: drift_service.set_interval(server, _user(), request.form.get("interval")))
    if error is not None:
        return back(_page(server), error.message, "error")
    said = f"every {minutes} minutes" if minutes else "only when someone asks (scheduled checks are off)"
    return back(_page(server), f"{server.name} is checked {said}.", "success")


@bp.post("/drift/events-on")
@require_role("admin")
def events_on(server_id: int):
    server = _server(server_id)
    op, error = attempt(lambda: drift_service.turn_events_on(server, _user()))
    if error is not None:
        return back(_page(server), error.message, "error")
    return back(_page(server), f"Turning on Dokku's event log on {server.name}…", "info", operation=op)


@bp.post("/apps/<name>/env/<key>/keep-server-value")
@require_role("member")
def keep_server_value(server_id: int, name: str, key: str):
    server = _server(server_id)
    app = db.first_or_404(select(App).where(App.server_id == server.id, App.name == name))
    page = url_for("apps.show", server_id=server.id, name=app.name)
    _, error = attempt(lambda: drift_service.keep_server_value(app, _user(), key))
    if error is not None:
        return back(page, error.message, "error")
    return back(page, f"The panel now wants {key} as the server has it; nothing changed on the server.", "success")
