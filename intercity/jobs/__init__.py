"""Background work: operations committed by a request are handed to RQ, or to one in-process thread (and short
reads to a second lane beside it)."""
from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import ThreadPoolExecutor, wait

from flask import current_app
from sqlalchemy import event, inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, scoped_session

log = logging.getLogger(__name__)

DRAIN = "intercity.jobs.runner.drain"


# Operations requested in the session's current transaction, with their scopes, enqueued after commit.
REQUESTED = "jobs_requested_operations"


def init_app(app) -> None:
    runner = InProcessRunner(app) if app.config["JOBS_IN_PROCESS"] else None
    app.extensions["intercity_jobs"] = runner
    for name, listener in (("after_commit", _after_commit), ("after_transaction_end", _after_transaction_end)):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)

    @app.context_processor
    def _worker_stalled():
        # Every page says when queued work waits and no worker takes it (with Redis: nobody runs worker.py).
        return {"worker_stalled": worker_stalled()}

    if runner is not None:
        @app.before_request
        def _start_runner():
            # The first request of a (re)started single process resumes work left by the previous one.
            runner.ensure_running()


def enqueue_after_commit(session, operation) -> None:
    """Have the operation's scope drained once the transaction that requested it commits."""
    if isinstance(session, scoped_session):
        session = session()
    session.info.setdefault(REQUESTED, []).append((operation, operation.scope))


def _after_commit(session) -> None:
    requested = session.info.pop(REQUESTED, None)
    if not requested:
        return
    scopes = []
    for operation, scope in requested:
        # An operation requested inside a savepoint that was rolled back is no longer persistent.
        if inspect(operation).persistent and scope not in scopes:
            scopes.append(scope)
    for scope in scopes:
        enqueue(scope)


def _after_transaction_end(session, transaction) -> None:
    if transaction.parent is None:  # the outermost transaction ended without a commit: nothing to enqueue
        session.info.pop(REQUESTED, None)


def redis_connection():
    """One Redis client per app (it pools its connections)."""
    from redis import Redis

    client = current_app.extensions.get("intercity_redis")
    if client is None:
        client = current_app.extensions["intercity_redis"] = Redis.from_url(current_app.config["REDIS_URL"])
    return client


def rq_queue():
    from rq import Queue

    return Queue(current_app.config["JOBS_QUEUE"], connection=redis_connection())


def enqueue(scope: str) -> None:
    """Ask a worker to apply the queued operations of one scope (an app, or a server's own work)."""
    runner = current_app.extensions.get("intercity_jobs")
    if runner is not None:
        runner.submit(scope)
        return
    try:
        rq_queue().enqueue(DRAIN, scope, job_timeout=3600, result_ttl=0, failure_ttl=86400)
    except Exception:
        # The change is committed and the operation queued; the sweeper enqueues it again later.
        log.exception("could not enqueue %s; the sweeper will retry", scope)


def waiting_scopes() -> set[str]:
    """Scopes that already have a job waiting to be picked up."""
    runner = current_app.extensions.get("intercity_jobs")
    if runner is not None:
        return runner.waiting()
    from rq.job import Job

    rq = rq_queue()
    scopes = set()
    for job in Job.fetch_many(rq.get_job_ids(), connection=rq.connection):
        if job is not None and job.func_name == DRAIN and job.args:
            scopes.add(job.args[0])
    return scopes


# Threads for short reads beside the operations (log reads): enough for two people reading at once.
SIDE_THREADS = 2


