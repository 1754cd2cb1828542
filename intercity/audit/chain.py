"""The hash chain: canonical encoding, the chain-head lock, and verification.

Canonical encoding of an entry (what `hash` covers), stable across versions and databases:

- a JSON object with exactly these keys (HASHED_FIELDS): seq, created_at, actor_kind,
  actor_user_id, actor_email, actor_role, actor_os_user, action, category, server_id,
  server_name, app_id, app_name, target_type, target_id, target_label, diff, request_ip,
  request_user_agent, request_id, caused_by, operation_id, prev_hash;
- keys sorted, compact separators (",", ":"), no whitespace, encoded as UTF-8 with non-ASCII
  characters kept as they are (json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False));
- seq, actor_user_id, server_id, app_id and operation_id are JSON integers; every other value
  is a JSON string; a missing value is null;
- `created_at` in UTC, ISO 8601 with microseconds and a `Z`: 2026-01-01T10:00:00.000000Z;
- `diff` is the entry's stored text (itself canonical JSON {field: [old, new]}), embedded as a
  JSON string, so the hashed bytes are exactly what the column holds (text, never JSONB);
- `prev_hash` is the previous entry's hash (64 zeros for the first entry).

hash = lowercase hex SHA-256 of those bytes. Entries are chained in `seq` order, which is the
commit order: seq and hash are assigned under the chain lock (lock_head) in the commit that
writes the entry.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select

GENESIS = "0" * 64
HASHED_FIELDS = (
    "seq", "created_at", "actor_kind", "actor_user_id", "actor_email", "actor_role", "actor_os_user",
    "action", "category", "server_id", "server_name", "app_id", "app_name", "target_type", "target_id",
    "target_label", "diff", "request_ip", "request_user_agent", "request_id", "caused_by",
    "operation_id", "prev_hash",
)
# Any constant: the advisory lock that serialises writers of the chain head on PostgreSQL.
CHAIN_LOCK_ID = 7_270_001


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(entry: dict) -> bytes:
    fields = {name: entry.get(name) for name in HASHED_FIELDS}
    fields["created_at"] = timestamp(fields["created_at"])
    return canonical_json(fields).encode("utf-8")


def compute_hash(entry: dict) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


HEAD_SQL = "SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1"


def lock_head(connection) -> tuple[int, str]:
    """Take the chain lock for this transaction and return the head (seq, hash).

    PostgreSQL: a transaction-scoped advisory lock, released by commit or rollback; the head is
    read by the next statement, whose READ COMMITTED snapshot is taken after the lock is granted,
    so it sees the entries of whoever held the lock before. (With psycopg, capture pipelines
    the same statements with the insert: intercity.audit.capture._append_postgresql.)
    SQLite: the transaction becomes a BEGIN IMMEDIATE write transaction, which holds the write lock.
    This runs once per committing transaction, so it talks to the driver directly (a tenth of
    the cost of a Core select).
    """
    from intercity.database import begin_writing

    begin_writing(connection)
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        if connection.dialect.name == "postgresql":
            cursor.execute(f"SELECT pg_advisory_xact_lock({CHAIN_LOCK_ID})")
        cursor.execute(HEAD_SQL)
        row = cursor.fetchone()
    finally:
        cursor.close()
    return (int(row[0]), row[1]) if row else (0, GENESIS)


def head(connection) -> tuple[int, str]:
    from intercity.models import AuditEntry

    row = connection.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    return (row.seq, row.hash) if row else (0, GENESIS)


@dataclass
class VerifyResult:
    ok: bool
    count: int
    head_seq: int
    head_hash: str
    problem: str | None = None
    bad_seq: int | None = None

    @property
    def head(self) -> str:
        return f"{self.head_seq}:{self.head_hash}"


def verify(connection, *, start_seq: int = 0, start_hash: str = GENESIS, expect_head: tuple[int, str] | None = None,
           batch: int = 5000, limit: int | None = None) -> VerifyResult:
    """Walk the chain by seq from (start_seq, start_hash) and report the first break.

    `limit` stops after that many entries (the result's head is where it stopped), so a long chain
    can be verified in steps that each stay short.
    """
    from intercity.models import AuditEntry

    columns = [getattr(AuditEntry, name) for name in HASHED_FIELDS] + [AuditEntry.hash, AuditEntry.id]
    expected_seq, prev_hash, count = start_seq, start_hash, 0
    expected_head_seen = expect_head is None or expect_head[0] <= start_seq
    while True:
        rows = connection.execute(
            select(*columns).where(AuditEntry.seq > expected_seq).order_by(AuditEntry.seq)
            .limit(batch if limit is None else min(batch, limit - count))
        ).mappings().all()
        if not rows:
            break
        for row in rows:
            expected_seq += 1
            if row["seq"] != expected_seq:
                return VerifyResult(False, count, expected_seq - 1, prev_hash,
                                    f"entry {expected_seq} is missing (the next one is {row['seq']}): "
                                    "entries were removed", expected_seq)
            if row["prev_hash"] != prev_hash:
                return VerifyResult(False, count, expected_seq - 1, prev_hash,
                                    f"entry {row['seq']} does not follow entry {row['seq'] - 1}: "
                                    "entries were removed or reordered", row["seq"])
            if compute_hash(row) != row["hash"]:
                return VerifyResult(False, count, expected_seq - 1, prev_hash,
                                    f"entry {row['seq']} (id {row['id']}) was altered: its hash does not match its content",
                                    row["seq"])
            if expect_head and row["seq"] == expect_head[0]:
                if row["hash"] != expect_head[1]:
                    return VerifyResult(False, count, row["seq"], row["hash"],
                                        f"entry {row['seq']} is not the entry of the expected head", row["seq"])
                expected_head_seen = True
            prev_hash = row["hash"]
            count += 1
            if limit is not None and count >= limit:
                return VerifyResult(True, count, expected_seq, prev_hash)
    result = VerifyResult(True, count, expected_seq, prev_hash)
    if not expected_head_seen:
        result.ok = False
        result.problem = (f"the log ends at entry {expected_seq}, before the expected head {expect_head[0]}: "
                          "the newest entries were removed")
        result.bad_seq = expected_seq + 1
    return result
