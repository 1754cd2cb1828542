"""Service plugins, backups and exports end to end: the panel's forms -> operations -> real SSH -> the double.

Installing a plugin; S3 credentials sent as [redacted] arguments; "Back up now" ending applied, and
failed when the export is empty; a schedule sent as one argument, read back and shown in words; the
passphrase; the export streamed to the client (and cut, or refused, when it fails); a Redis link
setting REDIS_URL; and every credential, passphrase and DSN found in no column but the encrypted
ones, no transcript, page or log.
"""
from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import select

from intercity.audit import timeline
from intercity.extensions import db
from intercity.models import CommandRun, EnvVar, ServiceBackup
from intercity.services.service_export import ExportCut
from tests.support.builders import make_app
from tests.support.panel import entries, finish, operations
from tests.support.ssh_fixtures import make_dokku_server
from tests.test_databases_e2e import assert_nowhere_in_the_database, forms, text

pytestmark = [pytest.mark.postgresql_only, pytest.mark.ssh]

ACCESS_KEY = "AKIAPANELTEST0000KEY"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYsecretKEY9"
PASSPHRASE = "correct-horse-battery-staple-42"


def last(kind: str):
    return operations(kind)[-1]


def transcript(op) -> list[CommandRun]:
    return list(db.session.scalars(select(CommandRun).where(CommandRun.operation_id == op.id)
                                   .order_by(CommandRun.position)))


