"""Each row beside the server's last reading (applied, pending, failed, differs, not read yet) and discarding a
failed change: the wanted state returns to what the server was last seen to have. Both databases; no SSH (the
readings are written as the executors write them; tests/test_row_truth_e2e.py runs the executors)."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select, text as sql

from intercity import crypto, validation
from intercity.extensions import db
from intercity.jobs import readings
from intercity.models import AppliedValue, AuditEntry, DeployKey, Domain, EnvVar, Operation
from intercity.services import discard, row_state
from tests.support.builders import make_app, make_server
from tests.support.panel import ED25519, finish_operation, operations
from tests.support.panel import no_worker  # noqa: F401  (the fixture, used below)

pytestmark = pytest.mark.usefixtures("no_worker")


def text(response) -> str:
    return response.get_data(as_text=True)


def env_row(body: str, key: str) -> str:
    return re.search(rf"<code>{key}</code>.*?</tr>", body, re.S).group(0)


def fresh(model, **where):
    db.session.expire_all()
    return db.session.scalar(select(model).filter_by(**where))


def test_each_state_of_an_env_row(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(name="prod-1"), name="api")
    url = f"/servers/{app.server_id}/apps/api"
    for key, value in (("SEEN", "a"), ("DRIFT", "b"), ("OLD", "c"), ("WAIT", "d")):
        client.post(url + "/env", data={"key": key, "value": value})
    seen, drift, old, wait = operations("env.apply")
    for op in (seen, drift, old):
        finish_operation(op, "succeeded")
    db.session.commit()
    # What the read-back showed: SEEN as wanted, DRIFT otherwise (someone ran config:set by hand).
    before = db.session.scalar(select(func.count(AuditEntry.id)))
    changed = fresh(EnvVar, key="SEEN").updated_at
    readings.env_seen(app.id, {"SEEN": "a", "DRIFT": "changed by hand"})
    # A reading is no change of the panel's: no entry, and "Changed" keeps its time.
    assert db.session.scalar(select(func.count(AuditEntry.id))) == before
    assert fresh(EnvVar, key="SEEN").updated_at == changed
    db.session.execute(sql("UPDATE env_vars SET applied_seen_at = NULL WHERE key IN ('OLD', 'WAIT')"))
    db.session.commit()
    body = text(client.get(url))
    assert ">applied<" in env_row(body, "SEEN") and "read " in env_row(body, "SEEN")
    assert ">differs on the server<" in env_row(body, "DRIFT") and ">applied<" not in env_row(body, "DRIFT")
    # A row from before readings existed is not shown as applied.
    assert ">not read yet<" in env_row(body, "OLD") and ">applied<" not in env_row(body, "OLD")
    assert ">pending<" in env_row(body, "WAIT") and f"#{wait.id}" in env_row(body, "WAIT")
    # Computed in the service, one state per row.
    views = row_state.env_views(fresh(EnvVar, key="SEEN").app)
    assert {key: v.state for key, v in views.items()} == {
        "SEEN": "applied", "DRIFT": "differs", "OLD": "unread", "WAIT": "pending"}


def test_a_failed_new_variable_is_discarded_without_a_command(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(name="prod-1"), name="api")
    url = f"/servers/{app.server_id}/apps/api"
    client.post(url + "/env", data={"key": "OFFLINE_VAR", "value": "x1"})
    [op] = operations("env.apply")
    finish_operation(op, "failed", reason="prod-1 is unreachable (connection refused).")
    db.session.commit()
    row = env_row(text(client.get(url)), "OFFLINE_VAR")
    assert ">failed<" in row and ">Retry<" in row and ">Discard<" in row
    # Without JavaScript: the first post asks, saying what will happen.
    ask = text(client.post(f"/operations/{op.id}/discard", data={"name": "OFFLINE_VAR", "next": url}))
    assert "never reached the server" in ask and "nothing runs on the server" in ask and ">Discard<" in ask
    assert fresh(EnvVar, key="OFFLINE_VAR") is not None
    done = client.post(f"/operations/{op.id}/discard", data={"name": "OFFLINE_VAR", "next": url, "confirmed": "1"})
    assert done.status_code == 303 and done.headers["Location"].endswith(url)
    assert fresh(EnvVar, key="OFFLINE_VAR") is None
    assert len(operations("env.apply")) == 1  # nothing to run: the server never had it
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "operation.discarded")).all()
    assert entry.actor_email == member.email and entry.target_id == str(op.id)
    assert "OFFLINE_VAR" in text(client.get("/audit")) and "discarded the failed change to" in text(client.get("/audit"))
    body = text(client.get(url))
    assert "<code>OFFLINE_VAR</code></td>" not in body and "Removing <code>OFFLINE_VAR" not in body


def test_a_failed_change_returns_to_the_last_applied_value(app, member):
    server = make_server(name="prod-1")
    web = make_app(server, name="api")
    var = EnvVar(app=web, key="TOKEN")
    var.value = "applied-value-1"
    db.session.add(var)
    db.session.commit()
    readings.env_seen(web.id, {"TOKEN": "applied-value-1"})
    from intercity.services import env as env_service

    result = env_service.set_var(fresh(type(web), id=web.id), member, key="TOKEN", value="newer-value-2")
    db.session.commit()
    finish_operation(result.operation, "failed", reason="prod-1 is unreachable.")
    db.session.commit()
    op = db.session.get(Operation, result.operation.id)
    assert row_state.env_views(op_app(op))["TOKEN"].state == "failed"
    found = discard.plan(op, member, "TOKEN")
    assert found.possible and not found.runs_command and "last seen to have" in found.sentence
    discard.discard(op, member, "TOKEN")
    db.session.commit()
    var = fresh(EnvVar, key="TOKEN")
    assert var.value == "applied-value-1" and row_state.env_views(var.app)["TOKEN"].state == "applied"
    assert len(operations("env.apply")) == 1
    actions = [e.action for e in db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq))][-2:]
    assert actions == ["env_var.updated", "operation.discarded"]
    with pytest.raises(validation.ValidationError, match="no longer the failed one"):
        discard.discard(db.session.get(Operation, op.id), member, "TOKEN")


def op_app(op: Operation):
    from intercity.models import App

    return db.session.get(App, op.app_id)


def test_a_failed_removal_brings_the_variable_back_or_says_it_cannot(client, logged_in, member):
    logged_in(member)
    web = make_app(make_server(name="prod-1"), name="api")
    url = f"/servers/{web.server_id}/apps/api"
    for key in ("GONE", "LOST"):
        var = EnvVar(app=web, key=key)
        var.value = f"{key.lower()}-value"
        db.session.add(var)
    db.session.commit()
    readings.env_seen(web.id, {"GONE": "gone-value", "LOST": "lost-value"})
    client.post(url + "/env/GONE/remove", data={"confirmed": "1"})
    client.post(url + "/env/LOST/remove", data={"confirmed": "1"})
    gone, lost = operations("env.apply")
    for op in (gone, lost):
        finish_operation(op, "failed", reason="Dokku said no.")
    # LOST's value was pruned from the history (or never kept): it cannot come back.
    db.session.execute(sql("DELETE FROM applied_values WHERE name = 'LOST'"))
    db.session.commit()
    body = text(client.get(url))
    assert re.search(r"Removing <code>GONE</code>: .*still on the server: Dokku said no\..*?Discard", body, re.S)
    ask = text(client.post(f"/operations/{lost.id}/discard", data={"name": "LOST", "next": url}))
    assert "can no longer be restored" in ask and 'name="confirmed"' not in ask
    client.post(f"/operations/{gone.id}/discard", data={"name": "GONE", "next": url, "confirmed": "1"})
    var = fresh(EnvVar, key="GONE")
    assert var.value == "gone-value" and var.applied_fingerprint == crypto.fingerprint("gone-value")
    assert ">applied<" in env_row(text(client.get(url)), "GONE")
    assert fresh(EnvVar, key="LOST") is None and len(operations("env.apply")) == 2


def test_domains_failed_add_goes_and_failed_removal_comes_back(client, logged_in, member):
    logged_in(member)
    web = make_app(make_server(name="prod-1"), name="api")
    url = f"/servers/{web.server_id}/apps/api"
    db.session.add(Domain(app=web, hostname="old.example.com"))
    db.session.commit()
    readings.domains_seen(web.id, ["old.example.com"])
    client.post(url + "/domains", data={"domain": "new.example.com"})
    old = fresh(Domain, hostname="old.example.com")
    client.post(url + f"/domains/{old.id}/remove", data={"confirmed": "1"})
    add, removal = operations("domains.apply")
    for op in (add, removal):
        finish_operation(op, "failed", reason="prod-1 is unreachable.")
    db.session.commit()
    body = text(client.get(url))
    item = re.search(r'<li><span class="mono">new.example.com</span>.*?</li>', body, re.S).group(0)
    assert ">failed<" in item and ">Retry<" in item and ">Discard<" in item
    client.post(f"/operations/{add.id}/discard", data={"name": "new.example.com", "confirmed": "1"})
    assert fresh(Domain, hostname="new.example.com") is None
    client.post(f"/operations/{removal.id}/discard", data={"name": "old.example.com", "confirmed": "1"})
    assert fresh(Domain, hostname="old.example.com") is not None
    # Its reading went with its row: the panel adds it again (Dokku skips one it has) and so reads it.
    assert operations("domains.apply")[-1].data == {"add": ["old.example.com"], "remove": []}


def test_a_removed_deploy_key_comes_back_from_the_history(client, auth, logged_in, admin, member):
    logged_in(admin)
    server = make_server(name="prod-1")
    key = validation.public_key(ED25519)
    db.session.add(DeployKey(server=server, name="alice", public_key=key.line, key_type=key.key_type,
                             fingerprint=key.fingerprint, adopted=False, added_by_email=admin.email))
    db.session.commit()
    listed = [{"name": "alice", "fingerprint": key.fingerprint, "public_key": None}]
    server.remote_keys = listed
    db.session.commit()
    readings.keys_seen(server.id, listed)
    kept = db.session.scalar(select(AppliedValue).where(AppliedValue.kind == "deploy_key"))
    assert (kept.name, kept.fingerprint, kept.value) == ("alice", key.fingerprint, key.line)
    page = f"/servers/{server.id}/deploy-keys"
    assert ">applied<" in text(client.get(page))
    alice = fresh(DeployKey, name="alice")
    client.post(f"/servers/{server.id}/deploy-keys/{alice.id}/remove", data={"confirmed": "1"})
    [op] = operations("deploy_keys.apply")
    finish_operation(op, "failed", reason="prod-1 is unreachable.")
    db.session.commit()
    body = text(client.get(page))
    assert re.search(r"Removing deploy key <strong>alice</strong>: .*still on the server.*Discard", body, re.S)
    client.post(f"/operations/{op.id}/discard", data={"name": "alice", "confirmed": "1"})
    back = fresh(DeployKey, name="alice")
    assert back.fingerprint == key.fingerprint and back.public_key == key.line and back.on_server is True
    assert len(operations("deploy_keys.apply")) == 1  # the last listing has it: nothing runs
    # Members may not discard what they may not change.
    auth.logout()
    logged_in(member)
    refused = client.post(f"/operations/{op.id}/discard", data={"name": "alice"})
    assert refused.status_code == 403, refused.get_data(as_text=True)[-1500:]


def test_an_app_whose_create_failed_is_discarded_from_the_panel(client, logged_in, member):
    from intercity.models import App

    logged_in(member)
    server = make_server(name="prod-1")
    client.post(f"/servers/{server.id}/apps", data={"name": "api"})
    [op] = operations("app.create")
    finish_operation(op, "failed", reason="prod-1 is unreachable.")
    db.session.commit()
    listing = text(client.get(f"/servers/{server.id}"))
    row = re.search(r"<strong>api</strong>.*?</tr>", listing, re.S).group(0)
    assert ">failed<" in row and ">Discard<" in row
    assert ">failed<" in text(client.get(f"/servers/{server.id}/apps/api")).split('id="app-head"')[1][:3000]
    client.post(f"/operations/{op.id}/discard", data={"name": "api", "confirmed": "1"})
    assert fresh(App, name="api") is None and len(operations()) == 1
    assert [e.action for e in db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq))][-2:] == \
        ["app.deleted", "operation.discarded"]


def test_a_discard_after_a_lost_command_makes_sure_on_the_server(app, member):
    from intercity.services import env as env_service

    web = make_app(make_server(name="prod-1"), name="api")
    result = env_service.set_var(web, member, key="MAYBE", value="may-have-landed")
    db.session.commit()
    op = result.operation
    finish_operation(op, "failed", reason="dokku did not finish within 8 s.")
    op.commands_in_doubt = True
    db.session.commit()
    found = discard.plan(op, member, "MAYBE")
    assert found.runs_command and "may have landed" in found.sentence
    discard.discard(op, member, "MAYBE")
    db.session.commit()
    assert fresh(EnvVar, key="MAYBE") is None
    assert operations("env.apply")[-1].data == {"set": [], "unset": ["MAYBE"], "restart": True}
