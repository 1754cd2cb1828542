"""First run: create the first admin, then this page is gone."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import EqualTo, InputRequired

from intercity.blueprints.auth import start_session
from intercity.extensions import db
from intercity.services import users
from intercity.validation import ValidationError
from intercity.web import first_run

bp = Blueprint("setup", __name__)


class SetupForm(FlaskForm):
    email = EmailField("Your email", validators=[InputRequired()])
    password = PasswordField("Password", validators=[InputRequired()])
    confirm = PasswordField("Repeat the password", validators=[InputRequired(), EqualTo("password", "The passwords differ.")])


def _validate_all(form: SetupForm) -> bool:
    """Every field's problem at once: the form's own checks, then the account rules the service applies."""
    valid = form.validate()
    for name, check in (("email", users.check_email), ("password", users.check_password)):
        field = getattr(form, name)
        if field.data and not field.errors:
            try:
                check(field.data)
            except ValidationError as error:
                field.errors.append(error.message)
                valid = False
    return valid


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    if not first_run():
        abort(404)
    form = SetupForm()
    if form.is_submitted() and _validate_all(form):
        try:
            admin = users.create_first_admin(form.email.data, form.password.data)
        except ValidationError as error:
            db.session.rollback()
            getattr(form, error.field or "email").errors.append(error.message)
        else:
            if admin is None:
                db.session.rollback()
                abort(404)
            db.session.commit()
            start_session(admin)
            flash(f"Welcome. You are the first admin, {admin.email}. Add a server to begin.", "success")
            return redirect(url_for("home.index"))
    return render_template("setup/setup.html", form=form)
