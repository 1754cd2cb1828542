"""Fixtures and helpers for the panel's tests (servers, apps, env vars, domains, deploy keys, operations).

Two ways to run operations:
* `no_worker`: operations go to a real Redis queue of their own that no worker consumes, so they stay
  queued and a test sees exactly what a request registered (view and service tests).
* `sshd` + `dokku` (tests/support/ssh_fixtures.py) + the in-process runner: operations really run over
  SSH against the loopback OpenSSH server and the Dokku double (end-to-end tests); `finish()` waits.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from intercity.extensions import db

# Values distinctive enough that finding them anywhere means a leak.
SECRETS = {
    "DATABASE_URL": "postgres://app:Sup3r-S3cret-pw@db.internal/app",
    "API_TOKEN": "tok_9f8e7d6c5b4a-distinctive",
    "MULTILINE": "-----BEGIN KEY-----\nc2VjcmV0LWxpbmUtb25l\nsecret-line-two\n-----END KEY-----",
}
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g alice@laptop"
ED25519_OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICAfHh0cGxoZGBcWFRQTEhEQDw4NDAsKCQgHBgUEAwIB bob@ci"


@contextmanager
def acting(user):
    """Audit entries written inside are by `user`, as in a request of theirs."""
    from intercity.audit.actor import Actor, acting_as

    with acting_as(Actor.for_user(user)):
        yield


def entries(action: str | None = None):
    from intercity.models import AuditEntry

    query = select(AuditEntry).order_by(AuditEntry.seq)
    if action:
        query = query.where(AuditEntry.action == action)
    return db.session.scalars(query).all()


def actions() -> list[str]:
    return [entry.action for entry in entries()]


def operations(kind: str | None = None):
    from intercity.models import Operation

    query = select(Operation).order_by(Operation.id)
    if kind:
        query = query.where(Operation.kind == kind)
    return db.session.scalars(query).all()


def finish_operation(op, status: str = "failed", reason: str | None = "Dokku said no.", runs=()):
    """Give an operation a final state and command runs, as a worker would have written them."""
    from intercity.models import CommandRun
    from intercity.models.base import utcnow

    now = utcnow()
    op.status = status
    op.reason = reason if status == "failed" else None
    op.started_at = op.started_at or now
    op.finished_at = now
    for position, (argv, exit_code, stdout, stderr) in enumerate(runs):
        db.session.add(CommandRun(operation_id=op.id, position=position, server_name=op.server_name,
                                  argv=json.dumps(argv), exit_code=exit_code, stdout=stdout, stderr=stderr,
                                  started_at=now, finished_at=now))
    db.session.commit()
    return op


def session_client(app, user=None):
    """A browser of its own; logged in by session (the password login is tested in test_foundation.py)."""
    client = app.test_client()
    if user is not None:
        with client.session_transaction() as session:
            session["_user_id"] = str(user.id)
            session["_fresh"] = True
    return client


@pytest.fixture
def no_worker(redis_queue, redis_url):
    """Operations are enqueued on real Redis (a queue of this test's own) and nothing consumes them."""
    yield redis_queue
    from redis import Redis
    from rq import Queue

    Queue(redis_queue, connection=Redis.from_url(redis_url)).empty()


# --- the real SSH server with the Dokku double (fixtures `sshd`, `dokku`: tests/support/ssh_fixtures.py) ---


def install_panel_key(sshd, server) -> None:
    """Do what the server page tells a person: append the exact authorized_keys line it shows."""
    from intercity.services.servers import authorized_keys_line

    path = Path(sshd.keys_dir) / server.ssh_user
    with open(path, "a") as handle:
        handle.write(authorized_keys_line(server) + "\n")
    path.chmod(0o644)


def sshd_server(sshd, *, install_key: bool = True, **overrides):
    """A Server row for the loopback sshd before its first connection test, with the panel's line installed."""
    from tests.support.ssh_fixtures import make_dokku_server

    server = make_dokku_server(sshd, pinned=False, authorize=False, **overrides)
    if install_key:
        install_panel_key(sshd, server)
    return server


def finish(app) -> None:
    """Wait until the in-process runner applied everything, then read fresh rows."""
    runner = app.extensions.get("intercity_jobs")
    assert runner is not None, "end-to-end tests need the in-process runner (no REDIS_URL)"
    runner.wait_idle()
    db.session.rollback()
    db.session.expire_all()
