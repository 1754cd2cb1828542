"""Rows beside what the server was last seen to have, end to end: the executors' readings over real SSH to the
Dokku double, a failed change with the server unreachable, and its discard (PostgreSQL only)."""
from __future__ import annotations

import re
import socket

import pytest
from sqlalchemy import select

from intercity import crypto
from intercity.extensions import db
from intercity.models import App, AppliedValue, DeployKey, Domain, EnvVar, Server
from tests.support.panel import ED25519, ED25519_OTHER, finish, install_panel_key, operations
from tests.support.ssh_fixtures import make_dokku_server

pytestmark = [pytest.mark.ssh, pytest.mark.postgresql_only]


def text(response) -> str:
    return response.get_data(as_text=True)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env_row(body: str, key: str) -> str:
    return re.search(rf"<code>{key}</code>.*?</tr>", body, re.S).group(0)


def domain_item(body: str, host: str) -> str:
    return re.search(rf'<li><span class="mono">{re.escape(host)}</span>.*?</li>', body, re.S).group(0)


def key_row(body: str, name: str) -> str:
    return re.search(rf"<strong>{name}</strong>.*?</tr>", body, re.S).group(0)


def test_a_failed_change_with_the_server_unreachable_says_so_until_discarded(
        app, client, logged_in, admin, sshd, dokku):
    server = make_dokku_server(sshd, authorize=False)
    install_panel_key(sshd, server)
    server_id = server.id
    logged_in(admin)
    client.post("/servers/%d/apps" % server_id, data={"name": "api"})
    finish(app)
    base = f"/servers/{server_id}/apps/api"
    keys_url = f"/servers/{server_id}/deploy-keys"
    client.post(base + "/env", data={"key": "GOOD", "value": "kept-value-1"})
    client.post(base + "/env", data={"key": "NUMBER", "value": "007"})
    client.post(base + "/domains", data={"domain": "api.example.com"})
    preview = text(client.post(keys_url, data={"name": "alice", "public_key": ED25519}))
    fingerprint = re.search(r'<code id="preview-fingerprint">(.*?)</code>', preview).group(1)
    client.post(keys_url, data={"name": "alice", "public_key": ED25519, "confirmed": fingerprint})
    finish(app)
    assert all(op.status == "succeeded" for op in operations()), [op.reason for op in operations()]
    # Readings from what the executors read anyway: the read-back, the domains:add, the key listing.
    web = db.session.scalar(select(App).where(App.name == "api"))
    assert web.on_server is True and web.applied_seen_at is not None
    good = db.session.scalar(select(EnvVar).where(EnvVar.key == "GOOD"))
    assert good.applied_fingerprint == crypto.fingerprint("kept-value-1")
    kept = db.session.scalars(select(AppliedValue).order_by(AppliedValue.id)).all()
    assert {(v.kind, v.name) for v in kept} == {("env", "GOOD"), ("env", "NUMBER"), ("deploy_key", "alice")}
    assert all(b"kept-value-1" not in v.value_encrypted for v in kept)
    page = text(client.get(base))
    assert ">applied<" in env_row(page, "GOOD") and ">applied<" in domain_item(page, "api.example.com")
    # Dokku writes 007 as 7: the reading disagrees, nothing is pending.
    assert ">differs on the server<" in env_row(page, "NUMBER")
    assert ">applied<" in key_row(text(client.get(keys_url)), "alice")

    # The server goes away; every change fails with a reason.
    db.session.get(Server, server_id).port = closed_port()
    db.session.commit()
    client.post(base + "/env", data={"key": "OFFLINE_VAR", "value": "offline-1"})
    client.post(base + "/env", data={"key": "GOOD", "value": "newer-value-2"})
    client.post(base + "/domains", data={"domain": "offline.example.com"})
    preview = text(client.post(keys_url, data={"name": "bob", "public_key": ED25519_OTHER}))
    other = re.search(r'<code id="preview-fingerprint">(.*?)</code>', preview).group(1)
    client.post(keys_url, data={"name": "bob", "public_key": ED25519_OTHER, "confirmed": other})
    finish(app)
    # The changes failed (and the processes reading the first page opening asked for).
    failed = [op for op in operations() if op.status == "failed" and not op.kind_info.read]
    assert len(failed) == 4 and all("refused the connection" in op.reason for op in failed)
    reads = len([op for op in operations() if op.kind_info.read])
    for _ in range(2):  # and after a reload, still (and an unreachable server is not read again on each one)
        page = text(client.get(base))
        for row in (env_row(page, "OFFLINE_VAR"), env_row(page, "GOOD"), domain_item(page, "offline.example.com")):
            assert ">failed<" in row and "not on the server: " in row and ">Retry<" in row and ">Discard<" in row
        row = key_row(text(client.get(keys_url)), "bob")
        assert ">failed<" in row and "not on the server: " in row and ">Retry<" in row and ">Discard<" in row
    assert len([op for op in operations() if op.kind_info.read]) == reads
    servers = text(client.get("/servers"))
    assert ">unreachable<" in servers and "since" in servers and ">ready<" not in servers

    # Discard each: back to what the server was last seen to have, nothing runs (the server is still away).
    count = len(operations())
    by_kind = {op.kind + (op.data.get("set") or op.data.get("add") or [""])[0]: op for op in failed}
    for op, name in ((by_kind["env.applyOFFLINE_VAR"], "OFFLINE_VAR"), (by_kind["env.applyGOOD"], "GOOD"),
                     (by_kind["domains.applyoffline.example.com"], "offline.example.com"),
                     (by_kind["deploy_keys.applybob"], "bob")):
        response = client.post(f"/operations/{op.id}/discard", data={"name": name, "confirmed": "1"})
        assert response.status_code == 303, name
    finish(app)
    assert len(operations()) == count
    db.session.expire_all()
    assert db.session.scalar(select(EnvVar).where(EnvVar.key == "OFFLINE_VAR")) is None
    assert db.session.scalar(select(EnvVar).where(EnvVar.key == "GOOD")).value == "kept-value-1"
    assert db.session.scalar(select(Domain).where(Domain.hostname == "offline.example.com")) is None
    assert db.session.scalar(select(DeployKey).where(DeployKey.name == "bob")) is None
    page = text(client.get(base))
    assert ">applied<" in env_row(page, "GOOD") and ">Discard<" not in page
    assert dokku.env("api")["GOOD"] == b"kept-value-1"
