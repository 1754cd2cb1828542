"""Database services end to end: the server page's forms -> operations -> real SSH -> the double's dokku-postgres.

Create, link (the variable the link set recorded, encrypted, marked, equal to the server's), destroy
refused while linked (by the panel, and by Dokku when the panel's list is stale), unlink, destroy;
and the connection URL, password included, found in no column, transcript, page or log.
"""
from __future__ import annotations

import base64
import logging

import pytest
from sqlalchemy import select

from intercity.audit import timeline
from intercity.extensions import db
from intercity.models import AuditEntry, EnvVar, Server
from intercity.services import env as env_service
from intercity.validation import ValidationError
from tests.support.builders import make_app
from tests.support.panel import entries, finish, operations
from tests.support.ssh_fixtures import make_dokku_server

pytestmark = [pytest.mark.postgresql_only, pytest.mark.ssh]


def text(response) -> str:
    return response.get_data(as_text=True)


def last(kind: str):
    return operations(kind)[-1]


def forms(secret: str) -> list[str]:
    raw = secret.encode()
    return [secret, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")]


def assert_nowhere_in_the_database(*secrets: str) -> None:
    """Every column of every table, encrypted ones included (ciphertext cannot hold the plain text)."""
    needles = [form for secret in secrets for form in forms(secret)]
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(table.select()):
            for column, value in row._mapping.items():
                if value is None:
                    continue
                stored = value if isinstance(value, bytes) else str(value).encode()
                for needle in needles:
                    assert needle.encode() not in stored, f"a secret is in {table.name}.{column}"


def test_create_link_unlink_destroy_a_postgres_service(app, client, logged_in, admin, sshd, dokku, caplog):
    caplog.set_level(logging.DEBUG)
    logged_in(admin)
    server = make_dokku_server(sshd)
    server_id = server.id
    shop = make_app(server, name="shop", status="active")
    dokku.create_app("shop")
    dokku.mark_deployed("shop")
    page_url = f"/servers/{server_id}"
    base = f"{page_url}/services"
    pages = []

    # Not installed: the listing says so, and how to install it.
    assert client.post(f"{base}/refresh").status_code == 303
    finish(app)
    assert last("services.refresh").status == "succeeded"
    pages.append(text(client.get(page_url)))
    assert "plugin (dokku-postgres) is not installed" in pages[-1]
    missing = client.post(base, data={"plugin": "postgres", "name": "shop-db", "version": ""})
    assert missing.status_code == 422 and "plugin is not installed" in text(missing)
    dokku.install_plugin("postgres")
    client.post(f"{base}/refresh")
    finish(app)

    # Create: bad input is refused next to its field, nothing queued.
    bad = client.post(base, data={"plugin": "postgres", "name": "shop.db", "version": ""})
    assert bad.status_code == 422 and "Use letters, digits, underscores and hyphens" in text(bad)
    assert operations("service.create") == []
    assert client.post(base, data={"plugin": "postgres", "name": "shop-db", "version": "17.2"}).status_code == 303
    finish(app)
    assert last("service.create").status == "succeeded"
    assert dokku.services("postgres") == ["shop-db"]
    server = db.session.get(Server, server_id)
    assert server.services["postgres"] == {"installed": True, "services": [
        {"name": "shop-db", "version": "postgres:17.2", "status": "running", "links": []}]}
    dsn = dokku.service_url("postgres", "shop-db")
    password = dsn.split(":")[2].split("@")[0]
    assert len(password) == 32
    # One flag per info call: the panel never asked for the full info or the DSN.
    infos = [call["argv"] for call in dokku.calls() if call["command"] == "postgres:info"]
    assert infos and all(len(argv) == 3 and argv[2] in ("--status", "--version", "--links") for argv in infos)
    pages.append(text(client.get(page_url)))
    assert "shop-db" in pages[-1] and "postgres:17.2" in pages[-1]
    again = client.post(base, data={"plugin": "postgres", "name": "shop-db", "version": ""})
    assert again.status_code == 422 and "already has a postgres service named shop-db" in text(again)

    # Link without a restart: the argv keeps the app running, the variable is recorded and marked.
    dokku.clear_calls()
    assert client.post(f"{base}/postgres/shop-db/link", data={"app": "shop"}).status_code == 303
    finish(app)
    op = last("service.link")
    assert op.status == "succeeded", op.reason
    links = [call["argv"] for call in dokku.calls() if call["command"] == "postgres:link"]
    assert links == [["postgres:link", "shop-db", "shop", "--no-restart"]]
    assert not any(call["command"] == "ps:restart" for call in dokku.calls())
    var = db.session.scalar(select(EnvVar).where(EnvVar.app_id == shop.id, EnvVar.key == "DATABASE_URL"))
    assert var.linked_service == "postgres shop-db"
    # What the panel holds is what the server holds: a drift check finds no difference.
    assert var.value == dokku.env("shop")["DATABASE_URL"].decode() == dsn
    created = entries("env_var.created")[-1]
    assert "DATABASE_URL set by linking postgres service shop-db" in str(timeline.sentence(created))
    link_entry = entries("service.link_requested")[-1]
    assert "linked postgres service shop-db to shop without restarting it" in str(timeline.sentence(link_entry))
    app_page = text(client.get(f"{page_url}/apps/shop"))
    pages.append(app_page)
    assert "set by link" in app_page and "Unlink shop-db" in app_page
    assert f"/apps/shop/env/DATABASE_URL/edit" not in app_page
    with pytest.raises(ValidationError, match="unlink the service"):
        env_service.remove_var(db.session.get(type(shop), shop.id), admin, key="DATABASE_URL")
    db.session.rollback()
    # The URL shows only through the audited reveal.
    revealed = client.post(f"{page_url}/apps/shop/env/DATABASE_URL/reveal")
    assert dsn in text(revealed)
    assert entries("env_var.revealed")

    # The service's own connection URL: read on demand, audited, never stored.
    shown = client.post(f"{base}/postgres/shop-db/dsn")
    assert shown.status_code == 200 and dsn in text(shown)
    dsn_entry = entries("service.dsn_revealed")[-1]
    assert dsn_entry.target_label == "postgres shop-db" and dsn_entry.actor_email == admin.email
    assert "revealed the connection URL of postgres service shop-db" in str(timeline.sentence(dsn_entry))
    assert client.post(f"{base}/postgres/ghost/dsn").status_code == 303
    assert len(entries("service.dsn_revealed")) == 1  # a failed read reveals nothing and records nothing

    # DATABASE_URL taken: a second service's link gets the plugin's colour alias, restarting the app.
    client.post(base, data={"plugin": "postgres", "name": "audit-db", "version": ""})
    finish(app)
    dokku.clear_calls()
    client.post(f"{base}/postgres/audit-db/link", data={"app": "shop", "restart": "y"})
    finish(app)
    assert last("service.link").status == "succeeded"
    assert [c["argv"] for c in dokku.calls() if c["command"] == "postgres:link"] == [
        ["postgres:link", "audit-db", "shop"]]
    alias = db.session.scalar(select(EnvVar).where(EnvVar.key == "DOKKU_POSTGRES_AQUA_URL"))
    assert alias.linked_service == "postgres audit-db"
    assert alias.value == dokku.env("shop")["DOKKU_POSTGRES_AQUA_URL"].decode()
    second_dsn = alias.value
    client.post(f"{base}/postgres/audit-db/unlink", data={"app": "shop"})
    finish(app)
    client.post(f"{base}/postgres/audit-db/destroy", data={"confirm": "audit-db"})
    finish(app)
    assert dokku.services("postgres") == ["shop-db"]

    # Destroy while linked: the panel refuses, and explains Dokku's refusal.
    refused = client.post(f"{base}/postgres/shop-db/destroy", data={"confirm": "shop-db"})
    assert refused.status_code == 303 and len(operations("service.destroy")) == 1  # audit-db's only
    server = db.session.get(Server, server_id)
    stale = dict(server.services)
    stale["postgres"] = {"installed": True, "services": [{**svc, "links": []} for svc in stale["postgres"]["services"]]}
    server.services = stale  # the panel's list is older than the link
    db.session.commit()
    client.post(f"{base}/postgres/shop-db/destroy", data={"confirm": "shop-db"})
    finish(app)
    failed = last("service.destroy")
    assert failed.status == "failed" and "Cannot delete linked service" in failed.reason
    assert "Unlink it from every app first" in failed.reason
    assert dokku.services("postgres") == ["shop-db"]
    assert db.session.get(Server, server_id).services["postgres"]["services"][0]["links"] == ["shop"]

    # Unlink (restarting), then destroy with the typed name.
    assert client.post(f"{base}/postgres/shop-db/unlink", data={"app": "shop", "restart": "y"}).status_code == 303
    finish(app)
    assert last("service.unlink").status == "succeeded"
    assert "DATABASE_URL" not in dokku.env("shop")
    assert db.session.scalar(select(EnvVar).where(EnvVar.key == "DATABASE_URL")) is None
    assert "removed by unlinking postgres service shop-db" in str(timeline.sentence(entries("env_var.deleted")[-1]))
    wrong = client.post(f"{base}/postgres/shop-db/destroy", data={"confirm": "shop"})
    assert wrong.status_code == 303 and len(operations("service.destroy")) == 2
    client.post(f"{base}/postgres/shop-db/destroy", data={"confirm": "shop-db"})
    finish(app)
    assert last("service.destroy").status == "succeeded"
    assert dokku.services("postgres") == []
    assert db.session.get(Server, server_id).services["postgres"]["services"] == []

    # The URL and its password: in no column, transcript, page, timeline or log.
    pages += [text(client.get(page_url)), text(client.get("/audit")), text(client.get(f"{page_url}/audit"))]
    for op in operations():
        pages.append(text(client.get(f"/operations/{op.id}")))
    assert_nowhere_in_the_database(dsn, password, second_dsn)
    for page in pages:
        for needle in forms(dsn) + forms(password) + forms(second_dsn):
            assert needle not in page
    for needle in forms(dsn) + forms(password):
        assert needle not in caplog.text
    assert {row.action for row in db.session.scalars(select(AuditEntry))} >= {
        "service.create_requested", "service.link_requested", "service.unlink_requested",
        "service.destroy_requested", "env_var.created", "env_var.deleted", "env_var.revealed",
        "service.dsn_revealed"}
