"""The outbox: messages recorded in a transaction and sent by a job after commit, retried with backoff, never dropped.

A message is claimed (pending -> sending) before it is handed over and marked sent in the
transaction that follows the server's acceptance, together with a digest's watermark. A 4xx
answer or a lost connection puts it back to pending with a later `next_attempt_at`; a 5xx
answer marks it failed until an admin retries it. A worker killed between the server's
acceptance and that commit leaves the message `sending`: after STALE_CLAIM it is sent again
(the one case of a doubled message, see docs/DEPLOY.md).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import or_, select, update
from sqlalchemy.orm import scoped_session

from intercity.extensions import db
from intercity.models import OutboxMessage
from intercity.models.base import utcnow
from intercity.notify.mailer import DeliveryError

log = logging.getLogger(__name__)

NEW_MESSAGES = "notify_new_messages"
ALERT_SCAN = "notify_alert_scan"
STALE_CLAIM = timedelta(minutes=10)
MAX_BACKOFF = 3600.0
DELIVER = "intercity.notify.outbox.deliver"
SCAN_ALERTS = "intercity.notify.alerts.scan"


def _session(session=None):
    session = session or db.session
    return session() if isinstance(session, scoped_session) else session


def deliver_after_commit(message: OutboxMessage, session=None) -> None:
    """Have a job send this message once the current transaction commits."""
    session = _session(session)
    if message.id is None:
        session.flush()
    session.info.setdefault(NEW_MESSAGES, []).append(message.id)


def send_mail(to: str, subject: str, text: str, html: str | None = None, *, kind: str = "account",
              user_id: int | None = None) -> OutboxMessage:
    """Record a mail to `to` in the current transaction; a job sends it after commit (retried, never dropped).

    Callable inside any transaction: nothing is sent if it rolls back.
    """
    message = OutboxMessage(kind=kind, channel="mail", recipient=to, user_id=user_id, subject=subject[:255],
                            text=text, html=html, status="pending", attempts=0)
    db.session.add(message)
    deliver_after_commit(message)
    return message


def after_commit(session) -> None:
    """Hand the messages of the committed transaction to the job runner; scan for alerts if an alerted entry was written."""
    from intercity.audit.capture import written_actions
    from intercity.jobs import schedule

    ids = session.info.pop(NEW_MESSAGES, None)
    for message_id in ids or ():
        schedule.submit(DELIVER, message_id)
    actions = written_actions(session)
    if actions and any(_triggers_alerts(action) for action in actions):
        schedule.submit(SCAN_ALERTS)


def _triggers_alerts(action: str) -> bool:
    from intercity.audit.categories import is_alerted

    return is_alerted(action) or action == "operation.failed"


def discard_on_rollback(session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(NEW_MESSAGES, None)


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling from NOTIFY_RETRY_BACKOFF, at most an hour."""
    base = float(current_app.config.get("NOTIFY_RETRY_BACKOFF", 30))
    return min(base * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def _claim(message_id: int, now: datetime) -> OutboxMessage | None:
    """pending -> sending, if it is due; one worker wins (a conditional UPDATE)."""
    claimed = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status == "pending",
               or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now))
        .values(status="sending", claimed_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if claimed != 1:
        return None
    return db.session.get(OutboxMessage, message_id, populate_existing=True)


def deliver(message_id: int, now: datetime | None = None) -> str:
    """Send one message if it is due; returns its status afterwards (the job entry point)."""
    from intercity.notify import chat, content

    now = now or utcnow()
    message = _claim(message_id, now)
    if message is None:
        status = db.session.scalar(select(OutboxMessage.status).where(OutboxMessage.id == message_id))
        db.session.commit()
        return status or "gone"
    try:
        built = content.build(message) if message.kind == "digest" else None
        if message.kind == "digest" and built is None:
            # Nothing happened since the last digest (another one covered it): nothing to send.
            _finish(message, "sent", "nothing new to report", now)
            return "sent"
        if built is not None:
            message.subject, message.text, message.html, message.covered_seq = built
        if message.channel == "chat":
            answer = chat.send(message)
        else:
            answer = _send_mail(message)
    except DeliveryError as error:
        db.session.rollback()
        return _failed(message_id, error, now)
    except Exception as error:  # a bug or a database error: keep the message, try again later
        db.session.rollback()
        log.exception("sending message %s failed", message_id)
        return _failed(message_id, DeliveryError(f"error: {error.__class__.__name__}", temporary=True), now)
    _finish(message, "sent", answer, now)
    return "sent"


def _send_mail(message: OutboxMessage) -> str:
    from flask_mail import Message

    from intercity.notify import mailer

    mail = Message(subject=message.subject, recipients=[message.recipient], body=message.text, html=message.html)
    return mailer.send(mail)


def _finish(message: OutboxMessage, status: str, answer: str, now: datetime) -> None:
    from intercity.notify import digest

    message.status = status
    message.sent_at = now
    message.last_response = answer[:500]
    message.attempts = (message.attempts or 0) + 1
    if message.kind == "digest":
        digest.advance_watermark(message, now)
    db.session.commit()


def _failed(message_id: int, error: DeliveryError, now: datetime) -> str:
    from intercity.jobs import schedule

    message = db.session.get(OutboxMessage, message_id, populate_existing=True)
    message.attempts = (message.attempts or 0) + 1
    message.last_response = error.answer[:500]
    message.claimed_at = None
    if error.temporary:
        delay = backoff(message.attempts)
        message.status = "pending"
        message.next_attempt_at = now + timedelta(seconds=delay)
    else:
        message.status = "failed"
        message.next_attempt_at = None
    db.session.commit()
    log.warning("message %s (%s) not sent, %s: %s", message_id, message.kind,
                "will retry" if error.temporary else "failed", error.answer)
    if error.temporary:
        schedule.submit(DELIVER, message_id, delay=delay)
    return message.status


def retry(message: OutboxMessage, user) -> None:
    """An admin sends a failed (or waiting) message again now; audited, delivered after commit."""
    from intercity.audit.capture import record_event
    from intercity.validation import ValidationError

    if message.status not in ("failed", "pending"):
        raise ValidationError("Only a failed or waiting message can be sent again.", "message")
    before = message.status
    message.status = "pending"
    message.next_attempt_at = None
    record_event(db.session, "notification.retried", target_type="outbox_message", target_id=message.id,
                 target_label=f"{message.kind} to {_recipient_label(message)}",
                 diff={"status": [before, "pending"], "attempts": [None, message.attempts]})
    deliver_after_commit(message)


def _recipient_label(message: OutboxMessage) -> str:
    if message.channel == "chat":
        from intercity.models import NotificationTarget

        target = db.session.get(NotificationTarget, message.target_id) if message.target_id else None
        return target.service if target else "a removed target"
    return message.recipient or ""


def deliver_due(now: datetime | None = None) -> int:
    """Send every message whose time has come, and free claims a dead worker left (the periodic safety net)."""
    now = now or utcnow()
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == "sending", OutboxMessage.claimed_at < now - STALE_CLAIM)
        .values(status="pending", claimed_at=None, next_attempt_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    ids = db.session.scalars(
        select(OutboxMessage.id).where(OutboxMessage.status == "pending",
                                       or_(OutboxMessage.next_attempt_at.is_(None),
                                           OutboxMessage.next_attempt_at <= now))
        .order_by(OutboxMessage.id)
    ).all()
    db.session.commit()
    for message_id in ids:
        deliver(message_id, now)
    return len(ids)


def waiting() -> list[OutboxMessage]:
    """What the settings page lists: messages not sent yet (pending, sending, failed), failed first."""
    rows = db.session.scalars(select(OutboxMessage).where(OutboxMessage.status != "sent")
                              .order_by(OutboxMessage.id.desc()).limit(200)).all()
    return sorted(rows, key=lambda m: (m.status != "failed", -m.id))


def recent_sent(limit: int = 10) -> list[OutboxMessage]:
    return db.session.scalars(select(OutboxMessage).where(OutboxMessage.status == "sent")
                              .order_by(OutboxMessage.id.desc()).limit(limit)).all()