def test_backups_schedule_export_and_redis(app, client, logged_in, admin, sshd, dokku, caplog):
    caplog.set_level(logging.DEBUG)
    logged_in(admin)
    server = make_dokku_server(sshd)
    server_id = server.id
    make_app(server, name="shop", status="active")
    dokku.create_app("shop")
    dokku.mark_deployed("shop")
    dokku.install_plugin("redis")
    page_url = f"/servers/{server_id}"
    base = f"{page_url}/services"
    svc = f"{base}/postgres/shop-db"
    pages = []

    # Installing the plugin: the official URL and --name, run as root; the listing then shows it installed.
    client.post(f"{base}/refresh")
    finish(app)
    pages.append(text(client.get(page_url)))
    assert "Install the PostgreSQL plugin" in pages[-1]
    assert client.post(f"{base}/plugins/postgres/install").status_code == 303
    finish(app)
    assert last("service.plugin_install").status == "succeeded", last("service.plugin_install").reason
    assert [c["argv"] for c in dokku.calls() if c["command"] == "plugin:install"] == [
        ["plugin:install", "https://github.com/dokku/dokku-postgres.git", "--name", "postgres"]]
    assert dokku.calls()[-1]["euid"] == 0 or any(c["euid"] == 0 for c in dokku.calls())
    client.post(base, data={"plugin": "postgres", "name": "shop-db", "version": ""})
    finish(app)
    assert last("service.create").status == "succeeded"

    # Back up now needs credentials; bad credentials are refused next to their field.
    refused = client.post(f"{svc}/backup/run", data={"bucket": "shop-backups", "check_size": "y"})
    assert refused.status_code == 422 and "Set the S3 credentials" in text(refused)
    bad = client.post(f"{svc}/backup/credentials", data={"access_key": "has space x", "secret_key": SECRET_KEY})
    assert bad.status_code == 422 and "no spaces or quotes" in text(bad)
    assert client.post(f"{svc}/backup/credentials", data={
        "access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "region": "eu-west-1", "signature": "",
        "endpoint": "https://s3.example.test"}).status_code == 303
    finish(app)
    op = last("service.backup_auth")
    assert op.status == "succeeded", op.reason
    assert dokku.service_file("postgres", "shop-db", "backup/AWS_SECRET_ACCESS_KEY") == SECRET_KEY + "\n"
    assert dokku.service_file("postgres", "shop-db", "backup/ENDPOINT_URL") == "https://s3.example.test\n"
    argv = json.loads(transcript(op)[0].argv)
    assert argv == ["dokku", "postgres:backup-auth", "shop-db", "[redacted]", "[redacted]", "eu-west-1", "s3v4",
                    "https://s3.example.test"]

    # Back up now with the size check: the success line and a non-empty second dump.
    assert client.post(f"{svc}/backup/run", data={"bucket": "shop-backups", "check_size": "y"}).status_code == 303
    finish(app)
    op = last("service.backup")
    assert op.status == "succeeded", op.reason
    size = len(dokku.export_bytes("postgres", "shop-db"))
    row = db.session.scalar(select(ServiceBackup))
    assert (row.last_backup_status, row.last_backup_bytes) == ("succeeded", size)
    assert [json.loads(run.argv)[1:] for run in transcript(op)] == [
        ["postgres:backup", "shop-db", "shop-backups"], ["postgres:export", "shop-db", "|", "wc", "-c"]]
    pages.append(text(client.get(svc)))
    assert f"export {size} bytes" in pages[-1] and "scheduled runs are not observed" in pages[-1]
    assert "a second full dump" in pages[-1]

    # The plugins' known failure: success reported, the dump empty. The panel marks it failed.
    dokku.set_dump_size("postgres", "shop-db", 0)
    client.post(f"{svc}/backup/run", data={"bucket": "shop-backups", "check_size": "y"})
    finish(app)
    op = last("service.backup")
    assert op.status == "failed" and "most likely empty" in op.reason
    row = db.session.scalar(select(ServiceBackup))
    assert (row.last_backup_status, row.last_backup_bytes) == ("failed", 0)
    pages.append(text(client.get(svc)))
    assert "most likely empty" in pages[-1]
    dokku.set_dump_size("postgres", "shop-db", 96 * 1024)

    # A schedule: one argument however SSH splits words, read back, shown in words.
    smart = client.post(f"{svc}/backup/schedule", data={"schedule": "\u201c0 3 * * *\u201d", "bucket": "shop-backups"})
    assert smart.status_code == 422 and "Leave out quotes" in text(smart)
    assert client.post(f"{svc}/backup/schedule", data={"schedule": "0 3 * * *", "bucket": "shop-backups"}
                       ).status_code == 303
    finish(app)
    assert last("service.backup_schedule").status == "succeeded", last("service.backup_schedule").reason
    assert [c["argv"] for c in dokku.calls() if c["command"] == "postgres:backup-schedule"] == [
        ["postgres:backup-schedule", "shop-db", "0 3 * * *", "shop-backups"]]
    assert dokku.service_file("postgres", "shop-db", "CRON").startswith("0 3 * * * dokku ")
    row = db.session.scalar(select(ServiceBackup))
    assert (row.schedule_seen, row.schedule_seen_bucket) == ("0 3 * * *", "shop-backups")
    pages.append(text(client.get(svc)))
    assert "At 03:00 AM" in pages[-1]
    assert "scheduled backups of postgres service shop-db at 0 3 * * *" in str(
        timeline.sentence(entries("service.backup_schedule_requested")[-1]))
    # A cron line other than the one sent (here: none written) fails the operation, and the page says so.
    dokku.fail("postgres:backup-schedule", exit_code=0, times=1)
    client.post(f"{svc}/backup/schedule", data={"schedule": "30 4 * * 0", "bucket": "shop-backups"})
    finish(app)
    op = last("service.backup_schedule")
    assert op.status == "failed" and "not the schedule the panel sent" in op.reason
    assert db.session.scalar(select(ServiceBackup)).schedule_seen == "0 3 * * *"
    client.post(f"{svc}/backup/unschedule")
    finish(app)
    assert last("service.backup_schedule").status == "succeeded"
    assert dokku.service_file("postgres", "shop-db", "CRON") is None

    # The passphrase: like the credentials.
    client.post(f"{svc}/backup/encryption", data={"passphrase": PASSPHRASE})
    finish(app)
    op = last("service.backup_encryption")
    assert op.status == "succeeded", op.reason
    assert dokku.service_file("postgres", "shop-db", "backup/ENCRYPTION_KEY") == PASSPHRASE + "\n"
    assert json.loads(transcript(op)[0].argv)[-1] == "[redacted]"

    # Export: streamed to the client, audited with its size.
    response = client.post(f"{svc}/export", buffered=False)
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    body = b"".join(response.response)
    response.close()
    assert body == dokku.export_bytes("postgres", "shop-db") and body.startswith(b"PGDMP")
    exported = entries("service.exported")[-1]
    assert exported.target_label == "postgres shop-db" and exported.category == "security"
    assert f"({len(body)} bytes)" in str(timeline.sentence(exported))
    # A failure after the first byte cuts the download, and the entry says failed.
    dokku.fail("postgres:export", exit_code=1, stdout="PGDMP-partial", stderr=" !     pg_dump: error\n")
    response = client.post(f"{svc}/export", buffered=False)
    assert response.status_code == 200
    with pytest.raises(ExportCut):
        b"".join(response.response)
    response.close()
    failed = entries("service.export_failed")[-1]
    assert "pg_dump: error" in str(timeline.sentence(failed))
    # A failure before the first byte (the server's deadline: exports can hang) answers with the page.
    dokku.clear_faults()
    app.config["SERVICE_EXPORT_DEADLINE"] = 1
    dokku.hang("postgres:export", 30)
    hung = client.post(f"{svc}/export")
    assert hung.status_code == 303
    assert "ran longer than 1 s" in str(timeline.sentence(entries("service.export_failed")[-1]))
    dokku.clear_faults()
    app.config["SERVICE_EXPORT_DEADLINE"] = 3600

    # Redis shares it all: create and link set REDIS_URL, recorded as set by the link.
    client.post(base, data={"plugin": "redis", "name": "cache", "version": ""})
    finish(app)
    assert last("service.create").status == "succeeded"
    client.post(f"{base}/redis/cache/link", data={"app": "shop"})
    finish(app)
    assert last("service.link").status == "succeeded", last("service.link").reason
    var = db.session.scalar(select(EnvVar).where(EnvVar.key == "REDIS_URL"))
    redis_dsn = dokku.service_url("redis", "cache")
    assert var.linked_service == "redis cache" and var.value == redis_dsn
    assert redis_dsn.startswith("redis://:") and dokku.env("shop")["REDIS_URL"].decode() == redis_dsn

    # Destroying the service (the plugin removes its backup files and cron line) drops its credentials too.
    client.post(f"{svc}/destroy", data={"confirm": "shop-db"})
    finish(app)
    assert last("service.destroy").status == "succeeded"
    assert db.session.scalar(select(ServiceBackup)) is None

    # Credentials, passphrase and DSNs: in no column (but encrypted ones), transcript, page or log.
    pages += [text(client.get(page_url)), text(client.get(svc)), text(client.get("/audit")),
              text(client.get(f"{page_url}/audit"))]
    for op in operations():
        pages.append(text(client.get(f"/operations/{op.id}")))
    secrets = (ACCESS_KEY, SECRET_KEY, PASSPHRASE, redis_dsn, redis_dsn.split(":")[2].split("@")[0])
    assert_nowhere_in_the_database(*secrets)
    for page in pages:
        for needle in (form for secret in secrets for form in forms(secret)):
            assert needle not in page
    for needle in (form for secret in secrets for form in forms(secret)):
        assert needle not in caplog.text
