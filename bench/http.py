"""HTTP throughput under the README's gunicorn command: `GET /audit` against a static file, interleaved.

Starts `gunicorn --workers 3 --worker-class gthread --threads 4` (the README's team set-up) on a
fresh PostgreSQL database with Redis configured, a viewer logged in, BENCH_HTTP_ENTRIES audit
entries (default 100,000, appended in bulk as bench/timeline.py does), then alternates wrk runs
of BENCH_HTTP_SECONDS (default 5) against `/static/app.css` and `/audit` (first page, 50 entries),
BENCH_HTTP_ROUNDS times (default 3), the same session cookie on both. Target: `/audit` at least a
quarter of the static file's requests/s. wrk shares the machine's CPUs with gunicorn, as the
Python client of the `/healthz` figures did; the ratio is the figure to read.

The log's newest operations are pending (BENCH_TIMELINE_PENDING, default 50), so the first page polls and the
timeline page cache (INTERCITY_TIMELINE_CACHE) renders it on every request; BENCH_TIMELINE_PENDING=0 ends them
all, and then each gunicorn process renders the page once and serves it from memory.

Needs wrk (Debian: `apt-get install wrk`), PostgreSQL (BENCH_DATABASE_URL) and Redis (BENCH_REDIS_URL).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = int(os.environ.get("BENCH_HTTP_ENTRIES", "100000"))
SECONDS = int(os.environ.get("BENCH_HTTP_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_HTTP_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_HTTP_CONNECTIONS", "8"))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
GUNICORN = ["--workers", "3", "--worker-class", "gthread", "--threads", "4"]  # README.md, "Running it for a team"
TARGET = 0.25
KEYS = {"SECRET_KEY": "bench-secret-key", "INTERCITY_ENCRYPTION_KEY": "bench-encryption-key-0123456789-abcdefghij"}
USER = ("bench@example.com", "bench password 123")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(url: str, total: int) -> None:
    """Migrate, one viewer, the timeline benchmark's servers and `total` entries."""
    import contextlib
    import io

    from flask_migrate import upgrade

    from bench import timeline
    from intercity import create_app
    from intercity.audit.actor import Actor, acting_as
    from intercity.extensions import db
    from intercity.models import Server
    from intercity.services.users import create_user

    app = create_app(timeline._config(url))
    with app.app_context():
        with contextlib.redirect_stderr(io.StringIO()):
            upgrade()
        with acting_as(Actor.system("cli")):
            create_user(USER[0], USER[1], "viewer")
            for n in range(1, timeline.SERVERS + 1):
                server = Server(name=f"srv-{n:02d}", host=f"10.0.1.{n}", port=22, ssh_user="root")
                server.generate_key_pair()
                db.session.add(server)
            db.session.commit()
        timeline.bulk_load(db.engine, total)
        db.session.remove()
        db.engine.dispose()


def log_in(base: str) -> str:
    """The session cookie of the viewer, logged in through the login form (CSRF included)."""
    session = requests.Session()
    page = session.get(f"{base}/login", timeout=30)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text) or \
        re.search(r'value="([^"]+)"[^>]*name="csrf_token"', page.text)
    response = session.post(f"{base}/login", data={"csrf_token": token.group(1), "email": USER[0],
                                                   "password": USER[1]}, allow_redirects=False, timeout=30)
    assert response.status_code == 302, (response.status_code, response.text[:300])
    check = session.get(f"{base}/audit", timeout=30)
    assert check.status_code == 200 and "timeline-entries" in check.text, check.status_code
    return "; ".join(f"{name}={value}" for name, value in session.cookies.items())


def wrk(url: str, cookie: str) -> float:
    """Requests/s wrk reached; fails on any non-2xx answer or socket error."""
    result = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--timeout", "30s",
                             "-H", f"Cookie: {cookie}", url], capture_output=True, text=True, check=True)
    assert "Non-2xx" not in result.stdout and "Socket errors" not in result.stdout, result.stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))


def main() -> None:
    sys.path.insert(0, str(ROOT))
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    from bench._databases import fresh_postgres

    url, drop = fresh_postgres(f"intercity_bench_http_{os.getpid()}")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="intercity-bench-http-") as tmp:
        env = {**os.environ, **KEYS, "DATABASE_URL": url, "REDIS_URL": REDIS_URL,
               "INTERCITY_QUEUE": f"bench-http-{os.getpid()}", "INTERCITY_INSTANCE_PATH": str(Path(tmp) / "instance")}
        os.environ["INTERCITY_INSTANCE_PATH"] = env["INTERCITY_INSTANCE_PATH"]
        server = None
        try:
            seed(url, ENTRIES)
            log = open(Path(tmp) / "gunicorn.log", "wb")
            server = subprocess.Popen([str(Path(sys.executable).with_name("gunicorn")), *GUNICORN, "--bind",
                                       f"127.0.0.1:{port}", "intercity:create_app()"], cwd=ROOT, env=env,
                                      stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 120
            while True:
                try:
                    requests.get(f"{base}/static/app.css", timeout=30)
                    break
                except (requests.ConnectionError, requests.Timeout):
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError((Path(tmp) / "gunicorn.log").read_text()) from None
                    time.sleep(0.2)
            cookie = log_in(base)
            print(f"HTTP benchmark: gunicorn {' '.join(GUNICORN)}, PostgreSQL, Redis, {ENTRIES:,} entries; "
                  f"wrk -t2 -c{CONNECTIONS} -d{SECONDS}s, {ROUNDS} rounds alternating; {os.cpu_count()} CPUs")
            print(f"  load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            wrk(f"{base}/audit", cookie)  # warm-up: every worker process has loaded its templates
            pairs = []
            for round_ in range(ROUNDS):
                order = ("static", "audit") if round_ % 2 == 0 else ("audit", "static")
                got = {name: wrk(f"{base}{'/static/app.css' if name == 'static' else '/audit'}", cookie)
                       for name in order}
                pairs.append((got["static"], got["audit"]))
                print(f"  round {round_ + 1}: static {got['static']:,.0f} req/s, /audit {got['audit']:,.0f} req/s, "
                      f"ratio {got['audit'] / got['static']:.2f}", flush=True)
            ratios = [audit / static for static, audit in pairs]
            ratio = statistics.median(ratios)
            print(f"  /audit / static file, median of {ROUNDS} paired rounds: {ratio:.2f} (min {min(ratios):.2f}, "
                  f"max {max(ratios):.2f}; target >= {TARGET}: {'OK' if ratio >= TARGET else 'MISSED'})")
            print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
            drop()


if __name__ == "__main__":
    main()
