"""The team page: invitations by mail (72 hours, once), roles, deactivation, and the last active admin."""
from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from intercity.extensions import db
from intercity.models import Invitation, User, UserSession
from intercity.models.base import utcnow
from tests.support.audit import entries
from tests.support.builders import PASSWORD, make_user
from tests.support.sessions import client_for as _client

NEW_PASSWORD = "a fresh long passphrase"


@pytest.fixture
def web(make_app, mailbox):
    return make_app()


def _wait_for_mail(web):
    web.extensions["intercity_jobs"].wait_idle()


def _invite(web, admin_client, email="newcomer@example.com", role="member"):
    response = admin_client.post("/team/invitations", data={"email": email, "role": role})
    assert response.status_code == 303, response.get_data(as_text=True)
    _wait_for_mail(web)


def _link(mailbox, to):
    for message in reversed(mailbox.messages):
        if message["To"] == to:
            body = message.get_body(("plain",)).get_content()
            return re.search(r"https?://\S+", body).group(0)
    raise AssertionError(f"no mail to {to}: {[m['To'] for m in mailbox.messages]}")


def _path(url):
    return "/" + url.split("/", 3)[3]


def _state():
    db.session.rollback()  # read what the requests committed


def test_an_invitation_is_mailed_and_its_link_makes_an_account_once(web, mailbox, admin):
    admin_client = _client(web, admin)
    _invite(web, admin_client, "Newcomer@Example.com", "viewer")
    url = _link(mailbox, "newcomer@example.com")
    assert url.startswith("http://127.0.0.1:5000/invitations/")
    assert "viewer" in mailbox.messages[-1].get_body(("plain",)).get_content()
    _state()
    invitation = db.session.scalar(select(Invitation))
    assert invitation.token_hash not in url  # stored hashed
    assert invitation.expires_at - utcnow() > timedelta(hours=71, minutes=59)

    invitee = _client(web)
    page = invitee.get(_path(url))
    assert page.status_code == 200 and "newcomer@example.com" in page.get_data(as_text=True)
    # a weak password: the reason next to the field, nothing created
    weak = invitee.post(_path(url), data={"password": "password1234", "confirm": "password1234"})
    assert weak.status_code == 422 and "most common" in weak.get_data(as_text=True)
    _state()
    assert db.session.scalar(select(func.count(User.id))) == 1
    done = invitee.post(_path(url), data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert done.status_code == 303
    assert invitee.get("/servers").status_code == 200  # logged in
    _state()
    user = db.session.scalar(select(User).where(User.email == "newcomer@example.com"))
    assert user.role == "viewer" and user.check_password(NEW_PASSWORD)
    # the link works once
    again = _client(web).post(_path(url), data={"password": NEW_PASSWORD + "x", "confirm": NEW_PASSWORD + "x"})
    assert again.status_code == 410 and "already used" in again.get_data(as_text=True)
    # every step is an entry in its category
    seen = {(e.action, e.category) for e in entries()}
    assert {("user.invited", "security"), ("user.created", "team"), ("invitation.accepted", "team"),
            ("user.login", "team")} <= seen
    token = url.rsplit("/", 1)[1]
    assert not [e for e in entries() if token in e.diff or invitation.token_hash in e.diff]
    created = entries(action="user.created")[-1]
    assert created.actor_email == "newcomer@example.com"
    assert entries(action="user.invited")[-1].actor_email == admin.email


def test_an_invitation_expires_after_72_hours(web, mailbox, admin):
    _invite(web, _client(web, admin))
    url = _link(mailbox, "newcomer@example.com")
    _state()
    invitation = db.session.scalar(select(Invitation))
    invitation.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    for response in (_client(web).get(_path(url)),
                     _client(web).post(_path(url), data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})):
        assert response.status_code == 410 and "expired" in response.get_data(as_text=True)
    _state()
    assert db.session.scalar(select(func.count(User.id))) == 1


def test_a_withdrawn_or_replaced_invitation_no_longer_works(web, mailbox, admin):
    admin_client = _client(web, admin)
    _invite(web, admin_client)
    first = _link(mailbox, "newcomer@example.com")
    _invite(web, admin_client, role="admin")  # a new invitation replaces the open one
    second = _link(mailbox, "newcomer@example.com")
    assert first != second
    assert "withdrawn" in _client(web).get(_path(first)).get_data(as_text=True)
    _state()
    open_one = db.session.scalar(select(Invitation).where(Invitation.revoked_at.is_(None)))
    assert admin_client.post(f"/team/invitations/{open_one.id}/revoke").status_code == 303
    assert _client(web).get(_path(second)).status_code == 410
    _state()
    assert [e.category for e in entries(action="invitation.revoked")] == ["security", "security"]
    assert "newcomer@example.com" not in _client(web, admin).get("/team").get_data(as_text=True)


