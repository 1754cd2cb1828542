"""Database services on a server (dokku-postgres): list, create, link to an app, unlink, destroy.

The panel's record of the services is what the plugin last listed (`Server.services`); each
change is an operation that runs the plugin's command and reads the list again.
"""
from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from intercity.audit.capture import record_event
from intercity.audit.rules import Scope
from intercity.dokku import parsers, service_plugins, ssh
from intercity.extensions import db
from intercity.jobs import kinds
from intercity.models import App, Operation, Server
from intercity.models.operation import PENDING
from intercity.services.apps import ensure_usable
from intercity.services.operations import request_operation
from intercity.services.permissions import require
from intercity.validation import ValidationError


def listed(server: Server, plugin: str) -> dict:
    """{"installed": bool | None, "services": [...]}; None: the panel has not looked yet."""
    return (server.services or {}).get(plugin) or {"installed": None, "services": []}


def find(server: Server, plugin: str, name: str) -> dict | None:
    return next((svc for svc in listed(server, plugin)["services"] if svc["name"] == name), None)


def region_operations(server: Server, max_pending: int = 5) -> list[Operation]:
    """The services region's cards: its kinds on this server, app-level links included."""
    query = select(Operation).where(Operation.kind.in_(kinds.in_region("services")),
                                    Operation.server_id == server.id)
    pending = list(db.session.scalars(query.where(Operation.status.in_(PENDING))
                                      .order_by(Operation.id.desc()).limit(max_pending)))
    last = db.session.scalar(query.where(Operation.status.not_in(PENDING)).order_by(Operation.id.desc()).limit(1))
    return sorted(pending + ([last] if last is not None else []), key=lambda op: op.id, reverse=True)


def refresh(server: Server, user) -> Operation:
    require(user, "member")
    return request_operation("services.refresh", server=server, requested_by=user)


def create(server: Server, user, *, plugin: str, name: str, version: str | None = None) -> Operation:
    require(user, "member")
    plugin = service_plugins.plugin(plugin)
    name = service_plugins.service_name(name)
    version = service_plugins.image_version(version)
    if listed(server, plugin)["installed"] is False:
        raise ValidationError(f"The {service_plugins.PLUGINS[plugin]['label']} plugin is not installed on "
                              f"{server.name}.", None)
    if find(server, plugin, name) is not None:
        raise ValidationError(f"{server.name} already has a {plugin} service named {name}.", "name")
    return request_operation("service.create", server=server, requested_by=user,
                             payload={"plugin": plugin, "service": name, "version": version})


def _app(server: Server, app_name: str) -> App:
    app = db.session.scalar(select(App).where(App.server_id == server.id, App.name == (app_name or "").strip()))
    if app is None:
        raise ValidationError("Choose one of the server's apps.", "app")
    ensure_usable(app)
    return app


def link(server: Server, user, *, plugin: str, name: str, app_name: str, restart: bool) -> Operation:
    """Link a service to an app: the plugin sets `<ALIAS>_URL` and, if asked, restarts the app."""
    require(user, "member")
    plugin = service_plugins.plugin(plugin)
    name = service_plugins.service_name(name)
    app = _app(server, app_name)
    service = find(server, plugin, name)
    if service is None:
        raise ValidationError(f"{server.name} lists no {plugin} service named {name}; read the list again.", "name")
    if app.name in service["links"]:
        raise ValidationError(f"{name} is already linked to {app.name}.", "app")
    return request_operation("service.link", server=server, app=app, requested_by=user,
                             payload={"plugin": plugin, "service": name, "restart": bool(restart)})


def unlink(server: Server, user, *, plugin: str, name: str, app_name: str, restart: bool) -> Operation:
    require(user, "member")
    plugin = service_plugins.plugin(plugin)
    name = service_plugins.service_name(name)
    app = _app(server, app_name)
    return request_operation("service.unlink", server=server, app=app, requested_by=user,
                             payload={"plugin": plugin, "service": name, "restart": bool(restart)})


def destroy(server: Server, user, *, plugin: str, name: str, confirm: str) -> Operation:
    """`destroy -f` after the name is typed here; Dokku itself refuses while apps are linked."""
    require(user, "admin")
    plugin = service_plugins.plugin(plugin)
    name = service_plugins.service_name(name)
    if (confirm or "").strip() != name:
        raise ValidationError(f"Type the service's name, {name}, to confirm.", "confirm")
    service = find(server, plugin, name)
    if service is not None and service["links"]:
        raise ValidationError(
            f"{name} is linked to {', '.join(service['links'])}. Dokku refuses to destroy a linked service "
            "(“Cannot delete linked service”): unlink it from every app first.", "confirm")
    return request_operation("service.destroy", server=server, requested_by=user,
                             payload={"plugin": plugin, "service": name})


def reveal_dsn(server: Server, user, *, plugin: str, name: str) -> str:
    """`<plugin>:info <svc> --dsn` read now, over the pinned host key, for the response alone.

    Nothing of it is stored: no operation, no transcript; the reveal itself is a security entry,
    written only once the value was read.
    """
    require(user, "member")
    plugin = service_plugins.plugin(plugin)
    name = service_plugins.service_name(name)
    if not (server.host_key_type and server.host_key_fingerprint) or server.status == "host_key_mismatch":
        raise ValidationError(f"Test the connection to {server.name} first: the panel reads connection "
                              "details only from a server whose host key it has pinned.", None)
    config = current_app.config
    target = ssh.Target(host=server.host, port=server.port, user=server.ssh_user, private_key=server.private_key,
                        pinned=ssh.HostKey(server.host_key_type, server.host_key_fingerprint),
                        expected_fingerprint=server.expected_host_key_fingerprint,
                        connect_timeout=config["SSH_CONNECT_TIMEOUT"], command_timeout=60, label=server.name)
    command = service_plugins.service_dsn(plugin, name)
    scope = Scope(server_id=server.id, server_name=server.name)
    server_name = server.name
    db.session.commit()  # no transaction stays open across the network
    try:
        connection = ssh.connect(target)
        try:
            result = connection.run(command)
        finally:
            connection.close()
        if result.exit_code is None:
            raise ValidationError(f"Reading the connection URL from {server_name} did not finish.", None)
        parsers.check(command, result.exit_code, result.out, result.err, scrub=lambda text: "")
    except (ssh.SshError, parsers.DokkuError) as error:
        raise ValidationError(error.message, None) from None
    dsn = service_plugins.parse_info_value(result.out)
    record_event(db.session, "service.dsn_revealed", scope=scope, target_type="service",
                 target_label=f"{plugin} {name}")
    return dsn
