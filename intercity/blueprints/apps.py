"""Apps on a server: create, import, destroy, restart; env vars and domains."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from intercity import validation
from intercity.blueprints.panel_support import (
    AppForm, ConfirmForm, DomainForm, EnvEditForm, EnvPasteForm, EnvVarForm, back, fail, recent_timeline,
    region_operations, unconfirmed,
)
from intercity.extensions import db
from intercity.models import App, Domain, EnvVar, Server
from intercity.services import apps as app_service
from intercity.services import domains as domain_service
from intercity.services import env as env_service
from intercity.validation import ValidationError
from intercity.web import render, require_role

bp = Blueprint("apps", __name__, url_prefix="/servers/<int:server_id>/apps")

APP_KINDS = ("app.create", "app.restart", "app.refresh", "app.destroy")


def _server(server_id: int) -> Server:
    return db.get_or_404(Server, server_id)


def _app(server_id: int, name: str) -> App:
    app = db.session.scalar(select(App).where(App.server_id == server_id, App.name == name))
    if app is None:
        abort(404)
    return app


def _user():
    return current_user._get_current_object()


def _page(app: App) -> str:
    return url_for(".show", server_id=app.server_id, name=app.name)


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
        try:
            app = app_service.create_app(server, _user(), name=form.name.data)
        except ValidationError as error:
            fail(form, error, "name")
        else:
            db.session.commit()
            flash(f"Creating {app.name} on {server.name}…", "info")
            return redirect(_page(app), code=303)
    server = _server(server_id)
    return render_template("servers/show.html", **show_context(server, app_form=form)), 422


@bp.post("/import")
@require_role("member")
def import_apps(server_id: int):
    server = _server(server_id)
    app_service.import_apps(server, _user())
    db.session.commit()
    return back(url_for("servers.show", server_id=server.id, _anchor="apps"),
                f"Looking for apps on {server.name} that the panel does not have yet…", "info")


def _context(app: App, **forms) -> dict:
    pending = app_service.pending_operations(app)
    return dict(
        app=app,
        server=app.server,
        page_url=_page(app),
        ps=app_service.ps_status(app),
        pending=pending,
        app_operations=region_operations(APP_KINDS, app_id=app.id),
        env_operations=region_operations(("env.apply",), app_id=app.id),
        domain_operations=region_operations(("domains.apply",), app_id=app.id),
        env_form=forms.get("env_form") or EnvVarForm(formdata=None),
        paste_form=forms.get("paste_form") or EnvPasteForm(formdata=None),
        domain_form=forms.get("domain_form") or DomainForm(formdata=None),
        destroy_form=forms.get("destroy_form") or ConfirmForm(formdata=None),
        recent_rows=recent_timeline(app.server_id, app.name),
    )


def _invalid(server_id: int, name: str, **forms):
    app = _app(server_id, name)
    return render_template("apps/show.html", **_context(app, **forms)), 422


@bp.get("/<name>")
@login_required
def show(server_id: int, name: str):
    app = _app(server_id, name)
    return render_template("apps/show.html", **_context(app))


@bp.post("/<name>/restart")
@require_role("member")
def restart(server_id: int, name: str):
    app = _app(server_id, name)
    try:
        app_service.restart_app(app, _user())
    except ValidationError as error:
        db.session.rollback()
        return back(_page(app), error.message, "error")
    db.session.commit()
    return back(_page(app), f"Restarting {app.name}…", "info")


@bp.post("/<name>/refresh")
@require_role("member")
def refresh(server_id: int, name: str):
    app = _app(server_id, name)
    try:
        app_service.refresh_app(app, _user())
    except ValidationError as error:
        db.session.rollback()
        return back(_page(app), error.message, "error")
    db.session.commit()
    return back(_page(app), f"Reading the status of {app.name}…", "info")


@bp.post("/<name>/destroy")
@require_role("member")
def destroy(server_id: int, name: str):
    app = _app(server_id, name)
    form = ConfirmForm()
    try:
        app_service.destroy_app(app, _user(), confirm=form.confirm.data)
    except ValidationError as error:
        fail(form, error, "confirm")
        return _invalid(server_id, name, destroy_form=form)
    db.session.commit()
    return back(_page(app), f"Destroying {app.name}. It stays listed until Dokku confirms.", "info")


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
        try:
            result = env_service.set_var(app, _user(), key=form.key.data, value=form.value.data or "",
                                         restart=form.restart.data)
        except ValidationError as error:
            fail(form, error, "value")
        else:
            db.session.commit()
            return back(_page(app) + "#env", *_env_message(result, app))
    return _invalid(server_id, name, env_form=form)


@bp.post("/<name>/env/paste")
@require_role("member")
def paste_env(server_id: int, name: str):
    app = _app(server_id, name)
    form = EnvPasteForm()
    block_errors = []
    if form.validate_on_submit():
        try:
            preview = env_service.preview_block(app, _user(), text=form.block.data or "")
            if request.form.get("confirmed") != preview.token:
                # First what it will do; the same block confirmed applies it.
                return render_template("apps/show.html", **_context(app, paste_form=form), block_errors=[],
                                       paste_preview=preview)
            result = env_service.paste_block(app, _user(), text=form.block.data or "", restart=form.restart.data)
        except env_service.EnvBlockError as error:
            db.session.rollback()
            block_errors = error.lines
            form.block.errors = ["Nothing was changed. Fix these lines and paste again:"]
        except ValidationError as error:
            fail(form, error, "block")
        else:
            db.session.commit()
            return back(_page(app) + "#env", *_env_message(result, app))
    app = _app(server_id, name)
    return render_template("apps/show.html", **_context(app, paste_form=form), block_errors=block_errors), 422


@bp.route("/<name>/env/<key>/edit", methods=["GET", "POST"])
@require_role("member")
def edit_env(server_id: int, name: str, key: str):
    app = _app(server_id, name)
    var = db.session.scalar(select(EnvVar).where(EnvVar.app_id == app.id, EnvVar.key == key))
    if var is None:
        abort(404)
    form = EnvEditForm()
    if request.method == "POST" and request.form.get("load") == "1":
        # Editing starts from the current value: showing it is a reveal, audited as one.
        try:
            value = env_service.reveal(app, _user(), key=key)
        except ValidationError:
            abort(404)
        db.session.commit()
        form = EnvEditForm(formdata=None, data={"value": value, "restart": True})
        return render_template("apps/env_edit.html", app=app, server=app.server, key=key, form=form, loaded=True)
    if form.validate_on_submit():
        try:
            result = env_service.edit_var(app, _user(), key=key, value=form.value.data or "",
                                          restart=form.restart.data)
        except ValidationError as error:
            fail(form, error, "value")
            app = _app(server_id, name)
        else:
            db.session.commit()
            return back(_page(app) + "#env", *_env_message(result, app))
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
    try:
        result = env_service.remove_var(app, _user(), key=key, restart=restart)
    except ValidationError as error:
        db.session.rollback()
        return back(_page(app) + "#env", error.message, "error")
    db.session.commit()
    return back(_page(app) + "#env", *_env_message(result, app))


@bp.post("/<name>/env/<key>/reveal")
@require_role("member")
def reveal_env(server_id: int, name: str, key: str):
    app = _app(server_id, name)
    try:
        value = env_service.reveal(app, _user(), key=key)
    except ValidationError:
        abort(404)
    db.session.commit()
    return render("apps/reveal.html", "apps/_env_value.html", app=app, server=app.server, key=key, value=value,
                  revealed=True)


# --- domains -----------------------------------------------------------------------------


@bp.post("/<name>/domains")
@require_role("member")
def add_domain(server_id: int, name: str):
    app = _app(server_id, name)
    form = DomainForm()
    if form.validate_on_submit():
        try:
            domain, _ = domain_service.add_domain(app, _user(), hostname=form.domain.data)
        except ValidationError as error:
            fail(form, error, "domain")
        else:
            db.session.commit()
            shown = validation.domain_display(domain.hostname)
            return back(_page(app) + "#domains", f"Adding {shown} to {app.name}…", "info")
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
    try:
        domain_service.remove_domain(app, _user(), domain=domain)
    except ValidationError as error:
        db.session.rollback()
        return back(_page(app) + "#domains", error.message, "error")
    db.session.commit()
    return back(_page(app) + "#domains", f"Removing {hostname} from {app.name}…", "info")
