"""Servers: list, add, test the connection, host keys, deploy keys, remove."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import login_required

from intercity.blueprints import databases as database_views
from intercity.blueprints import drift as drift_views
from intercity.blueprints import tls as tls_views
from intercity.blueprints.panel_support import (
    AppForm, ConfirmForm, DeployKeyForm, ServerForm, attempt, back, recent_timeline, unconfirmed,
)
from intercity.blueprints.panel_support import signed_in_user as _user, server_or_404 as _server
from intercity.extensions import db
from intercity.models import DeployKey, Server
from intercity.services import apps as app_service
from intercity.services import deploy_keys as key_service
from intercity.services import row_state
from intercity.services import servers as server_service
from intercity.services.operations import region_operations
from intercity.web import render_page, require_role

bp = Blueprint("servers", __name__, url_prefix="/servers")

# Regions of the server page and the deploy keys page that reload themselves, with their fragments.
REGIONS = {
    "server-status": ("servers/_status.html", "servers/_head.html"),
    "apps-list": ("servers/_apps_list.html",),
    "services": ("servers/_services.html",),
    "drift": ("servers/_drift.html",),
    "server-tls": ("servers/_tls.html",),
    "recent-region": ("_partials/_recent_region.html",),
}
KEY_REGIONS = {"remote-keys": ("servers/_remote_keys.html",)}

@bp.get("")
@login_required
def index():
    servers = server_service.list_servers()
    return render_template("servers/index.html", servers=servers)


@bp.route("/new", methods=["GET", "POST"])
@require_role("admin")
def new():
    form = ServerForm()
    if form.validate_on_submit():
        server, error = attempt(lambda: server_service.add_server(
            _user(), name=form.name.data, host=form.host.data, port=form.port.data,
            ssh_user=form.ssh_user.data, expected_fingerprint=form.host_key_fingerprint.data), form)
        if error is None:
            flash(f"{server.name} is in the panel. Install the panel's key on it, then test the connection.",
                  "success")
            return redirect(url_for(".show", server_id=server.id), code=303)
    status = 422 if request.method == "POST" else 200
    return render_template("servers/new.html", form=form), status


def show_context(server: Server, app_form: AppForm | None = None) -> dict:
    return dict(
        server=server,
        page_url=url_for("servers.show", server_id=server.id),
        app_states=app_service.app_states(server),
        app_rows={app.id: row_state.app_view(app) for app in server.apps},
        key_states=row_state.key_views(server),
        key_removals=row_state.key_removals(server),
        app_form=app_form or AppForm(formdata=None),
        check_operations=region_operations("server-status", server_id=server.id),
        import_operations=region_operations("apps-list", server_id=server.id),
        **database_views.services_context(server),
        **drift_views.drift_context(server),
        **tls_views.server_context(server),
        authorized_keys_line=server_service.authorized_keys_line(server),
        sudoers_line=server_service.sudoers_line(server),
        recent_rows=recent_timeline(server.id),
        cards_page="server",
    )


@bp.get("/<int:server_id>")
@login_required
def show(server_id: int):
    server = _server(server_id)
    return render_page("servers/show.html", REGIONS, **show_context(server))


@bp.post("/<int:server_id>/check")
@require_role("admin")
def check(server_id: int):
    server = _server(server_id)
    op, _ = attempt(lambda: server_service.request_connection_test(server, _user()))
    return back(url_for(".show", server_id=server.id), f"Testing the connection to {server.name}…", "info",
                operation=op)


@bp.post("/<int:server_id>/host-key/accept")
@require_role("admin")
def accept_host_key(server_id: int):
    server = _server(server_id)
    _, error = attempt(lambda: server_service.accept_host_key(server, _user(),
                                                              fingerprint=request.form.get("fingerprint")))
    if error is not None:
        return back(url_for(".show", server_id=server.id), error.message, "error")
    return back(url_for(".show", server_id=server.id),
                f"The new host key of {server.name} is trusted now. Testing the connection again…")


@bp.route("/<int:server_id>/remove", methods=["GET", "POST"])
@require_role("admin")
def remove(server_id: int):
    server = _server(server_id)
    form = ConfirmForm()
    line = server_service.authorized_keys_line(server)
    if form.validate_on_submit():
        name, error = attempt(lambda: server_service.remove_server(server, _user(), confirm=form.confirm.data),
                              form, "confirm")
        if error is not None:
            server = _server(server_id)
        else:
            flash(f"{name} was removed from the panel. Nothing was changed on the server itself: remove the "
                  f"panel's key from the SSH user's authorized_keys there if you no longer want the panel to reach it.",
                  "success")
            return redirect(url_for(".index"), code=303)
    status = 422 if request.method == "POST" else 200
    pending = server_service.pending_count(server)
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
        key_operations=region_operations("deploy-keys-region", server_id=server.id),
        key_states=row_state.key_views(server),
        key_removals=row_state.key_removals(server),
    )


@bp.get("/<int:server_id>/deploy-keys")
@login_required
def deploy_keys(server_id: int):
    server = _server(server_id)
    return render_page("servers/deploy_keys.html", KEY_REGIONS, **_keys_context(server))


@bp.post("/<int:server_id>/deploy-keys")
@require_role("admin")
def add_deploy_key(server_id: int):
    """Two steps: the first submit shows the key's fingerprint, the second (confirmed) adds it."""
    server = _server(server_id)
    form = DeployKeyForm()
    preview = None
    if form.validate_on_submit():
        def add_or_preview():
            name, key = key_service.check_new(server, name=form.name.data, public_key=form.public_key.data)
            if form.confirmed.data != key.fingerprint:
                return None, key  # nothing changed yet: show the fingerprint to confirm
            return key_service.add_key(server, _user(), name=name, public_key=form.public_key.data)[0], None

        found, error = attempt(add_or_preview, form)
        if error is None:
            deploy_key, preview = found
            if deploy_key is not None:
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
    op, _ = attempt(lambda: key_service.remove_key(server, _user(), deploy_key=deploy_key))
    return back(url_for(".deploy_keys", server_id=server.id), f"Removing deploy key {name} from {server.name}…",
                operation=op)


@bp.post("/<int:server_id>/deploy-keys/adopt")
@require_role("admin")
def adopt_deploy_key(server_id: int):
    server = _server(server_id)
    deploy_key, error = attempt(lambda: key_service.adopt_key(server, _user(),
                                                              fingerprint=request.form.get("fingerprint", "")))
    if error is not None:
        return back(url_for(".deploy_keys", server_id=server.id), error.message, "error")
    return back(url_for(".deploy_keys", server_id=server.id),
                f"The panel now manages deploy key {deploy_key.name}. Nothing changed on the server.")


@bp.post("/<int:server_id>/deploy-keys/refresh")
@require_role("admin")
def refresh_deploy_keys(server_id: int):
    server = _server(server_id)
    op, _ = attempt(lambda: key_service.refresh_keys(server, _user()))
    return back(url_for(".deploy_keys", server_id=server.id), f"Reading the deploy keys on {server.name}…", "info",
                operation=op)
