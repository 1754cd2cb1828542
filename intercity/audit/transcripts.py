"""Transcripts under the chain: recompute each outcome entry's commands_sha256 from command_runs."""
from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select

from intercity.dokku.transcript import commands_sha256
from intercity.models import AuditEntry, CommandRun

OUTCOME_ACTIONS = ("operation.succeeded", "operation.failed")
_CHUNK = 500


@dataclass
class TranscriptProblem:
    seq: int
    operation_id: int
    title: str | None

    @property
    def message(self) -> str:
        title = f" (“{self.title}”)" if self.title else ""
        return (f"the command runs of operation {self.operation_id}{title} were altered, added or removed: "
                f"they no longer match the digest in entry {self.seq}")


def verify(connection, *, start_seq: int = 0, end_seq: int | None = None) -> TranscriptProblem | None:
    """The first outcome entry after start_seq (up to end_seq) whose operation's command runs no longer
    match its digest."""
    statement = (select(AuditEntry.seq, AuditEntry.operation_id, AuditEntry.target_label, AuditEntry.diff)
                 .where(AuditEntry.seq > start_seq, AuditEntry.action.in_(OUTCOME_ACTIONS),
                        AuditEntry.operation_id.is_not(None)))
    if end_seq is not None:
        statement = statement.where(AuditEntry.seq <= end_seq)
    outcomes = connection.execute(statement.order_by(AuditEntry.seq)).all()
    # The newest outcome entry of an operation speaks for its runs (the entry is itself chained).
    latest = {}
    for row in outcomes:
        latest[row.operation_id] = row
    ordered = sorted(latest.values(), key=lambda row: row.seq)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start:start + _CHUNK]
        runs: dict[int, list] = {row.operation_id: [] for row in chunk}
        columns = [CommandRun.operation_id, CommandRun.position, CommandRun.server_name, CommandRun.argv,
                   CommandRun.exit_code, CommandRun.stdout, CommandRun.stderr, CommandRun.error,
                   CommandRun.started_at, CommandRun.finished_at]
        for run in connection.execute(select(*columns).where(CommandRun.operation_id.in_(list(runs)))):
            runs[run.operation_id].append(run)
        for row in chunk:
            recorded = _recorded_digest(row.diff)
            if recorded is not None and commands_sha256(runs[row.operation_id]) != recorded:
                return TranscriptProblem(row.seq, row.operation_id, row.target_label)
    return None


def _recorded_digest(diff: str) -> str | None:
    try:
        value = json.loads(diff or "{}").get("commands_sha256")
    except (ValueError, AttributeError):
        return None
    return value[1] if isinstance(value, list) and len(value) == 2 else None
