"""Background work: operations committed by a request are handed to RQ, or to one in-process thread."""
from __future__ import annotations

import logging
import queue
import threading

from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


def init_app(app) -> None:
    app.extensions["intercity_jobs"] = InProcessRunner(app) if app.config["JOBS_IN_PROCESS"] else None
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)


def _after_commit(session) -> None:
    from intercity.audit.capture import new_operations

    scopes = []
    for op in new_operations(session):
        if op.scope not in scopes:
            scopes.append(op.scope)
    for scope in scopes:
        enqueue(scope)


def redis_connection():
    from redis import Redis

    return Redis.from_url(current_app.config["REDIS_URL"])


def rq_queue():
    from rq import Queue

    return Queue(current_app.config["JOBS_QUEUE"], connection=redis_connection())


def enqueue(scope: str) -> None:
    """Ask a worker to apply the queued operations of one scope (an app, or a server's own work)."""
    runner = current_app.extensions.get("intercity_jobs")
    if runner is not None:
        runner.submit(scope)
        return
    rq_queue().enqueue("intercity.jobs.runner.drain", scope, job_timeout=3600, result_ttl=0, failure_ttl=86400)


class InProcessRunner:
    """The single supervised thread that runs jobs when no Redis is configured."""

    def __init__(self, app):
        self.app = app
        self.scopes: queue.Queue[str] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def submit(self, scope: str) -> None:
        self.scopes.put(scope)
        self.ensure_running()

    def ensure_running(self) -> None:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="intercity-jobs", daemon=True)
                self.thread.start()

    def _loop(self) -> None:
        from intercity.jobs import runner

        while True:
            scope = self.scopes.get()
            try:
                with self.app.app_context():
                    runner.drain(scope)
            except Exception:  # supervised: one failing job must not stop the others
                log.exception("job for %s failed", scope)
            finally:
                self.scopes.task_done()

    def wait_idle(self) -> None:
        """Block until every submitted job ran (tests and the CLI use this)."""
        self.scopes.join()


def queue_health() -> dict:
    """Whether queued operations are being consumed; a stalled queue is reported, not fatal."""
    from intercity.jobs.runner import stalled_operations

    waiting = stalled_operations()
    if waiting:
        return {"state": "stalled", "detail": f"{waiting} operation(s) queued for over a minute with no worker taking them"}
    mode = "in-process" if current_app.config["JOBS_IN_PROCESS"] else "redis"
    return {"state": "ok", "detail": f"jobs run {mode}"}
