"""TLS readers, failures in plain words, certificate checks and the digest's expiring list (no SSH)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from intercity.dokku import parsers, tls
from intercity.validation import ValidationError
from tests.test_tls_e2e import make_certificate

NOW = datetime.now(timezone.utc)


def failure(command, code: int, stdout: str = "", stderr: str = "") -> parsers.DokkuError:
    with pytest.raises(parsers.DokkuError) as raised:
        parsers.check(command, code, stdout, stderr)
    return raised.value


def test_the_cron_job_state_is_read_with_and_without_the_quiet_header():
    # Without a TTY, dokku drops the `=====>` line and only the hint is left.
    assert tls.parse_cron_job("       Run 'dokku letsencrypt:cron-job --remove' to disable.\n") is True
    assert tls.parse_cron_job("=====> Auto-renew cron job is not enabled\n") is False
    assert tls.parse_cron_job("") is None  # plugins before 0.25.0 print no state: cannot tell
    assert tls.parse_cron_list("letsencrypt-auto-renew 24 6 * * * dokku letsencrypt:auto-renew\n")
    assert not tls.parse_cron_list("ID Schedule Command\n")


def test_plugin_versions_from_json_and_text():
    listing = '[{"name":"letsencrypt","version":"0.20.4","enabled":true}]'
    assert tls.parse_plugin_version(listing, True) == "0.20.4"
    assert tls.parse_plugin_version("  letsencrypt          0.25.1 enabled    Automated ...\n", False) == "0.25.1"
    assert tls.parse_plugin_version("  postgres 1.48.0 enabled\n", False) is None


def test_the_reports_say_whether_https_is_on():
    on = tls.tls_state({"active": "true", "autorenew": "true", "expiration": "1900000000"},
                       {"enabled": "true", "expires-at": "Mar  2 01:00:40 2027 GMT", "issuer": "R11",
                        "hostnames": "a.example.com b.example.com"})
    assert on["enabled"] and on["source"] == "letsencrypt" and on["autorenew"] is True
    assert on["expires_at"].startswith("2027-03-02T01:00:40") and on["hostnames"] == ["a.example.com", "b.example.com"]
    uploaded = tls.tls_state(None, {"enabled": "true"})
    assert uploaded["enabled"] and uploaded["source"] == "uploaded"
    assert tls.tls_state({"active": "false"}, {"enabled": "false"})["enabled"] is False


def test_lets_encrypt_failures_in_plain_words():
    enable = tls.enable("shop")
    assert "no domain Let's Encrypt can certify" in failure(enable, 1, stderr=" !     No domains detected for shop\n").message
    assert "needs an email address" in failure(
        enable, 1, stderr=" !     ERROR: Cannot request a certificate without an e-mail address!\n").message
    limited = failure(enable, 4, " !     Let's Encrypt rate-limited this request.\n-----> Certificate retrieval failed!\n")
    assert "rate limit" in limited.message and limited.exit_code == 4
    lego = failure(enable, 3, "       urn:ietf:params:acme:error:connection :: Timeout during connect (likely firewall problem)\n"
                              "-----> Certificate retrieval failed!\n", " !     Failed to setup letsencrypt\n")
    assert "port 80 is open" in lego.message and "code 3" in lego.message
    missing = failure(enable, 1, stderr=" !     `letsencrypt:enable shop` is not a dokku command.\n")
    assert isinstance(missing, tls.NotInstalled)
    assert isinstance(failure(tls.plugin_installed(), 1), tls.NotInstalled)
    assert "needs root" in failure(tls.plugin_install(), 1, stderr=" !     This command must be run as root\n").message
    # revoke exits 0 on failure: only the output tells.
    assert tls.revocation_failure("-----> Certificate revocation failed (code 7)!\n") == "7"
    assert tls.revocation_failure("-----> Certificate revoked successfully.\n") is None


def test_an_upload_is_checked_before_anything_is_sent():
    cert, key = make_certificate(["shop.example.com", "*.example.com"])
    _, other = make_certificate(["shop.example.com"])
    with pytest.raises(ValidationError, match="does not belong") as mismatch:
        tls.inspect(cert, other, ["shop.example.com"], NOW)
    assert mismatch.value.field == "private_key"
    with pytest.raises(ValidationError, match="not a PEM certificate"):
        tls.inspect("hello", key, [], NOW)
    with pytest.raises(ValidationError, match="expired on"):
        tls.inspect(cert, key, [], NOW + timedelta(days=90))
    found = tls.inspect(cert, key, ["shop.example.com", "www.example.com", "a.b.example.com", "_"], NOW)
    assert found.uncovered == ["a.b.example.com"]  # a wildcard covers one label only
    assert found.names == ["shop.example.com", "*.example.com"] and len(found.sha256) == 95
    assert set(found.facts()) == {"subject", "issuer", "names", "expires_at", "sha256"}
    assert key.strip() not in str(found.facts())


def test_the_tar_holds_server_crt_and_server_key():
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(tls.bundle("CERT", "KEY"))) as tar:
        assert sorted(tar.getnames()) == ["server.crt", "server.key"]
        assert tar.extractfile("server.key").read() == b"KEY\n"


def test_bad_email_is_refused_next_to_its_field():
    with pytest.raises(ValidationError) as bad:
        tls.set_global_email("-x@example.com")
    assert bad.value.field == "email"
    assert tls.set_global_email("ops@example.com").argv == ("dokku", "letsencrypt:set", "--global", "email",
                                                             "ops@example.com")


def test_the_digest_lists_expiring_certificates_first(smtp, app):
    from intercity.extensions import db
    from intercity.models.base import utcnow
    from intercity.models.tls import TlsReading
    from intercity.notify import digest
    from intercity.services.notifications import preferences_for
    from tests.support.builders import make_app, make_server, make_user
    from tests.support.notify import settle

    pref = preferences_for(make_user("admin", email="admin@example.com"))
    pref.last_digest_at = utcnow() - timedelta(days=2)
    db.session.commit()
    server = make_server(name="prod-1")
    soon, later = make_app(server, name="shop"), make_app(server, name="blog")
    for row_app, days in ((soon, 5), (later, 60)):
        db.session.add(TlsReading(scope=f"app:{row_app.id}", server_id=server.id, app_id=row_app.id,
                                  data={"enabled": True, "source": "letsencrypt",
                                        "expires_at": (NOW + timedelta(days=days, hours=1)).isoformat()}))
    db.session.commit()
    assert digest.send_due() == 1
    settle(app)
    message = smtp.wait_for(1)[0]
    body = message.get_body(("plain",)).get_content()
    first_group = body.split("==", 2)[1]
    assert "Certificates expiring within 14 days" in first_group
    assert "prod-1 / shop: expires in 5 days" in body and "prod-1 / blog:" not in body
    assert "Certificates expiring within 14 days" in message.get_body(("html",)).get_content()


@pytest.fixture
def tls_world(app):
    from intercity.extensions import db
    from intercity.models.tls import TlsReading
    from tests.support.builders import make_app, make_server

    server = make_server(name="prod-1")
    shop = make_app(server, name="shop")
    db.session.add(TlsReading(scope=f"server:{server.id}", server_id=server.id, data={
        "installed": True, "version": "0.25.1", "email": "ops@example.com", "email_known": True,
        "cron_job": False, "cron_listed": False}))
    db.session.add(TlsReading(scope=f"app:{shop.id}", server_id=server.id, app_id=shop.id, data={
        "enabled": True, "source": "letsencrypt", "issuer": "R11", "hostnames": ["shop.example.com"],
        "autorenew": False, "expires_at": (NOW + timedelta(days=3, hours=1)).isoformat()}))
    db.session.commit()
    return server


def _fragment(client, path: str, region: str) -> str:
    return client.get(f"{path}?region={region}", headers={"HX-Request": "true"}).get_data(as_text=True)


def test_the_https_regions_for_viewers(tls_world, app, viewer):
    from tests.support.sessions import client_for

    server_path, app_path = f"/servers/{tls_world.id}", f"/servers/{tls_world.id}/apps/shop"
    as_viewer = client_for(app, viewer)
    server_part = _fragment(as_viewer, server_path, "server-tls")
    assert 'id="server-tls"' in server_part and "Certificates expiring within 14 days" in server_part
    assert "missing</span>" in server_part and "3 days left" in server_part
    assert "Add the renewal job" not in server_part and "Set email" not in server_part
    app_part = _fragment(as_viewer, app_path, "app-tls")
    assert 'id="app-tls"' in app_part and "R11" in app_part and "3 days left" in app_part
    assert "renewal job is missing" in app_part
    assert "Renew now" not in app_part and "Upload a certificate" not in app_part


def test_the_https_regions_offer_admins_their_buttons(tls_world, app, admin):
    from tests.support.sessions import client_for

    server_path, app_path = f"/servers/{tls_world.id}", f"/servers/{tls_world.id}/apps/shop"
    as_admin = client_for(app, admin)
    assert "Add the renewal job" in _fragment(as_admin, server_path, "server-tls")
    app_part = _fragment(as_admin, app_path, "app-tls")
    assert "Renew now" in app_part and "Upload a certificate" in app_part and "Revoke" in app_part


def test_the_doubles_lego_failure_exits_with_legos_code_and_reads_in_plain_words(tmp_path):
    """The double as a script (no SSH): letsencrypt:enable fails with lego's own exit code and output."""
    import json
    import os
    import subprocess

    from tests.support.sshd import DOUBLE_SOURCE

    env = {**os.environ, "DOKKU_DOUBLE_ROOT": str(tmp_path), "DOKKU_QUIET_OUTPUT": "1"}

    def dokku(*argv):
        return subprocess.run(["/usr/bin/python3", "-I", "-S", str(DOUBLE_SOURCE), *argv], env=env,
                              capture_output=True, text=True)

    dokku("apps:create", "shop")
    dokku("domains:add", "shop", "shop.example.com")
    dokku("plugin:install", "https://github.com/dokku/dokku-letsencrypt.git", "--name", "letsencrypt")
    assert dokku("letsencrypt:enable", "shop").returncode == 1  # no email yet
    dokku("letsencrypt:set", "--global", "email", "ops@example.com")
    (tmp_path / "control" / "lego").write_text(json.dumps({
        "exit_code": 3, "times": 1, "output": "urn:ietf:params:acme:error:unauthorized :: Invalid response from "
                                  "http://shop.example.com/.well-known/acme-challenge/x: 404"}))
    done = dokku("letsencrypt:enable", "shop")
    assert done.returncode == 3 and "Certificate retrieval failed!" in done.stdout
    error = failure(tls.enable("shop"), done.returncode, done.stdout, done.stderr)
    assert "could not reach shop over HTTP" in error.message and "code 3" in error.message
    (tmp_path / "control" / "lego").write_text(json.dumps({"exit_code": 4, "times": 1, "output": "429 Too Many Requests"}))
    limited = dokku("letsencrypt:enable", "shop")
    assert limited.returncode == 4 and "Let's Encrypt rate-limited this request." in limited.stderr
    assert "rate limit" in failure(tls.enable("shop"), 4, limited.stdout, limited.stderr).message
    assert dokku("letsencrypt:enable", "shop").returncode == 0  # the fault is gone: issued
    assert dokku("letsencrypt:active", "shop").stdout.strip() == "true"
    skipped = dokku("letsencrypt:enable", "shop")
    assert "Certificate is still valid for shop, skipping certificate request" in skipped.stdout
