"""HTTPS for apps: what the panel last read, and the requests people make (install, email, enable, upload, ...).

Each change is an operation; what is known comes from `TlsReading` rows the TLS executors write.
An uploaded certificate is checked here, before anything is queued, and its key stored encrypted.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from intercity import crypto
from intercity.dokku import tls
from intercity.extensions import db
from intercity.models import App, Operation, Server
from intercity.models.base import utcnow
from intercity.models.tls import TlsReading, UploadedCertificate
from intercity.services.apps import ensure_usable
from intercity.services.operations import request_operation
from intercity.services.permissions import require
from intercity.validation import ValidationError


def _reading(scope: str) -> TlsReading | None:
    return db.session.scalar(select(TlsReading).where(TlsReading.scope == scope))


def server_reading(server: Server) -> TlsReading | None:
    return _reading(f"server:{server.id}")


def app_reading(app: App) -> TlsReading | None:
    return _reading(f"app:{app.id}")


def server_state(server: Server) -> dict:
    """The plugin, email and renewal job as last read; `installed` None: the panel has not looked yet."""
    row = server_reading(server)
    data = dict(row.data) if row is not None else {"installed": None}
    from intercity.jobs.tls_executors import renewal_missing

    data["renewal_missing"] = renewal_missing(data)
    data["checked_at"] = row.checked_at if row is not None else None
    data["missing_since"] = row.cron_missing_since if row is not None else None
    return data


def _expires(data: dict) -> datetime | None:
    value = (data or {}).get("expires_at")
    return datetime.fromisoformat(value) if value else None


def app_state(app: App) -> dict:
    """The app's HTTPS as last read, with the expiry as a datetime and the panel's domains it does not cover."""
    row = app_reading(app)
    data = dict(row.data) if row is not None else {"enabled": None}
    data["checked_at"] = row.checked_at if row is not None else None
    data["expires"] = _expires(data)
    data["days_left"] = (data["expires"] - utcnow()).days if data["expires"] else None
    names = data.get("hostnames") or []
    domains = [d.hostname for d in app.domains if d.hostname != "_"]
    data["uncovered"] = [d for d in domains if names and not any(tls.covers(n, d) for n in names)] \
        if data.get("enabled") else []
    return data


def tls_enabled(app: App) -> bool:
    """Whether the app was last seen serving HTTPS (for its URLs: https:// when True)."""
    row = app_reading(app)
    return bool(row is not None and (row.data or {}).get("enabled"))


def expiring(server_id: int | None = None, days: int = tls.EXPIRING_DAYS) -> list[dict]:
    """Apps whose certificate expires within `days` (expired ones included), soonest first."""
    query = select(TlsReading, App).join(App, App.id == TlsReading.app_id)
    if server_id is not None:
        query = query.where(TlsReading.server_id == server_id)
    limit = utcnow() + timedelta(days=days)
    found = []
    for row, app in db.session.execute(query):
        expires = _expires(row.data) if (row.data or {}).get("enabled") else None
        if expires is not None and expires <= limit:
            found.append({"app": app.name, "app_id": app.id, "server_id": app.server_id,
                          "server": app.server.name, "expires": expires,
                          "days_left": (expires - utcnow()).days, "source": row.data.get("source")})
    return sorted(found, key=lambda item: item["expires"])


# --- requests -------------------------------------------------------------------------------------


def refresh_server(server: Server, user) -> Operation:
    require(user, "member")
    return request_operation("tls.refresh", server=server, requested_by=user)


def install(server: Server, user) -> Operation:
    require(user, "admin")
    if (server_state(server).get("installed")) is True:
        raise ValidationError(f"The letsencrypt plugin is already installed on {server.name}.", None)
    return request_operation("tls.install", server=server, requested_by=user)


def set_email(server: Server, user, value: str) -> Operation:
    require(user, "admin")
    address = tls.email(value)
    if server_state(server).get("installed") is False:
        raise ValidationError(f"Install the letsencrypt plugin on {server.name} first.", "email")
    return request_operation("tls.set_email", server=server, requested_by=user, payload={"email": address})


def add_cron_job(server: Server, user) -> Operation:
    require(user, "admin")
    return request_operation("tls.cron_add", server=server, requested_by=user)


def _usable(app: App) -> App:
    ensure_usable(app)
    return app


def refresh_app(app: App, user) -> Operation:
    require(user, "member")
    return request_operation("tls.app_refresh", server=app.server, app=_usable(app), requested_by=user)


def _needs_plugin(app: App) -> None:
    state = server_state(app.server)
    if state.get("installed") is False:
        raise ValidationError(f"The letsencrypt plugin is not installed on {app.server.name}; an admin installs "
                              "it from the server's page.", None)
    if state.get("email_known") and not state.get("email"):
        raise ValidationError(f"Let's Encrypt needs an email address and none is set on {app.server.name}. "
                              "An admin sets it on the server's page.", None)


def enable(app: App, user) -> Operation:
    """Let's Encrypt for the app's own domains (the server's default `_` does not count)."""
    require(user, "member")
    _usable(app)
    if not [d for d in app.domains if d.hostname != "_"]:
        raise ValidationError(f"{app.name} has no domain of its own. Add the domain people will use (its DNS "
                              "pointing at the server), then enable HTTPS.", None)
    _needs_plugin(app)
    return request_operation("tls.enable", server=app.server, app=app, requested_by=user)


def renew(app: App, user) -> Operation:
    require(user, "member")
    _usable(app)
    _needs_plugin(app)
    return request_operation("tls.renew", server=app.server, app=app, requested_by=user)


def disable(app: App, user) -> Operation:
    require(user, "member")
    return request_operation("tls.disable", server=app.server, app=_usable(app), requested_by=user)


def revoke(app: App, user, confirm: str) -> Operation:
    require(user, "member")
    _usable(app)
    if (confirm or "").strip() != app.name:
        raise ValidationError(f"Type the app's name, {app.name}, to revoke its certificate.", "confirm")
    return request_operation("tls.revoke", server=app.server, app=app, requested_by=user)


def upload(app: App, user, certificate_pem: str, key_pem: str) -> tuple[Operation, list[str]]:
    """Check the certificate and key, keep the key encrypted, queue `certs:add` (or `certs:update`).

    Returns the operation and the app's domains the certificate does not cover (a warning).
    """
    require(user, "member")
    _usable(app)
    if not (certificate_pem or "").strip():
        raise ValidationError("Paste the certificate (PEM), its chain after it if any.", "certificate")
    if not (key_pem or "").strip():
        raise ValidationError("Paste the certificate's private key (PEM).", "private_key")
    cert = tls.inspect(certificate_pem, key_pem, [d.hostname for d in app.domains], utcnow())
    row = UploadedCertificate(
        server_id=app.server_id, app_id=app.id, certificate_pem=certificate_pem.strip(),
        private_key_encrypted=crypto.encrypt(key_pem.strip()), subject=cert.subject, issuer=cert.issuer,
        names=cert.names, expires_at=cert.not_after, sha256=cert.sha256)
    db.session.add(row)
    db.session.flush()
    state = app_state(app)
    payload = {"upload": row.id, "update": bool(state.get("enabled")), "certificate": cert.facts(),
               "uncovered": cert.uncovered}
    return request_operation("certificate.add", server=app.server, app=app, requested_by=user,
                             payload=payload), cert.uncovered


def remove_certificate(app: App, user) -> Operation:
    require(user, "member")
    return request_operation("certificate.remove", server=app.server, app=_usable(app), requested_by=user)
