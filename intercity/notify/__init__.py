"""Notifications: security alerts at once and digests on a schedule, by mail and to chat targets, through an outbox."""
from __future__ import annotations


def init_app(app) -> None:
    """After each commit: deliver the messages it recorded and look for alerted entries it wrote."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from intercity.notify import chat, outbox

    chat.quiet_apprise_logging()
    for name, listener in (("after_commit", outbox.after_commit),
                           ("after_transaction_end", outbox.discard_on_rollback)):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)
