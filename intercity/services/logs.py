"""An app's recent logs, read on demand: a short job runs `dokku logs`, the page polls for its answer.

Log reads are not operations: no command run, no audit entry, nothing in the database. The job
keeps its redacted answer in the expiring buffer (`jobs/expiring.py`) for at most `LOGS_TTL`
seconds, under a random token bound to the app and the person who asked. Following the logs is a
series of such reads, `LOGS_FOLLOW_INTERVAL` seconds apart for at most `LOGS_FOLLOW_LIMIT` seconds,
each showing the lines the previous one had not; the page drives it, so leaving the page stops it.
Members and admins only: apps print secrets the redactor does not know.
"""
from __future__ import annotations

import json
import secrets
import time

from flask import current_app
from sqlalchemy import select

from intercity.dokku import deploys, parsers, ssh
from intercity.dokku.commands import Deadline
from intercity.dokku.parsers import DokkuError
from intercity.dokku.transcript import MAX_STREAM, Redactor, truncate
from intercity.extensions import db
from intercity.jobs import expiring, schedule
from intercity.models import App, EnvVar
from intercity.services.permissions import require
from intercity.validation import ValidationError

DEFAULT_LINES = 100
MAX_LINES = 1000
# Seconds a read may run on the server: `logs -n` prints what the containers have and ends.
READ_DEADLINE = 30


def settings() -> dict:
    config = current_app.config
    return {"ttl": int(config.get("LOGS_TTL", 60)), "interval": float(config.get("LOGS_FOLLOW_INTERVAL", 3)),
            "limit": float(config.get("LOGS_FOLLOW_LIMIT", 300))}


def _key(token: str) -> str:
    return f"logs:{token}"


def _save(token: str, record: dict) -> None:
    expiring.buffer().put(_key(token), json.dumps(record), settings()["ttl"])


def lines_wanted(value) -> int:
    try:
        lines = int(value) if value not in (None, "") else DEFAULT_LINES
    except (TypeError, ValueError):
        raise ValidationError(f"Enter a number of lines from 1 to {MAX_LINES}.", "lines") from None
    if not 1 <= lines <= MAX_LINES:
        raise ValidationError(f"Enter a number of lines from 1 to {MAX_LINES}.", "lines")
    return lines


def start(app: App, user, *, lines=None, process: str | None = None, follow: bool = False) -> str:
    """Ask for the app's last lines (and, with `follow`, keep asking); returns the read's token."""
    require(user, "member")
    lines, process = lines_wanted(lines), deploys.process_type(process)
    token = secrets.token_urlsafe(18)
    record = {"state": "pending", "app_id": app.id, "user_id": user.id, "lines": lines, "process": process,
              "follow": follow, "started": time.time(), "shown": [], "new": [], "error": None, "skipped": False}
    _save(token, record)
    schedule.submit("intercity.services.logs.read", token, beside=True)
    return token


def find(app: App, user, token: str) -> dict | None:
    """The read behind `token`, if it is this person's read of this app and has not expired."""
    require(user, "member")
    raw = expiring.buffer().get(_key(token)) if token else None
    if raw is None:
        return None
    record = json.loads(raw)
    if record.get("app_id") != app.id or record.get("user_id") != user.id:
        return None
    return record


def follow_state(record: dict) -> str:
    """`go` (ask again after the interval) or `ended` (the follow reached its limit)."""
    return "ended" if time.time() - record["started"] >= settings()["limit"] else "go"


def next_round(app: App, user, token: str) -> dict | None:
    """The next read of a follow; None when it expired, the record unchanged when its time is up."""
    record = find(app, user, token)
    if record is None or not record.get("follow") or record["state"] == "pending":
        return record
    if follow_state(record) == "ended":
        return record
    record.update(state="pending", new=[], error=None)
    _save(token, record)
    schedule.submit("intercity.services.logs.read", token, beside=True)
    return record


def new_lines(shown: list[str], current: list[str]) -> tuple[list[str], bool]:
    """The lines of `current` after the longest end of `shown` it starts with; True when none overlapped."""
    if not shown:
        return current, False
    for size in range(min(len(shown), len(current)), 0, -1):
        if shown[-size:] == current[:size]:
            return current[size:], False
    return current, bool(current)


# --- the job -------------------------------------------------------------------------------


def read(token: str) -> None:
    """The short job: one `dokku logs` over SSH, its redacted lines into the buffer. No database writes."""
    store = expiring.buffer()
    raw = store.get(_key(token))
    if raw is None:
        return  # expired: nobody is looking any more
    record = json.loads(raw)
    try:
        app = db.session.get(App, record["app_id"])
        if app is None:
            raise ValidationError("The app was removed from the panel.", None)
        output = _run(app, record["lines"], record["process"])
        lines = [line.rstrip("\r") for line in output.split("\n")]
        if lines and lines[-1] == "":
            lines.pop()
        new, skipped = new_lines(record["shown"], lines) if record["follow"] else (lines, False)
        record.update(state="done", new=new, skipped=skipped, shown=lines[-MAX_LINES:], error=None)
    except (DokkuError, ssh.SshError, ValidationError) as error:
        record.update(state="failed", new=[], error=error.message)
    except Exception:  # noqa: BLE001 - say so without a traceback that could quote a line
        current_app.logger.error("reading logs failed unexpectedly")
        record.update(state="failed", new=[], error="The panel hit an unexpected error while reading the logs.")
    finally:
        db.session.rollback()  # read only: nothing of this job is ever committed
    _save(token, record)


def _run(app: App, lines: int, process: str | None) -> str:
    server = app.server
    if server.status == "host_key_mismatch":
        raise ValidationError(f"Work on {server.name} is stopped: it presented a host key other than the pinned "
                              "one. An admin must check it on the server's page first.", None)
    if not (server.host_key_type and server.host_key_fingerprint):
        raise ValidationError(f"The host key of {server.name} has not been verified yet: test the connection first.",
                              None)
    config = current_app.config
    grace = int(config["COMMAND_KILL_GRACE"])
    redactor = Redactor(var.value for var in db.session.scalars(select(EnvVar).where(EnvVar.app_id == app.id)))
    command = deploys.logs(app.name, lines, process)
    target = ssh.Target(host=server.host, port=server.port, user=server.ssh_user, private_key=server.private_key,
                        pinned=ssh.HostKey(server.host_key_type, server.host_key_fingerprint),
                        connect_timeout=config["SSH_CONNECT_TIMEOUT"], command_timeout=READ_DEADLINE + grace + 5,
                        label=server.name)
    db.session.rollback()  # no transaction across the network
    with ssh.connect(target, retries=0) as connection:
        result = connection.run(command, deadline=Deadline(READ_DEADLINE, grace))
    if result.exit_code is None:
        raise ValidationError(f"dokku logs {result.error}.", None)
    if result.exit_code in (124, 137):
        raise ValidationError(f"dokku logs ran longer than {READ_DEADLINE} s, so the server stopped it.", None)
    parsers.check(command, result.exit_code, result.out, result.err, scrub=redactor.redact)
    # Docker writes the app's stderr lines to the same place: both streams are its log.
    text = result.out + (result.err if result.err.strip() else "")
    return truncate(redactor.redact(text), MAX_STREAM)
