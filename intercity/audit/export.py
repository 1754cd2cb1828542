"""Exports of the audit log (CSV, JSON Lines) that an auditor can verify offline, streamed in keyset batches.

Each entry carries every hashed field plus `hash`, so `hash` can be recomputed with the canonical
encoding documented in intercity/audit/chain.py. The chain head at export time (read first; nothing
newer is included) is the last record: a CSV row and a JSON line with action `audit.export_head`,
whose `seq` and `hash` are the head and whose `diff` holds the export's description and filter. A
filtered export proves each entry it lists, not that the list is complete.

JSON Lines is exact (null stays null) and carries each operation's command runs on its outcome
entry, as stored, so `commands_sha256` can be recomputed. CSV has a header row first, an empty cell
for null, a one-line command summary, and cells that a spreadsheet would run as a formula (starting
with `=`, `+`, `-`, `@`, tab or carriage return) prefixed with `'` as OWASP's CSV injection guidance
says: strip that one `'` before recomputing a hash, or use JSON Lines.
"""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from typing import Iterator

from sqlalchemy import select

from intercity.audit import chain
from intercity.audit.capture import record_event
from intercity.audit.query import OUTCOME_ACTIONS, QueryError, tokens
from intercity.models import AuditEntry, CommandRun
from intercity.models.base import utcnow

FORMATS = ("csv", "jsonl")
COLUMNS = ("seq", "id", "created_at", "actor_kind", "actor_user_id", "actor_email", "actor_role", "actor_os_user",
           "action", "category", "server_id", "server_name", "app_id", "app_name", "target_type", "target_id",
           "target_label", "diff", "request_ip", "request_user_agent", "request_id", "caused_by", "operation_id",
           "prev_hash", "hash")
# CSV only: what ran, one line per entry (JSON Lines has the runs themselves).
CSV_COLUMNS = (*COLUMNS, "commands")
RUN_FIELDS = ("position", "server_name", "argv", "exit_code", "stdout", "stderr", "error", "started_at",
              "finished_at")
HEAD_ACTION = "audit.export_head"
BATCH = 1000
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def record(session, fmt: str, description: str) -> None:
    """Exporting is itself an audit entry (the caller commits)."""
    record_event(session, "audit.exported", target_type="audit_log", target_label="audit log",
                 diff={"format": [None, fmt], "filter": [None, description or None]})


def filename(fmt: str, query_text: str, categories=(), today: datetime | None = None) -> str:
    """`intercity-audit-<server>-<app>-<date>.<fmt>`, `-all-` for the whole log, `-filtered` for more terms."""
    try:
        terms = tokens(query_text)
    except QueryError:
        terms = []
    scope = [t.value for q in ("server", "app") for t in terms if t.qualifier == q and not t.negated]
    narrowed = bool(categories) or any(t.qualifier not in ("server", "app") or t.negated for t in terms)
    slug = "-".join(s for s in (re.sub(r"[^a-z0-9]+", "-", part.lower()).strip("-") for part in scope) if s)
    parts = ["intercity-audit", slug or "all", *(["filtered"] if narrowed else []),
             (today or utcnow()).strftime("%Y-%m-%d")]
    return "-".join(parts) + f".{fmt}"


def _rows(session, conditions: list, upto_seq: int) -> Iterator[list[dict]]:
    """Batches of matching entries up to the head, oldest first (constant memory)."""
    columns = [getattr(AuditEntry, name) for name in COLUMNS]
    last = 0
    while True:
        batch = session.execute(
            select(*columns).where(*conditions, AuditEntry.seq > last, AuditEntry.seq <= upto_seq)
            .order_by(AuditEntry.seq).limit(BATCH)
        ).mappings().all()
        if not batch:
            return
        yield [dict(row) for row in batch]
        last = batch[-1]["seq"]


def _runs(session, batch: list[dict]) -> dict[int, list[dict]]:
    """The command runs of the operations whose outcome entries are in this batch, as stored."""
    ids = {row["operation_id"] for row in batch if row["action"] in OUTCOME_ACTIONS and row["operation_id"]}
    runs: dict[int, list[dict]] = {}
    if not ids:
        return runs
    for run in session.scalars(select(CommandRun).where(CommandRun.operation_id.in_(ids))
                               .order_by(CommandRun.operation_id, CommandRun.position)):
        values = {name: getattr(run, name) for name in RUN_FIELDS}
        values["started_at"] = chain.timestamp(run.started_at)
        values["finished_at"] = chain.timestamp(run.finished_at)
        runs.setdefault(run.operation_id, []).append(values)
    return runs


def _summary(runs: list[dict]) -> str:
    parts = []
    for run in runs:
        try:
            argv = " ".join(json.loads(run["argv"]))
        except (TypeError, ValueError):
            argv = str(run["argv"])
        outcome = f"exit {run['exit_code']}" if run["exit_code"] is not None else (run["error"] or "no exit code")
        parts.append(f"{argv} → {outcome}")
    return " | ".join(" ".join(part.split()) for part in parts)  # one line: no line breaks from argv or errors


def header(head: tuple[int, str], exported_at: datetime, description: str) -> dict:
    return {
        "format": "intercity-audit-export/2",
        "exported_at": chain.timestamp(exported_at),
        "chain_head": {"seq": head[0], "hash": head[1]},
        "filtered": bool(description),
        "filter": description or None,
        "note": ("Filtered: proves each listed entry against its hash, not that the list is complete."
                 if description else
                 "Every entry up to the chain head: recompute each hash and check prev_hash links from seq 1."),
    }


def head_record(head: tuple[int, str], meta: dict) -> dict:
    """The last record of an export: the chain head in the entry columns, the description in `diff`."""
    values = {name: None for name in COLUMNS}
    values.update(seq=head[0], hash=head[1], created_at=meta["exported_at"], action=HEAD_ACTION,
                  category="security", target_type="audit_log", target_label="chain head at export time",
                  diff=json.dumps(meta, ensure_ascii=False, sort_keys=True))
    return values


def neutralise(value) -> str:
    """A CSV cell no spreadsheet runs as a formula (OWASP: prefix such cells with a single quote)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def lines(session, fmt: str, conditions: list, description: str, head: tuple[int, str] | None = None) -> Iterator[str]:
    """The export as text chunks; the chain head is read first (or given), and nothing newer is included."""
    head = head or chain.head(session.connection())
    meta = header(head, utcnow(), description)
    if fmt == "jsonl":
        for batch in _rows(session, conditions, head[0]):
            runs = _runs(session, batch)
            chunk = []
            for row in batch:
                row["created_at"] = chain.timestamp(row["created_at"])
                if row["action"] in OUTCOME_ACTIONS and row["operation_id"]:
                    row["command_runs"] = runs.get(row["operation_id"], [])
                chunk.append(json.dumps(row, ensure_ascii=False) + "\n")
            yield "".join(chunk)
        yield json.dumps({**head_record(head, meta), "intercity_audit_export": meta}, ensure_ascii=False) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    for batch in _rows(session, conditions, head[0]):
        runs = _runs(session, batch)
        for row in batch:
            row["created_at"] = chain.timestamp(row["created_at"])
            row["commands"] = _summary(runs.get(row["operation_id"], [])) if row["action"] in OUTCOME_ACTIONS else ""
            writer.writerow([neutralise(row[name]) for name in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    final = head_record(head, meta)
    final["commands"] = ""
    writer.writerow([neutralise(final[name]) for name in CSV_COLUMNS])
    yield buffer.getvalue()
