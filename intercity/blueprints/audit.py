"""The audit timeline: everything, per server and per app; permalinks, print and export."""
from flask import Blueprint, render_template
from flask_login import login_required
from sqlalchemy import select

from intercity.extensions import db
from intercity.models import AuditEntry

bp = Blueprint("audit", __name__)


@bp.get("/audit")
@login_required
def timeline():
    entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(50)).all()
    return render_template("audit/timeline.html", entries=entries)
