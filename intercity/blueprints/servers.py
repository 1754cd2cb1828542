"""Servers: list, add, test the connection, host keys, deploy keys, remove."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from intercity.blueprints.panel_support import (
    AppForm, ConfirmForm, DeployKeyForm, ServerForm, back, fail, recent_timeline, region_operations,
    unconfirmed,
)
from intercity.extensions import db
from intercity.models import DeployKey, Operation, Server
from intercity.models.operation import PENDING
from intercity.services import apps as app_service
from intercity.services import deploy_keys as key_service
from intercity.services import servers as server_service
from intercity.validation import ValidationError
from intercity.web import require_role

bp = Blueprint("servers", __name__, url_prefix="/servers")

SERVER_KINDS = ("server.check",)
IMPORT_KINDS = ("server.import",)
KEY_KINDS = ("deploy_keys.apply", "server.refresh_keys")


def _server(server_id: int) -> Server:
    return db.get_or_404(Server, server_id)


def _user():
    return current_user._get_current_object()


@bp.get("")
@login_required
def index():
    servers = db.session.scalars(select(Server).order_by(Server.name)).all()
    return render_template("servers/index.html", servers=servers)


@bp.route("/new", methods=["GET", "POST"])
@require_role("admin")
def new():
    form = ServerForm()
    if form.validate_on_submit():
        try:
            server = server_service.add_server(
                _user(), name=form.name.data, host=form.host.data, port=form.port.data,
                ssh_user=form.ssh_user.data, expected_fingerprint=form.host_key_fingerprint.data)
        except ValidationError as error:
            fail(form, error)
        else:
            db.session.commit()
            flash(f"{server.name} is in the panel. Install the panel's key on it, then test the connection.",
                  "success")
            return redirect(url_for(".show", server_id=server.id), code=303)
    status = 422 if request.method == "POST" else 200
    return render_template("servers/new.html", form=form), status


def app_states(server: Server) -> dict[int, tuple[str, str]]:
    """A short state per app for the list: (text, badge class)."""
    ops = db.session.scalars(
        select(Operation).where(Operation.server_id == server.id, Operation.app_id.is_not(None))
        .where(Operation.status.in_(PENDING) | (Operation.kind == "app.create"))
        .order_by(Operation.id)
    ).all()
    pending: dict[int, list[Operation]] = {}
    last_create: dict[int, Operation] = {}
    for op in ops:
        if op.status in PENDING:
            pending.setdefault(op.app_id, []).append(op)
        if op.kind == "app.create":
            last_create[op.app_id] = op
    states = {}
    for app in server.apps:
        waiting = pending.get(app.id, [])
        create = last_create.get(app.id)
        if app.status == "destroying":
            states[app.id] = ("being destroyed", "pending")
        elif any(op.kind == "app.create" for op in waiting):
            states[app.id] = ("being created", "pending")
        elif create is not None and create.status == "failed":
            states[app.id] = ("creation failed", "failed")
        elif waiting:
            states[app.id] = (f"{len(waiting)} pending", "pending")
        else:
            states[app.id] = ps_summary(app_service.ps_status(app))
    return states


def ps_summary(ps: dict | None) -> tuple[str, str]:
    if ps is None:
        return ("status not read yet", "")
    if not ps.get("deployed"):
        return ("not deployed", "new")
    running = ps.get("running")
    if running is True:
        return ("running", "ok")
    if running is False:
        return ("stopped", "failed")
    return ("partly running", "pending")


def show_context(server: Server, app_form: AppForm | None = None) -> dict:
    return dict(
        server=server,
        page_url=url_for("servers.show", server_id=server.id),
        app_states=app_states(server),
        app_form=app_form or AppForm(formdata=None),
        check_operations=region_operations(SERVER_KINDS, server_id=server.id),
        import_operations=region_operations(IMPORT_KINDS, server_id=server.id),
        authorized_keys_line=server_service.authorized_keys_line(server),
        sudoers_line=server_service.sudoers_line(server),
        recent_rows=recent_timeline(server.id),
    )


@bp.get("/<int:server_id>")
@login_required
def show(server_id: int):
    server = _server(server_id)
    return render_template("servers/show.html", **show_context(server))


@bp.post("/<int:server_id>/check")
@require_role("admin")
def check(server_id: int):
    server = _server(server_id)
    op = server_service.request_connection_test(server, _user())
    db.session.commit()
    return back(url_for(".show", server_id=server.id), f"Testing the connection to {server.name}…", "info",
                operation=op)


@bp.post("/<int:server_id>/host-key/accept")
@require_role("admin")
def accept_host_key(server_id: int):
    server = _server(server_id)
    try:
        server_service.accept_host_key(server, _user(), fingerprint=request.form.get("fingerprint"))
    except ValidationError as error:
        db.session.rollback()
        return back(url_for(".show", server_id=server.id), error.message, "error")
    db.session.commit()
    return back(url_for(".show", server_id=server.id),
                f"The new host key of {server.name} is trusted now. Testing the connection again…")


@bp.route("/<int:server_id>/remove", methods=["GET", "POST"])
@require_role("admin")
def remove(server_id: int):
    server = _server(server_id)
    form = ConfirmForm()
    line = server_service.authorized_keys_line(server)
    if form.validate_on_submit():
        try:
            name = server_service.remove_server(server, _user(), confirm=form.confirm.data)
        except ValidationError as error:
            fail(form, error, "confirm")
            server = _server(server_id)
        else:
            db.session.commit()
            flash(f"{name} was removed from the panel. Nothing was changed on the server itself: remove the "
                  f"panel's key from the SSH user's authorized_keys there if you no longer want the panel to reach it.",
                  "success")
            return redirect(url_for(".index"), code=303)
    status = 422 if request.method == "POST" else 200
    pending = db.session.scalar(select(db.func.count(Operation.id)).where(
        Operation.server_id == server.id, Operation.status.in_(PENDING))) or 0
    return render_template("servers/remove.html", server=server, form=form, authorized_keys_line=line,
                           pending=pending), status


# --- deploy keys -------------------------------------------------------------------------


def _keys_context(server: Server, form: DeployKeyForm | None = None, preview=None) -> dict:
    return dict(
        server=server,
        page_url=url_for("servers.deploy_keys", server_id=server.id),
        form=form or DeployKeyForm(formdata=None),
        preview=preview,
        unmanaged=key_service.unmanaged_keys(server),
        key_operations=region_operations(KEY_KINDS, server_id=server.id),
    )


@bp.get("/<int:server_id>/deploy-keys")
@login_required
def deploy_keys(server_id: int):
    server = _server(server_id)
    return render_template("servers/deploy_keys.html", **_keys_context(server))


@bp.post("/<int:server_id>/deploy-keys")
@require_role("admin")
def add_deploy_key(server_id: int):
    """Two steps: the first submit shows the key's fingerprint, the second (confirmed) adds it."""
    server = _server(server_id)
    form = DeployKeyForm()
    preview = None
    if form.validate_on_submit():
        try:
            name, key = key_service.check_new(server, name=form.name.data, public_key=form.public_key.data)
            if form.confirmed.data == key.fingerprint:
                deploy_key, _ = key_service.add_key(server, _user(), name=name, public_key=form.public_key.data)
            else:
                preview = key
        except ValidationError as error:
            fail(form, error)
        else:
            if preview is None:
                db.session.commit()
                return back(url_for(".deploy_keys", server_id=server.id),
                            f"Adding deploy key {deploy_key.name} ({deploy_key.fingerprint}) to {server.name}…")
    status = 422 if form.errors else 200
    return render_template("servers/deploy_keys.html", **_keys_context(server, form, preview)), status


