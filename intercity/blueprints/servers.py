"""Servers: list, add, test the connection, host keys, deploy keys, remove."""
from flask import Blueprint, render_template
from flask_login import login_required
from sqlalchemy import select

from intercity.extensions import db
from intercity.models import Server

bp = Blueprint("servers", __name__, url_prefix="/servers")


@bp.get("")
@login_required
def index():
    servers = db.session.scalars(select(Server).order_by(Server.name)).all()
    return render_template("servers/index.html", servers=servers)