def test_an_unknown_token_and_an_address_already_in_the_team(web, admin, member):
    admin_client = _client(web, admin)
    assert _client(web).get("/invitations/nothing-like-a-token").status_code == 410
    response = admin_client.post("/team/invitations", data={"email": member.email, "role": "viewer"})
    assert response.status_code == 422 and "already has an account" in response.get_data(as_text=True)
    response = admin_client.post("/team/invitations", data={"email": "not an address", "role": "viewer"})
    assert response.status_code == 422
    _state()
    assert db.session.scalar(select(func.count(Invitation.id))) == 0


def test_admins_change_roles_deactivate_and_reactivate_and_sessions_end(web, admin, member):
    admin_client = _client(web, admin)
    member_client = _client(web, member)
    assert member_client.get("/servers").status_code == 200
    assert admin_client.post(f"/team/users/{member.id}/role", data={"role": "viewer"}).status_code == 303
    assert member_client.get("/servers").status_code == 302  # the role change ended the session
    member_client = _client(web, member)
    assert admin_client.post(f"/team/users/{member.id}/deactivate").status_code == 303
    assert member_client.get("/servers").status_code == 302
    assert _client(web).post("/login", data={"email": member.email, "password": PASSWORD}).status_code == 401
    assert admin_client.post(f"/team/users/{member.id}/reactivate").status_code == 303
    assert _client(web).post("/login", data={"email": member.email, "password": PASSWORD}).status_code == 302
    _state()
    assert db.session.get(User, member.id).role == "viewer"
    db.session.rollback()
    found = [(e.action, e.category) for e in entries(target_id=str(member.id)) if e.action.startswith("user.")]
    for expected in (("user.role_changed", "security"), ("user.deactivated", "security"),
                     ("user.reactivated", "security")):
        assert expected in found
    reasons = set(db.session.scalars(select(UserSession.ended_reason).where(UserSession.user_id == member.id)))
    assert {"role_changed", "deactivated"} <= reasons


def test_the_last_active_admin_cannot_be_demoted_or_deactivated(web, admin, member):
    admin_client = _client(web, admin)
    for url, data in ((f"/team/users/{admin.id}/role", {"role": "member"}), (f"/team/users/{admin.id}/deactivate", {})):
        response = admin_client.post(url, data=data)
        assert response.status_code == 422 and "last active admin" in response.get_data(as_text=True)
    _state()
    assert (db.session.get(User, admin.id).role, db.session.get(User, admin.id).active) == ("admin", True)
    # a deactivated admin does not count
    make_user("admin", email="old-admin@example.com", active=False)
    assert admin_client.post(f"/team/users/{admin.id}/role", data={"role": "member"}).status_code == 422
    # with a second active admin, demoting works
    second = make_user("admin", email="second@example.com")
    assert admin_client.post(f"/team/users/{second.id}/role", data={"role": "member"}).status_code == 303


@pytest.mark.postgresql_only
def test_two_admins_demoting_each_other_at_once_leave_one(make_app, app):
    alice, bob = make_user("admin", email="alice@example.com"), make_user("admin", email="bob@example.com")
    pairs = ((alice.id, bob.id), (bob.id, alice.id))
    for _ in range(3):
        barrier = threading.Barrier(2)
        outcomes = []
        apps = [make_app(), make_app()]

        def demote(web, actor_id, target_id):
            from intercity.services import team

            with web.app_context():
                actor, target = db.session.get(User, actor_id), db.session.get(User, target_id)
                barrier.wait()
                try:
                    team.change_role(actor, target, "member")
                    db.session.commit()
                    outcomes.append("demoted")
                except Exception as error:  # the loser is told, nothing is applied
                    db.session.rollback()
                    outcomes.append(type(error).__name__)
                finally:
                    db.session.remove()

        threads = [threading.Thread(target=demote, args=(web, *pair)) for web, pair in zip(apps, pairs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        _state()
        admins = db.session.scalars(select(User).where(User.role == "admin", User.active.is_(True))).all()
        assert len(admins) == 1 and outcomes.count("demoted") == 1 and len(outcomes) == 2, outcomes
        for user in (alice, bob):
            db.session.get(User, user.id).role = "admin"
        db.session.commit()


def test_members_and_viewers_cannot_reach_the_team_page(web, member, viewer):
    for user in (member, viewer):
        client = _client(web, user)
        assert client.get("/team").status_code == 403
        assert client.post("/team/invitations", data={"email": "x@example.com", "role": "admin"}).status_code == 403
    _state()
    assert db.session.scalar(select(func.count(Invitation.id))) == 0
