"""The front page: where a logged-in person starts, the list of every app across servers."""
from flask import Blueprint, redirect, url_for
from flask_login import login_required

bp = Blueprint("home", __name__)


@bp.get("/")
@login_required
def index():
    return redirect(url_for("deploys.all_apps"))
