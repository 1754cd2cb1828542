"""Chain verification from the last verified checkpoint, in steps, so checking a million entries never times out."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from intercity.audit import chain, transcripts
from intercity.extensions import db
from intercity.models import AuditCheckpoint, AuditEntry
from intercity.models.base import utcnow

# Entries one request verifies (a few seconds on a small machine, well inside gunicorn's 30 s worker
# timeout); each step stores a checkpoint, so the next one, and the next print, start there.
STEP = 100_000


@dataclass
class Integrity:
    ok: bool
    head_seq: int  # verified up to here
    head_hash: str
    checked: int  # entries verified now (after the checkpoint)
    total: int  # entries covered by this and earlier verifications
    since_seq: int  # the checkpoint this run started from (0: the genesis)
    problem: str | None = None
    verified_at: datetime | None = None
    chain_seq: int = 0  # the chain head when this ran: complete when head_seq reached it
    chain_hash: str = chain.GENESIS

    @property
    def head(self) -> str:
        return f"{self.head_seq}:{self.head_hash}"

    @property
    def chain_head(self) -> str:
        return f"{self.chain_seq}:{self.chain_hash}"

    @property
    def complete(self) -> bool:
        return self.head_seq >= self.chain_seq

    @property
    def remaining(self) -> int:
        return max(self.chain_seq - self.head_seq, 0)

    @property
    def percent(self) -> int:
        return 100 if not self.chain_seq else int(100 * self.head_seq / self.chain_seq)

    @property
    def summary(self) -> str:
        if not self.ok:
            return f"Chain BROKEN: {self.problem}"
        if not self.complete:
            return (f"Chain intact so far: verified up to entry {self.head_seq} of {self.chain_seq} "
                    f"({self.remaining} to go). Press Verify chain again to continue.")
        return (f"Chain intact: {self.total} entries up to entry {self.head_seq} "
                f"({self.checked} checked now from checkpoint {self.since_seq}).")


def latest_checkpoint(session=None) -> AuditCheckpoint | None:
    session = session or db.session
    return session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc(), AuditCheckpoint.id.desc())
                          .limit(1))


def verify(session=None, *, save: bool = True, full: bool = False) -> Integrity:
    """Verify up to `STEP` entries after the newest checkpoint; store a new checkpoint where they are intact.

    Entries before the checkpoint were verified when it was written; the checkpoint's own entry
    must still carry the hash recorded then. `full` walks to the head in one go.
    """
    session = session or db.session
    limit = None if full else STEP
    chain_seq, chain_hash = chain.head(session.connection())
    checkpoint = latest_checkpoint(session)
    start_seq, start_hash, before = 0, chain.GENESIS, 0
    if checkpoint is not None:
        stored = session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == checkpoint.seq))
        if stored != checkpoint.hash:
            problem = (f"entry {checkpoint.seq} no longer has the hash verified on "
                       f"{checkpoint.verified_at:%Y-%m-%d %H:%M} UTC: it was altered or removed")
            return Integrity(False, checkpoint.seq, checkpoint.hash, 0, checkpoint.entries, checkpoint.seq,
                             problem, utcnow(), chain_seq, chain_hash)
        start_seq, start_hash, before = checkpoint.seq, checkpoint.hash, checkpoint.entries
    result = chain.verify(session.connection(), start_seq=start_seq, start_hash=start_hash, limit=limit)
    problem = result.problem
    if result.ok:
        # Outcome entries of this step must still match their operations' command runs.
        altered = transcripts.verify(session.connection(), start_seq=start_seq, end_seq=result.head_seq)
        if altered is not None:
            result.ok, problem = False, altered.message
    integrity = Integrity(result.ok, result.head_seq, result.head_hash, result.count, before + result.count,
                          start_seq, problem, utcnow(), max(chain_seq, result.head_seq),
                          chain_hash if chain_seq >= result.head_seq else result.head_hash)
    if result.ok and save and result.head_seq > start_seq:
        store(session, result.head_seq, result.head_hash, integrity.total, integrity.verified_at)
    return integrity


def store(session, seq: int, digest: str, entries: int, verified_at: datetime | None = None) -> None:
    """Remember a verified chain position (the caller commits)."""
    session.add(AuditCheckpoint(seq=seq, hash=digest, entries=entries, verified_at=verified_at or utcnow()))
