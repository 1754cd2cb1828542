"""A person's own account: notification preferences, and the digest's unsubscribe link (which needs no login)."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField
from wtforms.fields.choices import SelectChoice

from intercity.audit.actor import Actor, acting_as
from intercity.blueprints.panel_support import attempt
from intercity.extensions import db
from intercity.models.notification import FREQUENCIES
from intercity.services import notifications

bp = Blueprint("account", __name__)


class NotificationsForm(FlaskForm):
    digest_frequency = RadioField("Digest of every change", id="digest-frequency",
                                  choices=[SelectChoice(f, notifications.FREQUENCY_NAMES[f]) for f in FREQUENCIES])
    security_alerts = BooleanField("Security alerts at once (deploy keys, env vars, host keys, users)",
                                   id="security-alerts")


class UnsubscribeForm(FlaskForm):
    pass


def _user():
    return current_user._get_current_object()


def _notifications_form(formdata=None) -> NotificationsForm:
    frequency, alerts = notifications.current_choices(_user())
    return NotificationsForm(formdata=formdata, data={"digest_frequency": frequency, "security_alerts": alerts})


@bp.get("/account")
@login_required
def show():
    return render_template("account/show.html", notifications_form=_notifications_form())


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
    return render_template("account/show.html", notifications_form=form), 422


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
