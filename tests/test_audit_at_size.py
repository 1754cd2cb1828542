"""A long log under the documented deployment: verification in stored steps, exports outliving the worker timeout."""
from __future__ import annotations

import csv
import http.client
import io
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from intercity.audit import chain, integrity
from intercity.extensions import db
from intercity.models import AuditCheckpoint, AuditEntry
from tests.support.builders import PASSWORD
from tests.support.timeline_data import append_raw

README = Path(__file__).resolve().parent.parent / "README.md"


def _entries(count: int) -> None:
    for start in range(0, count, 5000):
        append_raw([{"action": "env_var.updated", "target_type": "env_var", "target_label": f"KEY_{n}",
                     "diff": {"value_fingerprint": ["a" * 16, "b" * 16]}}
                    for n in range(start, min(start + 5000, count))])


def test_verify_chain_runs_in_stored_steps_showing_progress(client, logged_in, admin, monkeypatch):
    _entries(30)
    monkeypatch.setattr(integrity, "STEP", 7)
    logged_in(admin)
    steps, body = 0, ""
    while "Chain intact." not in body:
        body = client.post("/audit/verify", headers={"HX-Request": "true"}).get_data(as_text=True)
        steps += 1
        assert steps < 10, body
        if "Chain intact." not in body:
            # The fragment shows how far it got and asks for the next step itself.
            assert "Verifying…" in body and 'hx-trigger="load"' in body and "<progress" in body
            seqs = db.session.scalars(select(AuditCheckpoint.seq).order_by(AuditCheckpoint.id)).all()
            assert seqs[-1] == 7 * steps
            db.session.rollback()
    verified = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "audit.verified")).all()
    assert len(verified) == 1 and verified[0].seq == chain.head(db.session.connection())[0]
    checked = verified[0].seq - 1  # everything before the entry that reports it
    assert verified[0].changes["total"][1] == checked and steps == -(-checked // 7)
    # Without JavaScript each press continues, and says so.
    _entries(10)
    response = client.post("/audit/verify", follow_redirects=True)
    assert "Press Verify chain again to continue" in response.get_data(as_text=True)


def test_print_publishes_the_head_without_walking_the_whole_chain(client, logged_in, admin, monkeypatch):
    _entries(30)
    monkeypatch.setattr(integrity, "STEP", 7)
    logged_in(admin)
    body = client.get("/audit/print").get_data(as_text=True)
    seq, digest = chain.head(db.session.connection())
    assert f"{seq}:{digest}" in body
    assert "not verified yet" in body
    # A GET stores nothing: the print checks one step from the newest checkpoint and keeps no new one.
    assert db.session.scalar(select(func.max(AuditCheckpoint.seq))) is None


def test_cli_verify_stores_the_checkpoint_it_computed(runner, client, logged_in, admin):
    _entries(20)
    head_seq, head_hash = chain.head(db.session.connection())
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    db.session.rollback()
    checkpoint = integrity.latest_checkpoint()
    assert (checkpoint.seq, checkpoint.hash, checkpoint.entries) == (head_seq, head_hash, head_seq)
    logged_in(admin)
    body = client.post("/audit/verify", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert f"from checkpoint {head_seq}" in body


# --- the README's gunicorn command at size ------------------------------------------------------


def _gunicorn_command() -> list[str]:
    """The README's gunicorn line, as an operator would paste it."""
    match = re.search(r"^gunicorn .*$", README.read_text(), re.M)
    assert match, "the README documents a gunicorn command"
    return shlex.split(match.group(0))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.postgresql_only
def test_an_export_outlives_the_worker_timeout_under_the_documented_gunicorn(app, admin, database_url, tmp_path):
    """A client reading slowly keeps the export running past the worker timeout; it still arrives whole."""
    _entries(20000)
    head_seq = chain.head(db.session.connection())[0]
    port = _free_port()
    command = _gunicorn_command()
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    # A short timeout shows the mechanism in seconds instead of the default 30.
    command[0:1] = [sys.executable, "-m", "gunicorn", "--timeout", "2", "--graceful-timeout", "1"]
    env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "SECRET_KEY": "gunicorn-test",
           "INTERCITY_ENCRYPTION_KEY": app.config["INTERCITY_ENCRYPTION_KEY"],
           "INTERCITY_INSTANCE_PATH": str(tmp_path / "instance"), "INTERCITY_ENV": "development"}
    env.pop("REDIS_URL", None)
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        cookie = _login(port, admin.email)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.connect()
        connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        started = time.monotonic()
        connection.request("GET", "/audit/export.csv", headers={"Cookie": cookie})
        response = connection.getresponse()
        assert response.status == 200
        chunks = [response.read(16384)]
        time.sleep(3)  # longer than the worker timeout: a sync worker would be killed mid-export
        chunks.append(response.read())
        elapsed = time.monotonic() - started
        connection.close()
    finally:
        server.terminate()
        server.wait(10)
    output = log_path.read_text()
    assert "WORKER TIMEOUT" not in output, output
    body = b"".join(chunks).decode()
    *rows, last = list(csv.DictReader(io.StringIO(body, newline="")))
    db.session.rollback()
    final_seq, final_hash = chain.head(db.session.connection())  # the login and the export came after ours
    assert elapsed > 3 and final_seq > head_seq
    assert [int(row["seq"]) for row in rows] == list(range(1, final_seq + 1))
    assert (last["action"], int(last["seq"]), last["hash"]) == ("audit.export_head", final_seq, final_hash)


def _login(port: int, email: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/login")
    response = connection.getresponse()
    page = response.read().decode()
    cookie = response.getheader("Set-Cookie").split(";")[0]
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    connection.request("POST", "/login", body=urlencode({"csrf_token": token, "email": email, "password": PASSWORD}),
                       headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 302, response.status
    return response.getheader("Set-Cookie").split(";")[0]
