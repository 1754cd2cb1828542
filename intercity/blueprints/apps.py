"""Apps on a server: create, import, destroy, restart; env vars and domains."""
from flask import Blueprint

bp = Blueprint("apps", __name__, url_prefix="/servers/<int:server_id>/apps")
