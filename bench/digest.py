"""Digest benchmark: build one person's digest over 10,000 and 100,000 entries across 50 apps; time and peak memory.

For SQLite and PostgreSQL: migrate a fresh database, append the entries in bulk (executemany;
the chain's hashes are placeholders, the digest does not verify), then build the digest exactly
as a sending job does (`intercity.notify.content.build`: one keyset pass over the entries,
at most 20 listed per app, sentences, plain text and HTML). Time is the median of 3 builds;
peak memory is what tracemalloc saw during one more build (Python allocations), next to the
size of the message built, so "flat in the number of entries" can be read off.

BENCH_DIGEST_SIZES (default "10000,100000"), BENCH_DIGEST_BACKENDS (default "postgresql,sqlite"),
BENCH_DATABASE_URL (the PostgreSQL server; a database `intercity_bench_digest` is created and dropped).
"""
from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

SIZES = [int(n) for n in os.environ.get("BENCH_DIGEST_SIZES", "10000,100000").split(",")]
BACKENDS = os.environ.get("BENCH_DIGEST_BACKENDS", "postgresql,sqlite").split(",")
APPS = 50
SERVERS = 5
PG_NAME = "intercity_bench_digest"
TARGET_S = 2.0
ACTIONS = [("env_var.created", "security", "env_var", "DATABASE_URL"), ("env_var.updated", "security", "env_var", "API_TOKEN"),
           ("domain.created", "app", "domain", "shop.example.com"), ("app.restart_requested", "app", "app", None),
           ("operation.succeeded", "app", "operation", "restart the app"),
           ("deploy_key.created", "security", "deploy_key", "ci")]


def _config(url: str) -> dict:
    return {"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench-secret-key",
            "INTERCITY_ENCRYPTION_KEY": "bench-encryption-key-0123456789-abcdefghij", "TESTING": True,
            "NOTIFY_TICK_SECONDS": 0, "INTERCITY_BASE_URL": "https://panel.example.com"}


def _rows(start_seq: int, count: int):
    start = datetime.now(timezone.utc) - timedelta(seconds=10 * count)
    for n in range(count):
        seq = start_seq + n + 1
        app = n % APPS
        server = app % SERVERS
        if n % 97 == 0:
            action, category, target_type, label = "operation.failed", "app", "operation", "apply environment variables"
        else:
            action, category, target_type, label = ACTIONS[n % len(ACTIONS)]
        yield {
            "seq": seq, "created_at": start + timedelta(seconds=10 * n), "actor_kind": "user",
            "actor_user_id": 1 + n % 7, "actor_email": f"dev{n % 7}@example.com", "actor_role": "member",
            "actor_os_user": None, "action": action, "category": category, "server_id": server + 1,
            "server_name": f"srv-{server:02d}", "app_id": app + 1, "app_name": f"app-{app:02d}",
            "target_type": target_type, "target_id": str(n % 1000), "target_label": label or f"app-{app:02d}",
            "diff": '{"value_fingerprint":[null,"0123456789abcdef"]}' if target_type == "env_var" else "{}",
            "request_ip": "10.0.0.1", "request_user_agent": "bench", "request_id": f"r{n}", "caused_by": None,
            "operation_id": None, "prev_hash": "0" * 64, "hash": f"{seq:064x}",
        }


def _load(engine, count: int) -> float:
    from sqlalchemy import insert

    from intercity.models import AuditEntry

    started = time.perf_counter()
    batch = []
    with engine.begin() as connection:
        for row in _rows(0, count):
            batch.append(row)
            if len(batch) == 5000:
                connection.execute(insert(AuditEntry.__table__), batch)
                batch = []
        if batch:
            connection.execute(insert(AuditEntry.__table__), batch)
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("ANALYZE audit_entries")
    return time.perf_counter() - started


def _build(user_id: int):
    from intercity.extensions import db
    from intercity.models import OutboxMessage
    from intercity.notify import content

    message = OutboxMessage(kind="digest", channel="mail", recipient="bench@example.com", user_id=user_id)
    built = content.build(message)
    db.session.rollback()
    return built


def run_backend(url: str, count: int) -> dict:
    from flask_migrate import upgrade

    from intercity import create_app
    from intercity.audit.actor import Actor, acting_as
    from intercity.extensions import db
    from intercity.services.notifications import preferences_for
    from intercity.services.users import create_user

    app = create_app(_config(url))
    with app.app_context():
        upgrade()
        load_s = _load(db.engine, count)
        with acting_as(Actor.system("cli")):
            user = create_user("bench@example.com", "bench password 123", "viewer")
            db.session.commit()
            pref = preferences_for(user)
            pref.digest_seq = 0
            db.session.commit()
        user_id = user.id
        _build(user_id)  # warm-up: templates compiled, plans cached
        times = []
        for _ in range(3):
            started = time.perf_counter()
            built = _build(user_id)
            times.append(time.perf_counter() - started)
        tracemalloc.start()
        _build(user_id)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        subject, text, html, covered = built
        db.session.remove()
        db.engine.dispose()
    return {"entries": count, "load_s": load_s, "build_s": statistics.median(times), "peak_mib": peak / 2**20,
            "message_kib": (len(text.encode()) + len(html.encode())) / 1024, "covered": covered}


def _postgres():
    from bench._databases import fresh_postgres

    return fresh_postgres(PG_NAME)


def main() -> None:
    print(f"Digest benchmark: {', '.join(f'{n:,}' for n in SIZES)} entries across {APPS} apps; "
          f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="intercity-bench-") as workdir:
        os.environ.setdefault("INTERCITY_INSTANCE_PATH", str(Path(workdir) / "instance"))
        for backend in BACKENDS:
            results = []
            for count in SIZES:
                if backend == "postgresql":
                    url, drop = _postgres()
                else:
                    url, drop = f"sqlite:///{Path(workdir) / f'digest-{count}.sqlite'}", lambda: None
                try:
                    results.append(run_backend(url, count))
                finally:
                    drop()
            print(f"{backend}:")
            for r in results:
                verdict = "meets" if r["build_s"] < TARGET_S else "MISSES"
                print(f"  {r['entries']:>7,} entries: build {r['build_s'] * 1000:7.0f} ms ({verdict} < {TARGET_S:.0f} s), "
                      f"peak {r['peak_mib']:6.1f} MiB, message {r['message_kib']:6.0f} KiB (bulk load {r['load_s']:.1f} s)")
            if len(results) > 1:
                small, large = results[0], results[-1]
                print(f"  {large['entries'] // small['entries']}x the entries: {large['build_s'] / small['build_s']:.1f}x "
                      f"the time, {large['peak_mib'] / small['peak_mib']:.2f}x the peak memory", flush=True)


if __name__ == "__main__":
    main()
