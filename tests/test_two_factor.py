"""Two-factor login: enrolment, codes once each, recovery codes, turning off, "required", admin and CLI resets."""
from __future__ import annotations

import base64
import re

import pyotp
import pytest
from sqlalchemy import select

from intercity import crypto
from intercity.extensions import db
from intercity.models import RecoveryCode, User
from intercity.services import two_factor
from tests.support.audit import committed_entries as entries
from tests.support.builders import PASSWORD
from tests.support.notify import wait_until
from tests.support.sessions import client_for


@pytest.fixture
def web(make_app, smtp):
    return make_app()


def _reload(user) -> None:
    db.session.rollback()  # a new transaction sees what the web app committed
    db.session.refresh(user)


def _secret(user) -> str:
    _reload(user)
    return crypto.decrypt(user.totp_secret_encrypted)


def _code(user, at) -> str:
    return pyotp.TOTP(_secret(user)).at(at)


def enrol(user, now) -> list[str]:
    """Turn 2FA on for `user` the way the page does; returns the recovery codes."""
    two_factor.begin_enrolment(user)
    codes = two_factor.confirm_enrolment(user, pyotp.TOTP(crypto.decrypt(user.totp_secret_encrypted)).at(now.t))
    db.session.commit()
    now.t += 30  # the next login needs a newer code than the one enrolment used
    return codes


def _login(web, user, password=PASSWORD):
    client = web.test_client()
    response = client.post("/login", data={"email": user.email, "password": password})
    return client, response


def test_enrolment_shows_a_local_qr_code_needs_a_right_code_and_shows_ten_recovery_codes_once(web, member, now):
    client = client_for(web, member)
    page = client.get("/account/two-factor").get_data(as_text=True)
    assert 'src="data:image/svg+xml' in page and "http" not in page.split('src="data:image/svg+xml')[1][:20]
    secret = _secret(member)
    wrong = client.post("/account/two-factor/enable", data={"code": "000000"})
    assert wrong.status_code == 422 and "not right" in wrong.get_data(as_text=True)
    _reload(member)
    assert not member.two_factor_enabled
    done = client.post("/account/two-factor/enable", data={"code": pyotp.TOTP(secret).at(now.t)})
    assert done.status_code == 200
    codes = re.findall(r"<code>([a-z0-9]{5}-[a-z0-9]{5})</code>", done.get_data(as_text=True))
    assert len(set(codes)) == 10
    _reload(member)
    assert member.two_factor_enabled
    stored = db.session.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == member.id)).all()
    assert len(stored) == 10 and not {c.replace("-", "") for c in codes} & set(stored)
    after = client.get("/account/two-factor").get_data(as_text=True)
    assert not any(code in after for code in codes) and "data:image" not in after
    assert [e.action for e in entries(target_id=str(member.id)) if e.action.startswith("user.2fa")] == \
        ["user.2fa_enabled"]


def test_login_asks_a_code_after_the_password_and_refuses_wrong_reused_and_expired_codes(web, member, now):
    enrol(member, now)
    client, response = _login(web, member)
    assert response.status_code == 303 and response.headers["Location"].endswith("/login/code")
    assert client.get("/servers").status_code == 302  # not logged in before the code
    assert client.post("/login/code", data={"code": "123456"}).status_code == 401
    assert entries(action="user.2fa_failed")[-1].target_label == member.email
    good = _code(member, now.t)
    assert client.post("/login/code", data={"code": good}).status_code == 303
    assert client.get("/servers").status_code == 200
    # the same code a second time, within its window, is refused
    again, _ = _login(web, member)
    assert again.post("/login/code", data={"code": good}).status_code == 401
    # a code from two minutes ago has expired; the current one works
    now.t += 120
    assert again.post("/login/code", data={"code": _code(member, now.t - 120)}).status_code == 401
    assert again.post("/login/code", data={"code": _code(member, now.t)}).status_code == 303
    # the code step itself expires: after five minutes the password is asked again
    late, _ = _login(web, member)
    now.t += 301
    assert late.post("/login/code", data={"code": _code(member, now.t)}).headers["Location"].endswith("/login")


