"""Deploys: an app's processes (scale, rebuild, stop, start) and the list of every app across servers."""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, render_template, request, url_for
from flask_login import login_required

from intercity.blueprints.panel_support import attempt, back
from intercity.blueprints.panel_support import signed_in_user as _user, app_or_404 as _app
from intercity.dokku.builds import SOURCE_WORDS
from intercity.services import deploys as deploy_service
from intercity.services.operations import region_operations
from intercity.web import require_role

bp = Blueprint("deploys", __name__)

APP_OOB = "#flashes,#app-head,#app-status,#recent-activity"


@bp.app_context_processor
def _links():
    # Every page that lists apps links to them the same way (services.deploys.app_urls).
    return {"app_urls_of": deploy_service.app_urls}


def _page(app) -> str:
    return url_for("apps.show", server_id=app.server_id, name=app.name)


def page_context(app) -> dict:
    """What the app page's deploy parts show (the app page's context includes it)."""
    read = deploy_service.last_read(app)
    updated = (read.info or {}).get("last_updated_at") if read is not None else None
    return dict(builds=deploy_service.recent_builds(app), deploy_read=read,
                deploy_updated_at=datetime.fromtimestamp(updated, timezone.utc) if isinstance(updated, int) else None,
                app_urls=deploy_service.app_urls(app), processes_oob=APP_OOB, source_words=SOURCE_WORDS,
                process_operations=region_operations("processes", app_id=app.id),
                deploy_operations=region_operations("deploys", app_id=app.id),
                scale_errors={}, scale_values={})


def _member_action(server_id: int, name: str, call, started: str):
    app = _app(server_id, name)
    op, error = attempt(lambda: call(app, _user()))
    if error is not None:
        return back(_page(app) + "#processes", error.message, "error")
    return back(_page(app) + "#processes", started.format(app=app.name), "info", operation=op)


@bp.post("/servers/<int:server_id>/apps/<name>/scale")
@require_role("member")
def scale(server_id: int, name: str):
    from intercity.blueprints.apps import _context

    app = _app(server_id, name)
    values = {key: value for key, value in request.form.items() if key.startswith("scale-") or key.startswith("new_")}

    def request_scale():
        return deploy_service.scale_app(app, _user(), deploy_service.parse_scale_form(values))

    op, error = attempt(request_scale)
    if error is None:
        return back(_page(app) + "#processes", f"Scaling {app.name}…", "info", operation=op)
    app = _app(server_id, name)
    context = _context(app)
    context.update(scale_errors={error.field or "new_type": error.message}, scale_values=values)
    return render_template("apps/show.html", **context), 422


@bp.post("/servers/<int:server_id>/apps/<name>/rebuild")
@require_role("member")
def rebuild(server_id: int, name: str):
    return _member_action(server_id, name, deploy_service.rebuild_app, "Rebuilding {app} from its last source…")


@bp.post("/servers/<int:server_id>/apps/<name>/stop")
@require_role("member")
def stop(server_id: int, name: str):
    return _member_action(server_id, name, deploy_service.stop_app, "Stopping {app}…")


@bp.post("/servers/<int:server_id>/apps/<name>/start")
@require_role("member")
def start(server_id: int, name: str):
    return _member_action(server_id, name, deploy_service.start_app, "Starting {app}…")


@bp.post("/servers/<int:server_id>/apps/<name>/builds/<build_id>/output")
@require_role("member")
def build_output(server_id: int, name: str, build_id: str):
    app = _app(server_id, name)
    op, error = attempt(lambda: deploy_service.build_output(app, _user(), build_id))
    if error is not None:
        return back(_page(app) + "#deploys", error.message, "error")
    return back(_page(app) + "#deploys", f"Reading the log of build {build_id} from {app.server.name}…", "info",
                operation=op)


@bp.get("/apps")
@login_required
def all_apps():
    query = request.args.get("q", "")[:255]
    apps = deploy_service.all_apps(query)
    servers = sorted({app.server_id for app in apps})
    return render_template("deploys/all_apps.html", apps=apps, query=query,
                           last_deploys=deploy_service.last_deploys(servers),
                           states=deploy_service.states_for(apps))
