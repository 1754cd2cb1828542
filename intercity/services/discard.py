"""Discarding a failed change: a row's wanted state returns to what the server was last seen to have.

A value that never reached the server goes; a changed value returns to its last applied value; a
removed variable, domain or deploy key comes back (values and public keys from the value history).
The rows change through the session like any change, so each has its entry, and an
`operation.discarded` entry says that they are a discard and of which operation. A command runs
only when the panel cannot know that the server already has that state: when the failed
operation lost sight of a command (it may have landed), or for a removed domain, whose reading
went with its row (Dokku skips a domain it has).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from intercity import validation
from intercity.audit.capture import record_event
from intercity.audit.rules import Scope
from intercity.extensions import db
from intercity.models import App, DeployKey, Domain, EnvVar, Operation, Server
from intercity.services import row_state, value_history
from intercity.services.apps import ensure_usable
from intercity.services.operations import request_operation, role_for
from intercity.services.permissions import require
from intercity.validation import ValidationError

KINDS = ("env.apply", "domains.apply", "deploy_keys.apply", "app.create")


@dataclass
class Plan:
    """What discarding would do, in words for the confirmation page, and whether it can be done."""

    operation: Operation
    name: str
    sentence: str
    possible: bool = True
    runs_command: bool = False
    _apply: object = field(default=None, repr=False)


def _app(operation: Operation) -> App:
    app = db.session.get(App, operation.app_id) if operation.app_id is not None else None
    if app is None:
        raise ValidationError(f"The app {operation.app_name} is no longer in the panel.", None)
    return app


def _server(operation: Operation) -> Server:
    server = db.session.get(Server, operation.server_id) if operation.server_id is not None else None
    if server is None:
        raise ValidationError(f"The server {operation.server_name} is no longer in the panel.", None)
    return server


def _current_view(operation: Operation, name: str):
    """The row's state now, to refuse a discard of a change that is no longer the failed one."""
    if operation.kind == "app.create":
        return row_state.app_view(_app(operation))
    if operation.kind == "deploy_keys.apply":
        server = _server(operation)
        views = row_state.key_views(server)
        removed = dict(row_state.key_removals(server))
    else:
        app = _app(operation)
        views = row_state.env_views(app) if operation.kind == "env.apply" else row_state.domain_views(app)
        removed = dict(row_state.env_removals(app) if operation.kind == "env.apply" else row_state.domain_removals(app))
    return views.get(name) or removed.get(name)


def plan(operation: Operation, user, name: str) -> Plan:
    """What a discard of `operation`'s change to the row `name` would do; changes nothing."""
    require(user, role_for(operation.kind))
    if operation.kind not in KINDS:
        raise ValidationError("Only a failed change to a variable, domain, deploy key or app can be discarded.", None)
    current = _current_view(operation, name)
    if current is None or current.state != "failed" or current.operation.id != operation.id:
        raise ValidationError(f"The change to {name} is no longer the failed one (it was retried, changed "
                              "again or discarded): nothing to discard.", None)
    return _PLANNERS[operation.kind](operation, name)


def discard(operation: Operation, user, name: str) -> Plan:
    """Discard the failed change to `name`: the caller commits (panel_support.attempt)."""
    found = plan(operation, user, name)
    if not found.possible:
        raise ValidationError(found.sentence, None)
    new = found._apply()
    record_event(
        db.session, "operation.discarded", category=operation.category,
        scope=Scope(server_id=operation.server_id, server_name=operation.server_name,
                    app_id=operation.app_id, app_name=operation.app_name),
        target_type="operation", target_id=operation.id, target_label=f"{name} (#{operation.id})",
        diff={"discarded": [None, name], "of_operation": [None, operation.id],
              "applied_by": [None, new.id if isinstance(new, Operation) else None]},
    )
    return found


# --- per kind ------------------------------------------------------------------------------------