def test_recovery_codes_log_in_once_each(web, member, now):
    codes = enrol(member, now)
    client, _ = _login(web, member)
    assert client.post("/login/code", data={"code": codes[0].upper()}).status_code == 303
    other, _ = _login(web, member)
    assert other.post("/login/code", data={"code": codes[0]}).status_code == 401
    assert other.post("/login/code", data={"code": codes[1]}).status_code == 303
    used = entries(action="user.recovery_code_used")
    assert [e.changes["left"][1] for e in used] == [9, 8]
    assert two_factor.recovery_codes_left(member) == 8


def test_turning_off_needs_the_password_and_a_code_and_is_alerted(web, member, now):
    enrol(member, now)
    client = client_for(web, member)
    code = _code(member, now.t)
    wrong_password = client.post("/account/two-factor/disable", data={"password": "not my password", "code": code})
    assert wrong_password.status_code == 422 and "not your current password" in wrong_password.get_data(as_text=True)
    assert client.post("/account/two-factor/disable", data={"password": PASSWORD, "code": "000000"}).status_code == 422
    assert client.post("/account/two-factor/disable", data={"password": PASSWORD, "code": code}).status_code == 303
    _reload(member)
    assert not member.two_factor_enabled and member.totp_secret_encrypted is None
    (entry,) = entries(action="user.2fa_disabled")
    assert entry.category == "security"
    from intercity.audit.categories import is_alerted

    assert is_alerted("user.2fa_disabled") and is_alerted("user.2fa_reset")


def test_the_code_step_is_throttled_with_the_passwords(make_app, app, member, now):
    web = make_app(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://", LOGIN_LIMIT_PER_ACCOUNT="3 per 15 minutes",
                   LOGIN_LIMIT_PER_ADDRESS="50 per 5 minutes")
    enrol(member, now)
    client, _ = _login(web, member)
    assert [client.post("/login/code", data={"code": f"00000{n}"}).status_code for n in range(4)] == \
        [401, 401, 401, 429]
    # the account's count is shared: a password attempt for it now waits too
    assert web.test_client().post("/login", data={"email": member.email, "password": PASSWORD}).status_code == 429


def test_required_2fa_is_an_audited_setting_and_allows_nothing_but_enrolment(web, admin, member, now):
    admin_client = client_for(web, admin)
    refused = admin_client.post("/settings/two-factor", data={"required": "y"}, follow_redirects=True)
    assert "Set up your own two-factor login first" in refused.get_data(as_text=True) and not two_factor.required()
    enrol(admin, now)
    assert admin_client.post("/settings/two-factor", data={"required": "y"}).status_code == 303
    (entry,) = entries(action="settings.changed")
    assert entry.category == "security" and entry.changes["value"] == [None, "on"]
    client = client_for(web, member)
    for path in ("/servers", "/account", "/audit", "/account/password"):
        response = client.get(path) if path != "/account/password" else client.post(path, data={})
        assert response.status_code == 302 and response.headers["Location"].endswith("/account/two-factor"), path
    assert client.get("/account/two-factor").status_code == 200
    assert client.post("/account/two-factor/enable", data={"code": _code(member, now.t)}).status_code == 200
    assert client.get("/servers").status_code == 200
    # it cannot be turned off while required; the admin who has it is never stopped
    denied = client.post("/account/two-factor/disable", data={"password": PASSWORD, "code": _code(member, now.t + 30)})
    assert denied.status_code == 422 and "requires" in denied.get_data(as_text=True)
    assert admin_client.get("/team").status_code == 200


def test_an_invitation_accepted_while_2fa_is_required_goes_through_enrolment(web, admin, smtp, now):
    from intercity.services import team

    enrol(admin, now)
    two_factor.set_required(admin, True)
    team.invite(admin, "newcomer@example.com", "member")
    db.session.commit()
    web.extensions["intercity_jobs"].wait_idle()
    (mail,) = [m for m in smtp.wait_for(1) if m["To"] == "newcomer@example.com"]
    path = "/" + re.search(r"https?://\S+", mail.get_body(("plain",)).get_content()).group(0).split("/", 3)[3]
    client = web.test_client()
    accepted = client.post(path, data={"password": "a new member's passphrase", "confirm": "a new member's passphrase"})
    assert accepted.status_code == 303
    landing = client.get(accepted.headers["Location"])
    assert landing.status_code == 302 and landing.headers["Location"].endswith("/account/two-factor")


