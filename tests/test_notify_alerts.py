"""Security alerts: mailed at once to everyone who wants them, one message per commit, reveals throttled, no secrets."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from intercity.extensions import db
from intercity.models import EnvVar, OutboxMessage
from intercity.models.base import utcnow
from tests.support.builders import make_app, make_server, make_user
from tests.support.notify import assert_no_secrets, mail_texts, settle
from tests.support.panel import SECRETS, acting



def _add_var(app_row, key: str, value: str) -> EnvVar:
    """An env var set and committed (by whoever acts), as the env service's change would be."""
    var = EnvVar(app=app_row, key=key)
    var.value = value
    db.session.add(var)
    db.session.commit()
    return var


def _people():
    admin = make_user("admin", email="admin@example.com")
    member = make_user("member", email="dev@example.com")
    quiet = make_user("viewer", email="quiet@example.com")
    gone = make_user("viewer", email="gone@example.com", active=False)
    from intercity.services.notifications import preferences_for

    preferences_for(quiet).security_alerts = False
    db.session.commit()
    return admin, member, quiet, gone


def test_env_vars_set_in_one_commit_make_one_alert_per_person_who_wants_them(smtp, app):
    admin, member, quiet, gone = _people()
    server = make_server(name="prod-1")
    api = make_app(server, name="api")
    settle(app)  # the setup's own alert (a person deactivated) is not this test's
    smtp.clear()
    with acting(member):
        for key, value in SECRETS.items():
            var = EnvVar(app=api, key=key)
            var.value = value
            db.session.add(var)
        db.session.commit()
    settle(app)
    received = smtp.wait_for(2)
    settle(app)
    assert sorted(m["To"] for m in smtp.messages) == ["admin@example.com", "dev@example.com"]
    message = smtp.messages[0]
    text = message.get_body(("plain",)).get_content()
    assert message["Subject"].startswith("[Intercity] Security alert: dev@example.com set ")
    assert "(+2 more)" in message["Subject"]
    for key in SECRETS:
        assert f"set {key} on api (prod-1)" in text
    assert "who:   dev@example.com" in text and "where: prod-1 / api" in text
    assert "https://panel.example.com/audit/" in text
    html = message.get_body(("html",)).get_content()
    assert 'href="https://panel.example.com/audit/' in html
    for received_message in received:
        assert_no_secrets(mail_texts(received_message))


def test_a_rename_is_no_alert_but_a_value_change_is(smtp, app):
    admin = make_user("admin", email="admin@example.com")
    api = make_app(make_server(name="prod-1"), name="api")
    var = _add_var(api, "OLD", "first-value-123")
    settle(app)
    smtp.wait_for(1)
    smtp.clear()
    var.key = "NEW"
    db.session.commit()
    settle(app)
    assert smtp.messages == []
    var.value = "second-value-456"
    db.session.commit()
    settle(app)
    assert "changed NEW on api" in smtp.wait_for(1)[0]["Subject"]
    assert admin.email == smtp.messages[0]["To"]


def test_reveals_alert_at_most_once_per_person_and_app_an_hour(smtp, app):
    from intercity.services import env as env_service

    make_user("admin", email="admin@example.com")
    member = make_user("member", email="dev@example.com")
    server = make_server(name="prod-1")
    api, web = make_app(server, name="api"), make_app(server, name="web")
    for app_row in (api, web):
        var = EnvVar(app=app_row, key="TOKEN")
        var.value = SECRETS["API_TOKEN"]
        db.session.add(var)
    db.session.commit()
    settle(app)
    smtp.wait_for(2)  # both variables in one commit: one alert each for two people
    smtp.clear()
    with acting(member):
        for app_row in (api, api, web):
            env_service.reveal(app_row, member, key="TOKEN")
            db.session.commit()
            settle(app)
    received = smtp.wait_for(4)
    settle(app)
    subjects = sorted(m["Subject"] for m in smtp.messages)
    assert len(subjects) == 4  # api once, web once, to two people
    assert sum("TOKEN on api" in s for s in subjects) == 2 and sum("TOKEN on web" in s for s in subjects) == 2
    for message in received:
        assert_no_secrets(mail_texts(message))
    # An hour later (the throttle has run out) the next reveal of api is alerted again.
    from intercity.models import NotifyThrottle

    for row in db.session.scalars(select(NotifyThrottle)):
        assert row.until > utcnow() + timedelta(minutes=59)
        row.until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    with acting(member):
        env_service.reveal(api, member, key="TOKEN")
        db.session.commit()
    settle(app)
    assert len(smtp.wait_for(6)) == 6


def test_alerts_scan_turns_each_entry_into_messages_once(smtp, app):
    """A second scan (a lost job's retry, the periodic tick) finds nothing new: nothing is doubled."""
    from intercity.notify import alerts

    make_user("admin", email="admin@example.com")
    api = make_app(make_server(name="prod-1"), name="api")
    _add_var(api, "KEY", "value-abcdefgh")
    settle(app)
    smtp.wait_for(1)
    assert alerts.scan() == 0
    assert len(db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "alert")).all()) == 1


def test_an_alert_refused_for_now_waits_visibly_and_is_sent_later(smtp, app, client, logged_in):
    from intercity.notify import outbox

    admin = logged_in(make_user("admin", email="admin@example.com"))
    api = make_app(make_server(name="prod-1"), name="api")
    smtp.answers.append("421 4.7.0 Too many connections, try again later")
    with acting(admin):
        _add_var(api, "KEY", "value-abcdefgh")
    settle(app)
    message = db.session.scalar(select(OutboxMessage).where(OutboxMessage.kind == "alert"))
    assert message.status == "pending" and message.attempts == 1 and smtp.messages == []
    page = client.get("/settings").get_data(as_text=True)
    assert "421 4.7.0 Too many connections" in page and "retrying" in page
    assert outbox.deliver(message.id, now=utcnow() + timedelta(hours=1)) == "sent"
    assert "Security alert" in smtp.wait_for(1)[0]["Subject"]
    assert "Every message was sent." in client.get("/settings").get_data(as_text=True)
