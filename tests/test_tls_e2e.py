"""HTTPS end to end: the server page and app page forms -> operations -> real SSH -> the double's dokku-letsencrypt and certs.

Install the plugin, set the email, the renewal job missing (one security entry per outage) and added back,
enable with a DNS pre-check against a loopback DNS server, the report's issuer and expiry on the page,
renewal and expiry announced ahead, failures in plain words, revoke (which exits 0 when it fails); an
uploaded certificate checked before anything is sent, its private key found nowhere but its encrypted column.
"""
from __future__ import annotations

import base64
import logging
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from intercity.audit import timeline
from intercity.dokku import tls
from intercity.extensions import db
from intercity.models import CommandRun, Domain
from intercity.models.tls import UploadedCertificate
from intercity.services import tls as tls_service
from tests.support.builders import make_app
from tests.support.dns_server import loopback_dns  # noqa: F401  (fixture)
from tests.support.panel import entries, finish, operations
from tests.support.ssh_fixtures import make_dokku_server

pytestmark = [pytest.mark.postgresql_only, pytest.mark.ssh]


def text(response) -> str:
    return response.get_data(as_text=True)


def last(kind: str):
    return operations(kind)[-1]


def calls(dokku, command: str) -> list[list[str]]:
    return [call["argv"] for call in dokku.calls() if call["command"] == command]


