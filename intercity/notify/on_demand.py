"""`intercity digest send`: digests now, for one person or everyone, delivered in this process."""
from __future__ import annotations

from sqlalchemy import select

from intercity.extensions import db
from intercity.models import OutboxMessage, User
from intercity.models.base import utcnow


def send_digests(email: str | None = None) -> list[tuple[str, str, str | None]]:
    """(address, status, server answer) per person; a digest already on its way is sent rather than doubled."""
    from intercity.notify import outbox
    from intercity.services.notifications import preferences_for

    query = select(User).where(User.active.is_(True)).order_by(User.id)
    if email:
        query = query.where(User.email == User.normalise_email(email))
    users = db.session.scalars(query).all()
    if email and not users:
        raise LookupError(f"No active user has the address {email}.")
    results = []
    now = utcnow()
    for user in users:
        pref = preferences_for(user, now=now)
        if pref.digest_frequency == "off" and not email:
            continue
        waiting = db.session.scalar(select(OutboxMessage).where(
            OutboxMessage.kind == "digest", OutboxMessage.user_id == user.id,
            OutboxMessage.status.in_(("pending", "failed"))).order_by(OutboxMessage.id).limit(1))
        if waiting is not None:
            waiting.status, waiting.next_attempt_at = "pending", None
            message = waiting
        else:
            message = OutboxMessage(kind="digest", channel="mail", recipient=user.email, user_id=user.id,
                                    subject="Intercity digest", status="pending", attempts=0)
            db.session.add(message)
        db.session.commit()
        status = outbox.deliver(message.id)
        message = db.session.get(OutboxMessage, message.id, populate_existing=True)
        answer = message.last_response
        db.session.commit()
        if status == "sent" and answer == "nothing new to report":
            status, answer = "nothing new", None
        results.append((user.email, status, answer))
    return results
