"""Chain verification from the last verified checkpoint, so checking a million entries stays fast."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from intercity.audit import chain, transcripts
from intercity.extensions import db
from intercity.models import AuditCheckpoint, AuditEntry
from intercity.models.base import utcnow


@dataclass
class Integrity:
    ok: bool
    head_seq: int
    head_hash: str
    checked: int  # entries verified now (after the checkpoint)
    total: int  # entries covered by this and earlier verifications
    since_seq: int  # the checkpoint this run started from (0: the genesis)
    problem: str | None = None
    verified_at: datetime | None = None

    @property
    def head(self) -> str:
        return f"{self.head_seq}:{self.head_hash}"

    @property
    def summary(self) -> str:
        if self.ok:
            return (f"Chain intact: {self.total} entries up to entry {self.head_seq} "
                    f"({self.checked} checked now from checkpoint {self.since_seq}).")
        return f"Chain BROKEN: {self.problem}"


def latest_checkpoint(session=None) -> AuditCheckpoint | None:
    session = session or db.session
    return session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc(), AuditCheckpoint.id.desc())
                          .limit(1))


def verify(session=None, *, save: bool = True) -> Integrity:
    """Verify the entries after the newest checkpoint; store a new checkpoint when they are intact.

    Entries before the checkpoint were verified when it was written; the checkpoint's own entry
    must still carry the hash recorded then. A full walk (`intercity audit verify`) covers all.
    """
    session = session or db.session
    checkpoint = latest_checkpoint(session)
    start_seq, start_hash, before = 0, chain.GENESIS, 0
    if checkpoint is not None:
        stored = session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == checkpoint.seq))
        if stored != checkpoint.hash:
            problem = (f"entry {checkpoint.seq} no longer has the hash verified on "
                       f"{checkpoint.verified_at:%Y-%m-%d %H:%M} UTC: it was altered or removed")
            return Integrity(False, checkpoint.seq, checkpoint.hash, 0, checkpoint.entries, checkpoint.seq,
                             problem, utcnow())
        start_seq, start_hash, before = checkpoint.seq, checkpoint.hash, checkpoint.entries
    result = chain.verify(session.connection(), start_seq=start_seq, start_hash=start_hash)
    problem = result.problem
    if result.ok:
        # Outcome entries since the checkpoint must still match their operations' command runs.
        altered = transcripts.verify(session.connection(), start_seq=start_seq)
        if altered is not None:
            result.ok, problem = False, altered.message
    integrity = Integrity(result.ok, result.head_seq, result.head_hash, result.count, before + result.count,
                          start_seq, problem, utcnow())
    if result.ok and save and result.head_seq > start_seq:
        session.add(AuditCheckpoint(seq=result.head_seq, hash=result.head_hash, entries=integrity.total,
                                    verified_at=integrity.verified_at))
    return integrity
