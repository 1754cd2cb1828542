"""The team page (admins): invitations, roles, deactivation; and the invitee's page for joining."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import EqualTo, InputRequired

from intercity.blueprints.auth import start_session
from intercity.blueprints.panel_support import attempt
from intercity.extensions import db
from intercity.models import ROLES, Invitation, User
from intercity.services import team, two_factor
from intercity.validation import ValidationError
from intercity.web import require_role

bp = Blueprint("team", __name__)

ROLE_CHOICES = [SelectChoice(role, role) for role in ROLES]


class InviteForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired("Enter an email address.")], id="invite-email")
    role = SelectField("Role", choices=ROLE_CHOICES, default="member", id="invite-role")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)


class AcceptForm(FlaskForm):
    password = PasswordField("Choose a password", validators=[InputRequired("Choose a password.")])
    confirm = PasswordField("Repeat the password",
                            validators=[InputRequired(), EqualTo("password", "The passwords differ.")])


def _actor() -> User:
    return current_user._get_current_object()


def _page(form=None, error=None, status=200):
    return render_template("team/index.html", members=team.members(), invitations=team.pending_invitations(),
                           form=form or InviteForm(), error=error, roles=ROLES), status


def _done(message: str):
    flash(message, "success")
    return redirect(url_for(".index"), code=303)


@bp.get("/team")
@require_role("admin")
def index():
    return _page()


@bp.post("/team/invitations")
@require_role("admin")
def invite():
    form = InviteForm()
    if form.validate_on_submit():
        invitation, error = attempt(lambda: team.invite(_actor(), form.email.data, form.role.data), form)
        if error is None:
            return _done(f"Invitation sent to {invitation.email}; the link works for 72 hours.")
    return _page(form, status=422)


@bp.post("/team/invitations/<int:invitation_id>/revoke")
@require_role("admin")
def revoke(invitation_id: int):
    invitation = db.get_or_404(Invitation, invitation_id)
    _, error = attempt(lambda: team.revoke(_actor(), invitation))
    if error is not None:
        return _page(error=error.message, status=422)
    return _done(f"The invitation for {invitation.email} is withdrawn.")


def _change(user_id: int, change, message: str):
    target = db.get_or_404(User, user_id)
    _, error = attempt(lambda: change(target))
    if error is not None:
        return _page(error=error.message, status=422)
    return _done(message.format(email=target.email, role=target.role))


@bp.post("/team/users/<int:user_id>/role")
@require_role("admin")
def change_role(user_id: int):
    form = RoleForm()
    if not form.validate_on_submit():
        return _page(error="Choose one of the roles.", status=422)
    return _change(user_id, lambda target: team.change_role(_actor(), target, form.role.data),
                   "{email} is now {role}; their sessions were ended.")


@bp.post("/team/users/<int:user_id>/deactivate")
@require_role("admin")
def deactivate(user_id: int):
    return _change(user_id, lambda target: team.deactivate(_actor(), target),
                   "{email} is deactivated and logged out everywhere.")


@bp.post("/team/users/<int:user_id>/reactivate")
@require_role("admin")
def reactivate(user_id: int):
    return _change(user_id, lambda target: team.reactivate(_actor(), target), "{email} can log in again.")


@bp.post("/team/users/<int:user_id>/reset-2fa")
@require_role("admin")
def reset_two_factor(user_id: int):
    return _change(user_id, lambda target: two_factor.reset(target, _actor()),
                   "Two-factor login of {email} is off and their sessions ended; they were told by mail.")


@bp.route("/invitations/<token>", methods=["GET", "POST"])
def accept(token: str):
    """The link in the invitation mail: the invitee chooses a password and is logged in."""
    try:
        invitation = team.open_invitation(token)
    except ValidationError as error:
        db.session.rollback()
        return render_template("team/accept.html", form=None, problem=error.message), 410
    form = AcceptForm()
    if form.validate_on_submit():
        user, error = attempt(lambda: team.accept(token, form.password.data), form)
        if error is not None and error.field is None:
            return render_template("team/accept.html", form=None, problem=error.message), 410
        if error is None:
            start_session(user)
            flash(f"Welcome to the team, {user.email}. You are a {user.role}.", "success")
            return redirect(url_for("home.index"), code=303)
    status = 422 if request.method == "POST" else 200
    return render_template("team/accept.html", form=form, invitation=invitation, problem=None), status
