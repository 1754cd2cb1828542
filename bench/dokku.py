"""Dokku layer benchmark: the loopback OpenSSH server with the Dokku double, the panel's real SSH client.

1. Setting 20 env vars the way intercity-next did (a new SSH connection and one `config:set`
   per variable, same restart flags) against the panel's way (one connection, one encoded
   `config:set` carrying all 20). Target: the panel at least 10x faster.
2. 20 separate commands (`dokku version`) over one connection against a connection each.
3. Enqueue to first command on an idle worker: a real `python worker.py` on Redis, a SQLite
   database, `app.refresh` operations requested one after another; from the commit that
   enqueues to the start of the operation's first command (its SSH connection included).
4. The real executor: 20 env vars changed and an `env.apply` requested as the service does, from
   the enqueuing commit to the operation's end through the same worker (connection, encoded
   `config:set` and the `config:export` read-back in one exec, transcripts, outcome entry), paired
   with the intercity-next way in the same round (alternating which goes first). Target: 20x.

Needs root (it starts sshd) and Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/0).
BENCH_DOKKU_REPEAT sets the number of rounds (default 3); medians are printed.
BENCH_DOKKU_EXECUTOR_ONLY=1 runs parts 3 and 4 only. BENCH_DOKKU_DATABASE=postgresql runs the worker on a fresh
PostgreSQL database (a team's set-up: README, "Running it for a team") instead of SQLite.
"""
from __future__ import annotations

import contextlib
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPEAT = int(os.environ.get("BENCH_DOKKU_REPEAT", "3"))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# Only parts 3 and 4 (the worker): BENCH_DOKKU_EXECUTOR_ONLY=1.
EXECUTOR_ONLY = os.environ.get("BENCH_DOKKU_EXECUTOR_ONLY") == "1"
DATABASE = os.environ.get("BENCH_DOKKU_DATABASE", "sqlite")
VARIABLES = 20
TARGET_RATIO = 10.0
EXECUTOR_TARGET = 20.0
KEYS = {"SECRET_KEY": "bench-secret-key", "INTERCITY_ENCRYPTION_KEY": "bench-encryption-key-0123456789-abcdefghij"}


def _median(run, rounds: int = REPEAT) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def env_vars(target, dokku) -> tuple[float, float]:
    from intercity.dokku import commands, parsers
    from intercity.dokku.ssh import connect

    dokku.create_app("bench")
    values = {f"VAR_{n:02d}": f"value {n} with spaces, 'quotes' and $(no-shell) {os.urandom(8).hex()}"
              for n in range(VARIABLES)}

    def run_checked(connection, command):
        result = connection.run(command)
        parsers.check(command, result.exit_code, result.out, result.err)

    def intercity_next():
        for key, value in values.items():
            with connect(target) as connection:
                for command in commands.config_set("bench", {key: value}, restart=False):
                    run_checked(connection, command)

    def panel():
        with connect(target) as connection:
            for command in commands.config_set("bench", values, restart=False):
                run_checked(connection, command)

    old, new = _median(intercity_next), _median(panel)
    assert dokku.env("bench") == {key: value.encode() for key, value in values.items()}
    return old, new


def many_commands(target) -> tuple[float, float]:
    from intercity.dokku import commands
    from intercity.dokku.ssh import connect

    def one_connection():
        with connect(target) as connection:
            for _ in range(20):
                connection.run(commands.version())

    def connection_each():
        for _ in range(20):
            with connect(target) as connection:
                connection.run(commands.version())

    return _median(one_connection), _median(connection_each)


