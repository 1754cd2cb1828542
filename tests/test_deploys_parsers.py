"""Reading deploys: builds:list JSON, the event log's deploy lines, ps:report processes, scale input."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from intercity.dokku import commands, deploy_events
from intercity.dokku.builds import parse_builds, parse_git_report, parse_processes
from intercity.dokku.parsers import UnparseableOutput
from intercity.services.deploys import parse_scale_form
from intercity.validation import ValidationError

# As real Dokku 0.38.27 wrote it with Debian 12's rsyslog (reference: the golden run), plus a deploy key.
LINES = """\
2026-12-01T19:20:46.018532+00:00 HOST dokku-event[25621]: INVOKED: post-create( ev ) NAME= FINGERPRINT= DOKKU_PID=25501
2026-12-01T19:21:00.000001+00:00 HOST dokku-event[25700]: INVOKED: receive-app( web 1a2b ) NAME=alice FINGERPRINT=SHA256:x DOKKU_PID=25690
2026-12-01T19:21:40.000001+00:00 HOST dokku-event[25701]: INVOKED: post-deploy( web 5000 ) NAME=alice FINGERPRINT=SHA256:x DOKKU_PID=25690
Jul  3 16:10:46 host dokku-event[12345]: INVOKED: post-deploy( api ) NAME=bob FINGERPRINT=SHA256:y DOKKU_PID=12300
garbage line
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def test_deploy_event_lines_name_the_key_by_process_or_by_time():
    events = deploy_events.parse(LINES)
    assert [(e.trigger, e.app, e.name, e.dokku_pid) for e in events] == [
        ("receive-app", "web", "alice", 25690), ("post-deploy", "web", "alice", 25690),
        ("post-deploy", "api", "bob", 12300)]
    assert events[-1].at is None  # traditional syslog time: no year, matched by process only
    assert deploy_events.who_deployed(events, "web", 25690, None, None) == "alice"
    assert deploy_events.who_deployed(events, "api", 12300, None, None) == "bob"
    assert deploy_events.who_deployed(events, "web", 1, at("2026-12-01T19:20:59"), at("2026-12-01T19:21:41")) == "alice"
    assert deploy_events.who_deployed(events, "web", 1, at("2026-12-02T10:00:00"), None) is None
    assert deploy_events.who_deployed(events, "other", 25690, None, None) is None


def test_builds_list_json_is_read_and_bad_output_is_named():
    stdout = json.dumps([{"id": "b1", "app": "web", "kind": "build", "pid": 7, "started_at": "2026-12-01T19:21:00Z",
                          "finished_at": "2026-12-01T19:21:42Z", "status": "succeeded", "source": "git-hook",
                          "exit_code": 0, "display_status": "succeeded", "duration": "42s"},
                         {"id": "b2", "app": "web", "kind": "deploy", "pid": 8, "started_at": "2026-12-01T19:30:00Z",
                          "status": "running", "source": "ps:restart"}])
    first, second = parse_builds(stdout)
    assert first.deploy and first.finished and first.exit_code == 0 and first.pid == 7
    assert (first.finished_at - first.started_at).total_seconds() == 42
    assert not second.deploy and not second.finished and second.finished_at is None
    assert parse_builds("[]") == [] and parse_builds("") == []
    for bad in ("{", "{}", "[1]", '[{"status": "succeeded"}]'):
        with pytest.raises(UnparseableOutput):
            parse_builds(bad)


def test_processes_per_type_from_ps_report_json_and_text():
    report = {"deployed": "true", "status-web.1": "running (CID: abc)", "status-web.2": "exited (CID: def)",
              "status-worker.1": "running (CID: 123)", "ps-can-scale": "true"}
    assert parse_processes(json.dumps(report), True) == {
        "web": {"count": 2, "states": {"running": 1, "exited": 1}}, "worker": {"count": 1, "states": {"running": 1}}}
    text = ("=====> web ps information\n       Deployed:          true\n"
            "       Status web 1:      running (CID: abc)\n       Status web 2:      running (CID: def)\n")
    assert parse_processes(text, False) == {"web": {"count": 2, "states": {"running": 2}}}
    assert parse_git_report('{"sha": "abc", "last-updated-at": "1700000000"}', True) == {
        "git_sha": "abc", "last_updated_at": 1700000000}
    assert parse_git_report("       Git sha:      \n", False) == {"git_sha": None, "last_updated_at": None}


def test_scale_input_is_validated_next_to_its_field():
    assert parse_scale_form({"scale-web": "2", "new_type": "worker", "new_count": "1"}) == {"web": 2, "worker": 1}
    assert commands.ps_scale("web", {"worker": 1, "web": 2}).argv == ("dokku", "ps:scale", "web", "web=2", "worker=1")
    cases = [({"scale-web": "two"}, "scale-web"), ({"scale-web": "-1"}, "scale-web"), ({"scale-web": "101"}, "scale-web"),
             ({"new_type": "Web!", "new_count": "1"}, "new_type"), ({"new_type": "worker", "new_count": ""}, "new_count"),
             ({}, "new_type"), ({"scale--x": "1"}, "scale--x")]
    for form, field in cases:
        with pytest.raises(ValidationError) as error:
            parse_scale_form(form)
        assert error.value.field == field, form
    with pytest.raises(ValidationError):
        commands.ps_scale("web", {"-web": 1})
    with pytest.raises(ValidationError):
        commands.builds_info("web", "--format")
