"""A person's own account (/account): sessions, two-factor login, email, password, notification preferences
and their recent activity; and the digest's unsubscribe link (which needs no login)."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, RadioField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import EqualTo, InputRequired

from intercity.audit import timeline
from intercity.audit.actor import Actor, acting_as
from intercity.blueprints.panel_support import attempt
from intercity.blueprints.panel_support import signed_in_user as _user
from intercity.extensions import db
from intercity.models.notification import FREQUENCIES
from intercity.services import account, notifications, sessions, two_factor
from intercity.validation import ValidationError

bp = Blueprint("account", __name__)


class PasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[InputRequired("Enter your current password.")])
    new_password = PasswordField("New password", validators=[InputRequired("Choose a new password.")])
    confirm = PasswordField("Repeat the new password",
                            validators=[InputRequired(), EqualTo("new_password", "The passwords differ.")])


class EmailForm(FlaskForm):
    new_email = EmailField("New email address", validators=[InputRequired("Enter the new address.")])
    email_password = PasswordField("Current password", validators=[InputRequired("Enter your current password.")])


class NotificationsForm(FlaskForm):
    digest_frequency = RadioField("Digest of every change", id="digest-frequency",
                                  choices=[SelectChoice(f, notifications.FREQUENCY_NAMES[f]) for f in FREQUENCIES])
    security_alerts = BooleanField("Security alerts at once (deploy keys, env vars, host keys, users)",
                                   id="security-alerts")


class EnableTwoFactorForm(FlaskForm):
    code = StringField("Code the app shows", validators=[InputRequired("Enter the code the app shows.")],
                       id="enrol-code")


class TwoFactorCheckForm(FlaskForm):
    """Turning off, or new recovery codes: the password and a code."""
    password = PasswordField("Current password", validators=[InputRequired("Enter your current password.")])
    code = StringField("Code from your phone, or a recovery code", validators=[InputRequired("Enter a code.")])


class ConfirmEmailForm(FlaskForm):
    pass


class UnsubscribeForm(FlaskForm):
    pass


def _notifications_form(formdata=None) -> NotificationsForm:
    frequency, alerts = notifications.current_choices(_user())
    return NotificationsForm(formdata=formdata, data={"digest_frequency": frequency, "security_alerts": alerts})


def _page(password_form=None, email_form=None, notifications_form=None, status=200):
    user = _user()
    return render_template(
        "account/show.html", password_form=password_form or PasswordForm(), email_form=email_form or EmailForm(),
        notifications_form=notifications_form or _notifications_form(),
        two_factor_required=two_factor.required(),
        user_sessions=sessions.active(user), this_session=user.current_session,
        activity=timeline.rows(account.recent_activity(user)),
    ), status


@bp.get("/account")
@login_required
def show():
    return _page()


def _two_factor_page(enable_form=None, check_form=None, codes=None, status=200):
    user = _user()
    enrolment = None
    if not user.two_factor_enabled and codes is None:
        if user.totp_secret_encrypted is None:
            two_factor.begin_enrolment(user)
            db.session.commit()
        enrolment = two_factor.enrolment(user)
    return render_template(
        "account/two_factor.html", enrolment=enrolment, codes=codes, required=two_factor.required(),
        enable_form=enable_form or EnableTwoFactorForm(), check_form=check_form or TwoFactorCheckForm(),
        codes_left=two_factor.recovery_codes_left(user) if user.two_factor_enabled else 0,
    ), status


@bp.get("/account/two-factor")
@login_required
def two_factor_show():
    """Set up (a QR code made here, confirmed with a code) or, once on, turn off and renew recovery codes."""
    return _two_factor_page()


@bp.post("/account/two-factor/enable")
@login_required
def two_factor_enable():
    form = EnableTwoFactorForm()
    if form.validate_on_submit():
        codes, error = attempt(lambda: two_factor.confirm_enrolment(_user(), form.code.data), form, "code")
        if error is None:
            # The codes are shown in this answer only: they are stored hashed.
            return _two_factor_page(codes=codes)
    return _two_factor_page(enable_form=form, status=422)


@bp.post("/account/two-factor/disable")
@login_required
def two_factor_disable():
    form = TwoFactorCheckForm()
    if form.validate_on_submit():
        _, error = attempt(lambda: two_factor.disable(_user(), form.password.data, form.code.data), form, "code")
        if error is None:
            flash("Two-factor login is off.", "success")
            return redirect(url_for(".show"), code=303)
    return _two_factor_page(check_form=form, status=422)


@bp.post("/account/two-factor/recovery-codes")
@login_required
def two_factor_recovery_codes():
    form = TwoFactorCheckForm()
    if form.validate_on_submit():
        codes, error = attempt(lambda: two_factor.regenerate_recovery_codes(_user(), form.password.data,
                                                                           form.code.data), form, "code")
        if error is None:
            return _two_factor_page(codes=codes)
    return _two_factor_page(check_form=form, status=422)


@bp.post("/account/password")
@login_required
def change_password():
    form = PasswordForm()
    if form.validate_on_submit():
        ended, error = attempt(lambda: account.change_password(_user(), form.current_password.data,
                                                               form.new_password.data), form, "new_password")
        if error is None:
            others = f" and {ended} other session{'s' if ended != 1 else ''} ended" if ended else ""
            flash(f"Your password is changed{others}.", "success")
            return redirect(url_for(".show"), code=303)
    return _page(password_form=form, status=422)


@bp.post("/account/email")
@login_required
def change_email():
    form = EmailForm()
    if form.validate_on_submit():
        new_email, error = attempt(lambda: account.request_email_change(_user(), form.email_password.data,
                                                                        form.new_email.data), form, "new_email")
        if error is None:
            flash(f"We sent a link to {new_email}. Your address changes when you follow it.", "success")
            return redirect(url_for(".show"), code=303)
    return _page(email_form=form, status=422)


@bp.post("/account/notifications")
@login_required
def notifications_update():
    form = _notifications_form(request.form)
    if form.validate():
        _, error = attempt(lambda: notifications.update_preferences(
            _user(), frequency=form.digest_frequency.data, security_alerts=form.security_alerts.data), form)
        if error is None:
            flash("Notification preferences saved.", "success")
            return redirect(url_for(".show"), code=303)
    return _page(notifications_form=form, status=422)


@bp.route("/account/email/confirm/<token>", methods=["GET", "POST"])
def confirm_email(token: str):
    """The link mailed to the new address: a button confirms (mail scanners that follow links change nothing)."""
    try:
        user, new_email = account.pending_email_change(token)
    except ValidationError as error:
        db.session.rollback()
        return render_template("account/confirm_email.html", problem=error.message, form=None), 410
    form = ConfirmEmailForm()
    if request.method == "POST" and form.validate_on_submit():
        user, error = attempt(lambda: account.confirm_email_change(token))
        if error is not None:
            return render_template("account/confirm_email.html", problem=error.message, form=None), 410
        flash(f"Your account now uses {user.email}.", "success")
        return redirect(url_for(".show") if current_user.is_authenticated else url_for("auth.login"), code=303)
    return render_template("account/confirm_email.html", problem=None, form=form, new_email=new_email, user=user)


@bp.post("/account/sessions/<int:session_id>/end")
@login_required
def end_session(session_id: int):
    row = account.end_session(_user(), session_id)
    if row is None:
        flash("That session had already ended.", "info")
        return redirect(url_for(".show"), code=303)
    db.session.commit()
    if row.id == getattr(_user().current_session, "id", None):
        return redirect(url_for("auth.login"), code=303)
    flash(f"The session on {row.device} has ended.", "success")
    return redirect(url_for(".show"), code=303)


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe(token: str):
    """From a digest: works without logging in; the entry's actor is the person the signed token names."""
    from intercity.notify.tokens import TokenError, user_for

    form = UnsubscribeForm()
    try:
        user = user_for(token)
    except TokenError as error:
        return render_template("account/unsubscribe.html", problem=str(error), form=form), 400
    if request.method == "POST" and form.validate_on_submit():
        with acting_as(Actor.for_user(user)):
            changed = notifications.unsubscribe(user)
            db.session.commit()
        return render_template("account/unsubscribe.html", done=True, changed=changed, user=user, form=form)
    return render_template("account/unsubscribe.html", user=user, form=form)