def enqueue_latency(sshd, workdir: Path, target_for=None) -> tuple[list[float], list[tuple[float, float]]]:
    """Seconds from the enqueuing commit to the first command's start, one operation at a time; then
    (intercity-next way, real executor) seconds for 20 env vars, in pairs."""
    from flask_migrate import upgrade
    from sqlalchemy import select

    from intercity import create_app
    from intercity.extensions import db
    from intercity.models import App, CommandRun, Operation, Server
    from intercity.models.base import utcnow
    from intercity.services.operations import request_operation

    if DATABASE == "postgresql":
        from bench._databases import fresh_postgres

        database, drop = fresh_postgres(f"intercity_bench_dokku_{os.getpid()}")
    else:
        database, drop = f"sqlite:///{workdir / 'bench.sqlite'}", lambda: None
    queue = f"bench-dokku-{os.getpid()}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": database, **KEYS, "REDIS_URL": REDIS_URL,
                      "JOBS_IN_PROCESS": False, "JOBS_QUEUE": queue})
    env = {**os.environ, "DATABASE_URL": database, "REDIS_URL": REDIS_URL, "INTERCITY_QUEUE": queue, **KEYS,
           "INTERCITY_INSTANCE_PATH": str(workdir / "worker-instance")}
    worker = None
    with app.app_context():
        with contextlib.redirect_stderr(io.StringIO()):  # Alembic's progress lines
            upgrade()
        server = Server(name="bench", host=sshd.host, port=sshd.port, ssh_user="root", status="ready",
                        host_key_type=sshd.host_key_type, host_key_fingerprint=sshd.host_key_fingerprint,
                        dokku_version="0.38.27")
        server.generate_key_pair()
        db.session.add(server)
        db.session.add(App(server=server, name="bench"))
        db.session.commit()
        sshd.authorize("root", server.public_key)
        target = db.session.scalar(select(App).where(App.name == "bench"))
        ssh_target = target_for
        log = open(workdir / "worker.log", "wb")
        worker = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            from redis import Redis
            from rq import Queue, Worker

            rq = Queue(queue, connection=Redis.from_url(REDIS_URL))
            deadline = time.monotonic() + 30
            while Worker.count(queue=rq) < 1:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError("the worker did not start: " + (workdir / "worker.log").read_text())
                time.sleep(0.1)
            latencies = []
            for _ in range(REPEAT + 1):  # the first one warms the worker up and is not counted
                target = db.session.get(App, target.id)
                op = request_operation("app.refresh", server=target.server, app=target)
                enqueued = utcnow()
                db.session.commit()
                op_id = op.id
                while True:
                    db.session.commit()
                    db.session.expire_all()
                    done = db.session.get(Operation, op_id)
                    if done.status in ("succeeded", "failed"):
                        break
                    time.sleep(0.02)
                if done.status != "succeeded":
                    raise RuntimeError(f"app.refresh failed: {done.reason}")
                first = db.session.scalar(select(CommandRun.started_at).where(CommandRun.operation_id == op_id)
                                          .order_by(CommandRun.position).limit(1))
                latencies.append((first - enqueued).total_seconds())
                time.sleep(0.5)  # idle again
            pairs = executor_pairs(app, target, sshd, ssh_target) if ssh_target is not None else []
            return latencies[1:], pairs
        finally:
            worker.terminate()
            worker.wait(15)
            log.close()
            from redis import Redis
            from rq import Queue

            Queue(queue, connection=Redis.from_url(REDIS_URL)).empty()
            db.session.remove()
            db.engine.dispose()
            drop()


def _wait_final(op_id: int):
    from intercity.extensions import db
    from intercity.models import Operation

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        db.session.commit()
        db.session.expire_all()
        done = db.session.get(Operation, op_id)
        if done.status in ("succeeded", "failed"):
            return done
        time.sleep(0.01)
    raise RuntimeError(f"operation {op_id} did not end within 120 s")


