"""The own account page: password and email changes (with their links and mail), sessions, own activity."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from intercity.extensions import db
from intercity.models import User, UserSession
from tests.support.audit import entries
from tests.support.builders import PASSWORD, make_user
from tests.support.sessions import client_for as _client

NEW_PASSWORD = "another long passphrase"


@pytest.fixture
def web(make_app, mailbox):
    return make_app()


def _login(web, email, password=PASSWORD):
    client = web.test_client()
    response = client.post("/login", data={"email": email, "password": password})
    return client, response.status_code


def _fresh():
    db.session.rollback()


def _mail_to(web, mailbox, to):
    web.extensions["intercity_jobs"].wait_idle()
    return [m for m in mailbox.messages if m["To"] == to]


def _path(message):
    url = re.search(r"https?://\S+", message.get_body(("plain",)).get_content()).group(0)
    return "/" + url.split("/", 3)[3]


def test_changing_the_password_needs_the_current_one_and_ends_the_other_sessions(web, member):
    here, _ = _login(web, member.email)
    elsewhere, _ = _login(web, member.email)
    wrong = here.post("/account/password", data={"current_password": "not it at all",
                                                 "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert wrong.status_code == 422 and "not your current password" in wrong.get_data(as_text=True)
    weak = here.post("/account/password", data={"current_password": PASSWORD, "new_password": "short one",
                                                "confirm": "short one"})
    assert weak.status_code == 422 and "at least 12 characters" in weak.get_data(as_text=True)
    done = here.post("/account/password", data={"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                                "confirm": NEW_PASSWORD})
    assert done.status_code == 303
    assert here.get("/account").status_code == 200  # this browser stays logged in
    assert elsewhere.get("/servers").status_code == 302  # the other session ended
    assert _login(web, member.email)[1] == 401
    assert _login(web, member.email, NEW_PASSWORD)[1] == 302
    _fresh()
    changed = entries(action="user.password_changed")
    assert len(changed) == 1 and changed[0].category == "security"
    assert NEW_PASSWORD not in changed[0].diff and PASSWORD not in changed[0].diff


def test_a_new_email_takes_effect_when_its_link_is_followed_and_the_old_address_is_told(web, mailbox, member):
    client = _client(web, member)
    response = client.post("/account/email", data={"new_email": "Dev.New@Example.com", "email_password": PASSWORD})
    assert response.status_code == 303
    confirm = _mail_to(web, mailbox, "dev.new@example.com")
    warned = _mail_to(web, mailbox, "dev@example.com")
    assert len(confirm) == 1 and len(warned) == 1
    assert "dev.new@example.com" in warned[0].get_body(("plain",)).get_content()
    assert "/account/email/confirm/" not in warned[0].get_body(("plain",)).get_content()
    _fresh()
    assert db.session.get(User, member.id).email == "dev@example.com"  # nothing changed yet
    path = _path(confirm[0])
    # following the link shows a button; a mail scanner's GET changes nothing
    assert _client(web).get(path).status_code == 200
    _fresh()
    assert db.session.get(User, member.id).email == "dev@example.com"
    assert _client(web).post(path).status_code == 303
    _fresh()
    assert db.session.get(User, member.id).email == "dev.new@example.com"
    assert len(_mail_to(web, mailbox, "dev@example.com")) == 2  # the old address is told it happened
    # the link works once
    again = _client(web).post(path)
    assert again.status_code == 410 and "already used" in again.get_data(as_text=True)
    _fresh()
    changed = entries(action="user.email_changed")
    assert len(changed) == 1 and changed[0].category == "team"
    assert changed[0].changes["email"] == ["dev@example.com", "dev.new@example.com"]


def test_an_email_link_expires(web, mailbox, member, monkeypatch):
    client = _client(web, member)
    client.post("/account/email", data={"new_email": "later@example.com", "email_password": PASSWORD})
    path = _path(_mail_to(web, mailbox, "later@example.com")[0])
    import time

    from intercity.services import account

    real = time.time
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: real() + account.EMAIL_LINK_HOURS * 3600 + 5)
    response = _client(web).post(path)
    assert response.status_code == 410 and "expired" in response.get_data(as_text=True)
    monkeypatch.undo()
    tampered = _client(web).post(path[:-3] + "abc")
    assert tampered.status_code == 410
    _fresh()
    assert db.session.get(User, member.id).email == "dev@example.com"


def test_an_email_change_is_refused_with_the_reason_next_to_the_field(web, member, viewer):
    client = _client(web, member)
    for data, reason in (({"new_email": viewer.email, "email_password": PASSWORD}, "already has an account"),
                         ({"new_email": "ok@example.com", "email_password": "wrong"}, "not your current password"),
                         ({"new_email": "no at sign", "email_password": PASSWORD}, "not a valid email address")):
        response = client.post("/account/email", data=data)
        assert response.status_code == 422 and reason in response.get_data(as_text=True), data


def test_the_account_page_lists_sessions_and_ends_any_of_them(web, member):
    laptop, _ = _login(web, member.email)
    phone = web.test_client()
    phone.post("/login", data={"email": member.email, "password": PASSWORD},
               headers={"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0) Safari/605.1"},
               environ_base={"REMOTE_ADDR": "198.51.100.44"})
    body = laptop.get("/account").get_data(as_text=True)
    assert "Safari on iPhone" in body and "198.51.100.44" in body and "(this browser)" in body
    _fresh()
    phone_row = db.session.scalar(select(UserSession).where(UserSession.ip == "198.51.100.44"))
    assert laptop.post(f"/account/sessions/{phone_row.id}/end").status_code == 303
    assert phone.get("/servers").status_code == 302
    assert laptop.get("/servers").status_code == 200
    # nobody ends another person's session
    other = make_user("member", email="other@example.com")
    other_client, _ = _login(web, other.email)
    _fresh()
    other_row = db.session.scalar(select(UserSession).where(UserSession.user_id == other.id))
    laptop.post(f"/account/sessions/{other_row.id}/end")
    assert other_client.get("/servers").status_code == 200
    _fresh()
    ended = entries(action="user.session_ended")
    assert len(ended) == 1 and ended[0].category == "security"


def test_the_account_page_shows_the_persons_own_recent_activity(web, member, admin):
    client = _client(web, member)
    client.post("/account/password", data={"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                           "confirm": NEW_PASSWORD})
    _login(web, admin.email)
    body = client.get("/account").get_data(as_text=True)
    activity = body.split('id="account-activity"', 1)[1]
    assert "changed the password of" in activity
    assert admin.email not in activity  # someone else's login is not this person's activity