def test_an_admin_resets_someones_2fa_audited_alerted_and_told_by_mail(web, admin, member, smtp, now):
    enrol(member, now)
    phone_lost = client_for(web, member)
    response = client_for(web, admin).post(f"/team/users/{member.id}/reset-2fa")
    assert response.status_code == 303
    _reload(member)
    assert not member.two_factor_enabled
    assert db.session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == member.id)).all() == []
    (entry,) = entries(action="user.2fa_reset")
    assert entry.actor_email == admin.email and entry.target_label == member.email
    assert phone_lost.get("/servers").status_code == 302  # their sessions ended
    web.extensions["intercity_jobs"].wait_idle()
    told = [m for m in smtp.wait_for(1) if m["To"] == member.email]
    assert told and "reset" in told[0]["Subject"] and admin.email in told[0].get_body(("plain",)).get_content()
    alert = f"Security alert: {admin.email} reset the two-factor login of {member.email}"
    wait_until(lambda: any(alert in m["Subject"] for m in smtp.messages), message="the reset's alert")
    # a member may not reset anyone's
    enrol(admin, now)
    assert client_for(web, member).post(f"/team/users/{admin.id}/reset-2fa").status_code == 403


def test_the_cli_resets_2fa_as_a_cli_actor(app, admin, now, smtp):
    enrol(admin, now)
    result = app.test_cli_runner().invoke(args=["reset-2fa", "--email", admin.email.upper()])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert not db.session.get(User, admin.id).two_factor_enabled
    (entry,) = entries(action="user.2fa_reset")
    assert entry.actor_kind == "cli" and entry.actor_email is None
    missing = app.test_cli_runner().invoke(args=["reset-2fa", "--email", "nobody@example.com"])
    assert missing.exit_code != 0 and "No account" in missing.output


def test_the_totp_secret_is_nowhere_but_its_encrypted_column(web, admin, member, smtp, now):
    client = client_for(web, member)
    client.get("/account/two-factor")
    secret = _secret(member)
    codes = client.post("/account/two-factor/enable", data={"code": _code(member, now.t)}).get_data(as_text=True)
    now.t += 30
    login, _ = _login(web, member)
    login.post("/login/code", data={"code": _code(member, now.t)})
    client_for(web, admin).post(f"/team/users/{member.id}/reset-2fa")
    web.extensions["intercity_jobs"].wait_idle()
    smtp.wait_for(1)
    raw = base64.b32decode(secret)
    needles = {secret, secret.lower(), " ".join(secret[i:i + 4] for i in range(0, len(secret), 4)),
               raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    pages = [codes] + [client_for(web, who).get(path).get_data(as_text=True)
                       for who in (admin, member) for path in ("/account", "/account/two-factor", "/audit")]
    pages.append(client_for(web, admin).get("/team").get_data(as_text=True))
    pages += [m.as_string() for m in smtp.all_received]
    db.session.expire_all()
    rows = []
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(table.select()).mappings():
            rows += [repr(value) for name, value in row.items()
                     if not (table.name == "users" and name == "totp_secret_encrypted")]
    for text in pages + rows:
        for needle in needles:
            assert needle not in text, needle


def test_new_recovery_codes_need_the_password_and_a_code_and_replace_the_old_ones(web, member, now):
    old = enrol(member, now)
    client = client_for(web, member)
    refused = client.post("/account/two-factor/recovery-codes", data={"password": PASSWORD, "code": "000000"})
    assert refused.status_code == 422
    made = client.post("/account/two-factor/recovery-codes", data={"password": PASSWORD, "code": old[0]})
    new = re.findall(r"<code>([a-z0-9]{5}-[a-z0-9]{5})</code>", made.get_data(as_text=True))
    assert made.status_code == 200 and len(new) == 10 and not set(new) & set(old)
    login, _ = _login(web, member)
    assert login.post("/login/code", data={"code": old[1]}).status_code == 401
    assert login.post("/login/code", data={"code": new[0]}).status_code == 303
    assert [e.action for e in entries(action="user.recovery_codes_regenerated")] == ["user.recovery_codes_regenerated"]
