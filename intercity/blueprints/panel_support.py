"""What the panel's blueprints share: forms whose validators are the rules in intercity.validation,
error placement, redirects, and the operations a page region shows."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, StringField, TextAreaField
from wtforms import ValidationError as FormError

from intercity import validation
from intercity.extensions import db
from intercity.validation import ValidationError
from intercity.web import local_path


def signed_in_user():
    """The signed-in person as a model object: services take users, not the request's proxy."""
    return current_user._get_current_object()


def server_or_404(server_id: int):
    from intercity.models import Server

    return db.get_or_404(Server, server_id)


def app_or_404(server_id: int, name: str):
    from intercity.services import apps as app_service

    app = app_service.find_app(server_id, name)
    if app is None:
        abort(404)
    return app


def rule(check):
    """A WTForms validator that applies one rule of intercity.validation (no rule is written twice)."""

    def validator(form, field):
        try:
            check(field.data)
        except ValidationError as error:
            raise FormError(error.message) from None

    return validator


class ServerForm(FlaskForm):
    name = StringField("Name", validators=[rule(validation.server_name)], id="server-name")
    host = StringField("Host", validators=[rule(validation.host)], id="server-host")
    port = StringField("SSH port", default="22", validators=[rule(validation.port)], id="server-port")
    ssh_user = StringField("SSH user", default="root", validators=[rule(validation.ssh_user)], id="server-ssh-user")
    host_key_fingerprint = StringField("Expected host key fingerprint (optional)",
                                       validators=[rule(validation.host_key_fingerprint)],
                                       id="server-host-key-fingerprint")


class ConfirmForm(FlaskForm):
    confirm = StringField("Type the name to confirm", id="confirm-name")


class AppForm(FlaskForm):
    name = StringField("App name", validators=[rule(validation.app_name)], id="app-name")


class EnvVarForm(FlaskForm):
    key = StringField("Name", validators=[rule(validation.env_key)], id="env-key")
    value = TextAreaField("Value", id="env-value")
    restart = BooleanField("Restart the app to apply", default=True, id="env-restart")


class EnvEditForm(FlaskForm):
    value = TextAreaField("Value", id="env-edit-value")
    restart = BooleanField("Restart the app to apply", default=True, id="env-edit-restart")


class EnvPasteForm(FlaskForm):
    block = TextAreaField("Paste a .env block", id="env-block")
    restart = BooleanField("Restart the app to apply", default=True, id="env-paste-restart")


class DomainForm(FlaskForm):
    domain = StringField("Domain", validators=[rule(validation.domain)], id="domain-name")


class DeployKeyForm(FlaskForm):
    name = StringField("Name", validators=[rule(validation.deploy_key_name)], id="deploy-key-name")
    public_key = TextAreaField("Public key", validators=[rule(validation.public_key)], id="deploy-key-public-key")
    confirmed = HiddenField(default="")


def place_error(form, error: ValidationError, fallback: str | None = None) -> None:
    """Put a service's error next to its field, or at the top of the form when no field fits."""
    name = error.field if error.field and error.field in form._fields else fallback
    if name and name in form._fields:
        field = form[name]
        field.errors = [*field.errors, error.message]
    else:
        form.form_errors.append(error.message)


def attempt(call, form=None, fallback: str | None = None):
    """Run a service call as the request's change: commit it, or undo it all and keep its error.

    With a form the error is placed next to its field (or `fallback`), for the caller to re-render
    the form. Returns (result, None) after the commit, (None, error) after the rollback: nothing is
    ever half-applied.
    """
    try:
        result = call()
    except ValidationError as error:
        db.session.rollback()
        if form is not None:
            place_error(form, error, fallback)
        return None, error
    db.session.commit()
    return result, None


def back(default: str, message: str | None = None, category: str = "success", operation=None):
    """Post/redirect/get; htmx follows the redirect and picks its region from the page.

    A message about work just started names its operation, so the operation's outcome can
    replace it when the work ends (see operations.show) instead of leaving "Restarting…" above
    a failed card.
    """
    if message:
        flash(message, f"{category} op-{operation.id}" if operation is not None and operation.id else category)
    return redirect(local_path(request.form.get("next"), default), code=303)


def unconfirmed(title: str, question: str, default: str):
    """A removal asked for without `confirmed=1` (a plain POST without JavaScript): the page that asks
    `question` and posts the same form again with `confirmed=1`; None once confirmed (htmx sends it
    with `hx-confirm`, see `hx_form`)."""
    if request.form.get("confirmed") == "1":
        return None
    fields = [(key, value) for key, value in request.form.items(multi=True) if key not in ("csrf_token", "confirmed")]
    return render_template("_partials/confirm.html", title=title, question=question, fields=fields,
                           cancel=local_path(request.form.get("next"), default))


def recent_timeline(server_id: int, app_name: str | None = None, limit: int = 10):
    """The recent-timeline rows for a server or app page (built by the timeline's `recent()`)."""
    from intercity.audit import timeline

    return timeline.recent(server_id, app_name, limit=limit)