@bp.post("/<int:server_id>/deploy-keys/<int:key_id>/remove")
@require_role("admin")
def remove_deploy_key(server_id: int, key_id: int):
    server = _server(server_id)
    deploy_key = db.get_or_404(DeployKey, key_id)
    if deploy_key.server_id != server.id:
        abort(404)
    name = deploy_key.name
    if (page := unconfirmed(f"Remove deploy key {name}",
                            f"Remove deploy key {name} from {server.name}? Pushes with it stop working.",
                            url_for(".deploy_keys", server_id=server.id))) is not None:
        return page
    op = key_service.remove_key(server, _user(), deploy_key=deploy_key)
    db.session.commit()
    return back(url_for(".deploy_keys", server_id=server.id), f"Removing deploy key {name} from {server.name}…",
                operation=op)


@bp.post("/<int:server_id>/deploy-keys/adopt")
@require_role("admin")
def adopt_deploy_key(server_id: int):
    server = _server(server_id)
    try:
        deploy_key = key_service.adopt_key(server, _user(), fingerprint=request.form.get("fingerprint", ""))
    except ValidationError as error:
        db.session.rollback()
        return back(url_for(".deploy_keys", server_id=server.id), error.message, "error")
    db.session.commit()
    return back(url_for(".deploy_keys", server_id=server.id),
                f"The panel now manages deploy key {deploy_key.name}. Nothing changed on the server.")


@bp.post("/<int:server_id>/deploy-keys/refresh")
@require_role("admin")
def refresh_deploy_keys(server_id: int):
    server = _server(server_id)
    op = key_service.refresh_keys(server, _user())
    db.session.commit()
    return back(url_for(".deploy_keys", server_id=server.id), f"Reading the deploy keys on {server.name}…", "info",
                operation=op)
