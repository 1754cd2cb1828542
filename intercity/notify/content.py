"""What messages say: alert and digest bodies in plain text and HTML, from the timeline's own sentences."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import render_template
from sqlalchemy import select

from intercity.audit import chain
from intercity.audit.categories import LABELS
from intercity.audit.timeline import sentence
from intercity.extensions import db
from intercity.models import AuditEntry, NotificationPreference, NotificationTarget, OutboxMessage, User
from intercity.notify import digest, tls_expiry
from intercity.notify.links import external


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class Line:
    """One entry as a message shows it."""

    seq: int
    sentence: str
    actor: str
    when: str
    place: str
    link: str
    failed: bool


def line(entry: AuditEntry) -> Line:
    place = " / ".join(part for part in (entry.server_name, entry.app_name) if part) or "the panel"
    return Line(entry.seq, str(sentence(entry)).strip(), entry.actor_display, _when(entry.created_at), place,
                external("audit.entry", seq=entry.seq), entry.action == "operation.failed")


def alert(entries: list[AuditEntry], *, failures: bool = False) -> tuple[str, str, str]:
    """(subject, text, html) of one alert about the entries of one commit or operation."""
    lines = [line(entry) for entry in entries]
    first = lines[0]
    more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
    prefix = "Failed" if failures else "Security alert"
    # One header line whatever a label holds.
    subject = " ".join(f"[Intercity] {prefix}: {first.sentence}{more}".split())
    context = {"lines": lines, "failures": failures, "timeline": external("audit.timeline"),
               "settings": external("account.show")}
    return (subject[:255], render_template("mail/alert.txt", **context), render_template("mail/alert.html", **context))


def _group_link(group: digest.AppGroup) -> str:
    terms = []
    if group.server_name:
        terms.append(f'server:"{group.server_name}"')
    if group.app_name:
        terms.append(f'app:"{group.app_name}"')
    if group.first_at is not None:
        terms.append("created:>=" + group.first_at.strftime("%Y-%m-%dT%H:%M"))
    return external("audit.timeline", q=" ".join(terms))


def build(message: OutboxMessage):
    """(subject, text, html, covered_seq) of a digest as of now, or None when nothing is new for its reader."""
    from intercity.notify.tokens import unsubscribe_token

    if message.user_id is not None:
        owner = db.session.scalar(select(NotificationPreference)
                                  .where(NotificationPreference.user_id == message.user_id))
        user = db.session.get(User, message.user_id)
    else:
        owner = db.session.get(NotificationTarget, message.target_id) if message.target_id else None
        user = None
    if owner is None:
        return None
    with db.engine.connect() as connection:
        head_seq, head_hash = chain.head(connection)
    if head_seq <= (owner.digest_seq or 0):
        return None
    coverage = digest.collect(owner.digest_seq or 0, head_seq, head_hash)
    if coverage.total == 0:
        return None
    shown = [seq for group in coverage.groups.values() for seq in group.shown()]
    entries = {}
    for start in range(0, len(shown), 500):
        chunk = shown[start:start + 500]
        for entry in db.session.scalars(select(AuditEntry).where(AuditEntry.seq.in_(chunk))):
            entries[entry.seq] = entry
    groups = []
    for (server_name, app_name), group in sorted(coverage.groups.items()):
        groups.append({
            "title": " / ".join(part for part in (server_name, app_name) if part) or "The panel",
            "lines": [line(entries[seq]) for seq in group.shown() if seq in entries],
            "hidden": group.hidden, "total": group.total, "link": _group_link(group),
        })
    categories = [(LABELS.get(name, name), count) for name, count in sorted(coverage.categories.items())]
    context = {
        "coverage": coverage, "groups": groups, "categories": categories, "expiring": tls_expiry.expiring_lines(),
        "head": f"{coverage.until}:{coverage.head_hash}", "timeline": external("audit.timeline"),
        "account": external("account.show"),
        "unsubscribe": external("account.unsubscribe", token=unsubscribe_token(user)) if user is not None else None,
    }
    subject = f"[Intercity] Digest: {coverage.total} change{'s' if coverage.total != 1 else ''} " \
              f"(entries {coverage.since + 1}–{coverage.until})"
    db.session.commit()
    return (subject, render_template("mail/digest.txt", **context), render_template("mail/digest.html", **context),
            coverage.until)
