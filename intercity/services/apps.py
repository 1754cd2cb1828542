"""Apps on a server: create, import, destroy, restart and refresh their status."""
from __future__ import annotations


from sqlalchemy import select

from intercity import validation
from intercity.extensions import db
from intercity.models import App, AuditEntry, Operation, Server
from intercity.models.operation import PENDING
from intercity.services.operations import request_operation
from intercity.services.permissions import require
from intercity.validation import ValidationError


def ensure_usable(app: App) -> None:
    """Changes to an app that is being destroyed would be lost with it."""
    if app.status == "destroying":
        raise ValidationError(f"{app.name} is being destroyed: it cannot be changed any more.", None)


def create_app(server: Server, user, *, name: str) -> App:
    """An App row (the desired state) and an `app.create` operation that runs `apps:create`."""
    require(user, "member")
    name = validation.app_name(name)
    existing = db.session.scalar(select(App).where(App.server_id == server.id, App.name == name))
    if existing is not None:
        if existing.status == "destroying":
            raise ValidationError(f"{name} is still being destroyed on {server.name}. Wait until that finishes.",
                                  "name")
        raise ValidationError(f"{server.name} already has an app named {name}.", "name")
    app = App(server=server, name=name, imported=False, status="active")
    db.session.add(app)
    db.session.flush()
    request_operation("app.create", server=server, app=app, requested_by=user, applies=[app])
    return app


def find_app(server_id: int, name: str) -> App | None:
    return db.session.scalar(select(App).where(App.server_id == server_id, App.name == name))


def deletion_entry(server: Server, name: str) -> AuditEntry | None:
    """The newest entry that recorded an app of this name on this server being deleted (its page says it is gone)."""
    return db.session.scalar(
        select(AuditEntry).where(AuditEntry.server_id == server.id, AuditEntry.app_name == name,
                                 AuditEntry.action == "app.deleted").order_by(AuditEntry.seq.desc()).limit(1))


def import_apps(server: Server, user, *, names: list[str] | None = None) -> Operation:
    """Bring apps that exist on the server but not in the panel in, with their env vars and domains."""
    require(user, "member")
    if names is not None:
        names = [validation.app_name(n, legacy=True) for n in names]
        if not names:
            names = None
    return request_operation("server.import", server=server, payload={"apps": names}, requested_by=user)


def destroy_app(app: App, user, *, confirm: str) -> Operation:
    """Mark the app as being destroyed and run `apps:destroy --force`; the row goes when Dokku confirms."""
    require(user, "member")
    if (confirm or "").strip() != app.name:
        raise ValidationError(f"Type the app's name, {app.name}, to confirm.", "confirm")
    if app.status == "destroying" and pending_operations(app, kinds=("app.destroy",)):
        raise ValidationError(f"{app.name} is already being destroyed.", "confirm")
    app.status = "destroying"
    return request_operation("app.destroy", server=app.server, app=app, requested_by=user, applies=[app])


def restart_app(app: App, user) -> Operation:
    require(user, "member")
    ensure_usable(app)
    return request_operation("app.restart", server=app.server, app=app, requested_by=user)


def refresh_app(app: App, user) -> Operation:
    """Read `ps:report` again; the page shows what it said."""
    require(user, "member")
    ensure_usable(app)
    return request_operation("app.refresh", server=app.server, app=app, requested_by=user)


def pending_operations(app: App, kinds: tuple[str, ...] | None = None) -> list[Operation]:
    query = select(Operation).where(Operation.app_id == app.id, Operation.status.in_(PENDING))
    if kinds:
        query = query.where(Operation.kind.in_(kinds))
    return list(db.session.scalars(query.order_by(Operation.id)))


def ps_status(app: App) -> dict | None:
    """What `ps:report` last said: {deployed, running, processes}, or None before the first refresh."""
    return app.ps_status if isinstance(app.ps_status, dict) and app.ps_status else None


def app_states(server: Server) -> dict[int, tuple[str, str]]:
    """A short state per app for the list: (text, badge class)."""
    ops = db.session.scalars(
        select(Operation).where(Operation.server_id == server.id, Operation.app_id.is_not(None))
        .where(Operation.status.in_(PENDING) | (Operation.kind == "app.create"))
        .order_by(Operation.id)
    ).all()
    pending: dict[int, list[Operation]] = {}
    last_create: dict[int, Operation] = {}
    for op in ops:
        if op.status in PENDING:
            pending.setdefault(op.app_id, []).append(op)
        if op.kind == "app.create":
            last_create[op.app_id] = op
    states = {}
    for app in server.apps:
        waiting = pending.get(app.id, [])
        create = last_create.get(app.id)
        if app.status == "destroying":
            states[app.id] = ("being destroyed", "pending")
        elif any(op.kind == "app.create" for op in waiting):
            states[app.id] = ("being created", "pending")
        elif create is not None and create.status == "failed":
            states[app.id] = ("creation failed", "failed")
        elif waiting:
            states[app.id] = (f"{len(waiting)} pending", "pending")
        else:
            states[app.id] = ps_summary(ps_status(app))
    return states


def ps_summary(ps: dict | None) -> tuple[str, str]:
    if ps is None:
        return ("status not read yet", "")
    if not ps.get("deployed"):
        return ("not deployed", "new")
    running = ps.get("running")
    if running is True:
        return ("running", "ok")
    if running is False:
        return ("stopped", "failed")
    return ("partly running", "pending")
