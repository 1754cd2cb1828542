"""Backups of database services and installing their plugins: the settings kept and the operations applying them.

Credentials and the passphrase are validated, encrypted into `ServiceBackup` and never handed
back; the operations' payloads name only the plugin, the service, the bucket and the schedule.
"""
from __future__ import annotations

from sqlalchemy import select

from intercity.dokku import service_backups, service_plugins
from intercity.extensions import db
from intercity.models import Operation, Server, ServiceBackup
from intercity.services import databases
from intercity.services.operations import request_operation
from intercity.services.permissions import require
from intercity.validation import ValidationError

BACKUP_KINDS = ("service.backup_auth", "service.backup_encryption", "service.backup", "service.backup_schedule")


def _service(server: Server, plugin: str, name: str) -> tuple[str, str]:
    plugin = service_plugins.plugin(plugin)
    name = service_plugins.service_name(name)
    if databases.find(server, plugin, name) is None:
        raise ValidationError(f"{server.name} lists no {plugin} service named {name}; read the list again.", None)
    return plugin, name


def settings(server: Server, plugin: str, name: str) -> ServiceBackup | None:
    return db.session.scalar(select(ServiceBackup).where(
        ServiceBackup.server_id == server.id, ServiceBackup.plugin == plugin, ServiceBackup.service == name))


def _settings(server: Server, plugin: str, name: str) -> ServiceBackup:
    row = settings(server, plugin, name)
    if row is None:
        row = ServiceBackup(server_id=server.id, plugin=plugin, service=name, check_size=True)
        db.session.add(row)
    return row


def _request(kind: str, server: Server, user, plugin: str, name: str, **extra) -> Operation:
    return request_operation(kind, server=server, requested_by=user,
                             payload={"plugin": plugin, "service": name, **extra})


def set_credentials(server: Server, user, *, plugin: str, name: str, access_key: str, secret_key: str,
                    region: str = "", signature: str = "", endpoint: str = "") -> Operation:
    """`backup-auth`: the keys are kept encrypted and sent as arguments (the plugin knows no other way)."""
    require(user, "admin")
    plugin, name = _service(server, plugin, name)
    access_key = service_backups.secret(access_key, "access_key", "access key id")
    secret_key = service_backups.secret(secret_key, "secret_key", "secret access key")
    region = service_backups.optional(region, service_backups.REGION, "region",
                                      "Enter a region such as eu-west-1, or leave it empty.")
    signature = service_backups.optional(signature, service_backups.SIGNATURE, "signature",
                                         "Enter s3v4 or s3, or leave it empty.")
    endpoint = service_backups.optional(endpoint, service_backups.ENDPOINT, "endpoint",
                                        "Enter the endpoint as https://host[:port], or leave it empty (AWS).")
    row = _settings(server, plugin, name)
    row.set_credentials(access_key, secret_key)
    row.region, row.signature, row.endpoint = region, signature, endpoint
    return _request("service.backup_auth", server, user, plugin, name)


def set_passphrase(server: Server, user, *, plugin: str, name: str, passphrase: str | None) -> Operation:
    """`backup-set-encryption` (a passphrase) or `backup-unset-encryption` (None)."""
    require(user, "admin")
    plugin, name = _service(server, plugin, name)
    if passphrase is not None:
        passphrase = service_backups.secret(passphrase, "passphrase", "passphrase")
    row = _settings(server, plugin, name)
    row.set_passphrase(passphrase)
    return _request("service.backup_encryption", server, user, plugin, name, encrypted=passphrase is not None)


def back_up_now(server: Server, user, *, plugin: str, name: str, bucket: str, check_size: bool) -> Operation:
    require(user, "member")
    plugin, name = _service(server, plugin, name)
    bucket = service_backups.bucket(bucket)
    row = _settings(server, plugin, name)
    if row.credentials_encrypted is None:
        raise ValidationError("Set the S3 credentials of this service first: the plugin needs them.", None)
    row.bucket, row.check_size = bucket, bool(check_size)
    return _request("service.backup", server, user, plugin, name, bucket=bucket, check_size=bool(check_size))


def set_schedule(server: Server, user, *, plugin: str, name: str, schedule: str | None, bucket: str = "") -> Operation:
    """`backup-schedule svc "<cron>" bucket`, read back with `backup-schedule-cat`; None unschedules."""
    require(user, "admin")
    plugin, name = _service(server, plugin, name)
    if schedule is not None:
        schedule = service_backups.schedule(schedule)
        bucket = service_backups.bucket(bucket)
    row = _settings(server, plugin, name)
    if schedule is not None and row.credentials_encrypted is None:
        raise ValidationError("Set the S3 credentials of this service first: scheduled backups use them.", None)
    row.schedule, row.schedule_bucket = schedule, (bucket if schedule is not None else None)
    return _request("service.backup_schedule", server, user, plugin, name, schedule=schedule,
                    bucket=row.schedule_bucket)


def install_plugin(server: Server, user, *, plugin: str) -> Operation:
    """`plugin:install <official url> --name <plugin>` (Dokku runs it only as root; sudo makes it so)."""
    require(user, "admin")
    plugin = service_plugins.plugin(plugin)
    if databases.listed(server, plugin)["installed"]:
        raise ValidationError(f"The {service_plugins.PLUGINS[plugin]['label']} plugin is already installed "
                              f"on {server.name}.", None)
    return request_operation("service.plugin_install", server=server, requested_by=user, payload={"plugin": plugin})


def operations_of(server: Server, plugin: str, name: str, limit: int = 10) -> list[Operation]:
    """This service's recent backup operations, newest first."""
    query = (select(Operation).where(Operation.server_id == server.id, Operation.kind.in_(BACKUP_KINDS))
             .order_by(Operation.id.desc()).limit(200))
    mine = [op for op in db.session.scalars(query)
            if (op.data or {}).get("plugin") == plugin and (op.data or {}).get("service") == name]
    return mine[:limit]
