"""/settings (mail in effect, test message), /account (preferences) and the digest's unsubscribe link."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from intercity.extensions import db
from intercity.models import NotificationPreference, OutboxMessage
from intercity.models.base import utcnow
from tests.support.builders import make_server, make_user
from tests.support.notify import assert_no_secrets, mail_texts, settle
from tests.support.audit import entries



def _pref(user) -> NotificationPreference:
    db.session.expire_all()
    return db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == user.id))


def test_settings_show_the_mail_settings_in_effect_but_never_the_password(smtp, app_config, app, client, logged_in):
    logged_in(make_user("admin", email="admin@example.com"))
    app.extensions["mail"].password = "smtp-pass-8d1f-distinctive"
    app.extensions["mail"].username = "mailer"
    page = client.get("/settings").get_data(as_text=True)
    assert "smtp-pass-8d1f-distinctive" not in page
    assert re.search(r"MAIL_PASSWORD</code></th><td>set<", page)
    assert f"<td>{smtp.port}</td>" in page and "<td>mailer</td>" in page and "https://panel.example.com" in page


def test_a_test_message_reports_the_smtp_servers_answer(smtp, app, client, logged_in):
    admin = logged_in(make_user("admin", email="admin@example.com"))
    response = client.post("/settings/test-mail", data={"to": "ops@example.com"})
    assert response.status_code == 303
    message_id = int(re.search(r"test=(\d+)", response.headers["Location"]).group(1))
    settle(app)
    assert smtp.wait_for(1)[0]["To"] == "ops@example.com"
    page = client.get(f"/settings?test={message_id}").get_data(as_text=True)
    assert "The server answered: <code>250 Message accepted for delivery</code>" in page
    fragment = client.get(f"/settings/messages/{message_id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "250 Message accepted" in fragment and "hx-trigger" not in fragment  # final: no more polling
    sent = [e for e in entries() if e.action == "notification.test_sent"]
    assert len(sent) == 1 and sent[0].actor_email == admin.email

    smtp.answers.append("554 5.7.1 Sender rejected")
    response = client.post("/settings/test-mail", data={"to": "ops@example.com"})
    message_id = int(re.search(r"test=(\d+)", response.headers["Location"]).group(1))
    settle(app)
    page = client.get(f"/settings?test={message_id}").get_data(as_text=True)
    assert "Refused: <code>554 5.7.1 Sender rejected</code>" in page

    response = client.post("/settings/test-mail", data={"to": "not an address"})
    assert response.status_code == 422 and 'id="test-to-error"' in response.get_data(as_text=True)


def test_account_notification_preferences(app, client, logged_in):
    user = logged_in(make_user("viewer", email="viewer@example.com"))
    page = client.get("/account").get_data(as_text=True)
    assert '<input checked id="digest-frequency-2" name="digest_frequency" type="radio" value="daily">' in page
    assert re.search(r'<input [^>]*checked id="security-alerts"', page)
    response = client.post("/account/notifications", data={"digest_frequency": "weekly"})
    assert response.status_code == 303
    pref = _pref(user)
    assert pref.digest_frequency == "weekly" and pref.security_alerts is False
    changed = [e for e in entries() if e.action == "notification_preference.updated"]
    assert len(changed) == 1 and changed[0].actor_email == user.email
    assert changed[0].changes == {"digest_frequency": ["daily", "weekly"], "security_alerts": [True, False]}
    response = client.post("/account/notifications", data={"digest_frequency": "yearly", "security_alerts": "y"})
    assert response.status_code == 422 and "Not a valid choice" in response.get_data(as_text=True)
    assert _pref(user).digest_frequency == "weekly"


@pytest.mark.parametrize("frequency, last, now, due", [
    ("daily", "2026-12-01T06:00", "2026-12-01T06:59", False),
    ("daily", "2026-12-01T06:00", "2026-12-01T07:00", True),
    ("daily", "2026-12-01T07:03", "2026-12-02T06:58", False),
    ("hourly", "2026-12-01T10:02", "2026-12-01T10:59", False),
    ("hourly", "2026-12-01T10:02", "2026-12-01T11:00", True),
    ("weekly", "2026-11-30T07:05", "2026-12-06T23:00", False),  # Monday to Sunday
    ("weekly", "2026-11-30T07:05", "2026-12-07T07:01", True),   # the next Monday
    ("off", "2026-01-01T00:00", "2026-12-07T07:01", False),
])
def test_when_digests_are_due(frequency, last, now, due):
    from datetime import datetime, timezone

    from intercity.notify.digest import is_due

    parse = lambda text: datetime.fromisoformat(text).replace(tzinfo=timezone.utc)  # noqa: E731
    assert is_due(frequency, parse(last), parse(now)) is due


def test_digest_content_and_the_unsubscribe_link_that_needs_no_login(smtp, app, client):
    from intercity.notify import digest
    from intercity.services.notifications import preferences_for

    user = make_user("member", email="dev@example.com")
    pref = preferences_for(user)
    pref.last_digest_at = utcnow() - timedelta(days=2)
    db.session.commit()
    server = make_server(name="prod-1")
    from tests.support.builders import make_app

    make_app(server, name="api")
    make_server(name="stage")
    assert digest.send_due() == 1
    settle(app)
    message = smtp.wait_for(1)[0]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert message["Subject"].startswith("[Intercity] Digest: 3 changes")
    assert "== prod-1 (1) ==" in text and "== prod-1 / api (1) ==" in text and "== stage (1) ==" in text
    assert "By category: Apps 1, Servers 2" in text
    head = db.session.scalar(select(OutboxMessage.covered_seq))
    last = entries()[-1]
    assert f"Chain head: {last.seq}:{last.hash}" in text and f"{last.seq}:{last.hash}" in html
    assert_no_secrets(mail_texts(message))
    link = re.search(r"Unsubscribe: (\S+)", text).group(1)
    assert link.startswith("https://panel.example.com/unsubscribe/") and link in html
    assert head == last.seq

    path = link.removeprefix("https://panel.example.com")
    page = client.get(path)
    assert page.status_code == 200 and "dev@example.com" in page.get_data(as_text=True)
    response = client.post(path)
    assert response.status_code == 200 and "gets no more digests" in response.get_data(as_text=True)
    assert _pref(user).digest_frequency == "off"
    done = [e for e in entries() if e.action == "digest.unsubscribed"]
    assert len(done) == 1 and done[0].actor_email == "dev@example.com" and done[0].actor_kind == "user"
    assert client.post(path).status_code == 200 and len([e for e in entries() if e.action == "digest.unsubscribed"]) == 1

    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    response = client.get(tampered)
    assert response.status_code == 400 and "not valid" in response.get_data(as_text=True)
    app.config["UNSUBSCRIBE_MAX_AGE"] = -1
    response = client.get(path)
    assert response.status_code == 400 and "expired" in response.get_data(as_text=True)


def test_a_digest_lists_at_most_twenty_per_app_failed_first_and_counts_the_rest(app):
    from intercity.audit.actor import Actor, acting_as
    from intercity.audit.capture import record_event
    from intercity.audit.rules import Scope
    from intercity.notify import digest

    scope = Scope(1, "prod-1", 2, "api")
    with acting_as(Actor("worker")):
        for number in range(30):
            record_event(db.session, "app.restart_requested", category="app", scope=scope, target_label="api")
        record_event(db.session, "operation.failed", category="app", scope=scope, target_label="restart")
        db.session.commit()
    head = entries()[-1]
    coverage = digest.collect(0, head.seq, head.hash)
    group = coverage.groups[("prod-1", "api")]
    shown = group.shown()
    assert len(shown) == 20 and shown[0] == head.seq and group.hidden == 11 and group.total == 31
    assert coverage.categories == {"app": 31}
