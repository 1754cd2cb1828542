"""The `now` fixture: the panel's clock (intercity.clock) held still and turned by the test."""
from __future__ import annotations

import pytest

# A fixed moment at the start of a 30-second TOTP step.
START = 1_900_000_000.0


@pytest.fixture
def now(monkeypatch):
    """`now.t` is what the panel reads as the time; `now.t += 30` is the next TOTP step."""
    from intercity import clock

    class Clock:
        t = START

    monkeypatch.setattr(clock, "now", lambda: Clock.t)
    return Clock
