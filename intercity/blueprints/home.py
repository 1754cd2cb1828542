"""The front page: where a logged-in person starts. Members and viewers start at every app across
servers; admins, who add and look after the servers, at the servers."""
from flask import Blueprint, redirect, url_for
from flask_login import current_user, login_required

bp = Blueprint("home", __name__)


@bp.get("/")
@login_required
def index():
    return redirect(url_for("servers.index" if current_user.can("admin") else "deploys.all_apps"))
