"""Request plumbing shared by every blueprint: first-run redirect, roles, htmx details, errors."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from functools import wraps
from urllib.parse import urlsplit

from flask import Response, abort, current_app, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from intercity import clock, validation
from intercity.audit import page_cache
from intercity.audit.categories import LABELS as CATEGORY_LABELS
from intercity.extensions import db, login_manager

# The vendored scripts and styles and nothing inline: an injected <script>, style or on* attribute does not run.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")

# Reachable before the first admin exists.
OPEN_ENDPOINTS = {"static", "setup.setup", "health.healthz"}
# All a logged-in user without 2FA may reach while an admin requires it.
ENROLMENT_ENDPOINTS = {"account.two_factor_show", "account.two_factor_enable", "auth.logout"}


def first_run() -> bool:
    from intercity.models import User

    return db.session.scalar(select(User.id).limit(1)) is None


def _still_first_run() -> bool:
    """first_run() for every request, asked of the database only until this process has seen a user."""
    if current_app.extensions.get("intercity_set_up"):
        return False  # people are deactivated, never deleted: once there is one, there always is
    if first_run():
        return True
    current_app.extensions["intercity_set_up"] = True
    return False


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

# htmx 2's responseHandling, first match wins: see base.html. Error answers to htmx requests are the
# fragment _partials/_error.html (web._error_page), shown in #flashes whatever region asked.
# htmx would inject a style element for its indicators, which the CSP refuses: app.css has them instead.
HTMX_CONFIG = json.dumps({"includeIndicatorStyles": False, "responseHandling": [
    {"code": "204", "swap": False},
    {"code": "[23]..", "swap": True},
    {"code": "422", "swap": True},
    {"code": "(403|404|409|429|500)", "swap": True, "error": True, "target": "#flashes",
     "swapOverride": "innerHTML", "select": "#htmx-error"},
    {"code": "[45]..", "swap": False, "error": True},
]}, separators=(",", ":"))


def local_path(target: str | None, default: str) -> str:
    """`target` if it is a path on this site, else `default`: a `next` parameter never leads elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target \
            and not urlsplit(target).netloc:
        return target
    return default


def render(full: str, fragment: str | None = None, **context) -> Response:
    """The fragment for htmx requests, the full page otherwise; responses vary on HX-Request."""
    template = fragment if (fragment and htmx.request) else full
    response = Response(render_template(template, **context))
    response.vary.add("HX-Request")
    return response


def render_page(full: str, regions: dict[str, tuple[str, ...]], **context) -> Response:
    """A page whose regions reload themselves: an htmx request for `?region=<id>` gets that region's
    fragments alone (the region first, then what it swaps out of band); anything else the full page."""
    fragments = regions.get(request.args.get("region", "")) if htmx.request else None
    if fragments:
        body = "".join(render_template(template, **context) for template in fragments)
    else:
        body = render_template(full, **context)
    response = Response(body)
    response.vary.add("HX-Request")
    return response


# Units of relative times, largest first; under a minute is "just now".
_UNITS = ((86400 * 365, "year"), (86400 * 30, "month"), (86400, "day"), (3600, "hour"), (60, "minute"))


def relative_label(value: datetime, now: datetime) -> tuple[str, datetime]:
    """"5 minutes ago" for `value` seen at `now`, and the moment that label next changes (a kept page's end)."""
    seconds = int((now - value).total_seconds())
    # The label changes when its unit's count goes up or the next larger unit starts, whichever comes first.
    larger = [size for size, _ in _UNITS if size > seconds]
    for size, unit in _UNITS:
        if seconds >= size:
            count = seconds // size
            changes = min([(count + 1) * size, *larger])
            return f"{count} {unit}{'s' if count != 1 else ''} ago", value + timedelta(seconds=changes)
    return "just now", value + timedelta(seconds=min(larger))


def _relative(value: datetime | None) -> str:
    if value is None:
        return "never"
    label, changes_at = relative_label(value, clock.utcnow())
    page_cache.note_label(changes_at)
    return label


def _exact(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def init_app(app) -> None:
    proxies = app.config.get("INTERCITY_TRUSTED_PROXIES") or 0
    if proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Only the addresses the trusted proxies appended count: anything a client wrote itself
        # into X-Forwarded-For sits further left and is ignored.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=0, x_port=0, x_prefix=0)

    from intercity.services import sessions

    @login_manager.user_loader
    def load_user(token: str):
        # Both cookies carry a server-known session's token; an ended session logs nobody in.
        row = sessions.lookup(token)
        if row is None:
            return None
        row.user.session_token, row.user.current_session = token, row
        return row.user

    @app.before_request
    def _before():
        g.request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        if request.endpoint in OPEN_ENDPOINTS or request.endpoint is None:
            return None
        if _still_first_run():
            return redirect(url_for("setup.setup"))
        row = current_user.current_session if current_user.is_authenticated else None
        if row is not None and sessions.touch(row):
            db.session.commit()  # nothing else has been written in this request yet
        if row is not None and request.endpoint not in ENROLMENT_ENDPOINTS:
            from intercity.services import two_factor

            if two_factor.must_enrol(current_user):
                # 2FA is required of everyone: until this user has it, enrolment is all they can reach.
                return redirect(url_for("account.two_factor_show"))
        return None

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Request-ID", g.get("request_id", ""))
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy", CSP)
        if request.endpoint and request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.jinja_env.filters["relative"] = _relative
    app.jinja_env.filters["exact"] = _exact
    app.jinja_env.filters["domain_display"] = validation.domain_display
    app.jinja_env.globals["htmx"] = htmx
    app.jinja_env.globals["htmx_config"] = HTMX_CONFIG
    app.jinja_env.globals["category_labels"] = CATEGORY_LABELS

    @app.errorhandler(IntegrityError)
    def _conflict(error):
        # Two people adding the same name at the same instant: the database keeps one, the other is told.
        db.session.rollback()
        message = ("Someone made the same change at the same moment, so yours was not saved. "
                   "Reload the page to see the current state.")
        return error_response(409, "Changed meanwhile", message)

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
        if code == 429 and request.endpoint in ("auth.login", "auth.login_code", "auth.reset_password"):
            message = ("Too many failed logins for this account or from this address. "
                       "Wait a quarter of an hour, then try again.")
        return error_response(code, title, message or messages[code])

    return handler


def error_response(code: int, title: str, message: str):
    """An error page, or for an htmx request the message alone (shown in place, see HTMX_CONFIG)."""
    template = "_partials/_error.html" if htmx.request else "error.html"
    response = Response(render_template(template, code=code, title=title, message=message), status=code)
    response.vary.add("HX-Request")
    return response


