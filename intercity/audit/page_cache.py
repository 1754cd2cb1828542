"""Rendered timeline regions kept in this process between requests, while nothing they show has changed."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from flask import current_app, g, request
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from sqlalchemy import func, select

from intercity import clock
from intercity.extensions import db
from intercity.models import AuditEntry

# What a process keeps at most, whatever the entry count allows: a first page is some 100 KB.
MAX_BYTES = 4 * 1024 * 1024
# Stands for the session's CSRF token in a kept page. Escaped text cannot contain "<", so no entry can forge it.
TOKEN_SLOT = "<!--csrf-token-->"
EXTENSION = "intercity_timeline_cache"


@dataclass
class Rendered:
    """A region as rendered: `keep` is False for what must be rendered every time (pending rows, errors)."""

    html: str
    status: int = 200
    keep: bool = True


class PageCache:
    """A bounded LRU of rendered HTML (entries and characters), safe to share between a process's threads."""

    def __init__(self, entries: int, max_bytes: int = MAX_BYTES):
        self.entries, self.max_bytes = entries, max_bytes
        self._pages: OrderedDict[tuple, tuple[str, datetime]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple, now: datetime) -> str | None:
        with self._lock:
            found = self._pages.get(key)
            if found is None:
                return None
            html, until = found
            if now >= until:  # a relative time or day label on it has changed meanwhile
                self._drop(key)
                return None
            self._pages.move_to_end(key)
            return html

    def put(self, key: tuple, html: str, until: datetime) -> None:
        if len(html) > self.max_bytes:
            return
        with self._lock:
            if key in self._pages:
                self._drop(key)
            self._pages[key] = (html, until)
            self._size += len(html)
            while len(self._pages) > self.entries or self._size > self.max_bytes:
                self._drop(next(iter(self._pages)))

    def _drop(self, key: tuple) -> None:
        html, _ = self._pages.pop(key)
        self._size -= len(html)

    def __len__(self) -> int:
        return len(self._pages)


def init_app(app) -> None:
    entries = app.config.get("TIMELINE_CACHE") or 0
    app.extensions[EXTENSION] = PageCache(entries) if entries > 0 else None


def version() -> int:
    """The newest seq of the chain: every change, outcome, revert and removal of a server appends an entry.

    What a page shows without an entry of its own (a pending operation's status, its command runs) is
    never kept: see `region`. One lookup of the end of the seq index.
    """
    return db.session.scalar(select(func.max(AuditEntry.seq))) or 0


def next_midnight(now: datetime) -> datetime:
    """When "Today" and "Yesterday" (day headers) next mean other days (UTC)."""
    return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=now.tzinfo)


def region(part: str, query: str, before: int | None, render: Callable[[], Rendered]) -> Rendered:
    """The region `part` of this request's timeline, from memory when an identical one was rendered since the
    last entry and none of its labels has changed; otherwise `render()`, kept when it may be.

    The key is everything the region's HTML depends on: which region (full page's main, htmx list, older
    page), the URL's endpoint and arguments (scope), the filter as normalised (`q` with the chips folded in)
    and `before`, the viewer's role (Verify form, Revert links) and the chain's newest seq.
    """
    cache: PageCache | None = current_app.extensions.get(EXTENSION)
    if cache is None:
        return render()
    # Read before rendering: an entry appended meanwhile makes the kept page outdated, never the reverse.
    key = (part, request.script_root, request.endpoint, tuple(sorted((request.view_args or {}).items())),
           query, before, current_user.role, version())
    html = cache.get(key, clock.utcnow())
    if html is not None:
        return Rendered(html)
    g.labels_change_at = next_midnight(clock.utcnow())
    try:
        rendered = render()
        until = g.labels_change_at
    finally:
        g.pop("labels_change_at", None)
    if rendered.keep and until > clock.utcnow():
        cache.put(key, rendered.html, until)
    return rendered


def note_label(changes_at: datetime | None) -> None:
    """A relative label was rendered that changes at `changes_at`: the region being rendered is good until then."""
    if changes_at is not None and "labels_change_at" in g and changes_at < g.labels_change_at:
        g.labels_change_at = changes_at


def with_token(html: str) -> str:
    """A region with this session's CSRF token where it was rendered as TOKEN_SLOT."""
    return html.replace(TOKEN_SLOT, generate_csrf())
