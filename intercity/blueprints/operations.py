"""Operations: the live status of work on a server (polled by htmx), its transcript, and Retry."""
from __future__ import annotations

import shlex

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from intercity.blueprints.panel_support import attempt
from intercity.extensions import db
from intercity.models import App, Operation, Server
from intercity.services import operations as operation_service
from intercity.services.permissions import NotAllowed
from intercity.web import error_response, htmx, local_path, render, require_role

bp = Blueprint("operations", __name__, url_prefix="/operations")


@bp.app_context_processor
def _helpers():
    return {"operation_role": operation_service.role_for, "retry_of": operation_service.retry_of,
            "waiting_for": operation_service.waiting_for}


@bp.app_template_filter("shell_join")
def _shell_join(argv) -> str:
    """A command's argv as a person would type it (values are already redacted by the worker)."""
    return shlex.join(argv) if isinstance(argv, list) else str(argv)


@bp.app_errorhandler(NotAllowed)
def _not_allowed(error):
    return error_response(403, "Not allowed", "Your role does not allow this. Ask an admin if you need it.")


def where_shown(operation: Operation) -> str:
    """The page an operation belongs to: its app's, else its server's, else the audit log."""
    if operation.app_id is not None and db.session.get(App, operation.app_id) is not None:
        return url_for("apps.show", server_id=operation.server_id, name=operation.app_name)
    if operation.server_id is not None and db.session.get(Server, operation.server_id) is not None:
        if operation.kind_info.page == "deploy_keys":
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
        if operation.kind_info.removes_app and operation.status == "succeeded":
            # The app is gone: nothing on its page may keep polling it; its page now says so.
            response.headers["HX-Redirect"] = url_for("apps.show", server_id=operation.server_id,
                                                      name=operation.app_name)
            return response
        # A poll saw the end: the regions its kind refreshes reload themselves, and so does the activity
        # list; the flash that announced the work gives way to its outcome.
        regions = (*operation.kind_info.refreshes, "recent-region")
        response.headers["HX-Trigger-After-Settle"] = ", ".join(f"refresh-{region}" for region in regions)
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
    new, error = attempt(lambda: operation_service.retry(operation, current_user._get_current_object()))
    if error is not None:
        if htmx.request:
            return render_template("_partials/_operation.html", op=operation, retry_error=error.message), 200
        flash(error.message, "error")
        return redirect(local_path(request.form.get("next"), default), code=303)
    if htmx.request:
        return render_template("_partials/_operation.html", op=new)
    flash(f"Retrying: {new.title}…", "info")
    return redirect(local_path(request.form.get("next"), default), code=303)
