"""The outbox against a real SMTP server: sent by a job after commit, retried on 4xx and lost connections, failed on 5xx."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from intercity.extensions import db
from intercity.models import NotificationPreference, OutboxMessage
from intercity.models.base import utcnow
from tests.support.builders import make_server, make_user
from tests.support.notify import settle
from tests.conftest import free_port



def _message(message_id) -> OutboxMessage:
    db.session.expire_all()
    return db.session.get(OutboxMessage, message_id)


def test_send_mail_is_recorded_in_the_transaction_and_sent_after_commit(smtp, app):
    from intercity.notify.outbox import send_mail

    send_mail("gone@example.com", "Rolled back", "never sent")
    db.session.rollback()
    message = send_mail("new@example.com", "Welcome", "Plain words", "<p>Plain <b>words</b></p>")
    message_id = message.id
    assert smtp.messages == []  # nothing leaves before commit
    db.session.commit()
    settle(app)
    received = smtp.wait_for(1)
    assert len(received) == 1 and received[0]["To"] == "new@example.com" and received[0]["Subject"] == "Welcome"
    types = {part.get_content_type() for part in received[0].walk()}
    assert {"text/plain", "text/html"} <= types
    sent = _message(message_id)
    assert sent.status == "sent" and sent.last_response.startswith("250") and sent.attempts == 1
    assert db.session.scalar(select(OutboxMessage).where(OutboxMessage.recipient == "gone@example.com")) is None


def test_a_digest_survives_4xx_5xx_and_no_connection_and_covers_the_whole_gap(smtp, app, client, logged_in):
    """Refused for now (451), refused for good (550) until an admin retries, no server at all, then accepted:
    one digest arrives, covering the entries before and during the outage, and the watermark moves only then."""
    from intercity.notify import digest, outbox

    admin = make_user("admin", email="admin@example.com")
    make_server(name="before-outage")
    pref = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == admin.id))
    if pref is None:
        from intercity.services.notifications import preferences_for

        pref = preferences_for(admin)
    pref.digest_seq = 0
    pref.last_digest_at = utcnow() - timedelta(days=2)
    db.session.commit()
    start_seq = pref.digest_seq

    smtp.answers.append("451 4.3.0 Mailbox busy, try later")
    assert digest.send_due() == 1
    settle(app)
    message = db.session.scalar(select(OutboxMessage).where(OutboxMessage.kind == "digest"))
    assert message.status == "pending" and message.attempts == 1 and message.last_response.startswith("451")
    assert message.next_attempt_at > utcnow() + timedelta(minutes=50)  # NOTIFY_RETRY_BACKOFF
    assert db.session.get(NotificationPreference, pref.id).digest_seq == start_seq

    make_server(name="during-outage")  # happens while the digest waits
    assert digest.send_due() == 0  # one digest on its way: no second one

    smtp.answers.append("550 5.7.1 Relaying denied")
    later = utcnow() + timedelta(hours=2)
    assert outbox.deliver(message.id, now=later) == "failed"
    message = _message(message.id)
    assert message.status == "failed" and message.last_response.startswith("550")
    assert outbox.deliver(message.id, now=later + timedelta(days=1)) == "failed"  # stays failed by itself
    assert digest.send_due() == 0

    logged_in(admin)
    page = client.get("/settings").get_data(as_text=True)
    assert "550 5.7.1 Relaying denied" in page and "<strong>failed</strong>" in page

    state = app.extensions["mail"]
    port = state.port
    state.port = free_port()  # nobody listens there
    response = client.post(f"/settings/messages/{message.id}/retry")
    assert response.status_code == 303
    settle(app)
    message = _message(message.id)
    assert message.status == "pending" and "no connection" in message.last_response
    assert db.session.get(NotificationPreference, pref.id).digest_seq == start_seq
    assert smtp.messages == []

    state.port = port
    assert outbox.deliver(message.id, now=utcnow() + timedelta(hours=5)) == "sent"
    received = smtp.wait_for(1)
    assert len(received) == 1
    body = received[0].get_body(("plain",)).get_content()
    assert "before-outage" in body and "during-outage" in body
    head = db.session.execute(select(OutboxMessage.covered_seq).where(OutboxMessage.id == message.id)).scalar()
    db.session.expire_all()
    assert db.session.get(NotificationPreference, pref.id).digest_seq == head
    retried = [e for e in _entries() if e.action == "notification.retried"]
    assert len(retried) == 1 and retried[0].actor_email == admin.email

    # Nothing new since: the next due digest sends nothing, so nothing is doubled.
    pref = db.session.get(NotificationPreference, pref.id)
    pref.last_digest_at = utcnow() - timedelta(days=2)
    db.session.commit()
    digest.send_due()
    settle(app)
    assert len(smtp.messages) == 1


def _entries():
    from tests.support.audit import entries

    return entries()


def test_a_claim_left_by_a_dead_worker_is_sent_again_later(smtp, app):
    """The worst case of docs/DEPLOY.md: a message left `sending` is retried once its claim is stale."""
    from intercity.notify import outbox

    message = OutboxMessage(kind="account", channel="mail", recipient="x@example.com", subject="s", text="t",
                            status="sending", attempts=0, claimed_at=utcnow() - timedelta(minutes=5))
    db.session.add(message)
    db.session.commit()
    assert outbox.deliver_due() == 0  # a live worker may still be sending it
    assert outbox.deliver_due(now=utcnow() + timedelta(minutes=6)) == 1
    assert _message(message.id).status == "sent" and len(smtp.wait_for(1)) == 1
