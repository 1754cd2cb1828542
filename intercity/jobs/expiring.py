"""An expiring buffer for what pages show live and the panel never keeps: log reads and a running build's output.

Entries are text under a key, each with a time to live; nothing here is audited or reaches the
database. Without Redis (one process, the in-process runner) they live in this process's memory;
with Redis they live there, so the web process that polls sees what a worker wrote.
"""
from __future__ import annotations

import threading
import time

from flask import current_app

PREFIX = "intercity:expiring:"


class MemoryBuffer:
    """The single-process buffer: a dict of (text, expires at), swept as it is used."""

    def __init__(self, clock=time.monotonic):
        self._items: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def _sweep(self, now: float) -> None:
        for key in [key for key, (_, until) in self._items.items() if until <= now]:
            del self._items[key]

    def put(self, key: str, text: str, ttl: float) -> None:
        with self._lock:
            now = self._clock()
            self._sweep(now)
            self._items[key] = (text, now + ttl)

    def get(self, key: str) -> str | None:
        with self._lock:
            self._sweep(self._clock())
            item = self._items.get(key)
            return item[0] if item else None

    def append(self, key: str, text: str, ttl: float, limit: int) -> None:
        """Add to the end, keeping the last `limit` characters; the time to live starts again."""
        with self._lock:
            now = self._clock()
            self._sweep(now)
            old = self._items.get(key, ("", 0))[0]
            self._items[key] = ((old + text)[-limit:], now + ttl)

    def expire(self, key: str, ttl: float) -> None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items[key] = (item[0], self._clock() + ttl)

    def delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


class RedisBuffer:
    """The same over Redis: SET with EX, APPEND then EXPIRE (and a trim when it grew past the limit)."""

    def __init__(self, client):
        self.client = client

    def put(self, key: str, text: str, ttl: float) -> None:
        self.client.set(PREFIX + key, text.encode("utf-8"), ex=max(1, int(ttl)))

    def get(self, key: str) -> str | None:
        value = self.client.get(PREFIX + key)
        return None if value is None else value.decode("utf-8", "replace")

    def append(self, key: str, text: str, ttl: float, limit: int) -> None:
        name = PREFIX + key
        pipe = self.client.pipeline()
        pipe.append(name, text.encode("utf-8"))
        pipe.expire(name, max(1, int(ttl)))
        size, _ = pipe.execute()
        if size > limit * 4:  # bytes; trimmed now and then rather than on every append
            tail = self.client.getrange(name, -limit, -1).decode("utf-8", "ignore")
            self.client.set(name, tail.encode("utf-8"), ex=max(1, int(ttl)))

    def expire(self, key: str, ttl: float) -> None:
        self.client.expire(PREFIX + key, max(1, int(ttl)))

    def delete(self, key: str) -> None:
        self.client.delete(PREFIX + key)


def buffer():
    """This app's buffer: in memory with the in-process runner, in Redis otherwise."""
    found = current_app.extensions.get("intercity_expiring")
    if found is None:
        if current_app.config["JOBS_IN_PROCESS"]:
            found = MemoryBuffer()
        else:
            from intercity.jobs import redis_connection

            found = RedisBuffer(redis_connection())
        found = current_app.extensions.setdefault("intercity_expiring", found)
    return found
