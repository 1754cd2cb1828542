"""Executors of the database-service kinds: list, create, link, unlink and destroy a plugin's services.

What the plugins print about a service is read one `info` flag at a time, so no DSN is ever
fetched here. A link's variable is found by comparing `config:export` before and after (the
plugin picks `DATABASE_URL`, or a colour alias when that is taken) and recorded like every env
value, encrypted, marked with the service that set it.
"""
from __future__ import annotations

from sqlalchemy import delete, select

from intercity.dokku import commands, parsers, service_plugins
from intercity.extensions import db
from intercity.jobs.executors import OperationContext, OperationError
from intercity.models import EnvVar, ServiceBackup
from intercity.models.base import utcnow


def link_label(plugin: str, service: str) -> str:
    """What `EnvVar.linked_service` holds: "postgres shop-db"."""
    return f"{plugin} {service}"


def read_services(ctx: OperationContext, only: str | None = None) -> None:
    """Which plugins are installed and, for each, its services with version, status and linked apps.

    With `only`, just that plugin is read again (after a change to one of its services); the
    others keep what the last full reading found.
    """
    found: dict = dict(ctx.server().services or {}) if only else {}
    for plugin in ([only] if only else service_plugins.PLUGINS):
        try:
            names = service_plugins.parse_list(ctx.run(service_plugins.service_list(plugin)).out)
        except parsers.PluginMissing:
            found[plugin] = {"installed": False, "services": []}
            continue
        services = []
        for name in names:
            if not service_plugins.SERVICE_NAME.match(name):
                ctx.warn(f"The {plugin} service {name!r} has a name the panel cannot manage; it is not listed.")
                continue
            values = {}
            for flag in service_plugins.SAFE_INFO_FLAGS:
                values[flag] = service_plugins.parse_info_value(
                    ctx.run(service_plugins.service_info(plugin, name, flag)).out)
            services.append({"name": name, "version": values["--version"], "status": values["--status"],
                             "links": service_plugins.parse_links(values["--links"])})
        found[plugin] = {"installed": True, "services": services}
    server = ctx.server()
    server.services = {plugin: found[plugin] for plugin in service_plugins.PLUGINS if plugin in found}
    server.services_checked_at = utcnow()
    db.session.commit()


def services_refresh(ctx: OperationContext) -> None:
    read_services(ctx)


def service_create(ctx: OperationContext) -> None:
    plugin, name = ctx.payload["plugin"], ctx.payload["service"]
    try:
        ctx.run(service_plugins.service_create(plugin, name, ctx.payload.get("version")))
    except parsers.DokkuError:
        read_services(ctx, plugin)  # Dokku answered: the list shows what is there now (an SSH failure is left as is)
        raise
    read_services(ctx, plugin)


def _export(ctx: OperationContext, app_name: str) -> dict[str, str]:
    env = parsers.parse_config_export_json(ctx.run(commands.config_export_json(app_name), store_stdout=False).out)
    ctx.redactor.add(*(value for value in env.values() if value))
    return env


def service_link(ctx: OperationContext) -> None:
    plugin, name = ctx.payload["plugin"], ctx.payload["service"]
    app = ctx.app()
    app_name, app_id = app.name, app.id
    before = _export(ctx, app_name)
    already = None
    try:
        ctx.run(service_plugins.service_link(plugin, name, app_name, bool(ctx.payload.get("restart", True))))
    except parsers.AlreadyLinked as linked:
        already = linked.variable
        ctx.warn(f"{name} was already linked to {app_name} (as {already}); the panel records it now.")
    after = _export(ctx, app_name)
    changed = sorted(key for key, value in after.items() if before.get(key) != value)
    if not changed and already in after:
        changed = [already]  # linked before the panel knew: the plugin named the variable
    if not changed:
        raise OperationError(f"Linking {name} changed no variable of {app_name}; the panel could not tell "
                             "which one holds the connection URL. Check the app's config on the server.")
    label = link_label(plugin, name)
    for key in changed:
        var = db.session.scalar(select(EnvVar).where(EnvVar.app_id == app_id, EnvVar.key == key))
        if var is None:
            var = EnvVar(app_id=app_id, key=key)
            db.session.add(var)
        var.value = after[key]
        var.linked_service = label
    db.session.commit()
    read_services(ctx, plugin)


def service_unlink(ctx: OperationContext) -> None:
    plugin, name = ctx.payload["plugin"], ctx.payload["service"]
    app = ctx.app()
    app_name, app_id = app.name, app.id
    try:
        ctx.run(service_plugins.service_unlink(plugin, name, app_name, bool(ctx.payload.get("restart", True))))
    except parsers.NotLinked:
        ctx.warn(f"{name} was not linked to {app_name} on the server.")
    after = _export(ctx, app_name)
    label = link_label(plugin, name)
    for var in db.session.scalars(select(EnvVar).where(EnvVar.app_id == app_id, EnvVar.linked_service == label)):
        if var.key not in after:
            db.session.delete(var)
        else:
            ctx.warn(f"{var.key} is still set on the server after the unlink.")
    db.session.commit()
    read_services(ctx, plugin)


def service_destroy(ctx: OperationContext) -> None:
    plugin, name = ctx.payload["plugin"], ctx.payload["service"]
    try:
        ctx.run(service_plugins.service_destroy(plugin, name))
    except parsers.ServiceMissing:
        ctx.warn(f"{name} was already gone from the server.")
    except parsers.DokkuError:
        read_services(ctx, plugin)  # e.g. linked since the panel's list was read: show the links Dokku has
        raise
    # The plugin removed the service's backup files and cron line: its credentials go from the panel too.
    db.session.execute(delete(ServiceBackup).where(ServiceBackup.server_id == ctx.server_id,
                                                   ServiceBackup.plugin == plugin, ServiceBackup.service == name))
    db.session.commit()
    read_services(ctx, plugin)
