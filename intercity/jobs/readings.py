"""What a read of the server showed, kept on the rows (applied fingerprints, on_server) and in the value history.

Executors call these with output they read anyway (a read-back, a report, a key listing): no
function here runs a command. Each commits, so a later failure of the operation keeps the reading.
A reading is not a change the panel made: the columns are ignored by the audit rules, and
`updated_at` keeps saying when the panel's wanted state last changed.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm.attributes import flag_modified

from intercity import crypto
from intercity.extensions import db
from intercity.models import App, DeployKey, Domain, EnvVar, Server
from intercity.models.base import utcnow
from intercity.services import value_history


def _keep_updated_at(row) -> None:
    # Writing the column with its own value stops `onupdate` from stamping the reading's time on it.
    flag_modified(row, "updated_at")


def env_seen(app_id: int, exported: dict[str, str], operation_id: int | None = None) -> None:
    """`config:export` showed the app's whole env: every variable of the app gets its reading."""
    app = db.session.get(App, app_id)
    if app is None:
        return
    now = utcnow()
    kept = {}
    for var in db.session.scalars(select(EnvVar).where(EnvVar.app_id == app_id)):
        seen = exported.get(var.key)
        var.applied_fingerprint = crypto.fingerprint(seen) if seen is not None else None
        var.applied_seen_at = now
        _keep_updated_at(var)
        if seen is not None:
            # Only the panel's variables: values it does not manage are not kept.
            kept[var.key] = (seen, var.applied_fingerprint)
    value_history.remember_many("env", server_id=app.server_id, app_id=app.id, values=kept,
                                operation_id=operation_id)
    db.session.commit()


def domains_seen(app_id: int, present: list[str] | set[str]) -> None:
    """A domains report (or a domains:set that succeeded) gives the app's whole list."""
    present = set(present)
    now = utcnow()
    for domain in db.session.scalars(select(Domain).where(Domain.app_id == app_id)):
        domain.on_server = domain.hostname in present
        domain.applied_seen_at = now
        _keep_updated_at(domain)
    db.session.commit()


def domains_added(app_id: int, hostnames: list[str]) -> None:
    """domains:add succeeded: these are on the server now (the others were not read)."""
    now = utcnow()
    for domain in db.session.scalars(select(Domain).where(Domain.app_id == app_id, Domain.hostname.in_(hostnames))):
        domain.on_server, domain.applied_seen_at = True, now
        _keep_updated_at(domain)
    db.session.commit()


def keys_seen(server_id: int, listed: list[dict], operation_id: int | None = None) -> None:
    """`ssh-keys:list` gives the server's whole list: each deploy key is there or not; public keys are kept."""
    server = db.session.get(Server, server_id)
    if server is None:
        return
    fingerprints = {key.get("fingerprint") for key in listed}
    now = utcnow()
    kept = {}
    for key in db.session.scalars(select(DeployKey).where(DeployKey.server_id == server_id)):
        key.on_server = key.fingerprint in fingerprints
        key.applied_seen_at = now
        _keep_updated_at(key)
        if key.on_server and key.public_key:
            kept[key.name] = (key.public_key, key.fingerprint)
    value_history.remember_many("deploy_key", server_id=server_id, app_id=None, values=kept,
                                operation_id=operation_id)
    db.session.commit()


def app_seen(app_id: int, on_server: bool) -> None:
    """apps:create, apps:destroy, an import or a report said whether the app exists on the server."""
    app = db.session.get(App, app_id)
    if app is None:
        return
    app.on_server, app.applied_seen_at = on_server, utcnow()
    _keep_updated_at(app)
    db.session.commit()
