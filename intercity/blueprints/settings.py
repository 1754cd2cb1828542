"""Admin settings: the two-factor policy, the mail settings in effect with a test message, chat targets, and the
outbox of unsent messages."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, StringField

from intercity.blueprints.panel_support import attempt
from intercity.blueprints.panel_support import signed_in_user as _user
from intercity.extensions import db
from intercity.models import NotificationTarget, OutboxMessage
from intercity.notify import mailer, outbox
from intercity.services import notifications, retention, two_factor
from intercity.web import render, require_role

bp = Blueprint("settings", __name__, url_prefix="/settings")


class TestMailForm(FlaskForm):
    to = StringField("Send a test message to", id="test-to")


class TargetForm(FlaskForm):
    url = StringField("Apprise URL", id="target-url")
    alerts = BooleanField("Security alerts", default=True, id="target-alerts")
    digest = BooleanField("Daily digest", id="target-digest")
    failures = BooleanField("Failed operations", id="target-failures")


class PostForm(FlaskForm):
    pass


class TwoFactorPolicyForm(FlaskForm):
    required = BooleanField("Require two-factor login for everyone", id="require-2fa")


class RetentionForm(FlaskForm):
    keep = StringField("Earlier values kept per variable", id="retention-keep")


def _page(status: int = 200, *, test_form=None, target_form=None, test_id=None, retention_form=None):
    targets = db.session.scalars(select(NotificationTarget).order_by(NotificationTarget.id)).all()
    test_message = db.session.get(OutboxMessage, test_id) if test_id else None
    return render_template(
        "settings/show.html", mail=mailer.settings_in_effect(), targets=targets, waiting=outbox.waiting(),
        sent=outbox.recent_sent(), test_form=test_form or TestMailForm(data={"to": _user().email}),
        target_form=target_form or TargetForm(formdata=None), post_form=PostForm(), test_message=test_message,
        policy_form=TwoFactorPolicyForm(formdata=None, data={"required": two_factor.required()}),
        without_2fa=two_factor.users_without(),
        retention_form=retention_form or RetentionForm(formdata=None, data={"keep": str(retention.keep())}),
    ), status


@bp.get("")
@require_role("admin")
def show():
    test_id = request.args.get("test", type=int)
    return _page(test_id=test_id)


@bp.post("/two-factor")
@require_role("admin")
def two_factor_policy():
    form = TwoFactorPolicyForm()
    if not form.validate_on_submit():
        abort(400)
    on = bool(form.required.data)
    changed, error = attempt(lambda: two_factor.set_required(_user(), on))
    if error is not None:
        flash(error.message, "error")
    elif changed:
        flash("Two-factor login is now required for everyone: whoever has not set it up is walked through it at "
              "their next page." if on else "Two-factor login is no longer required.", "success")
    return redirect(url_for(".show") + "#two-factor", code=303)


@bp.post("/retention")
@require_role("admin")
def retention_policy():
    """How many earlier values per variable the value history keeps (what Revert and "as of" can restore)."""
    form = RetentionForm()
    if form.validate_on_submit():
        changed, error = attempt(lambda: retention.set_keep(_user(), form.keep.data), form, "keep")
        if error is None:
            if changed:
                flash(f"The panel now keeps the last {retention.keep()} values per variable.", "success")
            return redirect(url_for(".show") + "#retention", code=303)
    return _page(422, retention_form=form)


@bp.post("/test-mail")
@require_role("admin")
def test_mail():
    form = TestMailForm()
    if form.validate_on_submit():
        message, error = attempt(lambda: notifications.send_test(_user(), form.to.data), form, "to")
        if error is None:
            return redirect(url_for(".show", test=message.id) + "#mail", code=303)
    return _page(422, test_form=form)


@bp.get("/messages/<int:message_id>")
@require_role("admin")
def message_status(message_id: int):
    """A sent test message's state, polled by the settings page until the server answered."""
    message = db.get_or_404(OutboxMessage, message_id)
    return render("settings/_message.html", "settings/_message.html", message=message)


@bp.post("/targets")
@require_role("admin")
def add_target():
    form = TargetForm()
    if form.validate_on_submit():
        feeds = [name for name in ("alerts", "digest", "failures") if form[name].data]
        target, error = attempt(lambda: notifications.add_target(_user(), form.url.data, feeds), form, "url")
        if error is None:
            flash(f"Added a {target.service} target.", "success")
            return redirect(url_for(".show") + "#targets", code=303)
    return _page(422, target_form=form)


@bp.post("/targets/<int:target_id>/remove")
@require_role("admin")
def remove_target(target_id: int):
    target = db.get_or_404(NotificationTarget, target_id)
    if not PostForm().validate_on_submit():
        abort(400)
    service = target.service
    notifications.remove_target(_user(), target)
    db.session.commit()
    flash(f"Removed the {service} target.", "success")
    return redirect(url_for(".show") + "#targets", code=303)


@bp.post("/messages/<int:message_id>/retry")
@require_role("admin")
def retry_message(message_id: int):
    message = db.get_or_404(OutboxMessage, message_id)
    if not PostForm().validate_on_submit():
        abort(400)
    _, error = attempt(lambda: outbox.retry(message, _user()))
    if error is None:
        flash("Sending it again.", "success")
    else:
        flash(error.message, "error")
    return redirect(url_for(".show") + "#outbox", code=303)