class InProcessRunner:
    """The single supervised thread that runs jobs when no Redis is configured, and a lane of short reads beside it."""

    def __init__(self, app):
        self.app = app
        self.scopes: queue.Queue[str | tuple | None] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.started = False
        self.closed = False
        self.side: ThreadPoolExecutor | None = None
        self.side_pending: set = set()

    def submit(self, scope) -> None:
        self.scopes.put(scope)
        self.ensure_running()

    def ensure_running(self) -> None:
        with self.lock:
            if self.closed or (self.thread is not None and self.thread.is_alive()):
                return
            first = not self.started
            self.started = True
            self.thread = threading.Thread(target=self._loop, args=(first,), name="intercity-jobs", daemon=True)
            self.thread.start()

    def beside(self, path: str, args: tuple) -> None:
        """Run a short read now, in the side lane: never behind a long operation (a build) of the main thread.

        Only for tasks that write nothing to the database (a log read): operations keep their one thread
        and their order.
        """
        with self.lock:
            if self.closed:
                return
            if self.side is None:
                self.side = ThreadPoolExecutor(max_workers=SIDE_THREADS, thread_name_prefix="intercity-reads")
            future = self.side.submit(self._run_beside, path, args)
            self.side_pending.add(future)
        future.add_done_callback(self.side_pending.discard)

    def _run_beside(self, path: str, args: tuple) -> None:
        from intercity.extensions import db
        from intercity.jobs.schedule import run_task

        try:
            with self.app.app_context():
                try:
                    run_task(path, args)
                finally:
                    db.session.remove()
        except Exception:  # supervised, like the main thread
            log.exception("read %s failed", path)

    def waiting(self) -> set[str]:
        with self.scopes.mutex:
            return {scope for scope in self.scopes.queue if isinstance(scope, str)}

    def _loop(self, first: bool) -> None:
        from intercity.extensions import db
        from intercity.jobs import runner

        if first:
            try:
                with self.app.app_context():
                    runner.recover_after_restart()
                    db.session.remove()
            except Exception:
                log.exception("recovering operations after a restart failed")
        from intercity.jobs import schedule
        from intercity.jobs.executors import keeping_connections

        # Like a worker, this thread keeps its connection to a server for the next operation.
        with keeping_connections(self.app.config["SSH_KEEP_IDLE"]):
            while True:
                scope = schedule.next_item(self)  # a scope, a task, or a timed task (the notification tick)
                try:
                    if scope is None:
                        return
                    with self.app.app_context():
                        try:
                            if not schedule.run_item(scope):
                                runner.drain(scope)
                        finally:
                            db.session.remove()
                except Exception:  # supervised: one failing job must not stop the others
                    log.exception("job for %s failed", scope)
                finally:
                    self.scopes.task_done()

    def wait_idle(self) -> None:
        """Block until every submitted job ran (tests and the CLI use this)."""
        self.scopes.join()
        wait(list(self.side_pending))

    def close(self) -> None:
        """Finish the submitted jobs, then stop the thread (tests; the process is ending)."""
        with self.lock:
            self.closed = True
            thread = self.thread
        if thread is not None and thread.is_alive():
            self.scopes.put(None)
            thread.join(60)
        if self.side is not None:
            self.side.shutdown(wait=True)


def worker_stalled() -> bool:
    """For the banner on every page: with Redis, queued work waits and no worker has consumed it for a minute."""
    if current_app.config["JOBS_IN_PROCESS"]:
        return False
    from intercity.extensions import db
    from intercity.jobs.runner import stalled_operations

    try:
        return stalled_operations() > 0
    except SQLAlchemyError:
        db.session.rollback()
        return False


def queue_health() -> dict:
    """Whether queued operations are being consumed; a stalled queue is reported, not fatal."""
    from intercity.jobs.runner import stalled_operations

    mode = "in-process" if current_app.config["JOBS_IN_PROCESS"] else "redis"
    health = {"mode": mode, "stalled": stalled_operations()}
    if mode == "redis":
        try:
            from rq import Worker

            health["workers"] = Worker.count(connection=redis_connection(), queue=rq_queue())
        except Exception as error:
            health.update(state="unreachable", detail=f"Redis is unreachable: {error.__class__.__name__}")
            return health
    if health["stalled"]:
        health.update(state="stalled", detail=f"{health['stalled']} operation(s) queued for over a minute with no "
                                              "worker taking them")
    else:
        health.update(state="ok", detail=f"jobs run {mode}")
    return health
