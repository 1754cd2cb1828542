"""Helpers for tests that apply operations through the in-process runner (see tests/support/ssh_fixtures.py).

They change rows the way the services do (rows plus `request_operation`), commit, and wait
for the runner, so a test reads the finished operation and its command runs.
"""
from __future__ import annotations

import time

from sqlalchemy import select

from intercity.extensions import db
from intercity.models import App, CommandRun, EnvVar, Operation
from intercity.services.operations import request_operation
from tests.support.ssh_fixtures import wait_for_operations

# Everything a shell, xargs or Dokku's parsing could mangle, and a value at the size limit.
AWKWARD = {
    "QUOTES": "he said \"hi\" & 'bye'",
    "SUBSHELL": "$(touch /tmp/pwned) ${HOME} $HOME",
    "BACKTICKS": "`id -u` `whoami`",
    "NEWLINES": "line one\nline two\r\n\ttabbed\n",
    "EQUALS": "a=b=c==",
    "SPACES": "  leading and trailing  ",
    "UNICODE": "ünïcødé ✓ 🚀 日本語",
    "BACKSLASH_MIDDLE": "C:\\path\\to\\x and more",
    "SEMICOLON": "x; rm -rf / ; echo done | cat && true || false",
    "HUGE": ("0123456789abcdef" * 4096),  # 64 KiB
    "ALSO_BIG": "ü" * 8192,  # 16 KiB more: the two cannot share one command line
}


def settle(app) -> None:
    """Let the runner finish, then read fresh rows."""
    wait_for_operations(app)
    db.session.commit()
    db.session.expire_all()


def finished(app, op_id: int, timeout: float = 30) -> Operation:
    """The operation once it has ended, also when it first waits for an earlier command's deadline
    (the runner then drains its scope again later, so waiting for the runner once is not enough)."""
    limit = time.monotonic() + timeout
    while True:
        settle(app)
        op = db.session.get(Operation, op_id)
        if op.status in ("succeeded", "failed"):
            return op
        if time.monotonic() > limit:
            raise AssertionError(f"operation {op_id} is still {op.status} after {timeout} s")
        time.sleep(0.1)


def wait_until(predicate, timeout: float, what: str, on_timeout=lambda: ""):
    """The predicate's first true value, read from fresh rows; fails after `timeout` seconds."""
    limit = time.monotonic() + timeout
    while True:
        db.session.commit()
        db.session.expire_all()
        value = predicate()
        if value:
            return value
        if time.monotonic() > limit:
            raise AssertionError(f"timed out waiting for {what}\n{on_timeout()}")
        time.sleep(0.05)


def run_op(app, kind, *, server, user, target=None, payload=None, applies=()) -> Operation:
    op = request_operation(kind, server=server, app=target, payload=payload, requested_by=user, applies=applies)
    db.session.commit()
    op_id = op.id
    settle(app)
    return db.session.get(Operation, op_id)


def set_env(app_row: App, **values) -> list[str]:
    """Set env vars in the session (flushed); the keys, in order."""
    for key, value in values.items():
        var = db.session.scalar(select(EnvVar).where(EnvVar.app_id == app_row.id, EnvVar.key == key))
        if var is None:
            var = EnvVar(app=app_row, key=key)
            db.session.add(var)
        var.value = value
    db.session.flush()
    return list(values)


def apply_env(app, app_row, user, *, restart=False, unset=(), **values) -> Operation:
    keys = set_env(app_row, **values)
    changed = db.session.scalars(select(EnvVar).where(EnvVar.app_id == app_row.id, EnvVar.key.in_(keys))).all()
    return run_op(app, "env.apply", server=app_row.server, user=user, target=app_row,
                  payload={"set": keys, "unset": list(unset), "restart": restart}, applies=changed)


def runs(op: Operation) -> list[CommandRun]:
    return list(db.session.scalars(select(CommandRun).where(CommandRun.operation_id == op.id)
                                   .order_by(CommandRun.position)))


def argvs(op: Operation) -> list[list[str]]:
    return [run.argv_list for run in runs(op)]
