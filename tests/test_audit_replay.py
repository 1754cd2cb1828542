"""Replay property: the audit log misses nothing and invents nothing.

Hypothesis applies random transactions of creates, updates and deletes of apps, env vars,
domains and deploy keys (several changes per transaction; some transactions rolled back, some
with a rolled-back savepoint inside). Replaying every entry's diff from seq 1 must then give
exactly the rows in the database: keys and non-secret fields, each env value's current
fingerprint, each deploy key's fingerprint. The per-test database lives for all examples of
one test, so the replay always starts from the first entry and the state carries over.
"""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from intercity import crypto, validation
from intercity.audit import chain
from intercity.extensions import db
from intercity.models import App, AuditEntry, DeployKey, Domain, EnvVar, Server
from tests.support.audit import public_key
from tests.support.builders import make_server

APPS = ["api", "web", "jobs"]
ENV_KEYS = ["DATABASE_URL", "TOKEN", "MODE"]
VALUES = ["one", "two", "two ", "multi\nline", ""]
HOSTS = ["a.example.com", "b.example.com", "c.example.com"]
KEY_NAMES = ["laptop", "ci", "desktop"]
KEY_MATERIAL = [10, 11, 12]

# What each entry's diff must reproduce, per target type: the audited, non-secret columns.
FIELDS = {
    "app": (App, ("server_id", "name", "imported")),
    "env_var": (EnvVar, ("app_id", "key", "value_fingerprint")),
    "domain": (Domain, ("app_id", "hostname")),
    "deploy_key": (DeployKey, ("server_id", "name", "key_type", "fingerprint", "adopted", "added_by_email")),
}

app_names = st.sampled_from(APPS)
ops = st.one_of(
    st.tuples(st.just("create_app"), app_names),
    st.tuples(st.just("delete_app"), app_names),
    st.tuples(st.just("toggle_imported"), app_names),
    st.tuples(st.just("set_env"), app_names, st.sampled_from(ENV_KEYS), st.sampled_from(VALUES)),
    st.tuples(st.just("unset_env"), app_names, st.sampled_from(ENV_KEYS)),
    st.tuples(st.just("rename_env"), app_names, st.sampled_from(ENV_KEYS), st.sampled_from(ENV_KEYS)),
    st.tuples(st.just("add_domain"), app_names, st.sampled_from(HOSTS)),
    st.tuples(st.just("remove_domain"), app_names, st.sampled_from(HOSTS)),
    st.tuples(st.just("rename_domain"), app_names, st.sampled_from(HOSTS), st.sampled_from(HOSTS)),
    st.tuples(st.just("add_key"), st.sampled_from(KEY_NAMES), st.sampled_from(KEY_MATERIAL)),
    st.tuples(st.just("replace_key"), st.sampled_from(KEY_NAMES), st.sampled_from(KEY_MATERIAL)),
    st.tuples(st.just("toggle_adopted"), st.sampled_from(KEY_NAMES)),
    st.tuples(st.just("remove_key"), st.sampled_from(KEY_NAMES)),
)
transactions = st.lists(
    st.tuples(st.lists(ops, min_size=1, max_size=6),
              st.sampled_from(["commit", "commit", "commit", "rollback", "savepoint_rollback"])),
    min_size=1, max_size=6,
)


def _app(server, name):
    return db.session.scalar(select(App).where(App.server_id == server.id, App.name == name))


def _env(app, key):
    return db.session.scalar(select(EnvVar).where(EnvVar.app_id == app.id, EnvVar.key == key))


def _domain(app, host):
    return db.session.scalar(select(Domain).where(Domain.app_id == app.id, Domain.hostname == host))


def _key(server, name):
    return db.session.scalar(select(DeployKey).where(DeployKey.server_id == server.id, DeployKey.name == name))


