"""/healthz: the state of each part, for load balancers and people."""
from flask import Blueprint, jsonify

from intercity import database
from intercity.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    state, detail = database.state(db.engine)
    parts = {"database": {"state": state, "detail": detail}}
    if state == "ok":
        from intercity.jobs import queue_health

        parts["jobs"] = queue_health()
    status = 503 if state == "unreachable" else 200
    healthy = state == "ok" and parts.get("jobs", {}).get("state") == "ok"
    parts["status"] = "ok" if healthy else "degraded"
    return jsonify(parts), status