def make_certificate(names: list[str], days: int = 60, key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example CA"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "Example Issuing CA")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert_pem, key_pem


def key_needles(key_pem: str) -> list[str]:
    """The key raw and base64 (whole, and its base64 body, which is what a PEM line leak looks like)."""
    body = "".join(line for line in key_pem.splitlines() if not line.startswith("-----"))
    raw = key_pem.strip().encode()
    return [key_pem.strip(), body, body[:40], base64.b64encode(raw).decode()[:60],
            base64.b64encode(key_pem.encode()).decode()[:60]]


def test_https_with_lets_encrypt_end_to_end(app, client, logged_in, admin, sshd, dokku, loopback_dns):
    logged_in(admin)
    server = make_dokku_server(sshd)
    server_id = server.id
    shop = make_app(server, name="shop", status="active")
    db.session.add(Domain(app_id=shop.id, hostname="shop.example.com", on_server=True))
    db.session.commit()
    shop_id = shop.id
    dokku.create_app("shop")
    dokku.mark_deployed("shop")
    dokku.set_domains("shop", ["shop.example.com"])
    loopback_dns.records["shop.example.com"] = ["127.0.0.1"]
    page_url = f"/servers/{server_id}"
    app_url = f"{page_url}/apps/shop"

    # Not installed: the server page says so and offers the install.
    assert client.post(f"{page_url}/tls/refresh").status_code == 303
    finish(app)
    assert last("tls.refresh").status == "succeeded"
    page = text(client.get(page_url))
    assert "letsencrypt plugin (dokku-letsencrypt) is not installed" in page and "Install the letsencrypt plugin" in page
    refused = client.post(f"{app_url}/tls/enable")
    assert refused.status_code == 303 and operations("tls.enable") == []

    # Install (root), then the reading: version, no email, no renewal job -> one security entry.
    client.post(f"{page_url}/tls/install")
    finish(app)
    assert last("tls.install").status == "succeeded", last("tls.install").reason
    assert calls(dokku, "plugin:install") == [
        ["plugin:install", "https://github.com/dokku/dokku-letsencrypt.git", "--name", "letsencrypt"]]
    page = text(client.get(page_url))
    assert "installed, version 0.25.1" in page
    assert "none set: Let's Encrypt refuses" in page
    assert "missing</span>" in page
    assert len(entries("tls.cron_missing")) == 1
    assert "not enabled" in entries("tls.cron_missing")[0].diff
    assert "renewal job missing on" in str(timeline.sentence(entries("tls.cron_missing")[0]))

    # Enabling without an email is refused with what to do; a bad address is refused next to the field.
    client.post(f"{app_url}/tls/enable")
    assert operations("tls.enable") == []
    assert "needs an email address and none is set" in text(client.get(app_url))
    bad = client.post(f"{page_url}/tls/email", data={"email": "not an address"})
    assert bad.status_code == 422 and "Enter an email address such as" in text(bad)
    client.post(f"{page_url}/tls/email", data={"email": "ops@example.com"})
    finish(app)
    assert last("tls.set_email").status == "succeeded"
    assert dokku.letsencrypt_properties()["--global"]["email"] == "ops@example.com"
    assert "ops@example.com" in text(client.get(page_url))

    # The renewal job: added back from the panel, then removed on the server -> a new outage, a new entry.
    client.post(f"{page_url}/tls/cron")
    finish(app)
    assert last("tls.cron_add").status == "succeeded" and dokku.renewal_job()
    assert "present</span>" in text(client.get(page_url))
    assert len(entries("tls.cron_missing")) == 1
    dokku.remove_renewal_job()
    client.post(f"{page_url}/tls/refresh")
    finish(app)
    client.post(f"{page_url}/tls/refresh")
    finish(app)
    assert len(entries("tls.cron_missing")) == 2  # one per outage, not one per reading
    assert "missing</span>" in text(client.get(page_url))
    client.post(f"{page_url}/tls/cron")
    finish(app)
    assert dokku.renewal_job() and "present</span>" in text(client.get(page_url))

    # Enable: the DNS pre-check asked the loopback resolver; the report's issuer and expiry show.
    loopback_dns.questions.clear()
    client.post(f"{app_url}/tls/enable")
    finish(app)
    op = last("tls.enable")
    assert op.status == "succeeded", op.reason
    assert "shop.example.com" in loopback_dns.questions
    assert "enabled HTTPS with Let's Encrypt for shop" in str(timeline.sentence(entries("tls.enabled")[-1]))
    assert calls(dokku, "letsencrypt:enable")[-1] == ["letsencrypt:enable", "shop"]
    page = text(client.get(app_url))
    assert "(STAGING) Double Ersatz R11" in page and "resolves to the server (127.0.0.1)" in page
    expiry = tls_service.app_state(db.session.get(type(shop), shop_id))["expires"]
    assert 88 <= (expiry - datetime.now(timezone.utc)).days <= 90
    assert f"{expiry:%Y-%m-%d}" in page and "automatic" in page
    assert tls_service.tls_enabled(db.session.get(type(shop), shop_id))
    assert 'href="https://shop.example.com"' in page  # the app's links follow what the server serves

    # Renewal: --force, a routine Apps entry; a certificate valid for 10 days is announced ahead.
    dokku.certificate_days(10)
    client.post(f"{app_url}/tls/renew")
    finish(app)
    assert last("tls.renew").status == "succeeded"
    assert calls(dokku, "letsencrypt:enable")[-1] == ["letsencrypt:enable", "shop", "--force"]
    renewed = entries("tls.renewed")[-1]
    assert renewed.category == "app"
    server_page = text(client.get(page_url))
    assert "Certificates expiring within 14 days" in server_page and "days left" in server_page
    assert [item["app"] for item in tls_service.expiring()] == ["shop"]

    # A domain added to an app with HTTPS: the certificate must be renewed to cover it, and the page offers to.
    added = client.post(f"{app_url}/domains", data={"domain": "www.shop.example.com"}, follow_redirects=True)
    assert "does not cover www.shop.example.com" in text(added)
    finish(app)
    assert "Renew to cover them" in text(client.get(app_url))
    # Dokku's plugin says so too, and does not re-issue by itself.
    assert any("letsencrypt:enable" in warning for warning in last("domains.apply").warnings)

    # Revoke exits 0 when it fails: the panel reads the output and says so.
    dokku.fail_revoke(7)
    client.post(f"{app_url}/tls/revoke", data={"confirm": "shop"})
    finish(app)
    revoke = last("tls.revoke")
    assert revoke.status == "failed" and "did not revoke" in revoke.reason and "code 7" in revoke.reason
    client.post(f"{app_url}/tls/revoke", data={"confirm": "shop"})
    finish(app)
    assert last("tls.revoke").status == "succeeded"
    assert len(entries("tls.revoked")) == 2
    assert not dokku.tls_files("shop")
    assert "serves no certificate" in text(client.get(app_url))
    # HTTPS turned on again by hand on the server: the next drift check records it once, as the server's doing.
    dokku.run_by_hand("letsencrypt:enable", "shop")
    for _ in range(2):
        client.post(f"{page_url}/drift/check")
        finish(app)
        assert last("server.drift_check").status == "succeeded", last("server.drift_check").reason
    outside = entries("tls.enabled_outside")
    assert len(outside) == 1 and outside[0].actor_kind == "server" and outside[0].category == "security"
    assert "turned HTTPS on for shop" in str(timeline.sentence(outside[0]))
    assert tls_service.tls_enabled(db.session.get(type(shop), shop_id))


def test_uploaded_certificate_checked_first_and_its_key_found_nowhere(smtp, app, client, logged_in, admin, sshd, dokku,
                                                                       caplog):
    caplog.set_level(logging.DEBUG)
    logged_in(admin)
    server = make_dokku_server(sshd)
    shop = make_app(server, name="shop", status="active")
    db.session.add(Domain(app_id=shop.id, hostname="shop.example.com", on_server=True))
    db.session.add(Domain(app_id=shop.id, hostname="api.example.org", on_server=True))
    db.session.commit()
    dokku.create_app("shop")
    dokku.set_domains("shop", ["shop.example.com", "api.example.org"])
    app_url = f"/servers/{server.id}/apps/shop"
    cert_pem, key_pem = make_certificate(["shop.example.com", "*.example.com"])
    _, other_key = make_certificate(["shop.example.com"])
    pages = []

    # A key that does not match: refused next to the field, before any command, the key not echoed.
    dokku.clear_calls()
    refused = client.post(f"{app_url}/tls/certificate", data={"certificate": cert_pem, "private_key": other_key})
    assert refused.status_code == 422 and "does not belong to the certificate" in text(refused)
    pages.append(text(refused))
    expired_pem, expired_key = make_certificate(["shop.example.com"], days=-1)
    stale = client.post(f"{app_url}/tls/certificate", data={"certificate": expired_pem, "private_key": expired_key})
    assert stale.status_code == 422 and "This certificate expired on" in text(stale)
    assert dokku.calls() == [] and operations("certificate.add") == []
    assert db.session.scalars(select(UploadedCertificate)).all() == []

    # A good one: sent as a tar on stdin, a warning names the domain it does not cover.
    done = client.post(f"{app_url}/tls/certificate", data={"certificate": cert_pem, "private_key": key_pem},
                       follow_redirects=True)
    assert "It does not cover api.example.org" in text(done)
    finish(app)
    op = last("certificate.add")
    assert op.status == "succeeded", op.reason
    (call,) = [c for c in dokku.calls() if c["command"] == "certs:add"]
    assert call["argv"] == ["certs:add", "shop"] and call["stdin_pipe"]
    assert dokku.tls_files("shop")["server.key"].decode().strip() == key_pem.strip()
    entry = entries("certificate.added")[-1]
    facts = tls.inspect(cert_pem, key_pem, [], datetime.now(timezone.utc)).facts()
    for value in (facts["sha256"], "shop.example.com", "*.example.com", "Example Issuing CA"):
        assert value in entry.diff
    assert facts["sha256"] in str(timeline.sentence(entry))
    page = text(client.get(app_url))
    pages.append(page)
    assert "uploaded certificate" in page and "Example Issuing CA" in page and "by hand" in page

    # Replacing it uses certs:update; removing it deletes the stored key.
    client.post(f"{app_url}/tls/certificate", data={"certificate": cert_pem, "private_key": key_pem})
    finish(app)
    assert last("certificate.add").status == "succeeded"
    assert [c["argv"] for c in dokku.calls() if c["command"] == "certs:update"] == [["certs:update", "shop"]]
    assert len(db.session.scalars(select(UploadedCertificate)).all()) == 1  # the replaced key is gone
    client.post(f"{app_url}/tls/certificate/remove")
    finish(app)
    assert last("certificate.remove").status == "succeeded" and entries("certificate.removed")
    assert not dokku.tls_files("shop")

    # The private key: in no column but the encrypted one (deleted now), no transcript, page, mail or log.
    pages += [text(client.get(app_url)), text(client.get("/audit")), text(client.get(f"/servers/{server.id}/audit"))]
    for op in operations():
        pages.append(text(client.get(f"/operations/{op.id}")))
    needles = key_needles(key_pem) + key_needles(other_key) + key_needles(expired_key)
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(table.select()):
            for column, value in row._mapping.items():
                if value is None or (table.name, column) == ("tls_certificates", "private_key_encrypted"):
                    continue
                stored = value if isinstance(value, bytes) else str(value).encode()
                for needle in needles:
                    assert needle.encode() not in stored, f"the private key is in {table.name}.{column}"
    for run in db.session.scalars(select(CommandRun)):
        for needle in needles:
            assert needle not in (run.stdout or "") + (run.stderr or "") + " ".join(run.argv or [])
    for page in pages:
        for needle in needles:
            assert needle not in page
    for needle in needles:
        assert needle not in caplog.text
    from tests.support.notify import mail_texts

    smtp.wait_for(1)  # certificate.added and .removed alert the admin at once
    mails = [part for message in smtp.all_received for part in mail_texts(message)]
    for part in mails:
        for needle in needles:
            assert needle not in part



def test_an_older_plugin_is_read_by_trying_its_commands(app, client, logged_in, admin, sshd, dokku, loopback_dns):
    """Plugin 0.23.0 calls itself 0.20.4, has no JSON report and prints no cron-job state; Dokku 0.36.0 has no
    `cron:list --global`: the page says what it cannot tell, and the app's state still comes through."""
    logged_in(admin)
    dokku.set_version("0.36.0")
    dokku.install_letsencrypt("0.23.0")
    server = make_dokku_server(sshd)
    shop = make_app(server, name="shop", status="active")
    db.session.add(Domain(app_id=shop.id, hostname="shop.example.com", on_server=True))
    db.session.commit()
    shop_id = shop.id
    dokku.create_app("shop")
    dokku.set_domains("shop", ["shop.example.com"])
    loopback_dns.servfail = True  # the resolver fails: the pre-check cannot tell, and does not block
    page_url = f"/servers/{server.id}"
    (dokku.root / "letsencrypt").mkdir(exist_ok=True)
    (dokku.root / "letsencrypt" / "properties.json").write_text('{"--global": {"email": "ops@example.com"}}')
    client.post(f"{page_url}/tls/refresh")
    finish(app)
    assert last("tls.refresh").status == "succeeded", last("tls.refresh").reason
    page = text(client.get(page_url))
    assert "version 0.20.4" in page and "releases 0.21 to 0.25.0 all call themselves 0.20.4" in page
    assert "cannot tell: this plugin does not print the job's state" in page
    assert entries("tls.cron_missing") == []  # not known to be missing: no alert
    client.post(f"{page_url}/apps/shop/tls/enable")
    finish(app)
    op = last("tls.enable")
    assert op.status == "succeeded", op.reason
    assert any("the panel cannot tell (the resolver did not answer)" in w for w in op.warnings)
    state = tls_service.app_state(db.session.get(type(shop), shop_id))
    assert state["enabled"] and state["source"] == "letsencrypt" and state["expires"] is not None
    # Each reading tried the JSON report, found it unknown, and asked `active` instead.
    assert calls(dokku, "letsencrypt:active") == [["letsencrypt:active", "shop"]] * 2