def apply(server, op) -> None:
    """One change as the panel would make it; ops that do not apply to the current state do nothing."""
    kind, *args = op
    if kind in ("add_key", "replace_key", "toggle_adopted", "remove_key"):
        key = _key(server, args[0])
        if kind == "add_key" and key is None:
            line, key_type, fingerprint = public_key(args[1])
            db.session.add(DeployKey(server=server, name=args[0], public_key=line, key_type=key_type,
                                     fingerprint=fingerprint, added_by_email="dev@example.com"))
        elif kind == "replace_key" and key is not None:
            key.public_key, key.key_type, key.fingerprint = public_key(args[1])
        elif kind == "toggle_adopted" and key is not None:
            key.adopted = not key.adopted
        elif kind == "remove_key" and key is not None:
            db.session.delete(key)
            db.session.flush()
        return
    app = _app(server, args[0])
    if kind == "create_app":
        if app is None:
            db.session.add(App(server=server, name=args[0]))
        return
    if app is None:
        return
    if kind == "delete_app":
        db.session.delete(app)
        db.session.flush()  # so a new app of the same name can follow in this transaction
    elif kind == "toggle_imported":
        app.imported = not app.imported
    elif kind == "set_env":
        var = _env(app, args[1])
        if var is None:
            var = EnvVar(app=app, key=args[1])
            db.session.add(var)
        var.value = args[2]
    elif kind == "unset_env":
        var = _env(app, args[1])
        if var is not None:
            db.session.delete(var)
            db.session.flush()
    elif kind == "rename_env":
        var = _env(app, args[1])
        if var is not None and _env(app, args[2]) is None:
            var.key = args[2]
            db.session.flush()
    elif kind == "add_domain":
        if _domain(app, args[1]) is None:
            db.session.add(Domain(app=app, hostname=args[1]))
    elif kind == "remove_domain":
        domain = _domain(app, args[1])
        if domain is not None:
            db.session.delete(domain)
            db.session.flush()
    elif kind == "rename_domain":
        domain = _domain(app, args[1])
        if domain is not None and _domain(app, args[2]) is None:
            domain.hostname = args[2]
            db.session.flush()


def run(server, changes, ending) -> None:
    if ending == "savepoint_rollback":
        half = len(changes) // 2
        for op in changes[:half]:
            apply(server, op)
        savepoint = db.session.begin_nested()
        for op in changes[half:]:
            apply(server, op)
        db.session.flush()
        savepoint.rollback()
        db.session.commit()
        return
    for op in changes:
        apply(server, op)
    db.session.flush()
    if ending == "rollback":
        db.session.rollback()
    else:
        db.session.commit()


def replay() -> dict:
    """Rows as the audit log tells them: {(type, id): {field: value}} from every entry since seq 1."""
    rows: dict[tuple[str, str], dict] = {}
    for entry in db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq)):
        if entry.target_type not in FIELDS:
            continue
        ident, diff = (entry.target_type, entry.target_id), json.loads(entry.diff)
        verb = entry.action.rsplit(".", 1)[1]
        assert verb in ("created", "updated", "deleted"), entry.action
        if verb == "created":
            assert ident not in rows, f"entry {entry.seq} creates {ident} twice"
            assert all(old is None for old, _ in diff.values())
            rows[ident] = {field: new for field, (_, new) in diff.items() if new is not None}
            continue
        assert ident in rows, f"entry {entry.seq} {verb} {ident}, which the log never created"
        row = rows[ident]
        for field, (old, new) in diff.items():
            # the old side is what the log last said: nothing happened in between unrecorded
            assert row.get(field) == old, f"entry {entry.seq}: {field} was {row.get(field)!r}, not {old!r}"
            if verb == "updated":
                if new is None:
                    row.pop(field, None)
                else:
                    row[field] = new
        if verb == "deleted":
            assert set(diff) == set(row), f"entry {entry.seq} deletes {ident} with other fields than it had"
            del rows[ident]
    return rows


def current() -> dict:
    rows = {}
    for target_type, (model, fields) in FIELDS.items():
        for obj in db.session.scalars(select(model)):
            rows[(target_type, str(obj.id))] = {f: getattr(obj, f) for f in fields if getattr(obj, f) is not None}
    return rows


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=transactions)
def test_replaying_the_log_reproduces_the_current_rows(app, program):
    db.session.rollback()
    server = db.session.scalar(select(Server)) or make_server(name="web-1")
    for changes, ending in program:
        run(server, changes, ending)
    db.session.expire_all()

    assert replay() == current()
    # the fingerprints in the log are those of the values stored now
    for var in db.session.scalars(select(EnvVar)):
        assert var.value_fingerprint == crypto.fingerprint(var.value)
    for key in db.session.scalars(select(DeployKey)):
        assert key.fingerprint == validation.public_key(key.public_key).fingerprint
    with db.engine.connect() as connection:
        result = chain.verify(connection)
    assert result.ok, result.problem
    db.session.rollback()
