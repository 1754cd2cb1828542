"""Undo a change from its entry (Revert), and an app as it was at any entry."""
from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from intercity.blueprints.panel_support import attempt
from intercity.blueprints.panel_support import signed_in_user as _user
from intercity.extensions import db
from intercity.models import AuditEntry
from intercity.services import history, revert
from intercity.web import render, require_role

bp = Blueprint("history", __name__)


@bp.app_template_global("revert_role")
def revert_role(entry) -> str | None:
    """The role that may revert this entry's change, None when it is not revertable (no query)."""
    return revert.REVERTABLE.get(entry.action)


@bp.app_template_global("may_revert")
def may_revert(entry) -> bool:
    """Whether the person looking may revert this entry's kind of change (macros have no current_user)."""
    role = revert.REVERTABLE.get(entry.action)
    return role is not None and current_user.is_authenticated and current_user.can(role)


@bp.app_template_global("preload_reverted_by")
def preload_reverted_by(items) -> str:
    """One query for the "reverted by" links of a page of (day, row) items, instead of one per row."""
    seqs = [row.entry.seq for _, row in items if row.entry.action in revert.REVERTABLE]
    g.reverted_by = {seq: [] for seq in seqs}
    for seq, mark in revert.reverted_by_many(seqs):
        g.reverted_by[seq].append(mark)
    return ""


@bp.app_template_global("reverted_by")
def reverted_by(entry) -> list[int]:
    """Seqs of the entries that revert this one (preloaded for a timeline page, else one indexed lookup)."""
    known = g.get("reverted_by")
    if known is not None and entry.seq in known:
        return known[entry.seq]
    return revert.reverted_by(entry.seq)


@bp.app_template_global("revert_plan")
def revert_plan(entry):
    return revert.plan(entry)


@bp.app_template_global("reverts_seq")
def reverts_seq(entry) -> int | None:
    return revert.reverted_seq(entry)


def _entry(seq: int) -> AuditEntry:
    return db.first_or_404(select(AuditEntry).where(AuditEntry.seq == seq))


@bp.post("/audit/<seq:seq>/revert")
@require_role("member")  # and the role of the change itself (deploy keys: admin), checked below
def revert_entry(seq: int):
    entry = _entry(seq)
    found = revert.plan(entry)
    if found is None:
        abort(404)
    if not current_user.can(found.role):
        abort(403)
    here = url_for("audit.entry", seq=seq)
    if found.needs_confirmation and request.form.get("confirmed") != "1":
        # A later change would be undone too: say so and ask first.
        return render_template("history/confirm_revert.html", plan=found,
                               question=revert.superseded_sentence(found), cancel=here)
    op, error = attempt(lambda: revert.revert(entry, _user(), confirmed=request.form.get("confirmed") == "1"))
    if error is not None:
        flash(error.message, "error")
        return redirect(here + "#revert", code=303)
    flash(f"Reverting #{seq}: {found.does}…", f"info op-{op.id}")
    return redirect(here + "#revert", code=303)


@bp.get("/audit/<seq:seq>/as-of")
@login_required
def as_of(seq: int):
    entry = _entry(seq)
    if entry.app_id is None:
        abort(404)
    return render("history/as_of.html", view=history.view(entry))


@bp.post("/audit/<seq:seq>/as-of/env/<key>/reveal")
@require_role("member")
def reveal(seq: int, key: str):
    entry = _entry(seq)
    value, error = attempt(lambda: history.reveal(entry, _user(), key=key))
    if error is not None:
        abort(404)
    return render("history/reveal.html", "history/_value.html", entry=entry, key=key, value=value)
