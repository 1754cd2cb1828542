"""What people do about notifications: their own preferences, unsubscribing, chat targets, a test message."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from intercity.audit.capture import record_event
from intercity.extensions import db
from intercity.models import NotificationPreference, NotificationTarget, OutboxMessage, User
from intercity.models.base import utcnow
from intercity.models.notification import FREQUENCIES, TARGET_FEEDS
from intercity.services.permissions import require
from intercity.validation import ValidationError

FREQUENCY_NAMES = {"off": "Off", "hourly": "Hourly", "daily": "Daily (07:00 UTC)", "weekly": "Weekly (Mondays, 07:00 UTC)"}


def preferences_for(user: User, now: datetime | None = None) -> NotificationPreference:
    """This person's preferences, made with the defaults on first need; their first digest starts from now."""
    from intercity.notify.digest import head_seq

    pref = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == user.id))
    if pref is None:
        pref = NotificationPreference(user_id=user.id, user_email=user.email, digest_seq=head_seq(),
                                      last_digest_at=now or utcnow())
        db.session.add(pref)
        db.session.flush()
    elif pref.user_email != user.email:
        pref.user_email = user.email
    return pref


def current_choices(user: User) -> tuple[str, bool]:
    """(digest frequency, security alerts) as the account page shows them; the defaults if never set (no write)."""
    from intercity.models.notification import DEFAULT_FREQUENCY

    pref = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == user.id))
    return (pref.digest_frequency, pref.security_alerts) if pref else (DEFAULT_FREQUENCY, True)


def update_preferences(user: User, *, frequency: str, security_alerts: bool) -> NotificationPreference:
    """A person sets their own digest frequency and whether they get security alerts (the caller commits)."""
    if frequency not in FREQUENCIES:
        raise ValidationError(f"Choose how often to get the digest: {', '.join(FREQUENCIES)}.", "digest_frequency")
    pref = preferences_for(user)
    pref.digest_frequency = frequency
    pref.security_alerts = bool(security_alerts)
    return pref


def unsubscribe(user: User) -> bool:
    """The digest link's unsubscribe: digests off, audited as digest.unsubscribed (False if already off)."""
    pref = preferences_for(user)
    if pref.digest_frequency == "off":
        return False
    pref.audit_action = "digest.unsubscribed"
    pref.digest_frequency = "off"
    return True


def _feeds(form_feeds) -> dict[str, bool]:
    chosen = {feed: feed in form_feeds for feed in TARGET_FEEDS}
    if not any(chosen.values()):
        raise ValidationError("Choose what the target receives: security alerts, the digest or failed operations.",
                              "feeds")
    return chosen


def add_target(user: User, url: str, feeds) -> NotificationTarget:
    """An admin adds an Apprise URL; it is stored encrypted, the audit entry names only its service."""
    from intercity.notify import chat
    from intercity.notify.digest import head_seq

    require(user, "admin")
    service, hint = chat.inspect_url(url)
    chosen = _feeds(feeds)
    target = NotificationTarget(service=service, url_hint=hint, digest_seq=head_seq(), last_digest_at=utcnow(),
                                **chosen)
    target.url = url.strip()
    db.session.add(target)
    return target


def remove_target(user: User, target: NotificationTarget) -> None:
    require(user, "admin")
    db.session.delete(target)


def send_test(user: User, to: str) -> OutboxMessage:
    """An admin sends a test message through the configured SMTP server; the settings page shows the answer."""
    from flask import render_template

    from intercity.notify.outbox import send_mail
    from intercity.services.users import check_email

    require(user, "admin")
    try:
        to = check_email(to)
    except ValidationError as error:
        raise ValidationError(error.message, "to") from None
    text = render_template("mail/test.txt", sender=user.email)
    message = send_mail(to, "[Intercity] Test message", text, kind="test", user_id=None)
    record_event(db.session, "notification.test_sent", target_type="outbox_message", target_id=message.id,
                 target_label=to)
    return message
