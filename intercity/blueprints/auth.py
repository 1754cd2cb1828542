"""Login and logout."""
from __future__ import annotations


from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField
from wtforms.validators import InputRequired

from intercity.extensions import db, limiter
from intercity.models import User
from intercity.services import sessions, users
from intercity.web import local_path

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired()])
    password = PasswordField("Password", validators=[InputRequired()])
    remember = BooleanField("Keep me logged in on this computer")


def _safe_next(target: str | None) -> str:
    # Only local paths: a login link must not bounce people to another site.
    return local_path(target, url_for("home.index"))


def _account_key() -> str:
    return "login-account:" + User.normalise_email(request.form.get("email", ""))


def _failed(response) -> bool:
    # Only failed attempts count: a team logging in all morning from one office is never throttled.
    return response.status_code == 401


def start_session(user: User, remember: bool = False) -> None:
    """Log `user` in with a new server-known session, and audit the login."""
    session.clear()  # a fresh session on login: no fixation
    users.logged_in(user)
    sessions.start(user, remember=remember)
    db.session.commit()
    login_user(user, remember=remember)
    session.permanent = True


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ACCOUNT"], key_func=_account_key, methods=["POST"],
               deduct_when=_failed)
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS"], methods=["POST"], deduct_when=_failed)
def login():
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        user = users.authenticate(form.email.data, form.password.data)
        db.session.commit()
        if user is not None:
            start_session(user, remember=form.remember.data)
            return redirect(_safe_next(request.args.get("next")))
        error = "Email or password is incorrect."
    elif request.method == "POST":
        error = "Enter your email and password."
    return render_template("auth/login.html", form=form, error=error), (401 if error else 200)


@bp.post("/logout")
@login_required
def logout():
    user = current_user._get_current_object()
    users.logged_out(user)
    sessions.end(user.current_session, "logout")
    db.session.commit()
    # Clear first: logout_user() leaves the marker that makes Flask-Login delete the remember cookie.
    session.clear()
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
