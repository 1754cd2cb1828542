"""Command transcripts: secrets of 8+ characters redacted in every form, output capped, config output never stored.

The secret probe at the end runs operations whose commands and output carry env values in
every way we know of (echoed by config:set, printed by a restart, quoted in an error, read back
by config:export, imported from a server) and then reads every column of every command run,
operation and audit entry: no value may appear in any form.
"""
from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from intercity.dokku.ssh import Capture
from intercity.dokku.transcript import MAX_STREAM, NOT_STORED, Redactor, commands_sha256, stored_stream, truncate
from intercity.extensions import db
from intercity.models import AuditEntry, CommandRun, Domain, Operation
from tests.support.builders import make_app
from tests.support.operations import apply_env, run_op, runs, set_env

b64 = lambda value: base64.b64encode(value.encode()).decode()  # noqa: E731


# --- the redactor -------------------------------------------------------------------------


def test_raw_base64_and_json_escaped_forms_are_redacted():
    secret = 'p@ss "word"\nsecond line'
    redactor = Redactor([secret])
    text = f"echo {secret} | {b64(secret)} | {json.dumps(secret)}"
    assert redactor.redact(text) == 'echo [redacted] | [redacted] | "[redacted]"'


def test_each_long_line_of_a_multiline_secret_is_redacted_where_dokku_reflows_it():
    redactor = Redactor(["-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34\nabc\n-----END KEY-----"])
    echoed = "       KEY:  -----BEGIN KEY-----\n             MIIBOgIBAAJBAKj34\n             abc\n"
    assert redactor.redact(echoed) == ("       KEY:  [redacted]\n             [redacted]\n"
                                       "             abc\n")  # a 3-character line is no secret


def test_values_shorter_than_8_characters_are_not_redacted():
    redactor = Redactor(["7", "on", "true", "web", "s3cret7"])
    text = 'PORT:  7\nSHA256:abc7def online\n{"can-scale":"true"} web s3cret7'
    assert redactor.redact(text) == text


def test_values_of_8_characters_are_redacted_wherever_they_occur():
    redactor = Redactor(["s3cret78"])
    assert redactor.redact("xxs3cret78yy s3cret78") == "xx[redacted]yy [redacted]"


def test_longer_secrets_win_over_ones_they_contain():
    redactor = Redactor(["tokenval", "tokenval-with-suffix"])
    assert redactor.redact("a tokenval-with-suffix b tokenval") == "a [redacted] b [redacted]"


def test_empty_values_redact_nothing():
    assert Redactor(["", None]).redact("nothing to hide") == "nothing to hide"


# --- truncation ----------------------------------------------------------------------------


def test_long_output_keeps_start_and_end_with_a_marker():
    text = "start\n" + "x" * (3 * MAX_STREAM) + "\nthe error at the end"
    kept = truncate(text)
    assert len(kept.encode()) < MAX_STREAM + 100
    assert kept.startswith("start\n") and kept.endswith("the error at the end")
    assert f"[… {len(text.encode()) - MAX_STREAM} bytes omitted …]" in kept


def test_a_secret_cut_in_half_by_the_capture_limit_does_not_leak():
    secret = "SUPERSECRETVALUE-0123456789"
    capture = Capture(head=100, tail=100)
    capture.feed(b"a" * 90 + secret.encode() + b"b" * 500 + secret.encode() + b"c" * 90)
    kept = stored_stream(capture, Redactor([secret]))
    assert capture.omitted > 0 and "omitted" in kept
    for size in range(6, len(secret) + 1):  # no piece of it survives at either cut
        for start in range(0, len(secret) - size + 1):
            assert secret[start:start + size] not in kept


def test_commands_sha256_covers_every_stored_field():
    from datetime import datetime, timezone

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    run = SimpleNamespace(position=0, server_name="s", argv='["dokku","version"]', exit_code=0, stdout="x",
                          stderr="", error=None, started_at=now, finished_at=now)
    digest = commands_sha256([run])
    for field, value in (("stdout", "y"), ("exit_code", 1), ("argv", "[]"), ("error", "timed out")):
        changed = SimpleNamespace(**{**vars(run), field: value})
        assert commands_sha256([changed]) != digest


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.ssh
@pytest.mark.postgresql_only
def test_config_output_is_never_stored_only_the_panels_reading(app, member, dokku, dokku_server):
    dokku.create_app("web")
    dokku.mark_deployed("web")
    web = make_app(dokku_server, name="web")
    secret = "echoed-password-4711"
    # As Dokku prints without --quiet (values echoed, short ones too).
    dokku.fail("config:set", exit_code=0, stdout=f"-----> Setting config vars\n       PASSWORD:  {secret}\n"
               "       SHORT:  abc\n", stderr=f"warning: {b64(secret)}\n", times=1)
    op = apply_env(app, web, member, restart=True, PASSWORD=secret, SHORT="abc")
    config_set = runs(op)[0]
    assert (config_set.stdout, config_set.stderr) == (NOT_STORED, "")  # no failure: nothing to read
    assert config_set.argv_list[-2:] == ["PASSWORD=[redacted]", "SHORT=[redacted]"]

    # An ENV-file error quotes the whole file, short values included: only the panel's reading is kept.
    dokku.fail("config:set", exit_code=1, stderr=' !     unexpected character "\\"" in variable name near '
               '"\\"\\nSHORT=\\"abc\\"\\nPIN=4711\\n"\n', times=1)
    failed = apply_env(app, web, member, SHORT="abcd")
    [run] = [r for r in runs(failed) if r.argv_list[1] == "config:set" or "config:set" in r.argv_list]
    assert failed.status == "failed" and "cannot read the config of web" in failed.reason
    assert run.stderr == failed.reason and run.stdout == ""
    assert "4711" not in run.stderr and "abc" not in run.stderr


