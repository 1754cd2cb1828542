"""Deploys benchmark: opening an app page with 20 builds on the server, through the loopback sshd and the double.

The app page's view requests the read operations (builds and processes) when the last reading is over
a minute old; the in-process runner applies them over one SSH connection. Measured, median of
BENCH_DEPLOYS_REPEAT rounds (default 3), each on a fresh SQLite database:

* fresh: 20 builds the panel has not seen (event log on, each pushed by a named deploy key): the
  request itself, the time until both readings have ended, and the SSH commands they ran;
* within the minute: the page opened again, nothing is read;
* a minute later: the builds are known, so only the listing and ps:report run.

Needs root (it starts sshd).
"""
from __future__ import annotations

import contextlib
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPEAT = int(os.environ.get("BENCH_DEPLOYS_REPEAT", "3"))
BUILDS = 20
KEYS = {"SECRET_KEY": "bench-secret-key", "INTERCITY_ENCRYPTION_KEY": "bench-encryption-key-0123456789-abcdefghij"}


def one_round(sshd, workdir: Path, index: int) -> dict[str, tuple[float, float, int]]:
    from flask_migrate import upgrade
    from sqlalchemy import func, select, update

    from intercity import create_app
    from intercity.extensions import db
    from intercity.models import App, AppDeployRead, AuditEntry, CommandRun, Operation, Server, User
    from intercity.models.base import utcnow
    from tests.support.deploys import events_on, record_deploy

    dokku = sshd.dokku
    dokku.reset()
    dokku.create_app("bench")
    events_on(dokku)
    began = time.time() - 3600
    for n in range(BUILDS):
        record_deploy(dokku, "bench", key_name=f"dev-{n % 3}", sha=f"{n:040x}", started=began + n * 120, seconds=30)
    database = f"sqlite:///{workdir / f'bench-{index}.sqlite'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": database, **KEYS, "JOBS_IN_PROCESS": True,
                      "WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False})
    results = {}
    with app.app_context():
        with contextlib.redirect_stderr(io.StringIO()):
            upgrade()
        server = Server(name="bench", host=sshd.host, port=sshd.port, ssh_user="root", status="ready",
                        host_key_type=sshd.host_key_type, host_key_fingerprint=sshd.host_key_fingerprint,
                        dokku_version="0.38.27")
        server.generate_key_pair()
        db.session.add(server)
        db.session.add(App(server=server, name="bench", status="active"))
        user = User(email="bench@example.com", role="member")
        user.set_password("bench-password-123")
        db.session.add(user)
        db.session.commit()
        sshd.authorize("root", server.public_key)
        url = f"/servers/{server.id}/apps/bench"
        client = app.test_client()
        client.post("/login", data={"email": "bench@example.com", "password": "bench-password-123"})
        runner = app.extensions["intercity_jobs"]

        def open_page() -> tuple[float, float, int]:
            before = db.session.scalar(select(func.count()).select_from(CommandRun))
            started = time.perf_counter()
            response = client.get(url)
            answered = time.perf_counter() - started
            assert response.status_code == 200, response.status_code
            runner.wait_idle()
            done = time.perf_counter() - started
            db.session.commit()
            return answered, done, db.session.scalar(select(func.count()).select_from(CommandRun)) - before

        results["fresh"] = open_page()
        deploys = db.session.scalar(select(func.count()).select_from(AuditEntry)
                                    .where(AuditEntry.action == "app.deployed"))
        assert deploys == BUILDS, deploys
        failed = db.session.scalars(select(Operation).where(Operation.status != "succeeded")).all()
        assert not failed, [op.reason for op in failed]
        results["within the minute"] = open_page()
        past = utcnow() - timedelta(minutes=2)
        db.session.execute(update(Operation).values(created_at=past))
        db.session.execute(update(AppDeployRead).values(checked_at=past))
        for row in db.session.scalars(select(App)):
            row.ps_checked_at = past  # ignored by the audit rule: no entry
        db.session.commit()
        results["a minute later, builds known"] = open_page()
        assert db.session.scalar(select(func.count()).select_from(AuditEntry)
                                 .where(AuditEntry.action == "app.deployed")) == BUILDS
        runner.close()
        db.session.remove()
        db.engine.dispose()
    return results


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.support.sshd import SshServer

    print(f"Deploys benchmark: app page with {BUILDS} builds on the server, loopback OpenSSH + Dokku double, "
          f"median of {REPEAT}; {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"  load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="intercity-bench-deploys-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("INTERCITY_INSTANCE_PATH", str(workdir / "instance"))
        with SshServer(workdir / "sshd") as sshd:
            rounds = [one_round(sshd, workdir, n) for n in range(REPEAT)]
    for case in rounds[0]:
        answered = statistics.median(r[case][0] for r in rounds)
        done = statistics.median(r[case][1] for r in rounds)
        commands = sorted({r[case][2] for r in rounds})
        print(f"  {case}: page answered in {answered * 1000:,.0f} ms, readings ended after {done * 1000:,.0f} ms, "
              f"SSH commands: {'/'.join(map(str, commands))}")
    print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
