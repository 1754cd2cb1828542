"""Executors of the TLS kinds: read the plugin and renewal job, install, set the email, enable, renew, revoke, upload.

Features of the letsencrypt plugin are found by trying them (its version number lies for 0.21–0.25):
a command the plugin does not know fails, and the reading says "cannot tell" instead. Each app's
state comes from `letsencrypt:report` and `certs:report`, both JSON, and is kept as a `TlsReading`.
"""
from __future__ import annotations

import dataclasses
import ipaddress

from sqlalchemy import select

from intercity.audit.actor import acting_as
from intercity.audit.capture import record_event
from intercity.audit.rules import Scope
from intercity.dokku import parsers, tls
from intercity.dokku.commands import DokkuVersion
from intercity.extensions import db
from intercity.jobs import drift
from intercity.jobs.executors import OperationContext, OperationError
from intercity.models import App
from intercity.models.base import utcnow
from intercity.models.tls import TlsReading, UploadedCertificate

JSON_PLUGIN_LIST = DokkuVersion(0, 38, 22)
GLOBAL_CRON_LIST = DokkuVersion(0, 36, 7)


def reading(server_id: int, app_id: int | None = None) -> TlsReading:
    scope = f"app:{app_id}" if app_id is not None else f"server:{server_id}"
    row = db.session.scalar(select(TlsReading).where(TlsReading.scope == scope))
    if row is None:
        row = TlsReading(scope=scope, server_id=server_id, app_id=app_id, data={})
        db.session.add(row)
    return row


def _try(ctx: OperationContext, command):
    """The command's output, or None when the server's Dokku or plugin cannot do it (found by trying)."""
    try:
        return ctx.run(command).out
    except tls.NotInstalled:
        raise
    except parsers.DokkuError:
        return None


# --- the server: plugin, email, renewal job -------------------------------------------------------


def read_server(ctx: OperationContext, *, apps: bool = True) -> dict:
    data: dict = {"installed": None, "version": None, "email": None, "email_known": False,
                  "cron_job": None, "cron_listed": None}
    try:
        ctx.run(tls.plugin_installed())
        data["installed"] = True
    except tls.NotInstalled:
        data["installed"] = False
    if data["installed"]:
        json_list = ctx.version >= JSON_PLUGIN_LIST
        listing = _try(ctx, tls.plugin_list(json_list))
        data["version"] = tls.parse_plugin_version(listing or "", json_list)
        report = _try(ctx, tls.global_report())  # --global --format json: plugin 0.24.0 and newer
        if report is not None:
            data["email"] = tls.parse_report(report).get("global-email") or None
            data["email_known"] = True
        data.update(_read_cron(ctx))
    server = ctx.server()
    row = reading(server.id)
    row.data = data
    row.checked_at = utcnow()
    _track_cron(ctx, row, data)
    db.session.commit()
    if apps:
        # Without the plugin only apps seen with a certificate can have one to read (an upload).
        seen = {row.app_id for row in db.session.scalars(select(TlsReading).where(
            TlsReading.server_id == server.id, TlsReading.app_id.is_not(None))) if (row.data or {}).get("enabled")}
        for app_id, app_name in [(a.id, a.name) for a in server.apps if a.status == "active"]:
            if data["installed"] or app_id in seen:
                read_app(ctx, app_id, app_name)
    return data


def renewal_missing(data: dict) -> bool | None:
    """True when the renewal job is known to be missing: the plugin says it is off, or says on while Dokku's
    cron lists no renewal task (the users' complaint: "enabled" but never runs). None: cannot tell."""
    if not data.get("installed"):
        return None
    if data.get("cron_job") is False or data.get("cron_listed") is False:
        return True
    if data.get("cron_job") is None and data.get("cron_listed") is None:
        return None
    return False


def _track_cron(ctx: OperationContext, row: TlsReading, data: dict) -> None:
    """One security entry per outage: written when the job is first seen missing, again only after it came back."""
    missing = renewal_missing(data)
    if missing and row.cron_missing_since is None:
        row.cron_missing_since = utcnow()
        server = ctx.server()
        why = ("the letsencrypt plugin says its auto-renew cron job is not enabled" if data.get("cron_job") is False
               else "the plugin says the job is enabled, but Dokku's cron lists no letsencrypt:auto-renew task")
        record_event(db.session, "tls.cron_missing", scope=Scope(server_id=server.id, server_name=server.name),
                     target_type="server", target_id=server.id, target_label=server.name,
                     operation_id=ctx.op_id, diff={"renewal job": ["present", f"missing: {why}"]})
    elif missing is False:
        row.cron_missing_since = None


