"""Run a worker: `python worker.py` applies queued operations from Redis (RQ) and sweeps up after dead workers.

Settings come from the environment like the web process (DATABASE_URL, REDIS_URL, the keys,
INTERCITY_QUEUE). Run as many as you like: operations on one app or server still apply one at
a time, in the order they were requested.
"""
from __future__ import annotations

import logging
import sys
import threading

from rq import Queue, SimpleWorker

from intercity import create_app
from intercity.extensions import db
from intercity.jobs.executors import keeping_connections

log = logging.getLogger("intercity.worker")


class AppWorker(SimpleWorker):
    """Runs each job in the worker process (no fork per job) inside the app context, with a fresh session.

    Not forking keeps enqueue-to-first-command latency low; the engine is disposed before the
    worker starts, and the session is removed after every job, so no connection or object
    leaks from one job into the next.
    """

    flask_app = None

    def execute_job(self, job, queue):
        with self.flask_app.app_context():
            try:
                return super().execute_job(job, queue)
            finally:
                db.session.remove()


def sweeper(app, stop: threading.Event) -> None:
    """Every JOBS_SWEEP_INTERVAL: fail operations whose worker died, re-enqueue lost jobs, keep the tick scheduled."""
    from intercity.jobs import schedule
    from intercity.jobs.runner import sweep

    interval = app.config["JOBS_SWEEP_INTERVAL"]
    while True:
        try:
            with app.app_context():
                try:
                    sweep()
                    schedule.ensure_scheduled()
                finally:
                    db.session.remove()
        except Exception:
            log.exception("sweep failed")
        if stop.wait(interval):
            return


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app()
    if app.config["JOBS_IN_PROCESS"]:
        print("REDIS_URL is not set: without Redis the web process runs jobs itself, so no worker is needed. "
              "Set REDIS_URL (e.g. redis://127.0.0.1:6379/0) for the web process and the workers.", file=sys.stderr)
        return 2
    from redis import Redis

    with app.app_context():
        # Connections opened while building the app must not be shared with any child process.
        for engine in db.engines.values():
            engine.dispose()
    connection = Redis.from_url(app.config["REDIS_URL"])
    queue = Queue(app.config["JOBS_QUEUE"], connection=connection)
    stop = threading.Event()
    thread = threading.Thread(target=sweeper, args=(app, stop), name="intercity-sweeper", daemon=True)
    thread.start()
    AppWorker.flask_app = app
    worker = AppWorker([queue], connection=connection)
    try:
        # Jobs run on this thread (no fork), so the connection to a server outlives one job.
        with keeping_connections(app.config["SSH_KEEP_IDLE"]):
            # RQ's scheduler (one per Redis, whichever worker holds its lock) runs the notification tick and retries.
            worker.work(with_scheduler=True, logging_level="INFO")
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
