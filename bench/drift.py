"""Drift check benchmark: one check of a server with 50 apps on the loopback sshd with the Dokku double.

The plain way, as the panel runs it: `apps:list`, then per app `config:export --format json` and
`domains:report`, then `ssh-keys:list`, `events:list` and the event log, each its own exec over one
SSH connection. Prints the number of commands and the seconds per check (median of BENCH_DRIFT_REPEAT
rounds, default 3), with nothing changed on the server, so the figure is the cost of looking.
Needs root (it starts sshd). SQLite database, in-process runner.
"""
from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPEAT = int(os.environ.get("BENCH_DRIFT_REPEAT", "3"))
APPS = int(os.environ.get("BENCH_DRIFT_APPS", "50"))
VARIABLES = 10
KEYS = {"SECRET_KEY": "bench-secret-key", "INTERCITY_ENCRYPTION_KEY": "bench-encryption-key-0123456789-abcdefghij"}


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from flask_migrate import upgrade
    from sqlalchemy import func, select

    from intercity import create_app
    from intercity.extensions import db
    from intercity.models import App, AuditEntry, Domain, EnvVar, Server
    from tests.support.sshd import SshServer

    with tempfile.TemporaryDirectory(prefix="intercity-bench-drift-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("INTERCITY_INSTANCE_PATH", str(workdir / "instance"))
        os.environ.pop("REDIS_URL", None)
        with SshServer(workdir / "sshd") as sshd:
            dokku = sshd.dokku
            app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{workdir / 'bench.sqlite'}", **KEYS,
                              "NOTIFY_TICK_SECONDS": 0, "DOKKU_EVENTS_LOG": str(dokku.events_log)})
            with app.app_context():
                with contextlib.redirect_stderr(io.StringIO()):
                    upgrade()
                server = Server(name="bench", host=sshd.host, port=sshd.port, ssh_user="root", status="ready",
                                host_key_type=sshd.host_key_type, host_key_fingerprint=sshd.host_key_fingerprint,
                                dokku_version="0.38.27")
                server.generate_key_pair()
                db.session.add(server)
                sshd.authorize("root", server.public_key)
                for n in range(APPS):
                    name = f"app-{n:02d}"
                    env = {f"VAR_{k}": f"value-{n}-{k}-{os.urandom(6).hex()}" for k in range(VARIABLES)}
                    dokku.create_app(name)
                    dokku.set_env(name, env)
                    dokku.set_domains(name, [f"{name}.example.com"])
                    row = App(server=server, name=name, imported=True)
                    db.session.add(row)
                    for key, value in env.items():
                        var = EnvVar(app=row, key=key)
                        var.value = value
                        db.session.add(var)
                    db.session.add(Domain(app=row, hostname=f"{name}.example.com"))
                db.session.commit()
                runner = app.extensions["intercity_jobs"]
                results = {}
                for mode in ("plain", "digests"):
                    app.config["DRIFT_DIGESTS"] = mode == "digests"
                    results[mode] = _rounds(app, runner, server.id)
                drift = db.session.scalar(select(func.count()).select_from(AuditEntry)
                                          .where(AuditEntry.action.like("%_outside")))
                print(f"Drift check, {APPS} apps x {VARIABLES} env vars + 1 domain, loopback OpenSSH + Dokku double, "
                      f"{os.cpu_count()} CPUs, median of {REPEAT}:")
                for mode, (times, count) in results.items():
                    print(f"  {mode}: commands per check: {count}; seconds per check: median "
                          f"{statistics.median(times):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s")
                print(f"  drift entries recorded (nothing changed): {drift}")
                print(f"  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
                runner.close()
                db.session.remove()
                db.engine.dispose()


def _rounds(app, runner, server_id: int) -> tuple[list[float], int]:
    from sqlalchemy import func, select

    from intercity.extensions import db
    from intercity.models import CommandRun, Operation, Server
    from intercity.services.operations import request_operation

    times, counts = [], []
    for _ in range(REPEAT + 1):  # the first round warms up (and sets the baseline)
        op = request_operation("server.drift_check", server=db.session.get(Server, server_id))
        started = time.perf_counter()
        db.session.commit()
        op_id = op.id
        while True:
            runner.wait_idle()
            db.session.commit()
            db.session.expire_all()
            done = db.session.get(Operation, op_id)
            if done.status in ("succeeded", "failed"):
                break
            time.sleep(0.02)
        times.append(time.perf_counter() - started)
        if done.status != "succeeded":
            raise RuntimeError(f"drift check failed: {done.reason}")
        counts.append(db.session.scalar(select(func.count()).select_from(CommandRun)
                                        .where(CommandRun.operation_id == op_id)))
    return times[1:], counts[-1]


if __name__ == "__main__":
    main()
