"""The hash chain: canonical encoding, the chain-head lock, appending entries, and verification.

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

from sqlalchemy import Integer, String, insert, select

from intercity.database import begin_writing
from intercity.models import AuditEntry

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
    so it sees the entries of whoever held the lock before.
    SQLite: the transaction becomes a BEGIN IMMEDIATE write transaction, which holds the write lock.
    This runs once per committing transaction, so it talks to the driver directly (a tenth of
    the cost of a Core select).
    """
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


class _Insert:
    """The INSERT of audit entries for one driver, rendered once, with each column's bind processor.

    Entries are written on every commit; going to the driver with a statement rendered once
    (values still converted by their types' own processors) costs about half a Core insert().
    """

    def __init__(self, dialect, marker: str):
        table = AuditEntry.__table__
        self.columns = tuple(c.name for c in table.columns if c.name != "id")
        self.processors = tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                                for name in self.columns)
        names = ", ".join(dialect.identifier_preparer.quote(name) for name in self.columns)
        self.sql = f"INSERT INTO audit_entries ({names}) VALUES ({', '.join([marker] * len(self.columns))})"

    def params(self, row: dict) -> tuple:
        return tuple(row[name] if process is None or row[name] is None else process(row[name])
                     for name, process in zip(self.columns, self.processors))


_INSERTS: dict[tuple[str, str, str], _Insert | None] = {}


def _insert_for(dialect) -> _Insert | None:
    key = (dialect.name, dialect.driver, dialect.paramstyle)
    try:
        return _INSERTS[key]
    except KeyError:
        marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
        plan = _INSERTS[key] = _Insert(dialect, marker) if marker else None
        return plan


_COLUMNS: list[tuple[str, bool, int | None]] = []


def fit(row: dict) -> dict:
    """Give each value its column's type and length before hashing, so the hashed and stored bytes agree.

    (An id passed as "3" would be stored as 3; a label longer than its column would fail on
    PostgreSQL, and an over-long label must not make a person's change fail.)
    """
    if not _COLUMNS:
        for column in AuditEntry.__table__.columns:
            if column.name in HASHED_FIELDS and column.name not in ("seq", "created_at"):
                is_int = isinstance(column.type, Integer)
                length = column.type.length if isinstance(column.type, String) else None
                _COLUMNS.append((column.name, is_int, length))
    for name, is_int, length in _COLUMNS:
        value = row.get(name)
        if value is None:
            continue
        if is_int:
            if type(value) is not int:
                row[name] = int(value)
        elif type(value) is not str:
            row[name] = value = str(value)
        if length is not None and len(value) > length:
            row[name] = value[: length - 1] + "…"
    return row


def append(connection, entries: list[dict], held: tuple[int, str] | None, now: datetime) -> tuple[int, str]:
    """Chain entries after the head and insert them; returns the new head (seq, hash).

    `held` is the head this transaction already chained to (it holds the chain lock); otherwise
    the lock is taken and the head read first (lock_head).
    """
    seq, prev_hash = held if held is not None else lock_head(connection)
    rows = []
    for entry in entries:
        seq += 1
        row = fit(dict(entry, seq=seq, created_at=now, prev_hash=prev_hash))
        row["hash"] = prev_hash = compute_hash(row)
        rows.append(row)
    insert_ = _insert_for(connection.dialect)
    if insert_ is None:
        connection.execute(insert(AuditEntry.__table__), rows)
    else:
        params = [insert_.params(row) for row in rows]
        connection.exec_driver_sql(insert_.sql, params if len(params) > 1 else params[0])
    return seq, prev_hash


def head(connection) -> tuple[int, str]:
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

    @property
    def head(self) -> str:
        return f"{self.head_seq}:{self.head_hash}"


def verify(connection, *, start_seq: int = 0, start_hash: str = GENESIS, expect_head: tuple[int, str] | None = None,
           batch: int = 5000, limit: int | None = None) -> VerifyResult:
    """Walk the chain by seq from (start_seq, start_hash) and report the first break.

    `limit` stops after that many entries (the result's head is where it stopped), so a long chain
    can be verified in steps that each stay short.
    """
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
                                    "entries were removed")
            if row["prev_hash"] != prev_hash:
                return VerifyResult(False, count, expected_seq - 1, prev_hash,
                                    f"entry {row['seq']} does not follow entry {row['seq'] - 1}: "
                                    "entries were removed or reordered")
            if compute_hash(row) != row["hash"]:
                return VerifyResult(False, count, expected_seq - 1, prev_hash,
                                    f"entry {row['seq']} (id {row['id']}) was altered: its hash does not match its content")
            if expect_head and row["seq"] == expect_head[0]:
                if row["hash"] != expect_head[1]:
                    return VerifyResult(False, count, row["seq"], row["hash"],
                                        f"entry {row['seq']} is not the entry of the expected head")
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
    return result
