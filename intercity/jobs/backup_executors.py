"""Executors of the service backup kinds: credentials, back up now (checked), schedule, encryption; plugin install.

Credentials and the passphrase are read from `ServiceBackup` (encrypted) when the command runs,
never from the payload; the commands carry them as secrets, so their transcript shows
[redacted] in their place and keeps none of their output. "Back up now" is not taken at its
word: the plugin's success line must be there, and with the size check the export is dumped a
second time on the server and counted (`| wc -c`); an empty one fails the backup.
"""
from __future__ import annotations

from sqlalchemy import select

from intercity.dokku import parsers, service_backups, service_plugins, ssh
from intercity.extensions import db
from intercity.jobs.executors import OperationContext, OperationError
from intercity.models import ServiceBackup
from intercity.models.base import utcnow


def _row(ctx: OperationContext) -> ServiceBackup:
    row = db.session.scalar(select(ServiceBackup).where(
        ServiceBackup.server_id == ctx.server_id, ServiceBackup.plugin == ctx.payload["plugin"],
        ServiceBackup.service == ctx.payload["service"]))
    if row is None:
        raise OperationError(f"The backup settings of {ctx.payload['service']} were removed from the panel "
                             "before this could run.")
    return row


def backup_auth(ctx: OperationContext) -> None:
    row = _row(ctx)
    credentials = row.credentials()
    if credentials is None:
        raise OperationError("No S3 credentials are set for this service in the panel.")
    plugin, name = row.plugin, row.service
    command = service_backups.backup_auth(plugin, name, *credentials, row.region, row.signature, row.endpoint)
    ctx.run(command, store_stdout=False)
    row = _row(ctx)
    row.credentials_applied_at = utcnow()
    db.session.commit()


def backup_encryption(ctx: OperationContext) -> None:
    row = _row(ctx)
    plugin, name, passphrase = row.plugin, row.service, row.passphrase()
    if passphrase:
        ctx.run(service_backups.backup_set_encryption(plugin, name, passphrase), store_stdout=False)
    else:
        ctx.run(service_backups.backup_unset_encryption(plugin, name))
    row = _row(ctx)
    row.passphrase_applied_at = utcnow()
    db.session.commit()


def _finish_backup(ctx: OperationContext, status: str, message: str, size: int | None) -> None:
    row = _row(ctx)
    row.last_backup_at, row.last_backup_status = utcnow(), status
    row.last_backup_message, row.last_backup_bytes = message, size
    row.last_backup_operation_id = ctx.op_id
    db.session.commit()


def backup_now(ctx: OperationContext) -> None:
    plugin, name, bucket = ctx.payload["plugin"], ctx.payload["service"], ctx.payload["bucket"]
    row = _row(ctx)
    # The plugin hands them to docker as -e arguments; should any output quote them, it is redacted.
    ctx.redactor.add(*(row.credentials() or ()), row.passphrase() or "")
    try:
        result = ctx.run(service_backups.backup(plugin, name, bucket))
    except (parsers.DokkuError, OperationError, ssh.SshError) as error:
        _finish_backup(ctx, "failed", getattr(error, "message", None) or str(error), None)
        raise
    if not service_backups.backup_succeeded(result.out, result.err, plugin, name):
        message = (f"dokku {plugin}:backup ended without docker-s3backup's line “The backup for {plugin}-{name} "
                   "finished successfully.”, so the panel cannot tell that the archive reached the bucket.")
        _finish_backup(ctx, "failed", message, None)
        raise OperationError(message)
    size = None
    if ctx.payload.get("check_size"):
        counted = ctx.run(service_backups.counted_export(plugin, name))
        size = service_backups.parse_size(counted.out)
        if not size:
            message = (f"The plugin said the backup finished, but {plugin}:export {name} printed "
                       f"{'nothing' if size == 0 else 'no byte count'} when dumped again: the archive in the "
                       "bucket is most likely empty (a known failure of the plugins). Check the service.")
            _finish_backup(ctx, "failed", message, size)
            raise OperationError(message)
    note = f"the export is {size} bytes" if size is not None else "the size was not checked"
    _finish_backup(ctx, "succeeded", f"The plugin reported the archive in {bucket}; {note}.", size)


def read_schedule(ctx: OperationContext, row: ServiceBackup) -> None:
    plugin, name = row.plugin, row.service
    try:
        result = ctx.run(service_backups.backup_schedule_cat(plugin, name))
        seen = service_backups.parse_schedule_line(result.out, plugin, name)
        if seen is None:
            ctx.warn(f"The cron file of {name} does not have the plugin's shape; the panel shows no schedule.")
    except parsers.DokkuError as error:
        if "There is no scheduled backup" not in error.message:
            raise
        seen = None
    row = _row(ctx)
    row.schedule_seen, row.schedule_seen_bucket = (seen if seen else (None, None))
    row.schedule_seen_at = utcnow()
    db.session.commit()
    if row.schedule and seen != (row.schedule, row.schedule_bucket):
        raise OperationError(f"The server's cron line for {name} is not the schedule the panel sent "
                             f"({row.schedule} to {row.schedule_bucket}).")
    if not row.schedule and seen:
        raise OperationError(f"A backup schedule for {name} is still on the server.")


def backup_schedule(ctx: OperationContext) -> None:
    row = _row(ctx)
    plugin, name, schedule, bucket = row.plugin, row.service, row.schedule, row.schedule_bucket
    if schedule:
        ctx.run(service_backups.backup_schedule(plugin, name, schedule, bucket))
    else:
        ctx.run(service_backups.backup_unschedule(plugin, name))
    read_schedule(ctx, _row(ctx))


def plugin_install(ctx: OperationContext) -> None:
    plugin = ctx.payload["plugin"]
    try:
        ctx.run(service_backups.plugin_install(plugin))
    except parsers.RootNeeded:
        raise OperationError("Dokku installs plugins only as root: connect to this server as root (the "
                             f"panel's SSH user is {ctx.server().ssh_user}), or install it on the server "
                             f"with `sudo dokku plugin:install {service_plugins.PLUGINS[plugin]['url']} "
                             f"--name {plugin}`.") from None
    from intercity.jobs.service_executors import read_services

    read_services(ctx, plugin)
    if not (ctx.server().services or {}).get(plugin, {}).get("installed"):
        raise OperationError(f"plugin:install ended, but {plugin}:list is still not a command on the server.")