def _env(operation: Operation, name: str) -> Plan:
    app = _app(operation)
    ensure_usable(app)
    doubt = bool(operation.commands_in_doubt)
    var = db.session.scalar(select(EnvVar).where(EnvVar.app_id == app.id, EnvVar.key == name))

    def unset(row):
        def apply():
            db.session.delete(row)
            db.session.flush()
            if doubt:
                return request_operation("env.apply", server=app.server, app=app, payload={
                    "set": [], "unset": [name], "restart": bool(operation.data.get("restart", True))}, applies=[row])
            return None
        return apply

    if var is not None and var.applied_seen_at is not None and var.applied_fingerprint is not None:
        kept = value_history.find("env", server_id=app.server_id, app_id=app.id, name=name,
                                  fingerprint=var.applied_fingerprint)
        if kept is None:
            return Plan(operation, name, f"The value {name} had on the server is no longer in the value history, "
                        "so it can no longer be restored: set it again by hand.", possible=False)

        def restore():
            var.value = kept.value
            db.session.flush()
            if doubt:
                return request_operation("env.apply", server=app.server, app=app, payload={
                    "set": [name], "unset": [], "restart": bool(operation.data.get("restart", True))}, applies=[var])
            return None
        return Plan(operation, name, f"{name} gets back the value the server was last seen to have"
                    + (", and the panel applies it again (the failed command may have landed)." if doubt
                       else "; nothing runs on the server, it has that value."), runs_command=doubt, _apply=restore)
    if var is not None:
        if var.applied_seen_at is None and not _created_by(var, operation):
            return Plan(operation, name, f"The server's value of {name} was never read, so the panel cannot tell "
                        "what to return to: retry the change, or set the variable again.", possible=False)
        return Plan(operation, name, f"{name} never reached the server, so it goes from the panel"
                    + (", and the panel unsets it there (the failed command may have landed)." if doubt
                       else "; nothing runs on the server."), runs_command=doubt, _apply=unset(var))
    kept = value_history.latest("env", server_id=app.server_id, app_id=app.id, name=name)
    if kept is None:
        return Plan(operation, name, f"{name} was never seen on the server, or its value is no longer in the "
                    "value history, so it can no longer be restored: set it again by hand.", possible=False)

    def bring_back():
        restored = EnvVar(app=app, key=name)
        restored.value = kept.value
        restored.applied_fingerprint, restored.applied_seen_at = kept.fingerprint, kept.seen_at
        db.session.add(restored)
        db.session.flush()
        if doubt:
            return request_operation("env.apply", server=app.server, app=app, payload={
                "set": [name], "unset": [], "restart": bool(operation.data.get("restart", True))}, applies=[restored])
        return None
    return Plan(operation, name, f"{name} comes back with the value the server was last seen to have"
                + (", and the panel sets it again (the failed removal may have landed)." if doubt
                   else "; nothing runs on the server, the removal never reached it."),
                runs_command=doubt, _apply=bring_back)


def _created_by(var: EnvVar, operation: Operation) -> bool:
    """Whether the variable was created by this change (or the change it retried)."""
    from intercity.models import AuditEntry

    created = db.session.scalar(select(AuditEntry.operation_id).where(
        AuditEntry.target_type == "env_var", AuditEntry.target_id == str(var.id),
        AuditEntry.action == "env_var.created").limit(1))
    chain, op = set(), operation
    while op is not None and op.id not in chain:
        chain.add(op.id)
        op = db.session.get(Operation, op.retry_of_id) if op.retry_of_id is not None else None
    return created in chain


def _domains(operation: Operation, name: str) -> Plan:
    app = _app(operation)
    ensure_usable(app)
    doubt = bool(operation.commands_in_doubt)
    domain = db.session.scalar(select(Domain).where(Domain.app_id == app.id, Domain.hostname == name))
    if domain is not None:
        def drop():
            db.session.delete(domain)
            db.session.flush()
            if doubt:
                return request_operation("domains.apply", server=app.server, app=app,
                                         payload={"add": [], "remove": [name]}, applies=[domain])
            return None
        return Plan(operation, name, f"{name} never reached the server, so it goes from the panel"
                    + (", and the panel removes it there (the failed command may have landed)." if doubt
                       else "; nothing runs on the server."), runs_command=doubt, _apply=drop)
    other = db.session.scalar(select(App.name).join(Domain, Domain.app_id == App.id).where(
        App.server_id == app.server_id, Domain.hostname == name))
    if other is not None:
        return Plan(operation, name, f"{name} belongs to {other} now, so it cannot come back to {app.name}.",
                    possible=False)

    def bring_back():
        restored = Domain(app=app, hostname=name)
        db.session.add(restored)
        db.session.flush()
        return request_operation("domains.apply", server=app.server, app=app,
                                 payload={"add": [name], "remove": []}, applies=[restored])
    return Plan(operation, name, f"{name} comes back to {app.name}; the panel adds it on the server again "
                "(Dokku skips a domain it already has), which reads whether it is there.",
                runs_command=True, _apply=bring_back)


