"""The real-service fixtures later issues rely on work: Redis with RQ, and SMTP through Flask-Mail."""
from __future__ import annotations

from flask_mail import Message
from redis import Redis
from rq import Queue

from intercity.extensions import mail


def test_smtp_server_receives_mail_from_the_panel(mailbox, app_config, make_app):
    app = make_app()
    with app.app_context():
        mail.send(Message("Intercity test", recipients=["team@example.com"], body="hello from the panel"))
    assert len(mailbox.messages) == 1
    message = mailbox.messages[0]
    assert message["To"] == "team@example.com" and message.get_content().strip() == "hello from the panel"


def test_redis_fixture_is_a_real_rq_backend(redis_url, redis_queue):
    queue = Queue(redis_queue, connection=Redis.from_url(redis_url))
    job = queue.enqueue("builtins.len", "abc")
    assert queue.count == 1 and queue.job_ids == [job.id]
    queue.empty()
    assert queue.count == 0
