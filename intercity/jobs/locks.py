"""One worker per scope at a time: a Redis lock with a TTL renewed by a heartbeat, or a process-local lock.

A scope is an app (`app:7`) or a server's own work (`server:3`). The Redis lock expires when its
holder dies without releasing it (killed worker, lost machine), which is how the sweeper knows
that an operation left `running` has no worker any more.
"""
from __future__ import annotations

import logging
import threading
import uuid

from flask import current_app

log = logging.getLogger(__name__)

_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()
# Operation ids this process is applying right now (in-process mode has no Redis to ask).
running_here: set[int] = set()


def redis_key(scope: str) -> str:
    return f"intercity:{current_app.config['JOBS_QUEUE']}:lock:{scope}"


class ScopeLock:
    """acquire() without blocking; extend() renews the TTL; release() only if still ours."""

    def __init__(self, scope: str):
        self.scope = scope
        self.lost = False

    def acquire(self) -> bool:
        raise NotImplementedError

    def extend(self) -> bool:
        return True

    def release(self) -> None:
        raise NotImplementedError


class LocalScopeLock(ScopeLock):
    def __init__(self, scope: str):
        super().__init__(scope)
        with _local_guard:
            self._lock = _local_locks.setdefault(scope, threading.Lock())
        self._held = False

    def acquire(self) -> bool:
        self._held = self._lock.acquire(blocking=False)
        return self._held

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()


_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end
"""


class RedisScopeLock(ScopeLock):
    def __init__(self, scope: str, connection, ttl: float):
        super().__init__(scope)
        self.redis = connection
        self.key = redis_key(scope)
        self.ttl_ms = int(ttl * 1000)
        self.token = uuid.uuid4().hex

    def acquire(self) -> bool:
        return bool(self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def extend(self) -> bool:
        try:
            ok = bool(self.redis.eval(_EXTEND, 1, self.key, self.token, self.ttl_ms))
        except Exception:  # Redis unreachable for a moment: try again at the next beat
            log.warning("could not renew the lock of %s", self.scope, exc_info=True)
            return True
        if not ok:
            self.lost = True
        return ok

    def release(self) -> None:
        try:
            self.redis.eval(_RELEASE, 1, self.key, self.token)
        except Exception:
            log.warning("could not release the lock of %s; it expires by itself", self.scope, exc_info=True)


def scope_lock(scope: str) -> ScopeLock:
    if current_app.config["JOBS_IN_PROCESS"]:
        return LocalScopeLock(scope)
    from intercity.jobs import redis_connection

    return RedisScopeLock(scope, redis_connection(), current_app.config["JOBS_LOCK_TTL"])


def scope_locked(scope: str) -> bool:
    """Is some worker draining this scope right now?"""
    if current_app.config["JOBS_IN_PROCESS"]:
        with _local_guard:
            lock = _local_locks.get(scope)
        return lock is not None and lock.locked()
    from intercity.jobs import redis_connection

    return bool(redis_connection().exists(redis_key(scope)))


class Heartbeat:
    """While a drain holds a scope's lock: renew the lock every ttl/4, and stamp
    operations.heartbeat_at of the operation running now (`op_id`).

    It lives as long as the lock is held, not per operation: a run of short operations must
    keep the lock alive too.
    """

    def __init__(self, app, lock: ScopeLock):
        self.app = app
        self.lock = lock
        self.op_id: int | None = None
        self.interval = max(0.2, app.config["JOBS_LOCK_TTL"] / 4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{lock.scope}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _beat(self) -> None:
        from sqlalchemy import update

        from intercity.extensions import db
        from intercity.models import Operation
        from intercity.models.base import utcnow

        while not self._stop.wait(self.interval):
            self.lock.extend()
            op_id = self.op_id
            if op_id is None:
                continue
            try:
                with self.app.app_context():
                    db.session.execute(update(Operation).where(Operation.id == op_id, Operation.status == "running")
                                       .values(heartbeat_at=utcnow()))
                    db.session.commit()
                    db.session.remove()
            except Exception:
                log.warning("heartbeat of operation %s failed", op_id, exc_info=True)
