"""Login protection: throttling per account and per address (behind trusted proxies), alerts on repeated failures."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from intercity.extensions import db
from intercity.models import User
from intercity.services import users
from tests.support.audit import entries
from tests.support.builders import PASSWORD, make_user

LIMITS = {"RATELIMIT_ENABLED": True, "LOGIN_LIMIT_PER_ACCOUNT": "3 per 15 minutes",
          "LOGIN_LIMIT_PER_ADDRESS": "5 per 5 minutes"}


def _post(client, email, password, addr="203.0.113.1", headers=None):
    return client.post("/login", data={"email": email, "password": password}, headers=headers or {},
                       environ_base={"REMOTE_ADDR": addr}).status_code


@pytest.fixture
def limited(make_app, app):
    def build(**overrides):
        return make_app(**LIMITS, RATELIMIT_STORAGE_URI="memory://", **overrides)
    return build


def test_an_account_under_attack_is_throttled_everywhere_and_others_are_not(limited):
    web = limited()
    alice, bob = make_user("member", email="alice@example.com"), make_user("member", email="bob@example.com")
    client = web.test_client()
    assert [_post(client, alice.email, "wrong password") for _ in range(3)] == [401] * 3
    # the right password for alice, even from elsewhere, waits out the account's limit
    assert _post(web.test_client(), alice.email, PASSWORD, addr="198.51.100.9") == 429
    refused = web.test_client().post("/login", data={"email": alice.email, "password": PASSWORD})
    assert "Too many failed logins" in refused.get_data(as_text=True)
    # bob, from the attacker's own address, still logs in
    assert _post(web.test_client(), bob.email, PASSWORD) == 302


def test_an_address_that_keeps_failing_is_throttled_and_other_addresses_are_not(limited):
    web = limited()
    carol = make_user("member", email="carol@example.com")
    client = web.test_client()
    codes = [_post(client, f"guess{n}@example.com", "wrong password") for n in range(5)]
    assert codes == [401] * 5
    assert _post(client, carol.email, PASSWORD) == 429
    assert _post(web.test_client(), carol.email, PASSWORD, addr="198.51.100.20") == 302


def test_successful_logins_do_not_count(limited):
    web = limited()
    dave = make_user("member", email="dave@example.com")
    for _ in range(8):
        client = web.test_client()
        assert _post(client, dave.email, PASSWORD) == 302


def test_behind_one_trusted_proxy_each_client_counts_and_a_forged_header_does_not_help(limited):
    web = limited(INTERCITY_TRUSTED_PROXIES=1)
    erin = make_user("member", email="erin@example.com")
    proxy = "10.0.0.2"
    attacker = {"X-Forwarded-For": "192.0.2.66"}
    for n in range(5):
        # the attacker writes a fresh address in front each time; the proxy appends the real one
        forged = {"X-Forwarded-For": f"203.0.113.{n + 10}, 192.0.2.66"}
        assert _post(web.test_client(), f"x{n}@example.com", "wrong password", addr=proxy, headers=forged) == 401
    assert _post(web.test_client(), "y@example.com", "wrong password", addr=proxy, headers=attacker) == 429
    # another client behind the same proxy is not locked out
    assert _post(web.test_client(), erin.email, PASSWORD, addr=proxy,
                 headers={"X-Forwarded-For": "192.0.2.77"}) == 302
    db.session.rollback()
    failed = entries(action="user.login_failed")
    assert {entry.request_ip for entry in failed} == {"192.0.2.66"}


def test_without_trusted_proxies_x_forwarded_for_is_ignored(limited):
    web = limited()
    make_user("member")
    for n in range(5):
        _post(web.test_client(), f"x{n}@example.com", "wrong password", addr="10.0.0.2",
              headers={"X-Forwarded-For": f"203.0.113.{n}"})
    assert _post(web.test_client(), "y@example.com", "wrong password", addr="10.0.0.2",
                 headers={"X-Forwarded-For": "203.0.113.99"}) == 429


def test_limits_are_kept_in_redis_when_configured(make_app, app, redis_url):
    # Redis keeps counts between runs: a fresh account and address each time.
    tag = uuid.uuid4()
    address = f"198.18.{tag.bytes[0]}.{tag.bytes[1]}"
    web = make_app(**LIMITS, RATELIMIT_STORAGE_URI=redis_url)
    frank = make_user("member", email=f"frank-{tag.hex[:8]}@example.com")
    assert [_post(web.test_client(), frank.email, "wrong password", addr=address) for _ in range(3)] == [401] * 3
    # a second process (another app on the same Redis) sees the same counts
    other = make_app(**LIMITS, RATELIMIT_STORAGE_URI=redis_url)
    assert _post(other.test_client(), frank.email, PASSWORD, addr="198.51.100.3") == 429


def test_the_fifth_failure_in_fifteen_minutes_alerts_once_then_at_most_every_fifteen_minutes(app, monkeypatch):
    grace = make_user("member", email="grace@example.com")
    clock = {"now": users.utcnow()}
    monkeypatch.setattr(users, "utcnow", lambda: clock["now"])

    def fail(times):
        for _ in range(times):
            assert users.authenticate(grace.email, "wrong password") is None
            db.session.commit()
            clock["now"] += timedelta(seconds=20)

    fail(4)
    assert entries(action="user.login_failures_repeated") == []
    fail(1)
    alerts = entries(action="user.login_failures_repeated")
    assert len(alerts) == 1 and alerts[0].category == "security" and alerts[0].target_label == grace.email
    assert alerts[0].changes["failures"] == [None, 5]
    fail(10)  # still inside the quarter hour: no second alert
    assert len(entries(action="user.login_failures_repeated")) == 1
    clock["now"] += timedelta(minutes=16)
    fail(5)
    assert len(entries(action="user.login_failures_repeated")) == 2
    assert len(entries(action="user.login_failed")) == 20
    # failures spread out (one every five minutes) never add up to an alert
    clock["now"] += timedelta(hours=1)
    for _ in range(6):
        fail(1)
        clock["now"] += timedelta(minutes=5)
    assert len(entries(action="user.login_failures_repeated")) == 2


def test_unknown_addresses_never_alert(app):
    for _ in range(6):
        users.authenticate("nobody@example.com", "wrong password")
        db.session.commit()
    assert entries(action="user.login_failures_repeated") == []
    assert {e.target_label for e in entries(action="user.login_failed")} == {"an unknown address"}


@pytest.mark.parametrize("password, reason", [
    ("short pw 1", "at least 12 characters"),
    ("password1234", "most common"),
    ("Qwertyuiop123", "most common"),
])
def test_weak_passwords_are_refused_with_the_reason(client, password, reason):
    response = client.post("/setup", data={"email": "founder@example.com", "password": password, "confirm": password})
    assert response.status_code == 200
    assert reason in response.get_data(as_text=True)
    assert db.session.scalar(select(User)) is None
