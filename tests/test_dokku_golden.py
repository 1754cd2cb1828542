"""The Dokku double answers every recorded call exactly as real Dokku 0.38.27 did.

tests/support/golden/ holds what the real CLI printed for 90 calls run in sequence on one
server (see its README). This test replays them, in order and against one state
directory, into the double run as a plain subprocess (no SSH: the records were taken as
root with stdin a pipe, which is how the double runs here too) and compares exit code,
stdout and stderr. Where a record depends on the machine it was taken on (a random port,
a creation time, the event log's times and pids), only its shape is compared.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.sshd import DOUBLE_SOURCE

GOLDEN = Path(__file__).parent / "support" / "golden" / "golden-0.38.27.json"
RECORDS = json.loads(GOLDEN.read_text(encoding="utf-8"))

EVENT_LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 \S+ dokku-event\[\d+\]: "
    r"INVOKED: (?P<trigger>[a-z0-9-]+\( .* \)) NAME=\S* FINGERPRINT=\S* DOKKU_PID=\d+"
)


def _machine_free(label: str, text: str) -> str:
    """Replace what differs from machine to machine by a placeholder."""
    text = re.sub(r"Random port \d+", "Random port N", text)
    return re.sub(r'"(app-)?created-at":"\d+"', r'"\1created-at":"T"', text)


def _triggers(text: str) -> list[str]:
    lines = text.splitlines()
    unmatched = [line for line in lines if not EVENT_LINE.fullmatch(line)]
    assert not unmatched, f"event lines not in Dokku's format: {unmatched[:3]}"
    return [EVENT_LINE.fullmatch(line)["trigger"] for line in lines]


def _is_subsequence(needles: list[str], haystack: list[str]) -> bool:
    remaining = iter(haystack)
    return all(any(needle == item for item in remaining) for needle in needles)


@pytest.fixture(scope="module")
def replay(tmp_path_factory) -> list[subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("golden-dokku")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DOKKU_DOUBLE_ROOT": str(root)}
    if os.geteuid() != 0:
        env["DOKKU_DOUBLE_ALLOW_NONROOT"] = "1"
    results = []
    for record in RECORDS:
        results.append(subprocess.run(
            ["/usr/bin/python3", "-I", "-S", str(DOUBLE_SOURCE), *record["argv"]],
            input=record.get("stdin", "").encode(), capture_output=True, env=env, timeout=30,
        ))
    return results


@pytest.mark.parametrize("number", range(len(RECORDS)), ids=[f"{i}-{r['label']}" for i, r in enumerate(RECORDS)])
def test_double_answers_like_real_dokku(replay, number):
    record, result = RECORDS[number], replay[number]
    stdout, stderr = result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace")
    assert result.returncode == record["exit"], stderr
    if record["argv"] == ["events"] and record["stdout"]:
        # Dokku logs dozens of nginx and proxy triggers the double has no use for; the
        # ones it logs must appear in the same order, in the same line format.
        ours, theirs = _triggers(stdout), _triggers(record["stdout"])
        assert ours and _is_subsequence(ours, theirs), ours
        assert stderr == record["stderr"]
        return
    assert _machine_free(record["label"], stdout) == _machine_free(record["label"], record["stdout"])
    assert stderr == record["stderr"]


def test_the_records_cover_both_env_file_failures():
    """The two ways real Dokku breaks an app's config, and the reads that fail after them."""
    errors = [r["stderr"] for r in RECORDS if r["exit"] == 1 and r["argv"][-1] != "x"]
    assert any("unexpected character" in e for e in errors)
    assert any("unterminated quoted value" in e for e in errors)
