"""The wall clock that one-time codes, reset links and relative times are read from: one place tests can turn it."""
from __future__ import annotations

import time
from datetime import datetime, timezone


def now() -> float:
    """Seconds since the epoch."""
    return time.time()


def utcnow() -> datetime:
    """now() as an aware UTC datetime (what "5 minutes ago" and "Today" are counted from)."""
    return datetime.fromtimestamp(now(), timezone.utc)
