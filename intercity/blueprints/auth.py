"""Login and logout."""
from __future__ import annotations


from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField
from wtforms.validators import InputRequired

from intercity.extensions import db, limiter
from intercity.services import users
from intercity.web import local_path

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired()])
    password = PasswordField("Password", validators=[InputRequired()])
    remember = BooleanField("Keep me logged in on this computer")


def _safe_next(target: str | None) -> str:
    # Only local paths: a login link must not bounce people to another site.
    return local_path(target, url_for("home.index"))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        user = users.authenticate(form.email.data, form.password.data)
        db.session.commit()
        if user is not None:
            session.clear()  # a fresh session on login: no fixation
            login_user(user, remember=form.remember.data)
            session.permanent = True
            return redirect(_safe_next(request.args.get("next")))
        error = "Email or password is incorrect."
    elif request.method == "POST":
        error = "Enter your email and password."
    return render_template("auth/login.html", form=form, error=error), (401 if error else 200)


@bp.post("/logout")
@login_required
def logout():
    users.logged_out(current_user._get_current_object())
    db.session.commit()
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
