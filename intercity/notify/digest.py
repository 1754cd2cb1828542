"""Digests: who is due (hourly, daily at 07:00 UTC, weekly on Mondays), and what one covers, read in one streaming pass.

A digest message is recorded when someone is due; its body is built when it is sent (so a
retry after an outage covers the whole gap), and the watermark moves when it was accepted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import select

from intercity.extensions import db
from intercity.models import AuditEntry, NotificationPreference, NotificationTarget, OutboxMessage, User
from intercity.models.base import utcnow

DAILY_AT = time(7, 0)
PER_APP = 20
OUTSTANDING = ("pending", "sending", "failed")
# The outcome of a successful operation is folded into the request it applied; counting it is enough.
NOT_LISTED = {"operation.succeeded"}


def slot(frequency: str, now: datetime) -> datetime | None:
    """The most recent moment a digest of this frequency was due at (None: never)."""
    now = now.astimezone(timezone.utc)
    if frequency == "hourly":
        return now.replace(minute=0, second=0, microsecond=0)
    if frequency in ("daily", "weekly"):
        today = datetime.combine(now.date(), DAILY_AT, tzinfo=timezone.utc)
        at = today if now >= today else today - timedelta(days=1)
        if frequency == "weekly":
            at -= timedelta(days=at.weekday())  # back to Monday 07:00
        return at
    return None


def is_due(frequency: str, last: datetime | None, now: datetime) -> bool:
    due_at = slot(frequency, now)
    return due_at is not None and (last is None or last < due_at)


def head_seq() -> int:
    return db.session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1)) or 0


def _has_entries_after(seq: int) -> bool:
    return db.session.scalar(select(AuditEntry.seq).where(AuditEntry.seq > seq).limit(1)) is not None


def _outstanding(**where) -> bool:
    query = select(OutboxMessage.id).where(OutboxMessage.kind == "digest", OutboxMessage.status.in_(OUTSTANDING))
    for name, value in where.items():
        query = query.where(getattr(OutboxMessage, name) == value)
    return db.session.scalar(query.limit(1)) is not None


def queue_for_user(user: User, pref: NotificationPreference, now: datetime) -> OutboxMessage | None:
    """Record a digest for this person unless one is on its way (or failed, awaiting an admin) or nothing is new."""
    from intercity.notify.outbox import deliver_after_commit

    if _outstanding(user_id=user.id):
        return None
    if not _has_entries_after(pref.digest_seq):
        pref.last_digest_at = now  # nothing to say: due again at the next slot
        return None
    message = OutboxMessage(kind="digest", channel="mail", recipient=user.email, user_id=user.id,
                            subject="Intercity digest", status="pending", attempts=0)
    db.session.add(message)
    deliver_after_commit(message)
    return message


def send_due(now: datetime | None = None) -> int:
    """The periodic job's digest part: record a digest for everyone (and every chat target) that is due."""
    from intercity.services.notifications import preferences_for

    now = now or utcnow()
    queued = 0
    for user in db.session.scalars(select(User).where(User.active.is_(True)).order_by(User.id)).all():
        pref = preferences_for(user, now=now)
        if is_due(pref.digest_frequency, pref.last_digest_at, now) and queue_for_user(user, pref, now):
            queued += 1
    for target in db.session.scalars(select(NotificationTarget).where(NotificationTarget.digest.is_(True))).all():
        if is_due("daily", target.last_digest_at, now) and not _outstanding(target_id=target.id):
            if _has_entries_after(target.digest_seq):
                message = OutboxMessage(kind="digest", channel="chat", target_id=target.id, subject="Intercity digest",
                                        status="pending", attempts=0)
                db.session.add(message)
                from intercity.notify.outbox import deliver_after_commit

                deliver_after_commit(message)
                queued += 1
            else:
                target.last_digest_at = now
    db.session.commit()
    return queued


def advance_watermark(message: OutboxMessage, now: datetime) -> None:
    """In the transaction that marks a digest sent: its reader has now seen everything up to covered_seq."""
    if message.user_id is not None:
        owner = db.session.scalar(select(NotificationPreference).where(NotificationPreference.user_id == message.user_id))
    else:
        owner = db.session.get(NotificationTarget, message.target_id) if message.target_id else None
    if owner is None:
        return
    if message.covered_seq is not None and message.covered_seq > (owner.digest_seq or 0):
        owner.digest_seq = message.covered_seq
    owner.last_digest_at = now


# -- what a digest covers --------------------------------------------------------------------

@dataclass
class AppGroup:
    server_name: str | None
    app_name: str | None
    total: int = 0
    failed: list[int] = field(default_factory=list)  # seqs, at most PER_APP
    others: list[int] = field(default_factory=list)
    first_at: datetime | None = None

    def shown(self) -> list[int]:
        """Failed operations first, then the rest, oldest first within each, at most PER_APP."""
        return (self.failed + self.others)[:PER_APP]

    @property
    def hidden(self) -> int:
        return self.total - len(self.shown())


@dataclass
class Coverage:
    since: int
    until: int
    head_hash: str
    total: int = 0
    categories: dict[str, int] = field(default_factory=dict)
    groups: dict[tuple, AppGroup] = field(default_factory=dict)


def collect(since: int, until: int, head_hash: str, batch: int = 5000) -> Coverage:
    """One pass over the entries in (since, until], a few columns at a time: memory grows with apps, not entries."""
    coverage = Coverage(since, until, head_hash)
    # Plain columns only (no timestamp conversion per row); each group's first time is read once at the end.
    columns = (AuditEntry.seq, AuditEntry.action, AuditEntry.category, AuditEntry.server_name, AuditEntry.app_name)
    categories = coverage.categories
    groups = coverage.groups
    firsts: dict[tuple, int] = {}
    connection = db.session.connection()
    cursor = since
    while True:
        # Keyset batches on seq: each is one indexed range read, and nothing holds a server-side cursor open.
        rows = connection.execute(select(*columns).where(AuditEntry.seq > cursor, AuditEntry.seq <= until)
                                  .order_by(AuditEntry.seq).limit(batch)).all()
        for seq, action, category, server_name, app_name in rows:
            coverage.total += 1
            categories[category] = categories.get(category, 0) + 1
            key = (server_name or "", app_name or "")
            group = groups.get(key)
            if group is None:
                group = groups[key] = AppGroup(server_name, app_name)
                firsts[key] = seq
            if action in NOT_LISTED:
                continue
            group.total += 1
            if action == "operation.failed":
                if len(group.failed) < PER_APP:
                    group.failed.append(seq)
            elif len(group.others) < PER_APP:
                group.others.append(seq)
        if len(rows) < batch:
            break
        cursor = rows[-1][0]
    if firsts:
        seqs = list(firsts.values())
        when = dict(db.session.execute(select(AuditEntry.seq, AuditEntry.created_at)
                                       .where(AuditEntry.seq.in_(seqs))).all())
        for key, seq in firsts.items():
            groups[key].first_at = when.get(seq)
    db.session.commit()
    for key in [key for key, group in groups.items() if group.total == 0]:
        del groups[key]
    return coverage