def tls_refresh(ctx: OperationContext) -> None:
    read_server(ctx)


def tls_install(ctx: OperationContext) -> None:
    ctx.run(tls.plugin_install())
    read_server(ctx, apps=False)


def _update_server_reading(ctx: OperationContext, **found) -> dict:
    row = reading(ctx.server_id)
    data = {**(row.data or {}), **found}
    row.data = data
    row.checked_at = utcnow()
    _track_cron(ctx, row, data)
    db.session.commit()
    return data


def tls_set_email(ctx: OperationContext) -> None:
    ctx.run(tls.set_global_email(ctx.payload["email"]))
    report = _try(ctx, tls.global_report())
    found = {"email": tls.parse_report(report).get("global-email") or None, "email_known": True} \
        if report is not None else {"email": None, "email_known": False}
    _update_server_reading(ctx, installed=True, **found)


def _read_cron(ctx: OperationContext) -> dict:
    status = _try(ctx, tls.cron_job())
    found = {"cron_job": tls.parse_cron_job(status) if status is not None else None, "cron_listed": None}
    if ctx.version >= GLOBAL_CRON_LIST:
        listed = _try(ctx, tls.cron_list_global())
        found["cron_listed"] = tls.parse_cron_list(listed) if listed is not None else None
    return found


def tls_cron_add(ctx: OperationContext) -> None:
    ctx.run(tls.cron_job("--add"))
    data = _update_server_reading(ctx, installed=True, **_read_cron(ctx))
    if renewal_missing(data):
        raise OperationError("The renewal job was added, but the server still does not show it. Check the dokku "
                             "user's crontab and `dokku cron:list --global` on the server.")


# --- one app ------------------------------------------------------------------------------------


def read_app(ctx: OperationContext, app_id: int, app_name: str) -> dict:
    le = None
    try:
        report = _try(ctx, tls.app_report(app_name))  # --format json: plugin 0.24.0 and newer
        if report is not None:
            le = tls.parse_report(report)
        else:
            answer = _try(ctx, tls.active(app_name))
            le = {"active": "true" if answer is not None and tls.parse_active(answer) else "false"}
    except tls.NotInstalled:
        le = None
    certs = tls.parse_report(ctx.run(tls.certs_report(app_name)).out)
    state = tls.tls_state(le, certs)
    row = reading(ctx.server_id, app_id)
    row.data = {**state, "dns": (row.data or {}).get("dns")}
    row.checked_at = utcnow()
    db.session.commit()
    return state


def _read_this_app(ctx: OperationContext) -> dict:
    app = ctx.app()
    return read_app(ctx, app.id, app.name)


def tls_app_refresh(ctx: OperationContext) -> None:
    _read_this_app(ctx)


def check_dns(ctx: OperationContext, domains: list[str], server_host: str) -> list[dict]:
    """Whether each domain resolves to the server, asked of the configured resolver (INTERCITY_DNS_RESOLVER).

    Only a warning either way: Let's Encrypt asks public DNS, which the panel may not see the same.
    """
    import dns.exception
    import dns.resolver

    configured = ctx.config.get("DNS_RESOLVER")
    resolver = dns.resolver.Resolver(configure=not configured)
    if configured:
        host, _, port = configured.rpartition(":") if configured.count(":") == 1 else (configured, "", "")
        resolver.nameservers = [host or configured]
        resolver.port = int(port) if port else 53
    resolver.lifetime = resolver.timeout = 3.0

    def lookup(name: str) -> set[str] | None:
        found: set[str] = set()
        answered = False
        for rtype in ("A", "AAAA"):
            try:
                found |= {r.to_text() for r in resolver.resolve(name, rtype)}
                answered = True
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                answered = True
            except (dns.exception.DNSException, OSError):
                continue
        return found if answered else None

    try:
        server_addresses = {str(ipaddress.ip_address(server_host))}
    except ValueError:
        server_addresses = lookup(server_host) or set()
    results = []
    for domain in domains:
        if domain.startswith("*."):
            results.append({"domain": domain, "addresses": [], "ok": None,
                            "note": "a wildcard needs a DNS-01 challenge; HTTP-01 cannot validate it"})
            continue
        addresses = lookup(domain)
        if addresses is None:
            results.append({"domain": domain, "addresses": [], "ok": None, "note": "the resolver did not answer"})
        elif not addresses:
            results.append({"domain": domain, "addresses": [], "ok": False, "note": "it does not resolve"})
        else:
            ok = bool(addresses & server_addresses) if server_addresses else None
            note = None if ok else (f"it resolves to {', '.join(sorted(addresses))}, not to the server"
                                    if ok is False else "the server's own address is unknown")
            results.append({"domain": domain, "addresses": sorted(addresses), "ok": ok, "note": note})
    return results


