"""What a command run leaves in the record: argv as shown to people, output with secrets redacted and capped.

The output of `config:*` commands is never stored (they echo values, and Dokku's ENV-file
errors quote the whole file); the panel's one-line reading of such a command stands in for
it. Elsewhere every known secret of 8 or more characters (the app's current env values, the
command's own `secrets`; each such line of a multi-line value) is replaced wherever it occurs,
raw, base64 and JSON-escaped, before anything is stored; shorter values are not secrets worth
garbling the record for. Truncation happens after redaction, so a cut can never expose part of
a secret. `commands_sha256` is the digest an operation's outcome audit entry carries, so the
transcripts are covered by the audit hash chain.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Iterable

from intercity.audit.chain import canonical_json, timestamp
from intercity.audit.rules import REDACTED
from intercity.dokku import service_plugins
from intercity.dokku.commands import Command

# Per stream: plenty for a deploy's error, small enough for a timeline page.
MAX_STREAM = 64 * 1024
# Shorter values ("true", "1", "web") are not hidden: they would garble every transcript.
MIN_SECRET = 8
# What stands in for the output of a config command, which may print the app's values.
NOT_STORED = "[output not stored: it lists the values of the app's environment variables]"


def stores_output(command: Command) -> bool:
    """config:set echoes values, config:export lists them and an ENV-file error quotes them all;
    a service's create, link and `info --dsn` print its connection URL, password included."""
    return not (command.kind.startswith("config") or service_plugins.hides_output(command))


def _forms(secret: str) -> set[str]:
    """The ways a value can show up in output: as is, base64 (how the panel sends it), JSON-escaped."""
    if len(secret) < MIN_SECRET:
        return set()
    forms = {secret, base64.b64encode(secret.encode("utf-8")).decode("ascii")}
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    forms.add(json.dumps(secret)[1:-1])
    # A multi-line value shows up line by line (a log, a reflowed column): each long line is hidden too.
    if "\n" in secret:
        forms.update(line.strip() for line in secret.split("\n") if len(line.strip()) >= MIN_SECRET)
    return {form for form in forms if len(form) >= MIN_SECRET}


class Redactor:
    """Replaces known secrets with [redacted]; add more as they become known (an import, say)."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._forms: set[str] = set()
        self._pattern: re.Pattern | None = None
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        before = len(self._forms)
        for secret in secrets:
            if secret:
                self._forms |= _forms(secret)
        if len(self._forms) != before:
            self._pattern = None

    @property
    def longest(self) -> int:
        return max((len(form) for form in self._forms), default=0)

    def _compiled(self) -> re.Pattern | None:
        if self._pattern is None and self._forms:
            parts = []
            # Longest first, so a secret containing another is replaced whole.
            for form in sorted(self._forms, key=len, reverse=True):
                parts.append(re.escape(form))
            self._pattern = re.compile("|".join(parts))
        return self._pattern

    def redact(self, text: str | None) -> str | None:
        if not text:
            return text
        pattern = self._compiled()
        return pattern.sub(REDACTED, text) if pattern else text


def truncate(text: str, limit: int = MAX_STREAM) -> str:
    """Keep the start and (mostly) the end of long output, with a marker saying how much went."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    head, tail = limit // 4, limit - limit // 4
    omitted = len(data) - head - tail
    return (data[:head].decode("utf-8", "ignore") + f"\n[… {omitted} bytes omitted …]\n"
            + data[-tail:].decode("utf-8", "ignore"))


def stored_stream(capture, redactor: Redactor, limit: int = MAX_STREAM) -> str:
    """A captured stream (ssh.Capture) as it may be stored: decoded, redacted, truncated."""
    head = capture.head.decode("utf-8", "replace")
    tail = capture.tail.decode("utf-8", "replace")
    if capture.omitted <= 0:
        return truncate(redactor.redact(head + tail), limit)
    # A secret may straddle a point where the capture dropped bytes: redact each side, then cut
    # away the edges (no longer than the longest secret), where only a part of one can hide.
    edge = redactor.longest
    head = redactor.redact(head)
    tail = redactor.redact(tail)
    head = head[: max(0, len(head) - edge)]
    tail = tail[edge:]
    middle = f"\n[… {capture.omitted + 2 * edge} bytes or more omitted …]\n"
    return truncate(head + middle + tail, limit)


def display_argv(command: Command, sudo: bool = False) -> str:
    """argv as it ran, values replaced by [redacted] (`sudo -n` included), JSON-encoded for command_runs.argv."""
    return json.dumps((["sudo", "-n"] if sudo else []) + list(command.display), ensure_ascii=False)


def commands_sha256(runs) -> str:
    """SHA-256 (hex) over an operation's command runs, in position order.

    Canonical encoding: a JSON list (sorted keys, compact, UTF-8) of one object per run with
    position, server_name, argv, exit_code, stdout, stderr, error, started_at and finished_at
    (UTC ISO 8601 with microseconds and a Z), exactly as stored.
    """
    rows = [
        {
            "position": run.position,
            "server_name": run.server_name,
            "argv": run.argv,
            "exit_code": run.exit_code,
            "stdout": run.stdout,
            "stderr": run.stderr,
            "error": run.error,
            "started_at": timestamp(run.started_at),
            "finished_at": timestamp(run.finished_at),
        }
        for run in sorted(runs, key=lambda r: r.position)
    ]
    return hashlib.sha256(canonical_json(rows).encode("utf-8")).hexdigest()
