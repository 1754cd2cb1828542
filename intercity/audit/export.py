"""Exports of the audit log (CSV, JSON Lines) that an auditor can verify offline, streamed in keyset batches.

Each line carries every hashed field plus `hash`, so `hash` can be recomputed with the canonical
encoding documented in intercity/audit/chain.py; the export starts with the chain head at export
time. A filtered export proves each entry it lists, not that the list is complete. JSON Lines is
exact (null stays null); in CSV an empty cell stands for null.
"""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Iterator

from sqlalchemy import select

from intercity.audit import chain
from intercity.audit.capture import record_event
from intercity.models import AuditEntry
from intercity.models.base import utcnow

FORMATS = ("csv", "jsonl")
COLUMNS = ("seq", "id", "created_at", "actor_kind", "actor_user_id", "actor_email", "actor_role", "actor_os_user",
           "action", "category", "server_id", "server_name", "app_id", "app_name", "target_type", "target_id",
           "target_label", "diff", "request_ip", "request_user_agent", "request_id", "caused_by", "operation_id",
           "prev_hash", "hash")
BATCH = 1000
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


def record(session, fmt: str, description: str) -> None:
    """Exporting is itself an audit entry (the caller commits)."""
    record_event(session, "audit.exported", target_type="audit_log", target_label="audit log",
                 diff={"format": [None, fmt], "filter": [None, description or None]})


def _rows(session, conditions: list, upto_seq: int) -> Iterator:
    """Matching entries up to the head, oldest first, a batch at a time (constant memory)."""
    columns = [getattr(AuditEntry, name) for name in COLUMNS]
    last = 0
    while True:
        batch = session.execute(
            select(*columns).where(*conditions, AuditEntry.seq > last, AuditEntry.seq <= upto_seq)
            .order_by(AuditEntry.seq).limit(BATCH)
        ).mappings().all()
        if not batch:
            return
        yield from batch
        last = batch[-1]["seq"]


def _plain(row) -> dict:
    values = dict(row)
    values["created_at"] = chain.timestamp(values["created_at"])
    return values


def header(head: tuple[int, str], exported_at: datetime, description: str) -> dict:
    return {
        "format": "intercity-audit-export/1",
        "exported_at": chain.timestamp(exported_at),
        "chain_head": {"seq": head[0], "hash": head[1]},
        "filtered": bool(description),
        "filter": description or None,
        "note": ("Filtered: proves each listed entry against its hash, not that the list is complete."
                 if description else
                 "Every entry up to the chain head: recompute each hash and check prev_hash links from seq 1."),
    }


def lines(session, fmt: str, conditions: list, description: str) -> Iterator[str]:
    """The export as text chunks; the chain head is read first, and nothing newer is included."""
    head = chain.head(session.connection())
    meta = header(head, utcnow(), description)
    if fmt == "jsonl":
        yield json.dumps({"intercity_audit_export": meta}, ensure_ascii=False) + "\n"
        for row in _rows(session, conditions, head[0]):
            yield json.dumps(_plain(row), ensure_ascii=False) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    yield (f"# Intercity audit log export ({meta['format']}), exported at {meta['exported_at']}\n"
           f"# chain_head: {head[0]}:{head[1]}\n"
           f"# filtered: {'yes: ' + description if description else 'no'}\n"
           f"# {meta['note']} An empty cell is null.\n")
    writer.writerow(COLUMNS)
    count = 0
    for row in _rows(session, conditions, head[0]):
        plain = _plain(row)
        writer.writerow(["" if plain[name] is None else plain[name] for name in COLUMNS])
        count += 1
        if count % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
