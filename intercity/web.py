"""Request plumbing shared by every blueprint: first-run redirect, roles, htmx details, errors."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from functools import wraps

from flask import Response, abort, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from intercity import validation
from intercity.extensions import db, login_manager

# Reachable before the first admin exists.
OPEN_ENDPOINTS = {"static", "setup.setup", "health.healthz"}


def first_run() -> bool:
    from intercity.models import User

    return db.session.scalar(select(User.id).limit(1)) is None


def require_role(role: str):
    """Views that change things: anonymous people go to login, lesser roles get 403."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if not current_user.can(role):
                abort(403)
            return view(*args, **kwargs)

        wrapped.required_role = role
        return wrapped

    return decorator


class Htmx:
    """What htmx told us about this request (CKAN's HtmxDetails, in a few lines)."""

    @property
    def request(self) -> bool:
        return request.headers.get("HX-Request") == "true" and not self.history_restore

    @property
    def history_restore(self) -> bool:
        return request.headers.get("HX-History-Restore-Request") == "true"

    @property
    def target(self) -> str | None:
        return request.headers.get("HX-Target")


htmx = Htmx()


def render(full: str, fragment: str | None = None, **context) -> Response:
    """The fragment for htmx requests, the full page otherwise; responses vary on HX-Request."""
    template = fragment if (fragment and htmx.request) else full
    response = Response(render_template(template, **context))
    response.vary.add("HX-Request")
    return response


def _relative(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = int((datetime.now(timezone.utc) - value).total_seconds())
    if seconds < 45:
        return "just now"
    for size, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def _exact(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def init_app(app) -> None:
    from intercity.models import User

    @login_manager.user_loader
    def load_user(user_id: str):
        user = db.session.get(User, int(user_id))
        return user if user and user.active else None

    @app.before_request
    def _before():
        g.request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        if request.endpoint in OPEN_ENDPOINTS or request.endpoint is None:
            return None
        if first_run():
            return redirect(url_for("setup.setup"))
        return None

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Request-ID", g.get("request_id", ""))
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        )
        if request.endpoint and request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.jinja_env.filters["relative"] = _relative
    app.jinja_env.filters["exact"] = _exact
    app.jinja_env.filters["domain_display"] = validation.domain_display
    app.jinja_env.globals["htmx"] = htmx

    @app.errorhandler(IntegrityError)
    def _conflict(error):
        # Two people adding the same name at the same instant: the database keeps one, the other is told.
        db.session.rollback()
        message = ("Someone made the same change at the same moment, so yours was not saved. "
                   "Reload the page to see the current state.")
        return render_template("error.html", code=409, title="Changed meanwhile", message=message), 409

    for code, title in ((400, "Bad request"), (403, "Not allowed"), (404, "Not found"), (405, "Not allowed"),
                        (429, "Too many attempts"), (500, "Something went wrong")):
        app.register_error_handler(code, _error_page(code, title))


def _error_page(code: int, title: str):
    messages = {
        400: "The form could not be read. Reload the page and try again.",
        403: "Your role does not allow this. Ask an admin if you need it.",
        404: "There is nothing here. It may have been removed.",
        405: "This address does not accept that kind of request.",
        429: "Too many attempts. Wait a minute and try again.",
        500: "The panel hit an error. It has been logged; try again, and tell an admin if it persists.",
    }

    def handler(error):
        if code == 500:
            db.session.rollback()
        message = getattr(error, "description", None) if code == 400 else None
        return render_template("error.html", code=code, title=title, message=message or messages[code]), code

    return handler
