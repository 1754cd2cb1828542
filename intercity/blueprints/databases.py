"""Database services on the server page: read the list, create, link, unlink, destroy (forms only)."""
from __future__ import annotations

from flask import Blueprint, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice

from intercity.blueprints.panel_support import attempt, back
from intercity.blueprints.panel_support import signed_in_user as _user, server_or_404 as _server
from intercity.dokku.service_plugins import PLUGINS
from intercity.models import Server
from intercity.services import databases as database_service
from intercity.web import require_role

bp = Blueprint("databases", __name__, url_prefix="/servers/<int:server_id>/services")


class ServiceForm(FlaskForm):
    plugin = SelectField("Type", id="service-plugin", default="postgres",
                         choices=[SelectChoice(name, spec["label"]) for name, spec in PLUGINS.items()],
                         validate_choice=False)
    name = StringField("Name", id="service-name")
    version = StringField("Image version (optional)", id="service-version")


def services_context(server: Server, form: ServiceForm | None = None) -> dict:
    """What servers/_services.html needs, for the server page and its `services` region."""
    return dict(
        service_plugins=PLUGINS,
        service_lists={plugin: database_service.listed(server, plugin) for plugin in PLUGINS},
        service_form=form or ServiceForm(formdata=None),
        service_operations=database_service.region_operations(server),
    )


def _page(server: Server) -> str:
    return url_for("servers.show", server_id=server.id)


def _done(server: Server, error, message: str):
    if error is not None:
        return back(_page(server), error.message, "error")
    return back(_page(server), message, "info")


@bp.post("/refresh")
@require_role("member")
def refresh(server_id: int):
    server = _server(server_id)
    _, error = attempt(lambda: database_service.refresh(server, _user()))
    return _done(server, error, f"Reading the database services on {server.name}…")


@bp.post("")
@require_role("member")
def create(server_id: int):
    server = _server(server_id)
    form = ServiceForm()
    _, error = attempt(lambda: database_service.create(
        server, _user(), plugin=form.plugin.data, name=form.name.data, version=form.version.data), form)
    if error is not None:
        # The server page shows the form with its error; servers imports this module, hence here.
        from intercity.blueprints.servers import REGIONS, show_context
        from intercity.web import render_page

        context = show_context(server)
        context.update(services_context(server, form))
        return render_page("servers/show.html", REGIONS, **context), 422
    return back(_page(server), f"Creating {form.name.data.strip()} on {server.name}…", "info")


def _link_change(server_id: int, plugin: str, name: str, change, wording: str):
    """Link and unlink take the same form: the app, and whether to restart it."""
    server = _server(server_id)
    app_name = request.form.get("app", "")
    _, error = attempt(lambda: change(server, _user(), plugin=plugin, name=name, app_name=app_name,
                                      restart=request.form.get("restart") == "y"))
    return _done(server, error, wording.format(name=name, app=app_name))


@bp.post("/<plugin>/<name>/link")
@require_role("member")
def link(server_id: int, plugin: str, name: str):
    return _link_change(server_id, plugin, name, database_service.link, "Linking {name} to {app}…")


@bp.post("/<plugin>/<name>/unlink")
@require_role("member")
def unlink(server_id: int, plugin: str, name: str):
    return _link_change(server_id, plugin, name, database_service.unlink, "Unlinking {name} from {app}…")


@bp.post("/<plugin>/<name>/destroy")
@require_role("admin")
def destroy(server_id: int, plugin: str, name: str):
    server = _server(server_id)
    _, error = attempt(lambda: database_service.destroy(server, _user(), plugin=plugin, name=name,
                                                        confirm=request.form.get("confirm", "")))
    return _done(server, error, f"Destroying {name} on {server.name}…")


@bp.post("/<plugin>/<name>/dsn")
@require_role("member")
def reveal_dsn(server_id: int, plugin: str, name: str):
    """The connection URL, password included, in this response alone (audited as service.dsn_revealed)."""
    server = _server(server_id)
    dsn, error = attempt(lambda: database_service.reveal_dsn(server, _user(), plugin=plugin, name=name))
    if error is not None:
        return back(_page(server), error.message, "error")
    return render_template("servers/service_dsn.html", server=server, plugin=plugin, name=name, dsn=dsn)
