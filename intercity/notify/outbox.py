"""Mail that belongs to a transaction: recorded with the change, sent by a job once it committed."""
from __future__ import annotations

from flask import current_app
from flask_mail import Message
from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session

from intercity.extensions import db, mail

OUTBOX = "notify_outbox"


def send_mail(to: str, subject: str, text: str, html: str | None = None, *, kind: str = "account") -> None:
    """Send a message after the current transaction commits (a rollback drops it); a job retries failures."""
    session = db.session
    if isinstance(session, scoped_session):
        session = session()
    if not session.in_transaction():
        session.begin()
    session.info.setdefault(OUTBOX, []).append({"to": to, "subject": subject, "text": text, "html": html,
                                                "kind": kind})
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)


def _after_commit(session) -> None:
    messages = session.info.pop(OUTBOX, None)
    if not messages:
        return
    from intercity.jobs import enqueue_call

    for message in messages:
        enqueue_call("intercity.notify.outbox.deliver", message["to"], message["subject"], message["text"],
                     message["html"])


def _after_rollback(session) -> None:
    session.info.pop(OUTBOX, None)


def deliver(to: str, subject: str, text: str, html: str | None = None) -> None:
    """The job: hand one message to the SMTP server (MAIL_* settings)."""
    message = Message(subject=subject, recipients=[to], body=text, html=html,
                      sender=current_app.config["MAIL_DEFAULT_SENDER"])
    mail.send(message)
