"""Security alerts: alerted entries not yet sent become one message per commit or operation, per recipient.

A cursor row holds the last seq scanned. The messages and the cursor's move are committed
together, so an entry is turned into messages exactly once (the outbox then retries them until
sent); a commit that wrote an alerted entry asks for a scan, and the periodic tick catches up
on any scan that was lost.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from intercity.audit.categories import is_alerted
from intercity.database import begin_writing
from intercity.extensions import db
from intercity.models import (AuditEntry, NotificationPreference, NotificationTarget, NotifyCursor, NotifyThrottle,
                              OutboxMessage, User)
from intercity.models.base import utcnow

CURSOR = "alerts"
BATCH = 1000
REVEAL_QUIET = timedelta(hours=1)


def alerted(entry: AuditEntry) -> bool:
    if not is_alerted(entry.action):
        return False
    if entry.action == "env_var.updated":
        return "value_fingerprint" in entry.changes  # a rename alone is not a secret changing
    return True


def _group_key(entry: AuditEntry) -> tuple:
    # One operation, or one commit (its entries share the commit's timestamp, actor and request).
    if entry.operation_id is not None:
        return ("operation", entry.operation_id)
    return ("commit", entry.created_at, entry.actor_kind, entry.actor_email, entry.request_id)


def _throttled(entry: AuditEntry, now: datetime) -> bool:
    """Reveals: at most one alert per person and app an hour."""
    if entry.action != "env_var.revealed":
        return False
    key = f"reveal:{entry.actor_user_id or entry.actor_email}:{entry.app_id or entry.app_name}"
    row = db.session.get(NotifyThrottle, key)
    if row is not None and row.until > now:
        return True
    if row is None:
        db.session.add(NotifyThrottle(key=key, until=now + REVEAL_QUIET))
    else:
        row.until = now + REVEAL_QUIET
    db.session.flush()
    return False


def recipients() -> list[User]:
    """Active people who want security alerts (the default)."""
    off = select(NotificationPreference.user_id).where(NotificationPreference.security_alerts.is_(False))
    return list(db.session.scalars(select(User).where(User.active.is_(True), User.id.not_in(off)).order_by(User.id)))


def _cursor() -> NotifyCursor:
    begin_writing(db.session.connection())
    cursor = db.session.scalars(select(NotifyCursor).where(NotifyCursor.name == CURSOR).with_for_update()
                                .execution_options(populate_existing=True)).first()
    if cursor is None:
        from intercity.notify.digest import head_seq

        cursor = NotifyCursor(name=CURSOR, seq=head_seq())
        db.session.add(cursor)
        db.session.flush()
    return cursor


def _queue(groups: dict[tuple, list[AuditEntry]], failures: dict[tuple, list[AuditEntry]]) -> int:
    from intercity.notify import content
    from intercity.notify.outbox import deliver_after_commit

    people = recipients() if groups else []
    alert_targets = failure_targets = []
    if groups or failures:
        targets = db.session.scalars(select(NotificationTarget).order_by(NotificationTarget.id)).all()
        alert_targets = [t for t in targets if t.alerts]
        failure_targets = [t for t in targets if t.failures]
    made = 0
    for entries, kind, targets in [(g, "alert", alert_targets) for g in groups.values()] + \
                                   [(g, "failure", failure_targets) for g in failures.values()]:
        subject, text, html = content.alert(entries, failures=kind == "failure")
        messages = [OutboxMessage(kind=kind, channel="chat", target_id=t.id, subject=subject, text=text,
                                  status="pending", attempts=0) for t in targets]
        if kind == "alert":
            messages += [OutboxMessage(kind=kind, channel="mail", recipient=u.email, user_id=u.id, subject=subject,
                                       text=text, html=html, status="pending", attempts=0) for u in people]
        for message in messages:
            db.session.add(message)
        db.session.flush()
        for message in messages:
            deliver_after_commit(message)
        made += len(messages)
    return made


def scan(now: datetime | None = None) -> int:
    """Turn alerted entries after the cursor into messages; returns how many messages were recorded."""
    now = now or utcnow()
    made = 0
    while True:
        cursor = _cursor()
        entries = db.session.scalars(select(AuditEntry).where(AuditEntry.seq > cursor.seq)
                                     .order_by(AuditEntry.seq).limit(BATCH)).all()
        if not entries:
            db.session.commit()
            return made
        groups: dict[tuple, list[AuditEntry]] = {}
        failures: dict[tuple, list[AuditEntry]] = {}
        for entry in entries:
            if entry.action == "operation.failed":
                failures.setdefault(_group_key(entry), []).append(entry)
            elif alerted(entry) and not _throttled(entry, now):
                groups.setdefault(_group_key(entry), []).append(entry)
        made += _queue(groups, failures)
        cursor.seq = entries[-1].seq
        db.session.commit()
        if len(entries) < BATCH:
            return made
