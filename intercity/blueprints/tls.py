"""HTTPS on the server page (plugin, email, renewal job) and the app page (Let's Encrypt, uploaded certificates)."""
from __future__ import annotations

from flask import Blueprint, request, url_for
from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField

from intercity.blueprints.panel_support import attempt, back
from intercity.blueprints.panel_support import signed_in_user as _user, server_or_404 as _server, app_or_404 as _app
from intercity.dokku import tls
from intercity.models import App, Server
from intercity.services import tls as tls_service
from intercity.services.operations import region_operations
from intercity.web import require_role

bp = Blueprint("tls", __name__, url_prefix="/servers/<int:server_id>")


class EmailForm(FlaskForm):
    email = StringField("Let's Encrypt email", id="tls-email")


class CertificateForm(FlaskForm):
    certificate = TextAreaField("Certificate (PEM, chain after it)", id="tls-certificate")
    # Never rendered back: a refused upload asks for the key again.
    private_key = TextAreaField("Private key (PEM)", id="tls-private-key")


def server_context(server: Server, email_form: EmailForm | None = None) -> dict:
    """What servers/_tls.html needs."""
    return dict(tls_server=tls_service.server_state(server), plugin_url=tls.PLUGIN_URL,
                tls_expiring=tls_service.expiring(server.id),
                tls_email_form=email_form or EmailForm(formdata=None),
                tls_server_operations=region_operations("server-tls", server_id=server.id))


def app_context(app: App, certificate_form: CertificateForm | None = None) -> dict:
    """What apps/_tls.html needs."""
    return dict(tls_app=tls_service.app_state(app), tls_server=tls_service.server_state(app.server),
                tls_certificate_form=certificate_form or CertificateForm(formdata=None),
                tls_app_operations=region_operations("app-tls", app_id=app.id))


def renewal_hint(app: App, hostname: str) -> str:
    """Said when a domain is added: an app with HTTPS needs its certificate renewed to cover it."""
    state = tls_service.app_state(app)
    if not state.get("enabled") or any(tls.covers(name, hostname) for name in state.get("hostnames") or []):
        return ""
    if state.get("source") == "letsencrypt":
        return (f" {app.name}'s certificate does not cover {hostname}: renew it (HTTPS, “Renew to cover them”) "
                "once the domain is on the server.")
    return f" {app.name}'s uploaded certificate does not cover {hostname}: upload one that does."


def _server_page(server: Server) -> str:
    return url_for("servers.show", server_id=server.id, _anchor="https")


def _app_page(app: App) -> str:
    return url_for("apps.show", server_id=app.server_id, name=app.name, _anchor="https")


def _done(page: str, result, error, message: str):
    if error is not None:
        return back(page, error.message, "error")
    return back(page, message, "info", operation=result)


# --- server ---------------------------------------------------------------------------------------


@bp.post("/tls/refresh")
@require_role("member")
def server_refresh(server_id: int):
    server = _server(server_id)
    op, error = attempt(lambda: tls_service.refresh_server(server, _user()))
    return _done(_server_page(server), op, error, f"Reading HTTPS on {server.name}…")


@bp.post("/tls/install")
@require_role("admin")
def install(server_id: int):
    server = _server(server_id)
    op, error = attempt(lambda: tls_service.install(server, _user()))
    return _done(_server_page(server), op, error, f"Installing the letsencrypt plugin on {server.name}…")


@bp.post("/tls/email")
@require_role("admin")
def email(server_id: int):
    server = _server(server_id)
    form = EmailForm()
    op, error = attempt(lambda: tls_service.set_email(server, _user(), form.email.data), form)
    if error is not None and error.field == "email":
        from intercity.blueprints.servers import REGIONS, show_context
        from intercity.web import render_page

        context = show_context(server)
        context.update(server_context(server, form))
        return render_page("servers/show.html", REGIONS, **context), 422
    return _done(_server_page(server), op, error, f"Setting the Let's Encrypt email on {server.name}…")


@bp.post("/tls/cron")
@require_role("admin")
def cron_add(server_id: int):
    server = _server(server_id)
    op, error = attempt(lambda: tls_service.add_cron_job(server, _user()))
    return _done(_server_page(server), op, error, f"Adding the renewal job on {server.name}…")


# --- app ------------------------------------------------------------------------------------------


def _app_action(server_id: int, name: str, call, message: str):
    app = _app(server_id, name)
    op, error = attempt(lambda: call(app))
    return _done(_app_page(app), op, error, message.format(app=app.name))


@bp.post("/apps/<name>/tls/refresh")
@require_role("member")
def app_refresh(server_id: int, name: str):
    return _app_action(server_id, name, lambda app: tls_service.refresh_app(app, _user()), "Reading HTTPS of {app}…")


@bp.post("/apps/<name>/tls/enable")
@require_role("member")
def enable(server_id: int, name: str):
    return _app_action(server_id, name, lambda app: tls_service.enable(app, _user()),
                       "Asking Let's Encrypt for a certificate for {app}…")


@bp.post("/apps/<name>/tls/renew")
@require_role("member")
def renew(server_id: int, name: str):
    return _app_action(server_id, name, lambda app: tls_service.renew(app, _user()),
                       "Renewing the certificate of {app}…")


@bp.post("/apps/<name>/tls/disable")
@require_role("member")
def disable(server_id: int, name: str):
    return _app_action(server_id, name, lambda app: tls_service.disable(app, _user()),
                       "Turning Let's Encrypt off for {app}…")


@bp.post("/apps/<name>/tls/revoke")
@require_role("member")
def revoke(server_id: int, name: str):
    confirm = request.form.get("confirm", "")
    return _app_action(server_id, name, lambda app: tls_service.revoke(app, _user(), confirm),
                       "Revoking the certificate of {app}…")


@bp.post("/apps/<name>/tls/certificate")
@require_role("member")
def upload(server_id: int, name: str):
    app = _app(server_id, name)
    form = CertificateForm()
    result, error = attempt(lambda: tls_service.upload(app, _user(), form.certificate.data or "",
                                                       form.private_key.data or ""), form)
    if error is not None:
        from intercity.blueprints.apps import REGIONS, _context
        from intercity.web import render_page

        form.private_key.data = ""  # a key is never sent back to the browser
        app = _app(server_id, name)
        context = _context(app)
        context.update(app_context(app, form))
        return render_page("apps/show.html", REGIONS, **context), 422
    op, uncovered = result
    message = f"Installing the certificate on {app.name}…"
    if uncovered:
        message += f" It does not cover {', '.join(uncovered)}: those domains will show a certificate warning."
    return back(_app_page(app), message, "warning" if uncovered else "info", operation=op)


@bp.post("/apps/<name>/tls/certificate/remove")
@require_role("member")
def remove_certificate(server_id: int, name: str):
    return _app_action(server_id, name, lambda app: tls_service.remove_certificate(app, _user()),
                       "Removing the certificate of {app}…")