def _deploy_keys(operation: Operation, name: str) -> Plan:
    server = _server(operation)
    doubt = bool(operation.commands_in_doubt)
    key = db.session.scalar(select(DeployKey).where(DeployKey.server_id == server.id, DeployKey.name == name))
    if key is not None:
        removal = {"name": key.name, "fingerprint": key.fingerprint, "adopted": bool(key.adopted)}

        def drop():
            db.session.delete(key)
            db.session.flush()
            if doubt:
                return request_operation("deploy_keys.apply", server=server,
                                         payload={"add": [], "remove": [removal]}, applies=[key])
            return None
        return Plan(operation, name, f"The deploy key {name} never reached {server.name}, so it goes from the panel"
                    + (", and the panel removes it there (the failed command may have landed)." if doubt
                       else "; nothing runs on the server."), runs_command=doubt, _apply=drop)
    kept = value_history.latest("deploy_key", server_id=server.id, app_id=None, name=name)
    if kept is None:
        return Plan(operation, name, f"The public key of {name} is not in the value history (it was never seen "
                    "on the server, or was pruned), so it can no longer be restored: add it again.", possible=False)
    listed = next((k for k in (server.remote_keys or []) if k.get("fingerprint") == kept.fingerprint), None)
    taken = db.session.scalar(select(DeployKey.name).where(DeployKey.server_id == server.id,
                                                           DeployKey.fingerprint == kept.fingerprint))
    if taken is not None:
        return Plan(operation, name, f"That key is managed again as {taken}, so {name} cannot come back.",
                    possible=False)

    def bring_back():
        parsed = validation.public_key(kept.value)
        restored = DeployKey(server=server, name=name, public_key=parsed.line, key_type=parsed.key_type,
                             fingerprint=kept.fingerprint, adopted=False, added_by_email=operation.requested_by_email)
        if listed is not None:
            restored.on_server, restored.applied_seen_at = True, server.remote_keys_checked_at
        db.session.add(restored)
        db.session.flush()
        if listed is None or doubt:
            return request_operation("deploy_keys.apply", server=server, payload={"add": [name], "remove": []},
                                     applies=[restored])
        return None
    if listed is not None and not doubt:
        how = f"; nothing runs on {server.name}, its last key listing still has it."
    else:
        how = f", and the panel adds it on {server.name} again (the last listing does not show it)."
    return Plan(operation, name, f"The deploy key {name} comes back with its public key" + how,
                runs_command=listed is None or doubt, _apply=bring_back)


def _app_create(operation: Operation, name: str) -> Plan:
    app = _app(operation)
    doubt = bool(operation.commands_in_doubt)
    if doubt:
        def destroy():
            app.status = "destroying"
            return request_operation("app.destroy", server=app.server, app=app, applies=[app])
        return Plan(operation, name, f"{app.name} goes from the panel; the panel destroys it on the server, as the "
                    "failed create may have landed there.", runs_command=True, _apply=destroy)

    def drop():
        db.session.delete(app)
        db.session.flush()
        return None
    return Plan(operation, name, f"{app.name} never reached the server, so it goes from the panel with its "
                "variables and domains; nothing runs on the server.", _apply=drop)


_PLANNERS = {"env.apply": _env, "domains.apply": _domains, "deploy_keys.apply": _deploy_keys,
             "app.create": _app_create}
