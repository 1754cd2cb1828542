"""A real `python worker.py` on real Redis sends mail, retries through RQ's scheduler, and runs the digest tick."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from intercity.extensions import db
from intercity.models import OutboxMessage
from intercity.models.base import utcnow
from tests.support.builders import make_server, make_user
from tests.support.notify import wait_until
from tests.test_worker_ordering import Workers

pytestmark = pytest.mark.postgresql_only


def test_a_worker_sends_retries_on_rqs_schedule_and_runs_the_tick(smtp, redis_queue, app_config, app, database_url,
                                                                   redis_url, tmp_path):
    from intercity.notify.outbox import send_mail
    from intercity.services.notifications import preferences_for

    pool = Workers(app_config, database_url, redis_url, redis_queue, tmp_path)
    pool.env.update({"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(smtp.port), "INTERCITY_NOTIFY_RETRY_BACKOFF": "1",
                     "INTERCITY_NOTIFY_TICK_SECONDS": "2", "INTERCITY_BASE_URL": "https://panel.example.com"})
    try:
        pool.start(1)
        smtp.answers.append("451 4.3.0 Try again in a second")
        message_id = send_mail("new@example.com", "Welcome", "Plain words").id
        db.session.commit()
        wait_until(lambda: db.session.get(OutboxMessage, message_id).status == "sent", timeout=30,
                   message="the mail sent after one retry:\n" + pool.output())
        sent = db.session.get(OutboxMessage, message_id)
        assert sent.attempts == 2 and [m["To"] for m in smtp.wait_for(1)] == ["new@example.com"]

        user = make_user("member", email="dev@example.com")
        pref = preferences_for(user)
        pref.last_digest_at = utcnow() - timedelta(days=8)
        db.session.commit()
        make_server(name="prod-1")
        wait_until(lambda: db.session.scalar(select(OutboxMessage.status).where(OutboxMessage.kind == "digest"))
                   == "sent", timeout=30, message="the tick's digest:\n" + pool.output())
        assert [m["To"] for m in smtp.messages] == ["new@example.com", "dev@example.com"]
    finally:
        pool.stop()