@pytest.mark.ssh
@pytest.mark.postgresql_only
def test_short_values_leave_a_ps_report_transcript_intact(app, member, dokku, dokku_server):
    dokku.create_app("web")
    web = make_app(dokku_server, name="web")
    set_env(web, DEBUG="true", WORKERS="2")
    op = run_op(app, "app.refresh", server=dokku_server, user=member, target=web)
    [report] = [r for r in runs(op) if "ps:report" in r.argv_list]
    assert '"can-scale":"true"' in report.stdout and "[redacted]" not in report.stdout


@pytest.mark.ssh
@pytest.mark.postgresql_only
def test_a_long_secret_inside_a_dokku_error_is_hidden_and_the_panels_words_are_not(app, member, dokku, dokku_server):
    dokku.create_app("web")
    web = make_app(dokku_server, name="web")
    secret = "twenty-char-secret-1"
    # A line of a multi-line value that is also a piece of the panel's own wording.
    set_env(web, TOKEN=secret, NOTE="intro\nDeploy it first.")
    db.session.add(Domain(app=web, hostname="a.example.com"))
    dokku.fail("domains:add", exit_code=1, stderr=f" !     nginx: unknown directive {secret} in web.conf\n", times=1)
    failed = run_op(app, "domains.apply", server=dokku_server, user=member, target=web,
                     payload={"add": ["a.example.com"], "remove": []})
    assert failed.status == "failed" and "[redacted]" in failed.reason and secret not in failed.reason
    assert secret not in "".join(r.stderr for r in runs(failed)) and "[redacted]" in runs(failed)[-1].stderr
    restart = run_op(app, "app.restart", server=dokku_server, user=member, target=web)
    assert restart.status == "failed" and restart.reason.endswith("Deploy it first.")


SECRETS = {
    "DB_PASSWORD": "pr0be-db-password-1",
    "API_TOKEN": "pr0be \"token\" with $(quotes) and `ticks`",
    "MULTILINE": "pr0be-line-one\npr0be-line-two-longer",
    "UNICODE": "pr0be-ünïcødé-✓",
}


def _forms(value: str) -> set[str]:
    forms = {value, b64(value), json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    forms |= {line for line in value.split("\n") if len(line) >= 8}
    return forms


@pytest.mark.ssh
def test_secret_probe_every_column_of_command_runs_operations_and_audit_entries(app, member, dokku, dokku_server):
    dokku.create_app("web")
    dokku.mark_deployed("web")
    dokku.create_app("imported")
    dokku.set_env("imported", {"IMPORTED_SECRET": "pr0be-imported-secret"})
    web = make_app(dokku_server, name="web")

    # Succeeds, with a restart whose deploy log is in the transcript.
    apply_env(app, web, member, restart=True, **SECRETS)
    # Dokku echoes the value being set and other values of the app in an error, raw and base64.
    dokku.fail("config:set", exit_code=1, stdout=f"{SECRETS['DB_PASSWORD']}-v2\n",
               stderr=f" !     bad value {SECRETS['API_TOKEN']} {b64(SECRETS['UNICODE'])}\n", times=1)
    failed = apply_env(app, web, member, DB_PASSWORD=SECRETS["DB_PASSWORD"] + "-v2")
    assert failed.status == "failed"
    # A restart failure quoting a value, and a command that times out mid-output.
    dokku.fail_restarts(f"container printed {SECRETS['DB_PASSWORD']}-v2")
    apply_env(app, web, member, restart=True, MULTILINE=SECRETS["MULTILINE"] + "!")
    dokku.clear_faults()
    run_op(app, "server.import", server=dokku_server, user=member, payload={"apps": None})
    set_env(web, LATE="pr0be-late-value")
    db.session.commit()

    values = set(SECRETS.values()) | {SECRETS["DB_PASSWORD"] + "-v2", SECRETS["MULTILINE"] + "!",
                                      "pr0be-imported-secret", "pr0be-late-value"}
    forms = set().union(*(_forms(value) for value in values))
    checked = 0
    for model in (CommandRun, Operation, AuditEntry):
        table = model.__table__
        for row in db.session.execute(select(table)).mappings():
            for column, cell in row.items():
                text = cell if isinstance(cell, str) else str(cell)
                for form in forms:
                    assert form not in text, f"{table.name}.{column} holds a secret: {text[:200]!r}"
                checked += 1
    assert db.session.scalar(select(CommandRun.id).where(CommandRun.argv.contains("[redacted]"))) is not None
    config_runs = db.session.scalars(select(CommandRun).where(CommandRun.argv.contains('"config:'))).all()
    assert config_runs and {run.stdout for run in config_runs} <= {NOT_STORED, ""}
    exports = db.session.scalars(select(CommandRun).where(CommandRun.argv.contains('"config:export"'))).all()
    assert exports and {run.stdout for run in exports} == {NOT_STORED}
    assert checked > 100
