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


@dataclass(frozen=True, kw_only=True)
class ConfigDigests(ServerScript):
    """One exec for many apps: per app, a SHA-256 of what `config:export --format json` and `domains:report`
    print (with their exit status), so only the apps whose digest moved are read in full. Values never
    leave the server this way; the names are validated app names, each quoted."""

    apps: tuple[str, ...] = ()
    json_domains: bool = True

    def remote_line(self, sudo: bool, deadline: Deadline | None = None) -> str:
        dokku = "sudo -n dokku" if sudo else "dokku"
        domains_format = " --format json" if self.json_domains else ""
        names = " ".join(shlex.quote(name) for name in self.apps)
        script = (f"for a in {names}; do printf 'app %s\\n' \"$a\"; "
                  f"{{ {dokku} config:export --format json \"$a\" 2>&1; echo \"exit=$?\"; }} | sha256sum; "
                  f"{{ {dokku} domains:report \"$a\"{domains_format} 2>&1; echo \"exit=$?\"; }} | sha256sum; done")
        line = f"sh -c {shlex.quote(script)}"
        return f"{deadline.prefix()} {line}" if deadline is not None else line


def config_digests(apps: list[str], json_domains: bool) -> ConfigDigests:
    from intercity.dokku.commands import _existing_app

    names = tuple(_existing_app(name) for name in apps)
    shown = ("sh", "-c", f"for each of {len(names)} apps: dokku config:export --format json | sha256sum; "
             "dokku domains:report | sha256sum")
    return ConfigDigests(argv=shown, display=shown, kind="config:digests", apps=names, json_domains=json_domains)


def parse_digests(stdout: str) -> dict[str, str]:
    """app name -> its two digests joined (config, then domains); an app with a line missing has none."""
    found: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith("app "):
            current = line[4:]
            found[current] = []
        elif current is not None and line.strip():
            found[current].append(line.split()[0])
    return {name: ":".join(parts) for name, parts in found.items() if len(parts) == 2}
