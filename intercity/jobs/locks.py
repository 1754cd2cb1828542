"""One worker per scope at a time: a Redis lock with a TTL renewed by a heartbeat, or a process-local lock.

A scope is an app (`app:7`) or a server's own work (`server:3`). The Redis lock expires when its
holder dies without releasing it (killed worker, lost machine), which is how the sweeper knows
that an operation left `running` has no worker any more.
"""
from __future__ import annotations

import logging
import threading

from flask import current_app
from redis.exceptions import LockError, LockNotOwnedError, RedisError

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


class RedisScopeLock(ScopeLock):
    """redis-py's Lock: its token is checked by Redis on extend and release, so a lock that
    expired and was taken by another worker is never renewed or released by us."""

    def __init__(self, scope: str, connection, ttl: float):
        super().__init__(scope)
        self.ttl = ttl
        # Not thread-local: the heartbeat thread renews the lock that the drain acquired.
        self._lock = connection.lock(redis_key(scope), timeout=ttl, blocking=False, thread_local=False)

    def acquire(self) -> bool:
        return bool(self._lock.acquire(blocking=False))

    def extend(self) -> bool:
        try:
            self._lock.extend(self.ttl, replace_ttl=True)
        except LockError as error:
            if isinstance(error, LockNotOwnedError):
                self.lost = True
                return False
            log.warning("could not renew the lock of %s", self.scope, exc_info=True)
        except RedisError:  # Redis unreachable for a moment: try again at the next beat
            log.warning("could not renew the lock of %s", self.scope, exc_info=True)
        return True

    def release(self) -> None:
        try:
            self._lock.release()
        except LockNotOwnedError:
            pass  # it expired (and maybe went to another worker): not ours to delete
        except (LockError, RedisError):
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
