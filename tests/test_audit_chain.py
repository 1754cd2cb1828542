"""The hash chain: canonical encoding, `intercity audit verify`, tampering, and concurrent writers.

Tampering tests first drop the append-only triggers with raw SQL, as someone
with database access could, and show that verification still finds the first bad entry.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

from flask import current_app
from sqlalchemy import select, text

from intercity.audit import chain
from intercity.extensions import db
from intercity.models import AuditEntry, EnvVar
from tests.support.audit import drop_append_only_triggers, entries, raw
from tests.support.builders import make_app as build_app
from tests.support.builders import make_server

GOLDEN_ENTRY = {
    "seq": 1,
    "created_at": datetime(2026, 1, 1, 10, 0, 0, 123456, tzinfo=timezone.utc),
    "actor_kind": "user", "actor_user_id": 7, "actor_email": "dev@example.com", "actor_role": "member",
    "actor_os_user": None, "action": "env_var.updated", "category": "security",
    "server_id": 2, "server_name": "web-1", "app_id": 3, "app_name": "api",
    "target_type": "env_var", "target_id": "11", "target_label": "DATABASE_URL",
    "diff": '{"value_fingerprint":["0123456789abcdef","fedcba9876543210"]}',
    "request_ip": "203.0.113.9", "request_user_agent": "Mozilla/5.0 (X11; Linux) – ü", "request_id": "req-1",
    "caused_by": None, "operation_id": 5, "prev_hash": "0" * 64,
}
GOLDEN_CANONICAL = (
    '{"action":"env_var.updated","actor_email":"dev@example.com","actor_kind":"user","actor_os_user":null,'
    '"actor_role":"member","actor_user_id":7,"app_id":3,"app_name":"api","category":"security",'
    '"caused_by":null,"created_at":"2026-01-01T10:00:00.123456Z",'
    '"diff":"{\\"value_fingerprint\\":[\\"0123456789abcdef\\",\\"fedcba9876543210\\"]}",'
    '"operation_id":5,"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000",'
    '"request_id":"req-1","request_ip":"203.0.113.9","request_user_agent":"Mozilla/5.0 (X11; Linux) – ü",'
    '"seq":1,"server_id":2,"server_name":"web-1","target_id":"11","target_label":"DATABASE_URL",'
    '"target_type":"env_var"}'
)
GOLDEN_HASH = "f8268c4e03db10d2f62a3b8423bf37d7fda0c2d547f734837f154c7dd7633e24"


# -- canonical encoding ---------------------------------------------------------------------------------

def test_the_canonical_encoding_is_stable():
    """A fixed entry has a fixed encoding and hash: changing either breaks every existing chain."""
    assert chain.canonical(GOLDEN_ENTRY) == GOLDEN_CANONICAL.encode("utf-8")
    assert chain.compute_hash(GOLDEN_ENTRY) == GOLDEN_HASH
    # the same instant in another zone, or naive UTC, encodes the same
    shifted = dict(GOLDEN_ENTRY, created_at=GOLDEN_ENTRY["created_at"].astimezone(timezone(timedelta(hours=2))))
    naive = dict(GOLDEN_ENTRY, created_at=GOLDEN_ENTRY["created_at"].replace(tzinfo=None))
    assert chain.compute_hash(shifted) == chain.compute_hash(naive) == GOLDEN_HASH
    # extra keys (id, hash) are not part of the encoding; every hashed field is
    assert chain.compute_hash(dict(GOLDEN_ENTRY, id=99, hash="x")) == GOLDEN_HASH
    for field in chain.HASHED_FIELDS:
        if field != "created_at":
            assert chain.compute_hash(dict(GOLDEN_ENTRY, **{field: "changed"})) != GOLDEN_HASH, field


def test_the_encoding_is_documented_in_chain_py():
    doc = chain.__doc__
    for field in chain.HASHED_FIELDS:
        assert field in doc, f"{field} is hashed but not documented in intercity/audit/chain.py"
    for rule in ("sorted", "UTF-8", "microseconds", "SHA-256", "64 zeros"):
        assert rule in doc


def test_stored_entries_hash_as_written_on_both_databases(app):
    """What the database gives back (ints, text, timestamps with microseconds) hashes as what was written."""
    server = make_server(name="wéb-1")
    api = build_app(server, name="api")
    var = EnvVar(app=api, key="ÜNICODE_KEY")
    var.value = "x"
    db.session.add(var)
    db.session.commit()
    with db.engine.connect() as connection:
        rows = connection.execute(select(AuditEntry.__table__)).mappings().all()
    assert len(rows) == 3
    for row in rows:
        assert chain.compute_hash(row) == row["hash"]
        assert row["created_at"].microsecond or row["created_at"].second  # microseconds survive


def test_values_are_fitted_to_their_columns_before_hashing(app):
    """An id given as text or an over-long label is stored as hashed, and does not make the change fail."""
    from intercity.audit.capture import record_event
    from intercity.audit.rules import Scope

    record_event(db.session, "server.host_key_mismatch", scope=Scope(server_id="12", server_name="web-1"),
                 target_type="server", target_id=12, target_label="x" * 400)
    db.session.commit()
    with db.engine.connect() as connection:
        row = connection.execute(select(AuditEntry.__table__)).mappings().one()
        assert chain.verify(connection).ok
    assert (row["server_id"], row["target_id"]) == (12, "12")
    assert len(row["target_label"]) == 255 and row["target_label"].endswith("…")


# -- verify on a live database --------------------------------------------------------------------------

def populate(n_apps: int = 3) -> None:
    server = make_server(name="web-1")
    for n in range(n_apps):
        api = build_app(server, name=f"app-{n}")
        var = EnvVar(app=api, key="KEY")
        var.value = f"value-{n}"
        db.session.add(var)
        db.session.commit()
    # Each commit asked for an alert scan: let the job thread finish it, so no write of its own lands
    # between a test's read and write of the log it tampers with (SQLite refuses that upgrade at once).
    current_app.extensions["intercity_jobs"].wait_idle()


def verify(runner, *args):
    return runner.invoke(args=["audit", "verify", *args])


def current_head() -> tuple[int, str]:
    with db.engine.connect() as connection:
        return chain.head(connection)


def test_verify_on_a_live_database_prints_count_and_head(app, runner):
    populate()
    seq, digest = current_head()
    assert seq == len(entries()) == 7
    result = verify(runner)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"OK: 7 entries verified; head 7:{digest}"
    result = verify(runner, "--expect-head", f"7:{digest}")
    assert result.exit_code == 0, result.output


def test_the_installed_command_verifies_the_database_it_is_pointed_at(app, app_config, tmp_path):
    populate(1)
    seq, digest = current_head()
    env = dict(os.environ, DATABASE_URL=app_config["SQLALCHEMY_DATABASE_URI"], SECRET_KEY="x" * 40,
               INTERCITY_ENCRYPTION_KEY=app_config["INTERCITY_ENCRYPTION_KEY"],
               INTERCITY_INSTANCE_PATH=str(tmp_path / "cli-instance"))
    env.pop("REDIS_URL", None)
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "intercity"), "audit", "verify"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"OK: {seq} entries verified; head {seq}:{digest}"


def test_verify_an_empty_log(app, runner):
    result = verify(runner)
    assert result.exit_code == 0
    assert result.output.strip() == f"OK: 0 entries verified; head 0:{'0' * 64}"


ALTERATIONS = [
    ("action", "env_var.viewed"),
    ("actor_email", "someone-else@example.com"),
    ("diff", "{}"),
    ("target_label", "OTHER_KEY"),
    ("hash", "f" * 64),
]


def test_an_altered_entry_is_named(app, runner):
    populate()
    drop_append_only_triggers()
    for column, value in ALTERATIONS:
        with db.engine.connect() as connection:
            original = connection.execute(text(f"SELECT {column} FROM audit_entries WHERE seq = 4")).scalar_one()
        raw(f"UPDATE audit_entries SET {column} = :value WHERE seq = 4", value=value)
        result = verify(runner)
        assert result.exit_code == 1, column
        assert "FAILED: entry 4 " in result.output and "altered" in result.output, column
        raw(f"UPDATE audit_entries SET {column} = :value WHERE seq = 4", value=original)
        assert verify(runner).exit_code == 0


def test_an_altered_timestamp_is_named(app, runner, backend):
    populate()
    drop_append_only_triggers()
    if backend == "sqlite":
        raw("UPDATE audit_entries SET created_at = '2020-01-01 00:00:00.000000' WHERE seq = 2")
    else:
        raw("UPDATE audit_entries SET created_at = created_at - interval '1 day' WHERE seq = 2")
    result = verify(runner)
    assert result.exit_code == 1
    assert "FAILED: entry 2 " in result.output and "altered" in result.output


def test_a_removed_entry_is_named(app, runner):
    populate()
    drop_append_only_triggers()
    raw("DELETE FROM audit_entries WHERE seq = 3")
    result = verify(runner)
    assert result.exit_code == 1
    assert "FAILED: entry 3 is missing" in result.output


def test_a_removed_first_entry_is_named(app, runner):
    populate()
    drop_append_only_triggers()
    raw("DELETE FROM audit_entries WHERE seq = 1")
    result = verify(runner)
    assert result.exit_code == 1
    assert "FAILED: entry 1 is missing" in result.output


def test_swapped_entries_are_named(app, runner):
    populate()
    drop_append_only_triggers()
    raw("UPDATE audit_entries SET seq = -1 WHERE seq = 2")
    raw("UPDATE audit_entries SET seq = 2 WHERE seq = 5")
    raw("UPDATE audit_entries SET seq = 5 WHERE seq = -1")
    result = verify(runner)
    assert result.exit_code == 1
    assert "FAILED: entry 2 does not follow entry 1" in result.output


def test_a_rechained_log_is_caught_by_the_expected_head(app, runner):
    """Someone removes entry 3 and recomputes every later hash: the chain is valid, the head is not."""
    populate()
    old_seq, old_hash = current_head()
    drop_append_only_triggers()
    raw("DELETE FROM audit_entries WHERE seq = 3")
    with db.engine.begin() as connection:
        rows = connection.execute(select(AuditEntry.__table__).where(AuditEntry.seq > 3)
                                  .order_by(AuditEntry.seq)).mappings().all()
        prev = connection.execute(select(AuditEntry.hash).where(AuditEntry.seq == 2)).scalar_one()
        for row in rows:
            forged = dict(row, seq=row["seq"] - 1, prev_hash=prev)
            prev = chain.compute_hash(forged)
            connection.execute(text("UPDATE audit_entries SET seq = :seq, prev_hash = :prev, hash = :hash "
                                    "WHERE id = :id"), {"seq": forged["seq"], "prev": forged["prev_hash"],
                                                        "hash": prev, "id": row["id"]})
    assert verify(runner).exit_code == 0  # internally consistent...
    result = verify(runner, "--expect-head", f"{old_seq}:{old_hash}")
    assert result.exit_code == 1  # ...but the operator's copy of the head is gone
    assert "FAILED" in result.output and "newest entries were removed" in result.output


def test_expect_head_fails_when_the_newest_entries_were_removed(app, runner):
    populate()
    seq, digest = current_head()
    drop_append_only_triggers()
    raw("DELETE FROM audit_entries WHERE seq > :keep", keep=seq - 2)
    assert verify(runner).exit_code == 0  # the rest is still a valid chain
    result = verify(runner, "--expect-head", f"{seq}:{digest}")
    assert result.exit_code == 1
    assert f"ends at entry {seq - 2}, before the expected head {seq}" in result.output


def test_expect_head_fails_when_the_head_entry_differs(app, runner):
    populate()
    seq, digest = current_head()
    result = verify(runner, "--expect-head", f"{seq}:{'a' * 64}")
    assert result.exit_code == 1
    assert f"entry {seq} is not the entry of the expected head" in result.output
    assert verify(runner, "--expect-head", "nonsense").exit_code == 2


def test_processes_that_take_turns_keep_one_chain(app, make_app):
    """Each app (process) remembers the head it wrote last; when another wrote since, that guess is stale."""
    from intercity.models import Server

    server = make_server(name="web-1")
    server_id = server.id  # read here: inside the other app, this session would use the other engine
    other = make_app()
    for n in range(3):
        build_app(server, name=f"here-{n}")  # this app's engine
        with other.app_context():
            elsewhere = db.session.get(Server, server_id)
            build_app(elsewhere, name=f"there-{n}")  # the other engine: its guess is stale each time
            db.session.remove()
    with db.engine.connect() as connection:
        seqs = connection.execute(text("SELECT seq FROM audit_entries ORDER BY seq")).scalars().all()
        result = chain.verify(connection)
    assert seqs == list(range(1, 8)) and result.ok, result.problem
    assert [e.app_name for e in entries(action="app.created")] == [
        "here-0", "there-0", "here-1", "there-1", "here-2", "there-2"]


# -- concurrent writers ---------------------------------------------------------------------------------

WRITER = textwrap.dedent('''
    """One panel process writing audited changes as fast as it can, each in its own transaction."""
    import json, sys, time
    from pathlib import Path

    from sqlalchemy import select

    from intercity import create_app
    from intercity.audit.actor import Actor, acting_as
    from intercity.audit.capture import record_event
    from intercity.extensions import db
    from intercity.models import App, EnvVar, Server

    config, go, name, changes = json.loads(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    writers = int(sys.argv[5])
    app = create_app(config)
    with app.app_context(), acting_as(Actor.system("worker")):
        server_id = db.session.scalar(select(Server.id))
        db.session.rollback()
        while not go.exists():  # start together, after the slow imports
            time.sleep(0.002)
        made = 0
        api = App(server_id=server_id, name=name)
        db.session.add(api)
        db.session.commit()
        made += 1
        # Every writer has an entry in the chain before any goes on, so their changes overlap even
        # when a busy machine would otherwise run them one after the other.
        (go.parent / f"ready-{name}").touch()
        deadline = time.monotonic() + 120
        while len(list(go.parent.glob("ready-*"))) < writers and time.monotonic() < deadline:
            time.sleep(0.002)
        for i in range(changes):
            key = f"K{i % 4}"
            # read first, then write: the transaction turns into a writer half-way
            var = db.session.scalar(select(EnvVar).where(EnvVar.app_id == api.id, EnvVar.key == key))
            if var is None:
                var = EnvVar(app_id=api.id, key=key)
                var.value = f"{name}-{i}"
                db.session.add(var)
            elif i % 3 == 0:
                db.session.delete(var)
            else:
                var.value = f"{name}-{i}"
            db.session.commit()
            made += 1
            if i % 10 == 0:  # an explicit event alone in its transaction
                record_event(db.session, "user.login_failed", target_label=f"{name}@example.com")
                db.session.commit()
                made += 1
        db.session.remove()
    print(made)
''')

PROCESSES = 4
CHANGES = 40


def test_concurrent_writers_make_one_valid_chain(app, app_config, tmp_path):
    make_server(name="web-1")
    db.session.remove()
    config = {key: value for key, value in app_config.items() if isinstance(value, (str, int, bool))}
    config["JOBS_IN_PROCESS"] = True
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    go = tmp_path / "go"
    env = dict(os.environ, INTERCITY_INSTANCE_PATH=str(tmp_path / "instance"))
    env.pop("REDIS_URL", None)
    writers = [subprocess.Popen([sys.executable, str(script), json.dumps(config), str(go), f"app-{n}", str(CHANGES),
                                 str(PROCESSES)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=os.getcwd()) for n in range(PROCESSES)]
    time.sleep(0.5)
    go.touch()
    made = 0
    for writer in writers:
        out, err = writer.communicate(timeout=240)
        assert writer.returncode == 0, err
        made += int(out.strip().splitlines()[-1])
    assert made == PROCESSES * (1 + CHANGES + len(range(0, CHANGES, 10)))

    with db.engine.connect() as connection:
        seqs = connection.execute(text("SELECT seq FROM audit_entries ORDER BY seq")).scalars().all()
        result = chain.verify(connection)
    assert len(seqs) == 1 + made  # no change lost its entry
    assert seqs == list(range(1, len(seqs) + 1))  # contiguous
    assert result.ok, result.problem
    assert result.count == len(seqs)
    # the writers really wrote at the same time: the recorded chain shows every writer's entries
    # starting before any other writer's last one (however the machine scheduled them otherwise)
    with db.engine.connect() as connection:
        spans = connection.execute(text("SELECT app_name, MIN(seq), MAX(seq) FROM audit_entries "
                                        "WHERE app_name IS NOT NULL GROUP BY app_name")).all()
    assert len(spans) == PROCESSES
    assert max(first for _, first, _ in spans) < min(last for _, _, last in spans)
