"""Login (password, then a code when two-factor login is on), logout, and resetting a forgotten password."""
from __future__ import annotations


from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, StringField
from wtforms.validators import EqualTo, InputRequired

from intercity import clock
from intercity.blueprints.panel_support import attempt
from intercity.extensions import db, limiter
from intercity.models import User
from intercity.services import password_reset, sessions, two_factor, users
from intercity.validation import ValidationError
from intercity.web import local_path

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired()])
    password = PasswordField("Password", validators=[InputRequired()])
    remember = BooleanField("Keep me logged in on this computer")


def _safe_next(target: str | None) -> str:
    # Only local paths: a login link must not bounce people to another site.
    return local_path(target, url_for("home.index"))


class CodeForm(FlaskForm):
    code = StringField("Code from your phone, or a recovery code", validators=[InputRequired("Enter the code.")])


class ForgotForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired("Enter your email address.")])


class ResetForm(FlaskForm):
    password = PasswordField("New password", validators=[InputRequired("Choose a new password.")])
    confirm = PasswordField("Repeat the new password",
                            validators=[InputRequired(), EqualTo("password", "The passwords differ.")])
    code = StringField("Code from your phone, or a recovery code")


# How long the code step waits after the right password before the password is asked again.
CODE_STEP_SECONDS = 300


def _pending_user() -> User | None:
    """The user who gave the right password and still owes a code, if the step has not expired."""
    pending = session.get("2fa")
    if not pending or clock.now() - pending.get("at", 0) > CODE_STEP_SECONDS:
        return None
    user = db.session.get(User, pending.get("user"))
    if user is None or not user.active or not user.two_factor_enabled:
        return None
    return user


def _account_key() -> str:
    # The code step counts against the same account as the password it follows.
    if request.endpoint == "auth.login_code":
        user = _pending_user()
        email = user.email if user is not None else ""
    elif request.endpoint == "auth.reset_password":
        # Guesses at a reset link's code count against that link (its signed payload names the account).
        email = "reset:" + (request.view_args or {}).get("token", "")[:40]
    else:
        email = User.normalise_email(request.form.get("email", ""))
    return "login-account:" + email


def _failed(response) -> bool:
    # Only failed attempts count: a team logging in all morning from one office is never throttled.
    return response.status_code == 401


# One pair of counters for passwords, codes and reset links alike: a code is no cheaper to guess than a password.
_per_account = limiter.shared_limit(lambda: current_app.config["LOGIN_LIMIT_PER_ACCOUNT"], scope="login-account",
                                    key_func=_account_key, methods=["POST"], deduct_when=_failed)
_per_address = limiter.shared_limit(lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS"], scope="login-address",
                                    methods=["POST"], deduct_when=_failed)


def start_session(user: User, remember: bool = False) -> None:
    """Log `user` in with a new server-known session, and audit the login."""
    session.clear()  # a fresh session on login: no fixation
    users.logged_in(user)
    sessions.start(user, remember=remember)
    db.session.commit()
    login_user(user, remember=remember)
    session.permanent = True


@bp.route("/login", methods=["GET", "POST"])
@_per_account
@_per_address
def login():
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        user = users.authenticate(form.email.data, form.password.data)
        db.session.commit()
        if user is not None and user.two_factor_enabled:
            # The password was right; the session starts only after the code.
            session["2fa"] = {"user": user.id, "at": clock.now(), "remember": bool(form.remember.data),
                              "next": _safe_next(request.args.get("next"))}
            return redirect(url_for(".login_code"), code=303)
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


@bp.route("/login/code", methods=["GET", "POST"])
@_per_account
@_per_address
def login_code():
    """The second step of a login with two-factor login on: a code from the phone or a recovery code."""
    user = _pending_user()
    if user is None:
        session.pop("2fa", None)
        flash("Log in again: the code step has expired.", "info")
        return redirect(url_for(".login"), code=303)
    form = CodeForm()
    error = None
    if form.validate_on_submit():
        if two_factor.check_code(user, form.code.data):
            user.failed_logins, user.failed_logins_since = 0, None
            pending = session.get("2fa")
            start_session(user, remember=pending.get("remember", False))
            return redirect(local_path(pending.get("next"), url_for("home.index")), code=303)
        two_factor.code_failed(user)
        db.session.commit()
        error = "That code is not right, or was already used."
    elif request.method == "POST":
        error = "Enter the code."
    return render_template("auth/code.html", form=form, error=error), (401 if error else 200)


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS"], methods=["POST"])
def forgot_password():
    """Ask for a reset link; the answer is the same whether or not the address has an account."""
    form = ForgotForm()
    if form.validate_on_submit():
        password_reset.request_reset(form.email.data)
        db.session.commit()
        return render_template("auth/forgot.html", form=None, sent=True)
    return render_template("auth/forgot.html", form=form, sent=False), (422 if request.method == "POST" else 200)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@_per_account
@_per_address
def reset_password(token: str):
    """The link from the reset mail: a new password, and with two-factor login on a code."""
    try:
        user = password_reset.pending(token)
    except ValidationError as error:
        db.session.rollback()
        return render_template("auth/reset.html", form=None, problem=error.message), 410
    form = ResetForm()
    if form.validate_on_submit():
        done, error = attempt(lambda: password_reset.complete(token, form.password.data, form.code.data or ""),
                              form, "password")
        if error is None:
            session.clear()
            flash("Your password is changed and every session of your account has ended. Log in with it now.",
                  "success")
            return redirect(url_for(".login"), code=303)
        if error.field is None:
            return render_template("auth/reset.html", form=None, problem=error.message), 410
        # A wrong code counts like a wrong password for the throttle.
        status = 401 if error.field == "code" else 422
        return render_template("auth/reset.html", form=form, problem=None, user=user), status
    status = 422 if request.method == "POST" else 200
    return render_template("auth/reset.html", form=form, problem=None, user=user), status