def executor_pairs(app, target_app, sshd, ssh_target) -> list[tuple[float, float]]:
    """(intercity-next way, real executor) seconds for the same 20 changes, REPEAT pairs after a warm-up."""
    from sqlalchemy import select

    from intercity.dokku import commands, parsers
    from intercity.dokku.ssh import connect
    from intercity.extensions import db
    from intercity.models import App, CommandRun, EnvVar
    from intercity.models.base import utcnow
    from intercity.services.operations import request_operation

    phases: list[dict] = []

    def intercity_next(values):
        started = time.perf_counter()
        for key, value in values.items():
            with connect(ssh_target) as connection:
                for command in commands.config_set("bench", {key: value}, restart=False):
                    result = connection.run(command)
                    parsers.check(command, result.exit_code, result.out, result.err)
        return time.perf_counter() - started

    def executor(values):
        bench_app = db.session.get(App, target_app.id)
        changed = []
        for key, value in values.items():
            var = db.session.scalar(select(EnvVar).where(EnvVar.app_id == bench_app.id, EnvVar.key == key))
            if var is None:
                var = EnvVar(app=bench_app, key=key)
                db.session.add(var)
            var.value = value
            changed.append(var)
        db.session.flush()
        op = request_operation("env.apply", server=bench_app.server, app=bench_app, applies=changed,
                               payload={"set": list(values), "unset": [], "restart": False})
        enqueued = utcnow()
        db.session.commit()
        done = _wait_final(op.id)
        if done.status != "succeeded" or done.warning_list:
            raise RuntimeError(f"env.apply: {done.status} {done.reason} {done.warning_list}")
        runs = db.session.execute(select(CommandRun.started_at, CommandRun.finished_at)
                                  .where(CommandRun.operation_id == done.id).order_by(CommandRun.position)).all()
        phases.append({"pickup": (done.started_at - enqueued).total_seconds(),
                       "to first command": (runs[0][0] - done.started_at).total_seconds(),
                       "commands": (runs[-1][1] - runs[0][0]).total_seconds(),
                       "to applied": (done.finished_at - runs[-1][1]).total_seconds(),
                       # A part that starts as the one before it ends shares its exec (the read-back pair).
                       "execs": 1 + sum(runs[n][0] != runs[n - 1][1] for n in range(1, len(runs)))})
        return (done.finished_at - enqueued).total_seconds()

    pairs = []
    for round_ in range(REPEAT + 1):  # the first pair warms both up and is not counted
        values = {f"VAR_{n:02d}": f"value {n} r{round_} 'quotes' $(no-shell) {os.urandom(8).hex()}"
                  for n in range(VARIABLES)}
        if round_ % 2:
            panel = executor(values)
            old = intercity_next(values)
        else:
            old = intercity_next(values)
            panel = executor(values)
        assert sshd.dokku.env("bench") == {key: value.encode() for key, value in values.items()}
        pairs.append((old, panel))
        time.sleep(0.3)
    counted = phases[1:]
    print("  real executor, median per phase: " + ", ".join(
        f"{name} {_ms(statistics.median(p[name] for p in counted))}" for name in counted[0] if name != "execs")
        + f"; execs per operation {max(p['execs'] for p in counted)}")
    return pairs[1:]


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from intercity import crypto
    from intercity.dokku.ssh import HostKey, Target
    from tests.support.sshd import SshServer

    print(f"Dokku layer benchmark: loopback OpenSSH + Dokku double, {DATABASE}, median of {REPEAT}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{_ssh_version()}")
    with tempfile.TemporaryDirectory(prefix="intercity-bench-dokku-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("INTERCITY_INSTANCE_PATH", str(workdir / "instance"))
        with SshServer(workdir / "sshd") as sshd:
            private_key, public_key = crypto.generate_ssh_key("bench")
            sshd.authorize("root", public_key)
            target = Target(host=sshd.host, port=sshd.port, user="root", private_key=private_key,
                            pinned=HostKey(sshd.host_key_type, sshd.host_key_fingerprint))

            if not EXECUTOR_ONLY:
                old, new = env_vars(target, sshd.dokku)
                ratio = old / new
                print(f"  {VARIABLES} env vars, intercity-next way ({VARIABLES} connections x 1 config:set): {_ms(old)}")
                print(f"  {VARIABLES} env vars, panel way (1 connection, 1 encoded config:set):        {_ms(new)}")
                verdict = "OK" if ratio >= TARGET_RATIO else "MISSED"
                print(f"  ratio: {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x) {verdict}")

                one, each = many_commands(target)
                print(f"  20 commands over one connection: {_ms(one)} ({_ms(one / 20)} each)")
                print(f"  20 commands, a connection each:  {_ms(each)} ({_ms(each / 20)} each); "
                      f"{each / one:.1f}x slower")
            else:
                sshd.dokku.create_app("bench")

            print(f"  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            latencies, pairs = enqueue_latency(sshd, workdir, target)
            print(f"  enqueue -> first command on an idle worker: median {_ms(statistics.median(latencies))}, "
                  f"min {_ms(min(latencies))}, max {_ms(max(latencies))} (includes the SSH connection)")
            ratios = [old / panel for old, panel in pairs]
            print(f"  {VARIABLES} env vars, real executor (enqueue -> applied through worker.py, read-back included): "
                  f"median {_ms(statistics.median(p for _, p in pairs))}; intercity-next way in the same rounds: "
                  f"median {_ms(statistics.median(o for o, _ in pairs))}")
            verdict = "OK" if statistics.median(ratios) >= EXECUTOR_TARGET else "MISSED"
            print(f"  paired ratio: median {statistics.median(ratios):.1f}x, min {min(ratios):.1f}x, "
                  f"max {max(ratios):.1f}x (target >= {EXECUTOR_TARGET:.0f}x) {verdict}")
            print(f"  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _ssh_version() -> str:
    result = subprocess.run(["/usr/sbin/sshd", "-V"], capture_output=True, text=True)
    return (result.stderr or result.stdout).strip().split(",")[0] or "OpenSSH"


if __name__ == "__main__":
    main()
