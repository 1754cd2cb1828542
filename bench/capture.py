"""Capture benchmark: what the automatic audit log costs a change, on SQLite and PostgreSQL.

10,000 env var changes (creates, updates and deletes in turn, over 100 keys of 10 apps) are made
twice on a fresh database each time: with capture on, and with capture off (the listeners in
`intercity.audit.capture.HOOKS` removed from `sqlalchemy.orm.Session`; the switch exists only
here). Each change is made as the panel makes it: in its own transaction, loading the app and
the variable (the server and app named by the URL, the key by the form), setting the value
through `EnvVar.value` (encryption and fingerprint), committing.
Then the same changes in one large transaction, as a bulk import does. Prints per-change times
and the on/off ratio; the target is at most 1.5x per transaction.

First, in one database, blocks of per-transaction changes alternate capture off and on (ABBA
order after a warm-up of each): the median of the paired on/off ratios is the steady figure on a
busy machine. Then, unless BENCH_CAPTURE_PAIRED_ONLY=1, the fresh-database runs below.

Settings: BENCH_CAPTURE_BLOCKS (pairs of blocks, default 10), BENCH_CAPTURE_BLOCK (changes per block,
default 200), BENCH_CAPTURE_CHANGES (default 10000), BENCH_CAPTURE_REPEAT (runs of each variant, the
fastest counts; default 3), BENCH_BACKENDS (default "sqlite,postgresql"), BENCH_DATABASE_URL (the
PostgreSQL server; databases `intercity_bench_capture_<pid>_*` are created there and dropped after).
"""
from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

CHANGES = int(os.environ.get("BENCH_CAPTURE_CHANGES", "10000"))
REPEAT = max(1, int(os.environ.get("BENCH_CAPTURE_REPEAT", "3")))
BACKENDS = [b.strip() for b in os.environ.get("BENCH_BACKENDS", "sqlite,postgresql").split(",") if b.strip()]
PG_DEFAULT = "postgresql+psycopg://root@127.0.0.1:5432/test"
# The process id keeps two benchmarks on one PostgreSQL server (a shared machine) out of each other's way.
PG_PREFIX = f"intercity_bench_capture_{os.getpid()}"
APPS = 10
KEYS = 10  # per app
TARGET = 1.5
# The paired measurement: blocks of changes alternating capture off and on in one database.
BLOCKS = int(os.environ.get("BENCH_CAPTURE_BLOCKS", "10"))
# Set BENCH_CAPTURE_PAIRED_ONLY=1 to skip the fresh-database runs (fastest of REPEAT each).
PAIRED_ONLY = os.environ.get("BENCH_CAPTURE_PAIRED_ONLY") == "1"
PER_BLOCK = int(os.environ.get("BENCH_CAPTURE_BLOCK", "200"))
# After a commit that wrote an alerted entry (every env value change is one), the notification
# listener asks for an alert scan. With Redis that scan runs in a worker; here, in the one process,
# it would run beside the measured changes, so it is left out unless BENCH_CAPTURE_WITH_ALERTS=1
# (which shows what the single-process set-up pays for alerts at once).
WITH_ALERTS = os.environ.get("BENCH_CAPTURE_WITH_ALERTS") == "1"


