"""Discarding a failed change from the row that shows it: ask first (a page, no JavaScript needed), then do it."""
from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import current_user

from intercity.blueprints.operations import where_shown
from intercity.blueprints.panel_support import attempt, back
from intercity.extensions import db
from intercity.models import Operation
from intercity.services import discard as discard_service
from intercity.services.operations import role_for
from intercity.web import local_path, require_role

bp = Blueprint("discard", __name__, url_prefix="/operations")


@bp.post("/<int:operation_id>/discard")
@require_role("member")
def discard(operation_id: int):
    operation = db.get_or_404(Operation, operation_id)
    if not current_user.can(role_for(operation.kind)):
        abort(403)
    user = current_user._get_current_object()
    name = (request.form.get("name") or "").strip()
    default = where_shown(operation)
    if request.form.get("confirmed") != "1":
        found, error = attempt(lambda: discard_service.plan(operation, user, name))
        if error is not None:
            return back(default, error.message, "error")
        fields = [(key, value) for key, value in request.form.items(multi=True)
                  if key not in ("csrf_token", "confirmed")]
        return render_template("_partials/confirm.html", title=f"Discard the failed change to {name}?",
                               question=found.sentence, fields=fields if found.possible else None,
                               button="Discard", cancel=local_path(request.form.get("next"), default))
    done, error = attempt(lambda: discard_service.discard(operation, user, name))
    if error is not None:
        return back(default, error.message, "error")
    return back(default, f"Discarded the failed change to {name}: {done.sentence}", "success")
