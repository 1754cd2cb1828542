"""The audit timeline: everything, per server and per app; permalinks, print, export and verification."""
from __future__ import annotations

from flask import (Blueprint, Response, abort, flash, redirect, render_template, request, stream_template,
                   stream_with_context, url_for)
from flask_login import current_user, login_required
from markupsafe import Markup
from sqlalchemy import func, not_, select

from intercity import input_guard
from intercity.audit import chain, export, integrity, page_cache, query, timeline
from intercity.audit.capture import record_event
from intercity.audit.query import Filter, QueryError
from intercity.extensions import db
from intercity.input_guard import MAX_ROW_ID
from intercity.models import AuditEntry
from intercity.models.base import utcnow
from intercity.web import htmx, render, require_role

bp = Blueprint("audit", __name__)
# Entries a print view fetches and renders at a time; the page itself is streamed.
PRINT_BATCH = 500


@bp.app_template_global("audit_recent")
def audit_recent(server_id=None, app_name=None, limit=10):
    """For audit/_recent.html: the latest rows of a server or app."""
    return timeline.recent(server_id=server_id, app_name=app_name, limit=limit)


def _scope(server_id: int | None = None, app_name: str | None = None) -> timeline.Scope:
    if server_id is None:
        return timeline.Scope()
    scope = timeline.server_scope(server_id, app_name)
    if scope is None:
        abort(404)
    return scope


def _links(scope: timeline.Scope, flt: Filter) -> dict:
    """Where this view's print, export and chip links go, keeping the filter."""
    endpoint, view_args = request.endpoint, dict(request.view_args or {})

    def here(**params):
        return url_for(endpoint, **view_args, **params)

    if scope.kind == "app":
        print_url = url_for("audit.app_print", server_id=scope.server_id, name=scope.app_name, **flt.args())
    elif scope.kind == "server":
        print_url = url_for("audit.server_print", server_id=scope.server_id, **flt.args())
    else:
        print_url = url_for("audit.print_view", **flt.args())
    export_args = Filter(query=_scope_query(scope, flt.query)).args()
    return {
        "here": here,
        "print_url": print_url,
        "csv_url": url_for("audit.export_csv", **export_args),
        "jsonl_url": url_for("audit.export_jsonl", **export_args),
    }


def _quote(value: str) -> str:
    return f'"{value}"' if any(c.isspace() for c in value) else value


def _scope_query(scope: timeline.Scope, text: str) -> str:
    """A page's scope as query terms, so its export link carries it."""
    terms = []
    if scope.server_name:
        terms.append(f"server:{_quote(scope.server_name)}")
    if scope.app_name:
        terms.append(f"app:{_quote(scope.app_name)}")
    return " ".join([*terms, text]).strip()


# The regions a timeline request can ask for: the full page's main, the htmx list, an older page appended.
REGIONS = {"main": "audit/_main.html", "timeline": "audit/_timeline.html", "page": "audit/_page.html"}


def _timeline(scope: timeline.Scope):
    flt = Filter.from_args(request.args, scope.conditions)
    before = input_guard.id_arg(request.args.get("before"))
    part = ("page" if htmx.target == "load-older" else "timeline") if htmx.request else "main"
    shown = page_cache.region(part, flt.query, before, lambda: _region(part, scope, flt, before))
    if part == "main":
        # The session's header, flashes and token around the region, which may have been rendered for someone else.
        response = render("audit/timeline.html", scope=scope, main=Markup(page_cache.with_token(shown.html)))
    else:
        response = Response(shown.html)
        response.vary.add("HX-Request")
    response.status_code = shown.status
    return response


def _region(part: str, scope: timeline.Scope, flt: Filter, before: int | None) -> page_cache.Rendered:
    error, page_rows, older = None, [], None
    try:
        page = query.page(db.session, flt.conditions(), before=before)
    except QueryError as problem:
        error = problem.message
    else:
        page_rows, older = timeline.rows(page.entries), page.older
    previous_day = None
    if part == "page" and before is not None:
        # The page continues a list already on screen: repeat no day header.
        shown = db.session.scalar(select(AuditEntry.created_at).where(AuditEntry.seq == before))
        previous_day = shown.date() if shown else None
    # The token is the session's: a kept region has a slot for it instead (page_cache.with_token).
    context = dict(scope=scope, flt=flt, chips=query.CHIPS, error=error, before=before, older=older,
                   items=timeline.with_days(page_rows, previous_day), **_links(scope, flt),
                   csrf_token=lambda: Markup(page_cache.TOKEN_SLOT))
    html = render_template(REGIONS[part], **context)
    # A pending row polls and changes without a new entry; an unreadable filter is answered afresh.
    keep = error is None and not any(row.pending for row in page_rows)
    return page_cache.Rendered(html, 422 if error and part != "page" else 200, keep)


@bp.get("/audit", endpoint="timeline")
@login_required
def timeline_view():
    return _timeline(_scope())


@bp.get("/servers/<int:server_id>/audit")
@login_required
def server_timeline(server_id: int):
    return _timeline(_scope(server_id))


@bp.get("/servers/<int:server_id>/apps/<name>/audit")
@login_required
def app_timeline(server_id: int, name: str):
    return _timeline(_scope(server_id, name))


