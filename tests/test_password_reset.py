"""Resetting a forgotten password by mail: same answer for every address, a link for an hour and once, 2FA still asked."""
from __future__ import annotations

import re

import pyotp
import pytest

from intercity import crypto
from intercity.extensions import db
from intercity.services import two_factor
from tests.support.audit import committed_entries as entries
from tests.support.builders import PASSWORD
from tests.support.sessions import client_for

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def web(make_app, smtp):
    return make_app()


def _ask(web, email):
    return web.test_client().post("/password/forgot", data={"email": email})


def _reset_path(web, smtp, to):
    web.extensions["intercity_jobs"].wait_idle()
    (mail,) = [m for m in smtp.wait_for(1) if m["To"] == to and "Reset" in m["Subject"]]
    url = re.search(r"https?://\S+", mail.get_body(("plain",)).get_content()).group(0)
    return "/" + url.split("/", 3)[3]


def test_the_answer_is_the_same_for_every_address_and_only_an_account_gets_mail(web, member, smtp, now):
    known = _ask(web, member.email)
    unknown = _ask(web, "nobody@example.com")
    assert known.status_code == unknown.status_code == 200

    def text(response):  # each page has its own CSRF token; everything else must be the same
        return re.sub(r'"X-CSRFToken": "[^"]+"', "", response.get_data(as_text=True))

    assert text(known) == text(unknown)
    assert "If this address belongs to an account" in known.get_data(as_text=True)
    _reset_path(web, smtp, member.email)
    assert [m["To"] for m in smtp.messages] == [member.email]
    # Both answers did the same work in the request (an entry each; the mail goes from a job), rather
    # than a timing check, which a busy machine makes flaky.
    labels = [e.target_label for e in entries(action="user.password_reset_requested")]
    assert labels == [member.email, "an unknown address"]


def test_a_reset_link_sets_the_password_once_and_ends_every_session(web, member, smtp, now):
    logged_in = client_for(web, member)
    _ask(web, member.email)
    path = _reset_path(web, smtp, member.email)
    client = web.test_client()
    assert client.get(path).status_code == 200
    weak = client.post(path, data={"password": "short", "confirm": "short"})
    assert weak.status_code == 422 and "at least 12 characters" in weak.get_data(as_text=True)
    done = client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert done.status_code == 303 and done.headers["Location"].endswith("/login")
    assert logged_in.get("/servers").status_code == 302
    login = web.test_client().post("/login", data={"email": member.email, "password": NEW_PASSWORD})
    assert login.status_code == 302
    (entry,) = entries(action="user.password_reset")
    assert entry.category == "security" and entry.changes["password_hash"] == ["[redacted]", "[redacted]"]
    # used once: the same link again is refused and changes nothing
    again = client.post(path, data={"password": "yet another passphrase", "confirm": "yet another passphrase"})
    assert again.status_code == 410 and "already used" in again.get_data(as_text=True)
    web.extensions["intercity_jobs"].wait_idle()
    assert any(m["To"] == member.email and "was reset" in m["Subject"] for m in smtp.wait_for(2))


def test_expired_and_forged_links_are_refused(web, member, smtp, now):
    _ask(web, member.email)
    path = _reset_path(web, smtp, member.email)
    client = web.test_client()
    now.t += 3601
    expired = client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert expired.status_code == 410 and "expired" in expired.get_data(as_text=True)
    now.t -= 3601
    token = path.rsplit("/", 1)[1]
    forged = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    refused = client.post(path.replace(token, forged), data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert refused.status_code == 410 and "not valid" in refused.get_data(as_text=True)
    # a link signed with another key (another panel's, or made up) is refused the same way
    from itsdangerous import URLSafeTimedSerializer

    other = URLSafeTimedSerializer("not this panel's key", salt="intercity-password-reset").dumps({"user": member.id})
    assert client.get(path.replace(token, other)).status_code == 410
    db.session.rollback()
    assert web.test_client().post("/login", data={"email": member.email, "password": PASSWORD}).status_code == 302


def test_with_2fa_on_a_reset_still_asks_a_code_or_a_recovery_code(web, member, smtp, now):
    two_factor.begin_enrolment(member)
    secret = crypto.decrypt(member.totp_secret_encrypted)
    codes = two_factor.confirm_enrolment(member, pyotp.TOTP(secret).at(now.t))
    db.session.commit()
    _ask(web, member.email)
    path = _reset_path(web, smtp, member.email)
    client = web.test_client()
    assert "Two-factor login is on" in client.get(path).get_data(as_text=True)
    no_code = client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert no_code.status_code == 401 and "not right" in no_code.get_data(as_text=True)
    reused = client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
                                     "code": pyotp.TOTP(secret).at(now.t)})
    assert reused.status_code == 401  # enrolment used this step's code
    assert client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
                                   "code": codes[3]}).status_code == 303
    assert [e.target_label for e in entries(action="user.recovery_code_used")] == [member.email]