def _config(url: str) -> dict:
    return {"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench-secret-key",
            "INTERCITY_ENCRYPTION_KEY": "bench-encryption-key-0123456789-abcdefghij", "TESTING": True,
            "WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False}


def workload(n: int) -> list[tuple[int, str, str | None]]:
    """(app index, key, value or None to delete): each key is created, updated, then deleted, in turn."""
    steps, state = [], {}
    for i in range(n):
        app, key = i % APPS, f"KEY_{(i // APPS) % KEYS}"
        phase = state.get((app, key), 0)
        steps.append((app, key, None if phase == 2 else f"value-{i:06d}-{'x' * 24}"))
        state[(app, key)] = (phase + 1) % 3
    return steps


@contextmanager
def capture(enabled: bool):
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from intercity.audit.capture import HOOKS

    if enabled:
        yield
        return
    for name, listener in HOOKS:
        event.remove(Session, name, listener)
    try:
        yield
    finally:
        for name, listener in HOOKS:
            event.listen(Session, name, listener)


def _change(server, app, key: str, value: str | None) -> None:
    from sqlalchemy import select

    from intercity.extensions import db
    from intercity.models import EnvVar

    var = db.session.scalar(select(EnvVar).where(EnvVar.app_id == app.id, EnvVar.key == key))
    if value is None:
        db.session.delete(var)
    elif var is None:
        var = EnvVar(app=app, key=key)
        var.value = value
        db.session.add(var)
    else:
        var.value = value


def _view(server_id: int, app_name: str, key: str, value: str | None) -> None:
    """What the env var form's view does: the URL names the server and the app, the form the key;
    it commits while it still holds them."""
    from sqlalchemy import select

    from intercity.extensions import db
    from intercity.models import App, Server

    server = db.session.get(Server, server_id)
    app = db.session.scalar(select(App).where(App.server_id == server.id, App.name == app_name))
    _change(server, app, key, value)
    db.session.commit()


def run_once(url: str, *, enabled: bool, bulk: bool) -> tuple[float, int]:
    """Seconds for the workload on the fresh database at `url`, and the entries it left."""
    from sqlalchemy import func, select

    from intercity import create_app
    from intercity.audit.actor import Actor, acting_as
    from intercity.extensions import db
    from intercity.models import App, AuditEntry, Server, User

    app = create_app(_config(url))
    steps = workload(CHANGES)
    with app.app_context():
        user = db.session.scalar(select(User))
        server_id, = db.session.scalars(select(App.server_id).distinct()).all()
        app_names = [f"app-{n}" for n in range(APPS)]
        before = db.session.scalar(select(func.count(AuditEntry.id)))
        db.session.commit()
        # a logged-in person, as a request would have (resolved once, like Flask-Login does)
        with acting_as(Actor.for_user(user)), capture(enabled):
            started = time.perf_counter()
            if bulk:
                # an import: it holds the server and the apps it fills, and commits once
                server = db.session.get(Server, server_id)
                apps = {a.name: a for a in db.session.scalars(select(App).where(App.server_id == server_id))}
                for app_index, key, value in steps:
                    _change(server, apps[app_names[app_index]], key, value)
                db.session.commit()
            else:
                for app_index, key, value in steps:
                    _view(server_id, app_names[app_index], key, value)
            elapsed = time.perf_counter() - started
        entries = db.session.scalar(select(func.count(AuditEntry.id))) - before
        db.session.remove()
        db.engine.dispose()
    return elapsed, entries


def build_template(url: str) -> None:
    """Migrate, then add the person, the server and the apps the workload changes."""
    from flask_migrate import upgrade

    from intercity import create_app
    from intercity.audit.actor import Actor, acting_as
    from intercity.extensions import db
    from intercity.models import App, Server
    from intercity.services.users import create_user

    app = create_app(_config(url))
    with app.app_context():
        upgrade()
        with acting_as(Actor.system("cli")):
            create_user("dev@example.com", "bench password 123", "member")
            server = Server(name="bench-1", host="10.0.0.1", port=22, ssh_user="root")
            server.generate_key_pair()
            db.session.add(server)
            db.session.add_all(App(server=server, name=f"app-{n}") for n in range(APPS))
            db.session.commit()
        db.session.remove()
        db.engine.dispose()


class SqliteDatabases:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.template = workdir / "template.sqlite"
        build_template(f"sqlite:///{self.template}")
        self.n = 0

    def fresh(self) -> str:
        self.n += 1
        path = self.workdir / f"run-{self.n}.sqlite"
        shutil.copyfile(self.template, path)
        return f"sqlite:///{path}"

    def close(self) -> None:
        pass


class PostgresDatabases:
    def __init__(self):
        from sqlalchemy.engine import make_url

        self.admin = make_url(os.environ.get("BENCH_DATABASE_URL", PG_DEFAULT))
        self.names = []
        self.template = f"{PG_PREFIX}_tpl"
        self._execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        self._execute(f'CREATE DATABASE "{self.template}"')
        self.names.append(self.template)
        build_template(self._url(self.template))

    def _url(self, name: str) -> str:
        return self.admin.set(database=name).render_as_string(hide_password=False)

    def _execute(self, sql: str) -> None:
        import psycopg

        libpq = self.admin.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(libpq, autocommit=True) as connection:
            connection.execute(sql)

    def fresh(self) -> str:
        name = f"{PG_PREFIX}_{len(self.names)}"
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.names.append(name)
        try:  # start each run with the copy's WAL written out, so no checkpoint lands in one variant only
            self._execute("CHECKPOINT")
        except Exception:  # noqa: BLE001 - needs superuser or pg_checkpoint; the run is still valid without it
            pass
        return self._url(name)

    def close(self) -> None:
        for name in reversed(self.names):
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure(databases) -> dict:
    """Fastest of REPEAT runs for each variant, alternating on and off so drift hits both."""
    results = {}
    for bulk in (False, True):
        for _ in range(REPEAT):
            for enabled in (False, True):
                seconds, entries = run_once(databases.fresh(), enabled=enabled, bulk=bulk)
                expected = CHANGES if enabled else 0
                assert entries == expected, f"{entries} entries for {CHANGES} changes (capture {enabled})"
                key = ("bulk" if bulk else "each", enabled)
                results[key] = min(results.get(key, seconds), seconds)
    return results


def paired(url: str, first, second, *, blocks: int, per_block: int) -> list[float]:
    """Blocks of per-transaction changes in one database, alternating `first` and `second` (context
    managers) in ABBA order so drift and the database's growth hit both; returns second/first per pair."""
    from sqlalchemy import select

    from intercity import create_app
    from intercity.audit.actor import Actor, acting_as
    from intercity.extensions import db
    from intercity.models import App, User

    app = create_app(_config(url))
    steps = workload(blocks * 2 * per_block)
    ratios = []
    with app.app_context():
        user = db.session.scalar(select(User))
        server_id, = db.session.scalars(select(App.server_id).distinct()).all()
        db.session.commit()
        with acting_as(Actor.for_user(user)):
            # warm up both (caches, plans) on changes of their own
            position = 0
            for variant in (first, second):
                with variant():
                    for app_index, key, value in steps[position:position + per_block // 4]:
                        _view(server_id, f"app-{app_index}", key, value)
            position = per_block // 4
            steps = workload(blocks * 2 * per_block + position)
            for block in range(blocks):
                order = (first, second) if block % 2 == 0 else (second, first)
                times = {}
                for variant in order:
                    chunk = steps[position:position + per_block]
                    position += per_block
                    with variant():
                        started = time.perf_counter()
                        for app_index, key, value in chunk:
                            _view(server_id, f"app-{app_index}", key, value)
                        times[variant] = time.perf_counter() - started
                ratios.append(times[second] / times[first])
        db.session.remove()
        db.engine.dispose()
    return ratios


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def paired_report(title: str, ratios: list[float]) -> str:
    return (f"  {title:44} median {_median(ratios):4.2f}x   min {min(ratios):4.2f}x   max {max(ratios):4.2f}x   "
            f"({len(ratios)} pairs of {PER_BLOCK} changes)")


def report(name: str, results: dict) -> str:
    lines = [f"{name}:"]
    for shape, title in (("each", "one transaction per change"), ("bulk", "one transaction for all")):
        off, on = results[(shape, False)], results[(shape, True)]
        ratio = on / off
        verdict = ""
        if shape == "each":
            verdict = f"  (target <= {TARGET}x: {'meets' if ratio <= TARGET else 'MISSES'})"
        lines.append(f"  {title:28} off {off:7.2f} s ({off / CHANGES * 1e6:6.0f} us/change)   "
                     f"on {on:7.2f} s ({on / CHANGES * 1e6:6.0f} us/change)   ratio {ratio:4.2f}x{verdict}")
    return "\n".join(lines)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or platform.machine())
    mem_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    return (f"{os.cpu_count()} CPUs ({model}), {mem_kb / 1024 / 1024:.1f} GiB RAM, Python "
            f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}")


def _postgres_version(url: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SHOW server_version")).scalar()
    finally:
        engine.dispose()


def main() -> None:
    import sqlalchemy

    print(f"Capture benchmark: {CHANGES:,} env var changes (create/update/delete), capture on vs off, "
          f"fastest of {REPEAT}")
    print(f"  {machine()}, SQLAlchemy {sqlalchemy.__version__}")
    if not WITH_ALERTS:
        from intercity.notify import outbox

        outbox.after_commit = lambda session: None  # before any app registers it (see WITH_ALERTS)
    print(f"  alert scans after commits: {'in this process' if WITH_ALERTS else 'left out (a worker runs them)'}")
    with tempfile.TemporaryDirectory(prefix="intercity-bench-capture-") as workdir:
        os.environ.setdefault("INTERCITY_INSTANCE_PATH", str(Path(workdir) / "instance"))
        print(f"  load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        off, on = (lambda: capture(False)), (lambda: capture(True))
        if "sqlite" in BACKENDS:
            databases = SqliteDatabases(Path(workdir))
            print("SQLite (file, WAL), paired blocks, one transaction per change:")
            print(paired_report("capture on / off", paired(databases.fresh(), off, on, blocks=BLOCKS,
                                                                 per_block=PER_BLOCK)), flush=True)
            if not PAIRED_ONLY:
                print(report("SQLite (file, WAL)", measure(databases)), flush=True)
        if "postgresql" in BACKENDS:
            databases = PostgresDatabases()
            try:
                version = _postgres_version(databases._url(databases.template))
                print(f"PostgreSQL {version} (loopback), paired blocks, one transaction per change:")
                print(paired_report("capture on / off", paired(databases.fresh(), off, on, blocks=BLOCKS,
                                                                     per_block=PER_BLOCK)), flush=True)
                if not PAIRED_ONLY:
                    print(report(f"PostgreSQL {version} (loopback)", measure(databases)), flush=True)
            finally:
                databases.close()
        print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
