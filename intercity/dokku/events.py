"""Reading Dokku's event log: lines in both syslog time formats, grouped by the dokku command (DOKKU_PID)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

_LINE = re.compile(
    r"^(?P<stamp>\d{4}-\d\d-\d\dT\S+|[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)\s+\S+\s+dokku-event(?:\[\d+\])?:\s+"
    r"INVOKED:\s+(?P<trigger>[A-Za-z0-9_-]+)\(\s?(?P<args>.*?)\s?\)\s+NAME=(?P<name>.*?)\s+"
    r"FINGERPRINT=(?P<fingerprint>\S*)\s+DOKKU_PID=(?P<pid>\d+)\s*$")
_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
# Triggers that mean a change the drift check can see (read-only ones fire on almost every command).
CHANGE_TRIGGERS = frozenset({"post-create", "pre-delete", "post-delete", "post-config-update",
                             "post-domains-update"})
# Lines of one DOKKU_PID further apart than this are two commands (PIDs are reused).
GROUP_GAP = timedelta(minutes=10)


@dataclass(frozen=True)
class ServerClock:
    """The server's clock as read at a check: its UTC time, zone offset and year, and how far it is off ours."""

    utc: datetime
    zone: timezone
    year: int
    offset: timedelta  # server minus panel


@dataclass
class EventGroup:
    """The change triggers of one dokku command, as its lines in the event log tell."""

    pid: int
    name: str
    fingerprint: str
    first: datetime  # server time, UTC
    last: datetime
    triggers: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def panel_time(self, clock: ServerClock) -> tuple[datetime, datetime]:
        return self.first - clock.offset, self.last - clock.offset


def parse_clock(lines: list[str], panel_before: datetime, panel_after: datetime) -> ServerClock:
    """`date -u +%s.%N`, `date +%z`, `date +%Y`: the offset is measured against the middle of the exec."""
    utc = datetime.fromtimestamp(float(lines[0].strip()), tz=timezone.utc)
    zone_text = lines[1].strip()
    sign = -1 if zone_text.startswith("-") else 1
    zone = timezone(sign * timedelta(hours=int(zone_text[1:3]), minutes=int(zone_text[3:5])))
    middle = panel_before + (panel_after - panel_before) / 2
    return ServerClock(utc=utc, zone=zone, year=int(lines[2].strip()), offset=utc - middle)


def parse_time(stamp: str, clock: ServerClock) -> datetime | None:
    """RFC 3339 as it is, or a traditional syslog time in the server's zone and year (last year if in its future)."""
    try:
        if stamp[:4].isdigit():
            # journalctl -o short-iso writes +0000 without the colon; fromisoformat takes both.
            return datetime.fromisoformat(stamp).astimezone(timezone.utc)
        month, day, clock_text = stamp.split()
        hour, minute, second = (int(part) for part in clock_text.split(":"))
        local = datetime(clock.year, _MONTHS[month], int(day), hour, minute, second, tzinfo=clock.zone)
        if local - clock.utc > timedelta(days=1):
            local = local.replace(year=clock.year - 1)  # December's lines read in January
        return local.astimezone(timezone.utc)
    except (ValueError, KeyError):
        return None


def parse(lines: list[str], clock: ServerClock) -> list[EventGroup]:
    """The change triggers in these lines, grouped per dokku command, oldest first."""
    groups: list[EventGroup] = []
    open_groups: dict[int, EventGroup] = {}
    for line in lines:
        match = _LINE.match(line.strip())
        if not match or match["trigger"] not in CHANGE_TRIGGERS:
            continue
        at = parse_time(match["stamp"], clock)
        if at is None:
            continue
        pid = int(match["pid"])
        group = open_groups.get(pid)
        if group is None or at - group.last > GROUP_GAP or group.name != match["name"]:
            group = EventGroup(pid, match["name"], match["fingerprint"], at, at)
            open_groups[pid] = group
            groups.append(group)
        group.last = max(group.last, at)
        group.triggers.append((match["trigger"], tuple(match["args"].split())))
    return groups


def touches(group: EventGroup, what: str, app: str, item: str | None = None) -> bool:
    """Whether this command's triggers made the change: `env` (item = key), `domain` (item = host), `app`."""
    for trigger, args in group.triggers:
        if not args or args[0] != app:
            continue
        if what == "app_created" and trigger == "post-create":
            return True
        if what == "app_destroyed" and trigger in ("pre-delete", "post-delete"):
            return True
        if what == "env" and trigger == "post-config-update":
            # app set|unset|clear KEY...: key names only, never values.
            if (len(args) > 1 and args[1] == "clear") or item in args[2:]:
                return True
        if what == "domain" and trigger == "post-domains-update":
            if item in args[2:] or (len(args) > 1 and args[1] in ("clear", "reset", "set", "disable", "enable")):
                return True
    return False
