"""Revert from an entry: the inverse change through the normal services, marked and linked both ways; retention.

The value history is filled here where the executor would fill it (a value the server was seen
to hold); operations go to a Redis queue nobody consumes (the e2e test applies them over SSH).
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from intercity.audit import timeline
from intercity.extensions import db
from intercity.models import AuditEntry, DeployKey, Domain, EnvVar, Operation
from intercity.services import deploy_keys, domains, env, retention, revert, value_history
from intercity.services.permissions import NotAllowed
from intercity.validation import ValidationError, public_key
from tests.support import builders
from tests.support.builders import make_server
from tests.support.panel import ED25519, acting, entries
from tests.support.panel import no_worker  # noqa: F401  (the fixture, used below)
from tests.support.sessions import log_in

pytestmark = pytest.mark.usefixtures("no_worker")


def last_entry(prefix: str) -> AuditEntry:
    return [entry for entry in entries() if entry.action.startswith(prefix)][-1]


def change(app_row, user, key, value) -> AuditEntry:
    with acting(user):
        env.set_var(app_row, user, key=key, value=value)
        value_history.remember_env(app_row, key, value)
        db.session.commit()
    return last_entry("env_var.")


def do_revert(entry, user, **kwargs) -> Operation:
    with acting(user):
        op = revert.revert(entry, user, **kwargs)
        db.session.commit()
    return op


def value_of(app_row, key):
    var = db.session.scalar(select(EnvVar).where(EnvVar.app_id == app_row.id, EnvVar.key == key))
    return None if var is None else var.value


def test_env_changes_revert_to_the_kept_value_marked_and_linked_both_ways(app, member):
    app_row = builders.make_app(make_server(name="prod-1"), name="api")
    created = change(app_row, member, "TOKEN", "first-secret-value")
    updated = change(app_row, member, "TOKEN", "second-secret-value")
    assert updated.action == "env_var.updated"

    op = do_revert(updated, member)
    assert value_of(app_row, "TOKEN") == "first-secret-value"
    assert (op.kind, op.data["set"]) == ("env.apply", ["TOKEN"])
    mark = last_entry("env_var.")
    assert mark.caused_by == f"revert:{updated.seq}" and mark.operation_id == op.id
    assert revert.reverted_by(updated.seq) == [mark.seq]
    assert revert.plan(updated).reverted_by == [mark.seq]
    assert f"(revert of #{updated.seq})" in str(timeline.sentence(mark))
    # Done once, the change has nothing left to undo.
    assert not revert.plan(updated).possible and "already has the value" in revert.plan(updated).reason

    # Reverting the creation removes the variable (asking first: it was changed since).
    assert revert.plan(created).superseded_by == [updated.seq, mark.seq]
    with pytest.raises(ValidationError, match="changed again"):
        do_revert(created, member)
    db.session.rollback()
    do_revert(created, member, confirmed=True)
    assert value_of(app_row, "TOKEN") is None
    removal = last_entry("env_var.")
    assert (removal.action, removal.caused_by) == ("env_var.deleted", f"revert:{created.seq}")

    # And reverting that removal sets the value it had then again, from the history.
    do_revert(removal, member)
    assert value_of(app_row, "TOKEN") == "first-secret-value"
    # No value ever reached an entry.
    for entry in entries():
        assert "secret-value" not in entry.diff


def test_a_value_the_retention_dropped_can_no_longer_be_restored(app, admin, member, client, make_app):
    with acting(admin):
        assert retention.set_keep(admin, "2") is True
        db.session.commit()
    assert last_entry("settings.").target_label == "value_history_keep"
    app_row = builders.make_app(make_server(name="prod-1"), name="api")
    first = change(app_row, member, "MODE", "one")
    second = change(app_row, member, "MODE", "two")
    change(app_row, member, "MODE", "three")  # keeps two and three: one is gone
    gone = revert.plan(second)
    assert gone.value_kept is False and not gone.possible
    assert "no longer kept (the panel keeps the last 2 values per variable)" in gone.reason
    with pytest.raises(ValidationError, match="no longer kept"):
        do_revert(second, member)
    db.session.rollback()
    admin_client = make_app().test_client()
    log_in(admin_client, admin)
    assert admin_client.post("/settings/retention", data={"keep": "x"}).status_code == 422
    assert admin_client.post("/settings/retention", data={"keep": "3"}).status_code == 303
    db.session.expire_all()
    assert retention.keep() == 3
    log_in(client, member)
    page = client.get(f"/audit/{second.seq}").get_data(as_text=True)
    assert "no longer kept" in page and 'action="/audit/' not in page.split('id="revert"')[1]
    # The creation can still be undone: it needs no earlier value.
    assert revert.plan(first).possible
    with pytest.raises(ValidationError, match="whole number"):
        retention.set_keep(admin, "0")


def test_domains_and_deploy_keys_revert_both_ways(app, admin, member, viewer):
    server = make_server(name="prod-1")
    app_row = builders.make_app(server, name="api")
    with acting(member):
        domains.add_domain(app_row, member, hostname="shop.example.com")
        db.session.commit()
    added = last_entry("domain.")
    with pytest.raises(NotAllowed):
        revert.revert(added, viewer)
    db.session.rollback()
    do_revert(added, member)
    assert db.session.scalar(select(Domain).where(Domain.app_id == app_row.id)) is None
    removed = last_entry("domain.")
    assert (removed.action, removed.caused_by) == ("domain.deleted", f"revert:{added.seq}")
    op = do_revert(removed, member)
    assert op.data == {"add": ["shop.example.com"], "remove": []}
    assert [d.hostname for d in db.session.scalars(select(Domain))] == ["shop.example.com"]

    with acting(admin):
        key, _ = deploy_keys.add_key(server, admin, name="laptop", public_key=ED25519)
        # the executor keeps the public key of a key the server took
        value_history.remember("deploy_key", server_id=server.id, app_id=None, name="laptop", value=key.public_key,
                               fingerprint=key.fingerprint)
        db.session.commit()
    key_added = last_entry("deploy_key.")
    with pytest.raises(NotAllowed):
        revert.revert(key_added, member)  # deploy keys are an admin's
    db.session.rollback()
    do_revert(key_added, admin)
    assert db.session.scalar(select(DeployKey)) is None
    key_removed = last_entry("deploy_key.")
    assert key_removed.caused_by == f"revert:{key_added.seq}"
    op = do_revert(key_removed, admin)
    back = db.session.scalar(select(DeployKey))
    assert (back.name, back.fingerprint) == ("laptop", public_key(ED25519).fingerprint)
    assert op.data == {"add": ["laptop"], "remove": []}
    assert last_entry("deploy_key.").caused_by == f"revert:{key_removed.seq}"


def test_revert_through_the_pages_asks_first_when_superseded_and_viewers_cannot(app, member, viewer, make_app):
    app_row = make_app_row()
    one = change(app_row, member, "TOKEN", "value-number-one")
    change(app_row, member, "TOKEN", "value-number-two")
    change(app_row, member, "TOKEN", "value-number-three")
    first_change = [e for e in entries() if e.action == "env_var.updated"][0]

    # Another app for the viewer: Flask-Login keeps the user of a request in the test's app context.
    watcher = make_app().test_client()
    log_in(watcher, viewer)
    page = watcher.get(f"/audit/{first_change.seq}").get_data(as_text=True)
    assert "needs the member role" in page and "Revert…" not in page
    assert watcher.post(f"/audit/{first_change.seq}/revert").status_code == 403
    assert watcher.post(f"/audit/{first_change.seq}/as-of/env/TOKEN/reveal").status_code == 403

    client = app.test_client()
    log_in(client, member)
    assert "Revert…" in client.get(f"/servers/{app_row.server_id}/apps/api/audit").get_data(as_text=True)
    asked = client.post(f"/audit/{first_change.seq}/revert")
    assert asked.status_code == 200 and "Revert anyway" in asked.get_data(as_text=True)
    assert value_of(app_row, "TOKEN") == "value-number-three"  # nothing changed yet
    done = client.post(f"/audit/{first_change.seq}/revert", data={"confirmed": "1"})
    assert done.status_code == 303
    db.session.expire_all()
    assert value_of(app_row, "TOKEN") == "value-number-one"
    mark = last_entry("env_var.")
    assert mark.actor_email == member.email and mark.request_ip is not None
    page = client.get(f"/audit/{first_change.seq}").get_data(as_text=True)
    assert f'Reverted by <a href="/audit/{mark.seq}">#{mark.seq}</a>' in page
    assert f'reverted by <a href="/audit/{mark.seq}">#{mark.seq}</a>' in \
        client.get(f"/servers/{app_row.server_id}/apps/api/audit").get_data(as_text=True)
    assert f'revert of <a href="/audit/{first_change.seq}">#{first_change.seq}</a>' in \
        client.get(f"/audit/{mark.seq}").get_data(as_text=True)
    assert one.seq < first_change.seq
    for value in ("value-number-one", "value-number-two", "value-number-three"):
        assert value not in page

    # The app as of the second value: TOKEN differs from today's, its value is kept, shown only when revealed.
    second = first_change  # TOKEN held value-number-two right after it
    as_of_page = client.get(f"/audit/{second.seq}/as-of").get_data(as_text=True)
    assert "<code>TOKEN</code>" in as_of_page and "changed since" in as_of_page and ">Reveal</button>" in as_of_page
    assert "value-number" not in as_of_page
    revealed = client.post(f"/audit/{second.seq}/as-of/env/TOKEN/reveal", headers={"HX-Request": "true"})
    assert "value-number-two" in revealed.get_data(as_text=True)
    reveal = last_entry("env_var.revealed")
    assert reveal.changes == {"as_of": [None, second.seq]} and reveal.actor_email == member.email
    assert f"as of #{second.seq}" in str(timeline.sentence(reveal))
    # Before the variable existed (the app's creation), it is one added since.
    assert "added since" in client.get(f"/audit/{one.seq - 1}/as-of").get_data(as_text=True)


def make_app_row():
    return builders.make_app(make_server(name="prod-1"), name="api")
