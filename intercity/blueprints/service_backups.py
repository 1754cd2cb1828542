"""A database service's page: backups (credentials, back up now, schedule, encryption), export; plugin install."""
from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, stream_with_context, url_for
from flask_login import login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField

from intercity.blueprints.panel_support import attempt, back
from intercity.blueprints.panel_support import signed_in_user as _user, server_or_404 as _server
from intercity.dokku import service_backups as backup_commands
from intercity.dokku.service_plugins import PLUGINS, SERVICE_NAME
from intercity.models import Server
from intercity.services import databases as database_service
from intercity.services import service_backups, service_export
from intercity.web import render_page, require_role

bp = Blueprint("service_backups", __name__, url_prefix="/servers/<int:server_id>/services")
REGIONS: dict[str, tuple[str, ...]] = {}


class CredentialsForm(FlaskForm):
    access_key = PasswordField("Access key id", id="backup-access-key")
    secret_key = PasswordField("Secret access key", id="backup-secret-key")
    region = StringField("Region (optional)", id="backup-region")
    signature = StringField("Signature version (optional)", id="backup-signature")
    endpoint = StringField("Endpoint URL (optional, S3-compatible storage)", id="backup-endpoint")


class BackupForm(FlaskForm):
    bucket = StringField("Bucket", id="backup-bucket")
    check_size = BooleanField("Check the size (dumps the database a second time on the server)", id="backup-check",
                              default=True)


class ScheduleForm(FlaskForm):
    schedule = StringField("Schedule (cron)", id="backup-schedule")
    bucket = StringField("Bucket", id="schedule-bucket")


class PassphraseForm(FlaskForm):
    passphrase = PasswordField("Encryption passphrase", id="backup-passphrase")


def _page(server: Server, plugin: str, name: str) -> str:
    return url_for("service_backups.show", server_id=server.id, plugin=plugin, name=name)


def _render(server: Server, plugin: str, name: str, status: int = 200, **forms):
    if plugin not in PLUGINS or not SERVICE_NAME.match(name):
        abort(404)
    # Not in the panel's last listing: the page says so (the forms then refuse until it is read again).
    service = database_service.find(server, plugin, name)
    row = service_backups.settings(server, plugin, name)
    context = dict(
        server=server, plugin=plugin, name=name, spec=PLUGINS[plugin], service=service, backup=row,
        describe=backup_commands.describe, quoted=backup_commands.quoted,
        credentials_form=forms.get("credentials_form") or CredentialsForm(formdata=None),
        backup_form=forms.get("backup_form") or BackupForm(formdata=None, bucket=row.bucket if row else None,
                                                           check_size=row.check_size if row else True),
        schedule_form=forms.get("schedule_form") or ScheduleForm(
            formdata=None, schedule=row.schedule if row else None, bucket=row.schedule_bucket if row else None),
        passphrase_form=forms.get("passphrase_form") or PassphraseForm(formdata=None),
        backup_operations=service_backups.operations_of(server, plugin, name),
        export_deadline=int(current_app.config.get("SERVICE_EXPORT_DEADLINE", 3600)),
    )
    return render_page("servers/service.html", REGIONS, **context), status


@bp.get("/<plugin>/<name>")
@login_required
def show(server_id: int, plugin: str, name: str):
    return _render(_server(server_id), plugin, name)


def _submit(server_id: int, plugin: str, name: str, form_name: str, form, call, message: str):
    server = _server(server_id)
    result, error = attempt(lambda: call(server, form), form)
    if error is not None:
        return _render(server, plugin, name, 422, **{form_name: form})
    return back(_page(server, plugin, name), message.format(name=name, server=server.name), "info", operation=result)


@bp.post("/<plugin>/<name>/backup/credentials")
@require_role("admin")
def credentials(server_id: int, plugin: str, name: str):
    return _submit(server_id, plugin, name, "credentials_form", CredentialsForm(), lambda server, f: (
        service_backups.set_credentials(server, _user(), plugin=plugin, name=name, access_key=f.access_key.data,
                                        secret_key=f.secret_key.data, region=f.region.data,
                                        signature=f.signature.data, endpoint=f.endpoint.data)),
        "Sending the backup credentials of {name} to {server}…")


@bp.post("/<plugin>/<name>/backup/run")
@require_role("member")
def run(server_id: int, plugin: str, name: str):
    return _submit(server_id, plugin, name, "backup_form", BackupForm(), lambda server, f: (
        service_backups.back_up_now(server, _user(), plugin=plugin, name=name, bucket=f.bucket.data,
                                    check_size=bool(f.check_size.data))),
        "Backing up {name} on {server}…")


@bp.post("/<plugin>/<name>/backup/schedule")
@require_role("admin")
def schedule(server_id: int, plugin: str, name: str):
    return _submit(server_id, plugin, name, "schedule_form", ScheduleForm(), lambda server, f: (
        service_backups.set_schedule(server, _user(), plugin=plugin, name=name, schedule=f.schedule.data,
                                     bucket=f.bucket.data)),
        "Scheduling the backups of {name} on {server}…")


@bp.post("/<plugin>/<name>/backup/unschedule")
@require_role("admin")
def unschedule(server_id: int, plugin: str, name: str):
    return _submit(server_id, plugin, name, "schedule_form", ScheduleForm(), lambda server, f: (
        service_backups.set_schedule(server, _user(), plugin=plugin, name=name, schedule=None)),
        "Removing the backup schedule of {name} on {server}…")


@bp.post("/<plugin>/<name>/backup/encryption")
@require_role("admin")
def encryption(server_id: int, plugin: str, name: str):
    return _submit(server_id, plugin, name, "passphrase_form", PassphraseForm(), lambda server, f: (
        service_backups.set_passphrase(server, _user(), plugin=plugin, name=name, passphrase=f.passphrase.data or "")),
        "Sending the backup passphrase of {name} to {server}…")


@bp.post("/<plugin>/<name>/backup/encryption/remove")
@require_role("admin")
def remove_encryption(server_id: int, plugin: str, name: str):
    return _submit(server_id, plugin, name, "passphrase_form", PassphraseForm(), lambda server, f: (
        service_backups.set_passphrase(server, _user(), plugin=plugin, name=name, passphrase=None)),
        "Turning off backup encryption of {name} on {server}…")


@bp.post("/<plugin>/<name>/export")
@require_role("admin")
def export(server_id: int, plugin: str, name: str):
    """The export, streamed: the only response that holds an SSH channel while it is sent."""
    server = _server(server_id)
    page = _page(server, plugin, name)
    opened, error = attempt(lambda: service_export.open_export(server, _user(), plugin=plugin, name=name))
    if error is not None:
        return back(page, error.message, "error")
    filename, chunks = opened
    return Response(stream_with_context(chunks), mimetype="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff"})


@bp.post("/plugins/<plugin>/install")
@require_role("admin")
def install(server_id: int, plugin: str):
    server = _server(server_id)
    result, error = attempt(lambda: service_backups.install_plugin(server, _user(), plugin=plugin))
    page = url_for("servers.show", server_id=server.id)
    if error is not None:
        return back(page, error.message, "error")
    return back(page, f"Installing the {PLUGINS[plugin]['label']} plugin on {server.name}…", "info", operation=result)
