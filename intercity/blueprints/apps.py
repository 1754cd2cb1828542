"""Apps on a server: create, import, destroy, restart; env vars and domains."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import login_required

from intercity import validation
from intercity.blueprints.panel_support import (
    AppForm, ConfirmForm, DomainForm, EnvEditForm, EnvPasteForm, EnvVarForm, attempt, back, recent_timeline,
    unconfirmed,
)
from intercity.blueprints.panel_support import signed_in_user as _user, server_or_404 as _server, app_or_404 as _app
from intercity.blueprints import tls as tls_views
from intercity.extensions import db
from intercity.models import App, Domain
from intercity.services import drift as drift_service
from intercity.services import apps as app_service
from intercity.services import deploys as deploy_service
from intercity.services import domains as domain_service
from intercity.services import env as env_service
from intercity.services.operations import region_operations
from intercity.services import row_state
from intercity.web import render, render_page, require_role


def deploys_context(app):
    from intercity.blueprints.deploys import page_context  # it imports this module

    return page_context(app)


bp = Blueprint("apps", __name__, url_prefix="/servers/<int:server_id>/apps")

# The app page's regions that reload themselves, each with the fragments that answer its reload.
REGIONS = {
    "app-status": ("apps/_status.html", "apps/_head.html"),
    "env": ("apps/_env.html",),
    "domains": ("apps/_domains.html",),
    "app-tls": ("apps/_tls.html",),
    "recent-region": ("_partials/_recent_region.html",),
    "deploy-source": ("apps/_deploy_source.html",),
    "processes": ("apps/_processes.html", "apps/_head.html"),
    "deploys": ("apps/_deploys.html",),
}
# Forms that change env vars or domains also refresh the head, the status (pending operations) and the activity.
APP_OOB = "#flashes,#app-head,#app-status,#recent-activity,#app-tls"

def _page(app: App) -> str:
    return url_for("apps.show", server_id=app.server_id, name=app.name)


@bp.get("")
@login_required
def index(server_id: int):
    server = _server(server_id)
    return redirect(url_for("servers.show", server_id=server.id, _anchor="apps"))


@bp.post("")
@require_role("member")
def create(server_id: int):
    from intercity.blueprints.servers import show_context

    server = _server(server_id)
    form = AppForm()
    if form.validate_on_submit():
        app, error = attempt(lambda: app_service.create_app(server, _user(), name=form.name.data), form, "name")
        if error is None:
            flash(f"Creating {app.name} on {server.name}…", "info")
            return redirect(_page(app), code=303)
    server = _server(server_id)
    return render_template("servers/show.html", **show_context(server, app_form=form)), 422


@bp.post("/import")
@require_role("member")
def import_apps(server_id: int):
    server = _server(server_id)
    attempt(lambda: app_service.import_apps(server, _user()))
    return back(url_for("servers.show", server_id=server.id, _anchor="apps"),
                f"Looking for apps on {server.name} that the panel does not have yet…", "info")


def _context(app: App, **forms) -> dict:
    from intercity.blueprints.panel_deploys import page_context  # deploys from the panel and logs

    pending = app_service.pending_operations(app)
    return dict(
        **page_context(app, forms),
        app=app,
        server=app.server,
        page_url=_page(app),
        ps=app_service.ps_status(app),
        pending=pending,
        app_operations=region_operations("app-status", app_id=app.id),
        env_operations=region_operations("env", app_id=app.id),
        env_states=row_state.env_views(app),
        env_removals=row_state.env_removals(app),
        env_differs=drift_service.differs_on_server(app),
        domain_states=row_state.domain_views(app),
        domain_removals=row_state.domain_removals(app),
        app_row=row_state.app_view(app),
        domain_operations=region_operations("domains", app_id=app.id),
        env_form=forms.get("env_form") or EnvVarForm(formdata=None),
        paste_form=forms.get("paste_form") or EnvPasteForm(formdata=None),
        domain_form=forms.get("domain_form") or DomainForm(formdata=None),
        destroy_form=forms.get("destroy_form") or ConfirmForm(formdata=None),
        recent_rows=recent_timeline(app.server_id, app.name),
        cards_page="app",
        app_oob=APP_OOB,
        **tls_views.app_context(app),
        **deploys_context(app),
    )


def _invalid(server_id: int, name: str, **forms):
    app = _app(server_id, name)
    return render_template("apps/show.html", **_context(app, **forms)), 422


@bp.get("/<name>")
@login_required
def show(server_id: int, name: str):
    app = app_service.find_app(server_id, name)
    if app is None:
        return _gone(server_id, name)
    if not request.args.get("region"):
        attempt(lambda: deploy_service.read_when_opened(app, _user()))  # builds and processes, once a minute
    return render_page("apps/show.html", REGIONS, **_context(app))


def _gone(server_id: int, name: str):
    """An app the panel had and destroyed: say so and point to its history, not a bare "Not found"."""
    server = _server(server_id)
    deleted = app_service.deletion_entry(server, name)
    if deleted is None:
        abort(404)
    return render_template("apps/gone.html", server=server, name=name, deleted=deleted), 404


@bp.post("/<name>/restart")
@require_role("member")
def restart(server_id: int, name: str):
    app = _app(server_id, name)
    op, error = attempt(lambda: app_service.restart_app(app, _user()))
    if error is not None:
        return back(_page(app), error.message, "error")
    return back(_page(app), f"Restarting {app.name}…", "info", operation=op)


@bp.post("/<name>/refresh")
@require_role("member")
def refresh(server_id: int, name: str):
    app = _app(server_id, name)
    op, error = attempt(lambda: app_service.refresh_app(app, _user()))
    if error is not None:
        return back(_page(app), error.message, "error")
    return back(_page(app), f"Reading the status of {app.name}…", "info", operation=op)


@bp.post("/<name>/destroy")
@require_role("member")
def destroy(server_id: int, name: str):
    app = _app(server_id, name)
    form = ConfirmForm()
    op, error = attempt(lambda: app_service.destroy_app(app, _user(), confirm=form.confirm.data), form, "confirm")
    if error is not None:
        return _invalid(server_id, name, destroy_form=form)
    return back(_page(app), f"Destroying {app.name}. It stays listed until Dokku confirms.", "info", operation=op)


# --- environment variables ---------------------------------------------------------------


def _env_message(result: env_service.EnvResult, app: App) -> tuple[str, str]:
    if not result.operation:
        return f"Nothing changed: {', '.join(result.unchanged)} already had that value.", "info"
    parts = []
    if result.set:
        parts.append(f"Setting {', '.join(result.set)}")
    if result.removed:
        parts.append(f"Removing {', '.join(result.removed)}")
    text = " and ".join(parts) + f" on {app.name}"
    if result.unchanged:
        text += f" ({', '.join(result.unchanged)} unchanged)"
    return text + "…", "info"


@bp.post("/<name>/env")
@require_role("member")
def set_env(server_id: int, name: str):
    app = _app(server_id, name)
    form = EnvVarForm()
    if form.validate_on_submit():
        result, error = attempt(lambda: env_service.set_var(app, _user(), key=form.key.data, value=form.value.data or "",
                                                            restart=form.restart.data), form, "value")
        if error is None:
            return back(_page(app) + "#env", *_env_message(result, app), operation=result.operation)
    return _invalid(server_id, name, env_form=form)


@bp.post("/<name>/env/paste")
@require_role("member")
def paste_env(server_id: int, name: str):
    app = _app(server_id, name)
    form = EnvPasteForm()
    block_errors = []
    if form.validate_on_submit():
        def paste():
            preview = env_service.preview_block(app, _user(), text=form.block.data or "")
            if request.form.get("confirmed") != preview.token:
                return preview  # first what it will do; the same block confirmed applies it
            return env_service.paste_block(app, _user(), text=form.block.data or "", restart=form.restart.data)

        result, error = attempt(paste, form, "block")
        if isinstance(result, env_service.EnvPreview):
            return render_template("apps/show.html", **_context(app, paste_form=form), block_errors=[],
                                   paste_preview=result)
        if error is None:
            return back(_page(app) + "#env", *_env_message(result, app), operation=result.operation)
        if isinstance(error, env_service.EnvBlockError):
            block_errors = error.lines
            form.block.errors = ["Nothing was changed. Fix these lines and paste again:"]
    app = _app(server_id, name)
    return render_template("apps/show.html", **_context(app, paste_form=form), block_errors=block_errors), 422


@bp.route("/<name>/env/<key>/edit", methods=["GET", "POST"])
@require_role("member")
def edit_env(server_id: int, name: str, key: str):
    app = _app(server_id, name)
    if env_service.get_var(app, key) is None:
        abort(404)
    form = EnvEditForm()
    if request.method == "POST" and request.form.get("load") == "1":
        # Editing starts from the current value: showing it is a reveal, audited as one.
        try:
            value = env_service.reveal(app, _user(), key=key)
        except validation.ValidationError:
            abort(404)
        db.session.commit()
        form = EnvEditForm(formdata=None, data={"value": value, "restart": True})
        return render_template("apps/env_edit.html", app=app, server=app.server, key=key, form=form, loaded=True)
    if form.validate_on_submit():
        result, error = attempt(lambda: env_service.edit_var(app, _user(), key=key, value=form.value.data or "",
                                                             restart=form.restart.data), form, "value")
        if error is None:
            return back(_page(app) + "#env", *_env_message(result, app), operation=result.operation)
        app = _app(server_id, name)
    status = 422 if request.method == "POST" else 200
    return render_template("apps/env_edit.html", app=app, server=app.server, key=key, form=form,
                           loaded=False), status


@bp.post("/<name>/env/<key>/remove")
@require_role("member")
def remove_env(server_id: int, name: str, key: str):
    app = _app(server_id, name)
    if (page := unconfirmed(f"Remove {key}", f"Remove {key} from {app.name}? The app restarts.",
                            _page(app) + "#env")) is not None:
        return page
    restart = request.form.get("restart", "on") not in ("", "0", "off", "false")
    result, error = attempt(lambda: env_service.remove_var(app, _user(), key=key, restart=restart))
    if error is not None:
        return back(_page(app) + "#env", error.message, "error")
    return back(_page(app) + "#env", *_env_message(result, app), operation=result.operation)


@bp.post("/<name>/env/<key>/reveal")
@require_role("member")
def reveal_env(server_id: int, name: str, key: str):
    app = _app(server_id, name)
    value, error = attempt(lambda: env_service.reveal(app, _user(), key=key))
    if error is not None:
        abort(404)
    return render("apps/reveal.html", "apps/_env_value.html", app=app, server=app.server, key=key, value=value,
                  revealed=True)


# --- domains -----------------------------------------------------------------------------


@bp.post("/<name>/domains")
@require_role("member")
def add_domain(server_id: int, name: str):
    app = _app(server_id, name)
    form = DomainForm()
    if form.validate_on_submit():
        added, error = attempt(lambda: domain_service.add_domain(app, _user(), hostname=form.domain.data), form,
                               "domain")
        if error is None:
            domain, op = added
            shown = validation.domain_display(domain.hostname)
            message = f"Adding {shown} to {app.name}…" + tls_views.renewal_hint(app, domain.hostname)
            return back(_page(app) + "#domains", message, "info", operation=op)
    return _invalid(server_id, name, domain_form=form)


@bp.post("/<name>/domains/<int:domain_id>/remove")
@require_role("member")
def remove_domain(server_id: int, name: str, domain_id: int):
    app = _app(server_id, name)
    domain = db.get_or_404(Domain, domain_id)
    if domain.app_id != app.id:
        abort(404)
    hostname = domain.hostname
    if (page := unconfirmed(f"Remove {hostname}", f"Remove {hostname} from {app.name}?",
                            _page(app) + "#domains")) is not None:
        return page
    op, error = attempt(lambda: domain_service.remove_domain(app, _user(), domain=domain))
    if error is not None:
        return back(_page(app) + "#domains", error.message, "error")
    return back(_page(app) + "#domains", f"Removing {hostname} from {app.name}…", "info", operation=op)
