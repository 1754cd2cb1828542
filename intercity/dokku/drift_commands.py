"""Commands a drift check runs besides the usual readers: Dokku's event log, its switch, the server's clock."""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from intercity.dokku.commands import Command, Deadline, _command

# Where Dokku's rsyslog rule sends event lines (plugins/20_events/install).
EVENTS_LOG = "/var/log/dokku/events.log"
# How many lines are read: `dokku events` prints only the last 100, and one apps:create plus one
# config:set already write about 90.
EVENT_LINES = 5000


@dataclass(frozen=True, kw_only=True)
class ServerScript(Command):
    """A fixed script of the panel's own, run by the SSH user's shell (not dokku, never under sudo):
    nothing in it comes from a person or from the server."""

    script: str = ""

    def remote_line(self, sudo: bool, deadline: Deadline | None = None) -> str:
        line = f"sh -c {shlex.quote(self.script)}"
        return f"{deadline.prefix()} {line}" if deadline is not None else line


def events_list() -> Command:
    return _command("events:list", "events:list")


def events_on() -> Command:
    return _command("events:on", "events:on")


def read_events(path: str = EVENTS_LOG, lines: int = EVENT_LINES) -> ServerScript:
    """The server's clock (UTC seconds, its zone offset and year, for traditional syslog times), then the
    last event lines: from the log file, or from the journal where rsyslog is missing."""
    quoted = shlex.quote(path)
    count = int(lines)
    script = (
        "date -u +%s.%N; date +%z; date +%Y; "
        f"if [ -r {quoted} ]; then echo source=file; tail -n {count} {quoted}; "
        "elif command -v journalctl >/dev/null 2>&1; then echo source=journal; "
        f"journalctl -t dokku-event -n {count} --no-pager -o short-iso 2>/dev/null; "
        "else echo source=none; fi"
    )
    shown = ("tail", "-n", str(count), path)
    return ServerScript(argv=("sh", "-c", script), display=shown, kind="events:read", script=script)
