"""Reading Dokku's event log: both syslog time formats, grouping by DOKKU_PID, matching a change, the golden lines."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from intercity.dokku import events

GOLDEN = Path(__file__).parent / "support" / "golden" / "golden-0.38.27.json"


def clock(utc=datetime(2026, 12, 1, 20, 0, tzinfo=timezone.utc), zone="+0100", year=2026):
    before = utc - timedelta(seconds=3)  # the panel's clock is 2.5 s behind the server's (exec took 1 s)
    return events.parse_clock([f"{utc.timestamp():.6f}", zone, str(year)], before, before + timedelta(seconds=1))


def test_the_clock_offset_is_measured_against_the_middle_of_the_exec():
    found = clock()
    assert found.offset == timedelta(seconds=2.5) and found.zone.utcoffset(None) == timedelta(hours=1)


def test_rfc3339_journal_and_traditional_times():
    server = clock()
    assert events.parse_time("2026-12-01T19:20:46.018532+00:00", server) == \
        datetime(2026, 12, 1, 19, 20, 46, 18532, tzinfo=timezone.utc)
    assert events.parse_time("2026-12-01T20:20:46+0100", server) == datetime(2026, 12, 1, 19, 20, 46, tzinfo=timezone.utc)
    # Traditional syslog: no year, no zone: the server's zone and year.
    assert events.parse_time("Dec  1 20:20:46", server) == datetime(2026, 12, 1, 19, 20, 46, tzinfo=timezone.utc)
    # Read in January, a December line is last year's.
    january = clock(utc=datetime(2027, 1, 1, 0, 30, tzinfo=timezone.utc), zone="+0000", year=2027)
    assert events.parse_time("Dec 31 23:59:00", january).year == 2026
    assert events.parse_time("not a time", server) is None


def test_lines_are_grouped_per_command_and_read_only_triggers_are_dropped():
    lines = [
        "Dec  1 20:10:46 host dokku-event[12345]: INVOKED: post-config-update( api set API_KEY OTHER ) "
        "NAME=ci-bot FINGERPRINT=SHA256:abc DOKKU_PID=12300",
        "Dec  1 20:10:47 host dokku-event[12346]: INVOKED: config-get( api ) NAME=ci-bot FINGERPRINT=SHA256:abc "
        "DOKKU_PID=12300",
        "2026-12-01T19:11:00.000001+00:00 host dokku-event[12400]: INVOKED: post-domains-update( api add a.example.com ) "
        "NAME= FINGERPRINT= DOKKU_PID=12399",
        "garbage",
    ]
    groups = events.parse(lines, clock())
    assert [(g.pid, g.name, len(g.triggers)) for g in groups] == [(12300, "ci-bot", 1), (12399, "", 1)]
    config, domains = groups
    assert events.touches(config, "env", "api", "API_KEY") and not events.touches(config, "env", "api", "NOPE")
    assert not events.touches(config, "env", "web", "API_KEY")
    assert events.touches(domains, "domain", "api", "a.example.com")
    assert not events.touches(domains, "app_created", "api")


def test_the_golden_event_lines_of_real_dokku_parse():
    records = json.loads(GOLDEN.read_text())
    [record] = [r for r in records if r["label"] == "events (on)"]
    lines = record["stdout"].splitlines()
    server = clock(utc=datetime(2026, 12, 1, 19, 46, tzinfo=timezone.utc), zone="+0000")
    groups = events.parse(lines, server)
    assert groups and all(g.name == "" for g in groups)  # root ran them: NAME is empty
    assert any(events.touches(g, "app_created", "ev") for g in groups)
