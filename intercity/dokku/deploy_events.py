"""Reads the deploy lines of Dokku's event log: which deploy key pushed, per top-level dokku process.

A line reads `<time> <host> dokku-event[<pid>]: INVOKED: <trigger>( <args> ) NAME=<key> FINGERPRINT=<fp>
DOKKU_PID=<pid>`; NAME and FINGERPRINT are empty for commands run as root or through sudo. Only
the triggers a deploy fires are read here (the drift check reads the others).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

_SHA = re.compile(r"[0-9a-f]{7,64}")
DEPLOY_TRIGGERS = ("receive-app", "pre-receive-app", "post-deploy", "deploy-source-set")

_LINE = re.compile(
    r"^(?P<time>\S+(?:\s+\d+\s+\d\d:\d\d:\d\d)?)\s+\S+\s+dokku(?:-event)?\[\d+\]:\s+INVOKED:\s+"
    r"(?P<trigger>[a-z0-9-]+)\(\s?(?P<args>.*?)\s?\)\s+NAME=(?P<name>\S*)\s+FINGERPRINT=(?P<fingerprint>\S*)"
    r"(?:\s+DOKKU_PID=(?P<pid>\d+))?\s*$")


@dataclass(frozen=True)
class DeployEvent:
    at: datetime | None
    trigger: str
    app: str
    name: str
    fingerprint: str
    dokku_pid: int | None
    # receive-app's second argument is the pushed revision.
    rev: str | None = None


def _time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None  # `Jul  3 16:10:46` (traditional syslog) has no year: matched by pid only
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse(text: str) -> list[DeployEvent]:
    """The deploy trigger lines of `dokku events` output, oldest first; other lines are skipped."""
    found = []
    for line in (text or "").splitlines():
        match = _LINE.match(line.strip())
        if not match or match.group("trigger") not in DEPLOY_TRIGGERS:
            continue
        args = match.group("args").split()
        pid = match.group("pid")
        rev = args[1] if match.group("trigger") == "receive-app" and len(args) > 1 else None
        found.append(DeployEvent(at=_time(match.group("time")), trigger=match.group("trigger"),
                                 app=args[0] if args else "", name=match.group("name"),
                                 fingerprint=match.group("fingerprint"), dokku_pid=int(pid) if pid else None,
                                 rev=rev if rev and _SHA.fullmatch(rev) else None))
    return found


def of_build(events: list[DeployEvent], app: str, pid: int | None, started: datetime | None,
             finished: datetime | None, slack: float = 60) -> list[DeployEvent]:
    """The lines of one build: its dokku process's, else those within its time (± slack)."""
    mine = [e for e in events if e.app == app]
    if pid is not None:
        by_pid = [e for e in mine if e.dokku_pid == pid]
        if by_pid:
            return by_pid
    if started is None:
        return []
    end = finished or started
    return [e for e in mine if e.at is not None and (started - e.at).total_seconds() <= slack
            and (e.at - end).total_seconds() <= slack]


def who_deployed(events: list[DeployEvent], app: str, pid: int | None, started: datetime | None,
                 finished: datetime | None, slack: float = 60) -> str | None:
    """The deploy key named by the lines of this build (None: none named, e.g. a root run or the log off)."""
    return next((e.name for e in of_build(events, app, pid, started, finished, slack) if e.name), None)


def revision(events: list[DeployEvent], app: str, pid: int | None, started: datetime | None,
             finished: datetime | None) -> str | None:
    """The pushed revision, from the build's receive-app line."""
    return next((e.rev for e in of_build(events, app, pid, started, finished) if e.rev), None)
