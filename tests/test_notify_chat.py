"""Chat targets through Apprise, against a local webhook: encrypted, never shown back, audited by service only, quiet logs."""
from __future__ import annotations

import logging

from sqlalchemy import select, text

from intercity.extensions import db
from intercity.models import EnvVar, NotificationTarget, OutboxMessage
from tests.conftest import free_port
from tests.support.builders import make_app, make_server, make_user
from tests.support.notify import assert_no_secrets, settle
from tests.support.panel import SECRETS, acting

TOKEN = "hooktok-7f3a9c2e51-distinctive"



def _add(client, url, **feeds):
    data = {"url": url, **{name: "y" for name, on in feeds.items() if on}}
    return client.post("/settings/targets", data=data)


def test_a_json_webhook_target_gets_alerts_and_failures_and_never_shows_its_token(smtp, webhook, app, client,
                                                                                   logged_in, caplog, monkeypatch):
    admin = logged_in(make_user("admin", email="admin@example.com"))
    url = f"json://127.0.0.1:{webhook.port}/hooks/{TOKEN}"
    caplog.set_level(logging.DEBUG)
    from intercity.notify import chat

    for name in chat.LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
    response = _add(client, url, alerts=True, failures=True)
    assert response.status_code == 303
    target = db.session.scalar(select(NotificationTarget))
    assert target.service == "json" and target.alerts and target.failures and not target.digest
    # Stored encrypted: the token is not in the row's bytes.
    with db.engine.connect() as connection:
        stored = connection.execute(text("SELECT url_encrypted, url_hint FROM notification_targets")).one()
    assert TOKEN.encode() not in bytes(stored[0]) and TOKEN not in stored[1]
    page = client.get("/settings").get_data(as_text=True)
    assert TOKEN not in page and f"json://127.0.0.1:{webhook.port}" in page
    from tests.support.audit import entries

    added = [e for e in entries() if e.action == "notification_target.added"]
    assert len(added) == 1 and added[0].target_label == "json" and TOKEN not in added[0].diff
    assert "hooks" not in added[0].diff and str(webhook.port) not in added[0].diff
    # Adding a target is a security change: the new target hears of itself first.
    settle(app)
    assert webhook.wait_for(1)[0]["title"] == "[Intercity] Security alert: admin@example.com added notification target json"

    api = make_app(make_server(name="prod-1"), name="api")
    with acting(admin):
        var = EnvVar(app=api, key="API_TOKEN")
        var.value = SECRETS["API_TOKEN"]
        db.session.add(var)
        db.session.commit()
    settle(app)
    payloads = webhook.wait_for(2)
    assert webhook.paths[1] == f"/hooks/{TOKEN}"
    assert payloads[1]["title"].startswith("[Intercity] Security alert: admin@example.com set API_TOKEN on api")
    assert "https://panel.example.com/audit/" in payloads[1]["message"]
    assert_no_secrets(webhook.bodies)

    # An operation that fails reaches a target that asked for failures (its outcome entry, as the worker writes it).
    from intercity.audit.actor import Actor, acting_as
    from intercity.audit.capture import record_event
    from intercity.audit.rules import Scope

    with acting_as(Actor("worker", admin.id, admin.email, admin.role)):
        record_event(db.session, "operation.failed", category="app", target_type="operation", target_id=99,
                     target_label="restart the app", scope=Scope(api.server_id, "prod-1", api.id, "api"),
                     diff={"status": ["running", "failed"], "reason": [None, "Dokku could not restart api."]})
        db.session.commit()
    settle(app)
    payloads = webhook.wait_for(3)
    assert any(p["title"].startswith("[Intercity] Failed:") for p in payloads)
    assert len(payloads) == 3 and "Dokku could not restart api" not in payloads[1]["message"]
    assert_no_secrets(webhook.bodies)
    assert any(r.name == "apprise" for r in caplog.records)
    for record in caplog.records:
        assert TOKEN not in record.getMessage(), record.getMessage()

    client.post(f"/settings/targets/{target.id}/remove")
    removed = [e for e in entries() if e.action == "notification_target.removed"]
    assert len(removed) == 1 and removed[0].target_label == "json" and TOKEN not in removed[0].diff


def test_a_target_that_does_not_answer_is_retried_and_its_token_stays_out_of_the_log(smtp, app, client, logged_in,
                                                                                       caplog, monkeypatch):
    from intercity.notify import chat, outbox

    logged_in(make_user("admin", email="admin@example.com"))
    url = f"json://127.0.0.1:{free_port()}/hooks/{TOKEN}"
    assert _add(client, url, alerts=True).status_code == 303
    target = db.session.scalar(select(NotificationTarget))
    message = OutboxMessage(kind="alert", channel="chat", target_id=target.id, subject="s", text="t",
                            status="pending", attempts=0)
    db.session.add(message)
    db.session.commit()
    caplog.set_level(logging.DEBUG)
    # The migrations' logging set-up (run for the test template) disables loggers that existed then.
    for name in chat.LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
    chat.quiet_apprise_logging()
    assert outbox.deliver(message.id) == "pending"
    message = db.session.get(OutboxMessage, message.id)
    assert message.attempts == 1 and "did not accept" in message.last_response and TOKEN not in message.last_response
    assert any(r.name.startswith("apprise") for r in caplog.records)  # Apprise did log the failure...
    for record in caplog.records:
        assert TOKEN not in record.getMessage(), record.getMessage()  # ...without the token


def test_bad_target_urls_are_refused_next_to_the_field(app, client, logged_in):
    logged_in(make_user("admin", email="admin@example.com"))
    response = _add(client, "nonsense://whatever/secret-path-123", alerts=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and "Apprise does not recognise this URL" in body
    assert "secret-path-123" not in body.split("Apprise does not recognise")[1][:300]
    response = _add(client, "json://127.0.0.1/x")
    assert response.status_code == 422 and "Choose what the target receives" in response.get_data(as_text=True)
    assert db.session.scalar(select(NotificationTarget)) is None


def test_a_target_that_takes_the_digest_gets_it_daily(smtp, webhook, app, client, logged_in):
    from datetime import timedelta

    from intercity.models.base import utcnow
    from intercity.notify import digest

    logged_in(make_user("admin", email="admin@example.com"))
    assert _add(client, f"json://127.0.0.1:{webhook.port}/hooks/{TOKEN}", digest=True).status_code == 303
    make_server(name="prod-1")
    target = db.session.scalar(select(NotificationTarget))
    assert digest.send_due() == 0  # added just now: its first digest is at the next 07:00
    target.last_digest_at = utcnow() - timedelta(days=1, minutes=1)
    db.session.commit()
    assert digest.send_due() == 1
    settle(app)
    [payload] = webhook.wait_for(1)
    # Its own addition and the server: everything after the moment it was added.
    assert payload["title"].startswith("[Intercity] Digest: 2 changes")
    assert "== The panel (1) ==" in payload["message"] and "added" in payload["message"]
    assert "== prod-1 (1) ==" in payload["message"] and "Chain head: " in payload["message"]
    assert "Unsubscribe" not in payload["message"]
    db.session.expire_all()
    assert db.session.get(NotificationTarget, target.id).digest_seq == \
        db.session.scalar(select(OutboxMessage.covered_seq).where(OutboxMessage.kind == "digest"))
