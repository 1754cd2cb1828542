"""Revert end to end: pages -> services -> operations -> real SSH -> the Dokku double back in the earlier state.

One test covers an env change, a domain added and a deploy key removed (PostgreSQL only, to save
time). The value history is filled where the executor would, once each change reached the server.
"""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from intercity.extensions import db
from intercity.models import App, AppliedValue, AuditEntry, DeployKey, Operation
from intercity.services import value_history
from tests.support.builders import make_app
from tests.support.panel import ED25519, finish
from tests.test_panel_e2e import assert_no_secret_in_transcripts, ready_server, text

pytestmark = pytest.mark.postgresql_only


def newest(action: str) -> AuditEntry:
    return db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)
                              .order_by(AuditEntry.seq.desc()).limit(1)).one()


def test_reverts_bring_the_server_back_with_two_linked_entries_each(app, client, logged_in, admin, sshd, dokku,
                                                                     caplog):
    server = ready_server(sshd)
    make_app(server, name="api")
    dokku.create_app("api")
    logged_in(admin)
    base = f"/servers/{server.id}/apps/api"

    # Every change is queued at once: each scope applies its operations in the order they were asked for.
    client.post(f"{base}/env", data={"key": "TOKEN", "value": "first-e2e-value", "restart": "y"})
    client.post(f"{base}/env/TOKEN/edit", data={"value": "second-e2e-value", "restart": "y"})
    client.post(f"{base}/domains", data={"domain": "shop.example.com"})
    keys_url = f"/servers/{server.id}/deploy-keys"
    preview = text(client.post(keys_url, data={"name": "alice", "public_key": ED25519}))
    fingerprint = re.search(r'<code id="preview-fingerprint">(.*?)</code>', preview).group(1)
    client.post(keys_url, data={"name": "alice", "public_key": ED25519, "confirmed": fingerprint})
    app_row = db.session.scalar(select(App).where(App.name == "api"))
    key = db.session.scalar(select(DeployKey))
    # What the executor keeps once the server took each value (in that order).
    value_history.remember_env(app_row, "TOKEN", "first-e2e-value")
    value_history.remember_env(app_row, "TOKEN", "second-e2e-value")
    value_history.remember("deploy_key", server_id=server.id, app_id=None, name="alice", value=key.public_key,
                           fingerprint=key.fingerprint)
    db.session.commit()
    client.post(f"{keys_url}/{key.id}/remove", data={"confirmed": "1"})
    finish(app)
    assert dokku.env("api") == {"TOKEN": b"second-e2e-value"}
    assert dokku.domains("api") == ["shop.example.com"] and dokku.keys() == []

    reverted = [newest("env_var.updated"), newest("domain.created"), newest("deploy_key.deleted")]
    for entry in reverted:
        assert client.post(f"/audit/{entry.seq}/revert").status_code == 303
    finish(app)

    assert dokku.env("api") == {"TOKEN": b"first-e2e-value"}
    assert dokku.domains("api") == []
    assert [(k["name"], k["fingerprint"]) for k in dokku.keys()] == [("alice", fingerprint)]
    for entry in reverted:
        mark = db.session.scalars(select(AuditEntry).where(AuditEntry.caused_by == f"revert:{entry.seq}")).one()
        assert mark.actor_email == admin.email and mark.target_label == entry.target_label
        operation = db.session.get(Operation, mark.operation_id)
        assert operation.status == "succeeded", operation.reason
        assert f"Reverted by <a href=\"/audit/{mark.seq}\">#{mark.seq}</a>" in text(client.get(f"/audit/{entry.seq}"))
        assert f"(revert of #{entry.seq})" in text(client.get(f"/audit/{mark.seq}"))
    assert_no_secret_in_transcripts("first-e2e-value", "second-e2e-value")
    # Secret probe: no value on the pages a revert involves, in any column of the record, or in the logs.
    pages = [text(client.get(url)) for url in (f"/audit/{reverted[0].seq}", f"/audit/{reverted[0].seq}/as-of",
                                               "/audit", f"{base}/audit", base)]
    record = [str(cell) for model in (AuditEntry, Operation, AppliedValue)
              for row in db.session.execute(select(model.__table__)).mappings() for cell in row.values()]
    for value in ("first-e2e-value", "second-e2e-value"):
        for where in (*pages, *record, caplog.text):
            assert value not in where and value.encode().hex() not in where
