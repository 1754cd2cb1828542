"""The wall clock that one-time codes and reset links are checked against: one place tests can turn it."""
from __future__ import annotations

import time


def now() -> float:
    """Seconds since the epoch."""
    return time.time()
