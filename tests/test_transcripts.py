"""Command transcripts: secrets redacted in raw and base64 form, output capped, config:export never stored.

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
from intercity.models import AuditEntry, CommandRun, Operation
from tests.support.builders import make_app
from tests.support.operations import apply_env, run_op, runs, set_env

b64 = lambda value: base64.b64encode(value.encode()).decode()  # noqa: E731


# --- the redactor -------------------------------------------------------------------------


def test_raw_base64_and_json_escaped_forms_are_redacted():
    secret = 'p@ss "word"\nsecond line'
    redactor = Redactor([secret])
    text = f"echo {secret} | {b64(secret)} | {json.dumps(secret)}"
    assert redactor.redact(text) == 'echo [redacted] | [redacted] | "[redacted]"'


def test_each_line_of_a_multiline_secret_is_redacted_where_dokku_reflows_it():
    redactor = Redactor(["-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34\n-----END KEY-----"])
    echoed = "       KEY:  -----BEGIN KEY-----\n             MIIBOgIBAAJBAKj34\n             -----END KEY-----"
    assert "MIIBOgIBAAJBAKj34" not in redactor.redact(echoed)
    assert "BEGIN KEY" not in redactor.redact(echoed)


def test_short_values_are_redacted_as_whole_words_only():
    redactor = Redactor(["7", "on"])
    assert redactor.redact("PORT:  7\nSHA256:abc7def online") == "PORT:  [redacted]\nSHA256:abc7def online"


def test_longer_secrets_win_over_ones_they_contain():
    redactor = Redactor(["token", "token-with-suffix"])
    assert redactor.redact("a token-with-suffix b token") == "a [redacted] b [redacted]"


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
def test_values_dokku_echoes_are_redacted_in_stored_output(app, member, dokku, dokku_server):
    dokku.create_app("web")
    dokku.mark_deployed("web")
    web = make_app(dokku_server, name="web")
    secret = "echoed-password-4711"
    # As Dokku prints without --quiet, and as a deploy log may print a value.
    dokku.fail("config:set", exit_code=0, stdout=f"-----> Setting config vars\n       PASSWORD:  {secret}\n",
               stderr=f"warning: {b64(secret)}\n")
    op = apply_env(app, web, member, restart=True, PASSWORD=secret)
    config_set = runs(op)[0]
    assert config_set.stdout == "-----> Setting config vars\n       PASSWORD:  [redacted]\n"
    assert config_set.stderr == "warning: [redacted]\n"
    assert config_set.argv_list[-1] == "PASSWORD=[redacted]"


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
    assert db.session.scalar(select(CommandRun.id).where(CommandRun.stdout.contains("[redacted]"))) is not None
    exports = db.session.scalars(select(CommandRun).where(CommandRun.argv.contains('"config:export"'))).all()
    assert exports and {run.stdout for run in exports} == {NOT_STORED}
    assert checked > 100
