""""As of" property: an app rebuilt from the log at any entry is what the models held right after it.

The changes come from the replay property's machinery (tests/test_audit_replay.py): random
transactions of app, env var, domain and deploy key changes, some rolled back. After every
transaction the test notes the chain head and each app's rows as the models hold them; then
`as_of` at each noted head must give exactly those, and at the head it must agree with a
replay of the whole log.
"""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import select

from intercity.audit import as_of
from intercity.extensions import db
from intercity.models import App, AuditEntry, Server
from tests.support.builders import make_server
from tests.test_audit_replay import APPS, ENV_KEYS, HOSTS, KEY_MATERIAL, KEY_NAMES, VALUES, replay, run, transactions


def head() -> int:
    return db.session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1)) or 0


def noted(server) -> list[tuple[int, int, as_of.State]]:
    """(head seq, app id, the app's state from the models) for every app that exists now."""
    seq = head()
    return [(seq, app_row.id, as_of.today(app_row.id, server.id))
            for app_row in db.session.scalars(select(App).where(App.server_id == server.id))]


def check(server, points) -> None:
    for seq, app_id, expected in points:
        assert as_of.as_of(app_id, server.id, seq) == expected, f"app {app_id} as of #{seq}"
    # At the head, the rebuilt rows are those of a replay of the whole log.
    rows = replay()
    for app_row in db.session.scalars(select(App)):
        state = as_of.as_of(app_row.id, server.id, head())
        env = {row["key"]: row["value_fingerprint"] for (kind, _), row in rows.items()
               if kind == "env_var" and row["app_id"] == app_row.id}
        domains = {row["hostname"] for (kind, _), row in rows.items()
                   if kind == "domain" and row["app_id"] == app_row.id}
        keys = {row["name"]: row["fingerprint"] for (kind, _), row in rows.items() if kind == "deploy_key"}
        assert (state.env, state.domains, state.deploy_keys) == (env, domains, keys)


@settings(max_examples=20, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=transactions)
def test_as_of_each_point_is_what_the_models_held_then(app, program):
    db.session.rollback()
    server = db.session.scalar(select(Server)) or make_server(name="web-1")
    points = []
    for changes, ending in program:
        run(server, changes, ending)
        db.session.expire_all()
        points += noted(server)
    check(server, points)
    db.session.rollback()


@pytest.mark.postgresql_only  # one long sequence is enough: the generated test covers both databases
def test_as_of_across_a_seeded_thousand_changes(app):
    rng = random.Random(16)
    server = make_server(name="web-1")

    def op():
        kind = rng.choice(["create_app", "delete_app", "set_env", "set_env", "set_env", "unset_env", "rename_env",
                           "add_domain", "remove_domain", "rename_domain", "add_key", "replace_key", "remove_key"])
        if kind in ("add_key", "replace_key"):
            return kind, rng.choice(KEY_NAMES), rng.choice(KEY_MATERIAL)
        if kind == "remove_key":
            return kind, rng.choice(KEY_NAMES)
        name = rng.choice(APPS)
        if kind in ("create_app", "delete_app"):
            return kind, name
        if kind == "set_env":
            return kind, name, rng.choice(ENV_KEYS), rng.choice(VALUES)
        if kind == "unset_env":
            return kind, name, rng.choice(ENV_KEYS)
        if kind == "rename_env":
            return kind, name, rng.choice(ENV_KEYS), rng.choice(ENV_KEYS)
        if kind == "rename_domain":
            return kind, name, rng.choice(HOSTS), rng.choice(HOSTS)
        return kind, name, rng.choice(HOSTS)

    points, done, transaction = [], 0, 0
    while done < 1000:
        changes = [op() for _ in range(rng.randint(1, 8))]
        done += len(changes)
        run(server, changes, rng.choice(["commit", "commit", "commit", "rollback", "savepoint_rollback"]))
        transaction += 1
        if transaction % 8 == 0:  # a point every eighth transaction keeps it short; the generated test checks all
            db.session.expire_all()
            points += noted(server)
    assert len(points) > 25
    check(server, points)
