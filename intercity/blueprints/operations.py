"""Operations: the live status of work on a server (polled by htmx), its transcript, and Retry."""
from __future__ import annotations

import shlex

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from intercity.blueprints.panel_support import local_path
from intercity.extensions import db
from intercity.models import App, Operation, Server
from intercity.services import operations as operation_service
from intercity.services.permissions import NotAllowed
from intercity.validation import ValidationError
from intercity.web import htmx, render, require_role

bp = Blueprint("operations", __name__, url_prefix="/operations")


@bp.app_context_processor
def _helpers():
    return {"operation_role": operation_service.role_for, "retry_of": _retry_of}


@bp.app_template_filter("shell_join")
def _shell_join(argv) -> str:
    """A command's argv as a person would type it (values are already redacted by the worker)."""
    return shlex.join(argv) if isinstance(argv, list) else str(argv)


@bp.app_errorhandler(NotAllowed)
def _not_allowed(error):
    return render_template("error.html", code=403, title="Not allowed",
                           message="Your role does not allow this. Ask an admin if you need it."), 403


def _retry_of(operation: Operation) -> Operation | None:
    """The newest retry of an operation, if someone asked for one."""
    return db.session.scalar(select(Operation).where(Operation.retry_of_id == operation.id)
                             .order_by(Operation.id.desc()).limit(1))


def where_shown(operation: Operation) -> str:
    """The page an operation belongs to: its app's, else its server's, else the audit log."""
    if operation.app_id is not None and db.session.get(App, operation.app_id) is not None:
        return url_for("apps.show", server_id=operation.server_id, name=operation.app_name)
    if operation.server_id is not None and db.session.get(Server, operation.server_id) is not None:
        if operation.kind in ("deploy_keys.apply", "server.refresh_keys"):
            return url_for("servers.deploy_keys", server_id=operation.server_id)
        return url_for("servers.show", server_id=operation.server_id)
    return url_for("audit.timeline")


@bp.get("/<int:operation_id>")
@login_required
def show(operation_id: int):
    operation = db.get_or_404(Operation, operation_id)
    response = render("operations/show.html", "_partials/_operation.html", op=operation,
                      page_url=where_shown(operation))
    if htmx.request and not operation.pending:
        if operation.kind == "app.destroy" and operation.status == "succeeded":
            # The app is gone: nothing on its page may keep polling it; its page now says so.
            response.headers["HX-Redirect"] = url_for("apps.show", server_id=operation.server_id,
                                                      name=operation.app_name)
            return response
        # A poll saw the end: regions that show what the operation changed reload themselves, and
        # the flash that announced the work gives way to its outcome.
        response.headers["HX-Trigger-After-Settle"] = "operation-finished"
        response.set_data(response.get_data(as_text=True)
                          + render_template("_partials/_operation_flash.html", op=operation))
    return response


@bp.post("/<int:operation_id>/retry")
@require_role("member")
def retry(operation_id: int):
    operation = db.get_or_404(Operation, operation_id)
    if not current_user.can(operation_service.role_for(operation.kind)):
        abort(403)
    default = where_shown(operation)
    try:
        new = operation_service.retry(operation, current_user._get_current_object())
    except ValidationError as error:
        db.session.rollback()
        if htmx.request:
            return render_template("_partials/_operation.html", op=operation, retry_error=error.message), 200
        flash(error.message, "error")
        return redirect(local_path(request.form.get("next"), default), code=303)
    db.session.commit()
    if htmx.request:
        return render_template("_partials/_operation.html", op=new)
    flash(f"Retrying: {new.title}…", "info")
    return redirect(local_path(request.form.get("next"), default), code=303)