@bp.get("/audit/<seq:seq>")
@login_required
def entry(seq: int):
    # An entry's number is its seq: chained, so swapping row ids cannot make a link show another entry.
    found = db.session.scalar(select(AuditEntry).where(AuditEntry.seq == seq))
    if found is None:
        # Links from before entries were numbered by seq named the row id (`/audit/<id>`): where that
        # number is no seq (ids can run ahead of seqs), the entry with that id is sent to its own number.
        by_id = db.session.get(AuditEntry, seq) if seq <= MAX_ROW_ID else None
        if by_id is None:
            abort(404)
        return redirect(url_for("audit.entry", seq=by_id.seq), code=301)
    row = timeline.row_for(found)
    if htmx.request:
        # Pending rows poll this until their operation ends; the final row carries no trigger.
        # A row whose details the person had open says so (open=1), so the swap keeps them open.
        template = "audit/_recent_row.html" if request.args.get("view") == "recent" else "audit/_entry_row.html"
        return render("audit/entry.html", template, row=row, open=request.args.get("open") == "1")
    return render("audit/entry.html", row=row)


# -- print ---------------------------------------------------------------------------------------

def _print(scope: timeline.Scope):
    flt = Filter.from_args(request.args, scope.conditions)
    try:
        conditions = flt.conditions()
    except QueryError as problem:
        return render_template("audit/print.html", scope=scope, flt=flt, error=problem.message, items=[],
                               stats=None, check=None, now=utcnow(), printed_by=current_user.email), 422
    shown = [*conditions, not_(query.folded())]
    stats = db.session.execute(
        select(func.count(AuditEntry.id), func.min(AuditEntry.created_at), func.max(AuditEntry.created_at))
        .where(*shown)
    ).one()
    # A GET stores nothing: the print checks one step from the newest checkpoint ("Verify chain" and
    # `intercity audit verify` store checkpoints).
    check = integrity.verify(save=False)
    # Read now: the page is streamed after this request's session is gone.
    printed_by = current_user.email

    def items():
        # One ordered query read in chunks (a server-side cursor on PostgreSQL): constant memory, and the
        # scope's rows are found once instead of once per batch.
        result = db.session.execute(
            select(AuditEntry).where(*shown).order_by(AuditEntry.seq).execution_options(yield_per=PRINT_BATCH))
        previous_day = None
        for batch in result.scalars().partitions():
            for label, row in timeline.with_days(timeline.rows(batch), previous_day):
                previous_day = row.day
                yield label, row

    return Response(stream_with_context(_buffered(stream_template(
        "audit/print.html", scope=scope, flt=flt, error=None, items=items(), stats=stats, check=check, now=utcnow(),
        printed_by=printed_by))))


def _buffered(chunks, size: int = 64 * 1024):
    """Jinja streams every template statement as a chunk: send them in blocks of about `size` characters."""
    block, length = [], 0
    for chunk in chunks:
        block.append(chunk)
        length += len(chunk)
        if length >= size:
            yield "".join(block)
            block, length = [], 0
    if block:
        yield "".join(block)


@bp.get("/audit/print")
@login_required
def print_view():
    return _print(_scope())


@bp.get("/servers/<int:server_id>/audit/print")
@login_required
def server_print(server_id: int):
    return _print(_scope(server_id))


@bp.get("/servers/<int:server_id>/apps/<name>/audit/print")
@login_required
def app_print(server_id: int, name: str):
    return _print(_scope(server_id, name))


# -- export --------------------------------------------------------------------------------------

def _export(fmt: str):
    flt = Filter.from_args(request.args)
    try:
        conditions = flt.conditions()
    except QueryError as problem:
        return Response(f"Cannot export: {problem.message}\n", status=422, mimetype="text/plain")
    description = flt.describe()
    export.record(db.session, fmt, description)
    db.session.commit()
    # Read before streaming so a header can repeat it; the export's last record carries it too.
    head = chain.head(db.session.connection())
    filename = export.filename(fmt, flt.query, flt.categories)
    response = Response(stream_with_context(export.lines(db.session, fmt, conditions, description, head)),
                        mimetype=export.MEDIA_TYPES[fmt].split(";")[0])
    response.headers["Content-Type"] = export.MEDIA_TYPES[fmt]
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["X-Intercity-Chain-Head"] = f"{head[0]}:{head[1]}"
    return response


@bp.get("/audit/export.csv")
@login_required
def export_csv():
    return _export("csv")


@bp.get("/audit/export.jsonl")
@login_required
def export_jsonl():
    return _export("jsonl")


# -- verification ----------------------------------------------------------------------------------

@bp.post("/audit/verify")
@require_role("admin")
def verify():
    """Verify the next step of the chain from the last checkpoint; the final result becomes an entry itself.

    Each request verifies at most `integrity.STEP` entries and stores a checkpoint, so a long chain
    never meets the web worker's timeout: with htmx the result fragment asks for the next step until
    the head is reached, showing how far it got; without JavaScript each press continues.
    """
    check = integrity.verify()
    if check.ok and not check.complete:
        pass  # a step on the way: its checkpoint is stored, the entry comes with the last step
    elif check.ok:
        record_event(db.session, "audit.verified", target_type="audit_log", target_label="audit log",
                     diff={"head_seq": [None, check.head_seq], "head_hash": [None, check.head_hash],
                           "checked": [None, check.checked], "total": [None, check.total]})
    else:
        record_event(db.session, "audit.verify_failed", target_type="audit_log", target_label="audit log",
                     diff={"problem": [None, check.problem], "since_seq": [None, check.since_seq]})
    db.session.commit()
    if htmx.request:
        return render_template("audit/_verify.html", check=check)
    flash(check.summary, "error" if not check.ok else "success" if check.complete else "info")
    return redirect(request.referrer if _local(request.referrer) else url_for("audit.timeline"))


def _local(url: str | None) -> bool:
    from urllib.parse import urlsplit

    if not url:
        return False
    parts = urlsplit(url)
    return parts.netloc in ("", request.host) and parts.path.startswith("/")