def _precheck(ctx: OperationContext) -> None:
    app, server = ctx.app(), ctx.server()
    domains = [d.hostname for d in app.domains if d.hostname != "_"]
    results = check_dns(ctx, domains, server.host)
    row = reading(server.id, app.id)
    row.data = {**(row.data or {}), "dns": {"checked_at": utcnow().isoformat(), "results": results}}
    db.session.commit()
    for result in results:
        if result["ok"] is False:
            ctx.warn(f"DNS check: {result['domain']}: {result['note']}. Let's Encrypt will not validate it "
                     "until its DNS points at the server.")
        elif result["ok"] is None:
            ctx.warn(f"DNS check: {result['domain']}: the panel cannot tell ({result['note']}).")


def tls_enable(ctx: OperationContext) -> None:
    _precheck(ctx)
    ctx.run(tls.enable(ctx.app().name))
    _read_this_app(ctx)


def tls_renew(ctx: OperationContext) -> None:
    _precheck(ctx)
    ctx.run(tls.enable(ctx.app().name, force=True))
    _read_this_app(ctx)


def tls_disable(ctx: OperationContext) -> None:
    ctx.run(tls.disable(ctx.app().name))
    _read_this_app(ctx)


def tls_revoke(ctx: OperationContext) -> None:
    result = ctx.run(tls.revoke(ctx.app().name))
    code = tls.revocation_failure(result.out)
    state = _read_this_app(ctx)
    if code is not None:
        # The plugin exits 0 here: only its output tells.
        raise OperationError(f"Let's Encrypt did not revoke the certificate (the ACME client exited with code "
                             f"{code}), so it is still valid{' and still served' if state['enabled'] else ''}. "
                             "Check the server's Let's Encrypt email and the transcript, then try again.")


def certificate_add(ctx: OperationContext) -> None:
    app = ctx.app()
    upload = db.session.get(UploadedCertificate, ctx.payload["upload"])
    if upload is None or upload.app_id != app.id:
        raise OperationError("The uploaded certificate is no longer in the panel; upload it again.")
    key = upload.private_key
    command = tls.certs_add(app.name, tls.bundle(upload.certificate_pem, key), update=bool(ctx.payload.get("update")))
    ctx.run(dataclasses.replace(command, secrets=tuple(tls.key_forms(key))))
    # The server now holds this one: keys of certificates it replaced are of no further use.
    for older in db.session.scalars(select(UploadedCertificate).where(
            UploadedCertificate.app_id == app.id, UploadedCertificate.id < upload.id)):
        db.session.delete(older)
    db.session.commit()
    _read_this_app(ctx)


def certificate_remove(ctx: OperationContext) -> None:
    app = ctx.app()
    app_id = app.id
    ctx.run(tls.certs_remove(app.name))
    for upload in db.session.scalars(select(UploadedCertificate).where(UploadedCertificate.app_id == app_id)):
        db.session.delete(upload)
    db.session.commit()
    _read_this_app(ctx)



# --- drift checks: HTTPS turned on or off outside the panel ----------------------------------------


@drift.add_app_reader
def notice_outside_change(ctx: OperationContext, app_name: str, _seen) -> None:
    """During a drift check: an app whose HTTPS the panel has read is read again; a change is one entry.

    Apps the panel never read HTTPS for are left alone, so a check costs no command per app for them.
    """
    app = db.session.scalar(select(App).where(App.server_id == ctx.server_id, App.name == app_name))
    row = db.session.scalar(select(TlsReading).where(TlsReading.scope == f"app:{app.id}")) if app else None
    if row is None or (row.data or {}).get("enabled") is None:
        return
    was_on = bool(row.data["enabled"])
    now_on = bool(read_app(ctx, app.id, app.name)["enabled"])
    if now_on == was_on:
        return
    server = ctx.server()
    where = dict(scope=Scope(server_id=server.id, server_name=server.name, app_id=app.id, app_name=app.name),
                 target_type="app", target_id=app.id, target_label=app.name, operation_id=ctx.op_id)
    with acting_as(drift.SERVER):
        if now_on:
            record_event(db.session, "tls.enabled_outside", **where, diff={"https": ["off", "on"]})
        else:
            record_event(db.session, "tls.disabled_outside", **where, diff={"https": ["on", "off"]})
    db.session.commit()
