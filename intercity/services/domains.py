"""Domains of an app: add and remove; a `domains.apply` operation brings Dokku in line."""
from __future__ import annotations

from sqlalchemy import select

from intercity import validation
from intercity.extensions import db
from intercity.models import App, Domain, Operation
from intercity.services.apps import ensure_usable
from intercity.services.operations import request_operation
from intercity.services.permissions import require
from intercity.validation import ValidationError


def add_domain(app: App, user, *, hostname: str) -> tuple[Domain, Operation]:
    require(user, "member")
    ensure_usable(app)
    hostname = validation.domain(hostname)
    if db.session.scalar(select(Domain.id).where(Domain.app_id == app.id, Domain.hostname == hostname)):
        raise ValidationError(f"{hostname} is already a domain of {app.name}.", "domain")
    other = db.session.scalar(
        select(App.name).join(Domain, Domain.app_id == App.id)
        .where(App.server_id == app.server_id, App.id != app.id, Domain.hostname == hostname)
    )
    if other is not None:
        raise ValidationError(
            f"{hostname} already belongs to {other} on this server; remove it there first, "
            "or nginx would send its requests to either app.", "domain")
    domain = Domain(app=app, hostname=hostname)
    db.session.add(domain)
    db.session.flush()
    operation = request_operation("domains.apply", server=app.server, app=app, requested_by=user,
                                  payload={"add": [hostname], "remove": []}, applies=[domain])
    return domain, operation


def remove_domain(app: App, user, *, domain: Domain) -> Operation:
    require(user, "member")
    ensure_usable(app)
    if domain.app_id != app.id:
        raise ValidationError(f"{domain.hostname} is not a domain of {app.name}.", "domain")
    hostname = domain.hostname
    db.session.delete(domain)
    db.session.flush()
    return request_operation("domains.apply", server=app.server, app=app, requested_by=user,
                             payload={"add": [], "remove": [hostname]}, applies=[domain])
