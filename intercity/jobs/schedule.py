"""Timed work: the periodic notification tick, and tasks run now or after a delay, on RQ or in the in-process runner.

With Redis, RQ's own scheduler runs them: the worker starts with its scheduler, delays use
`enqueue_in`, and the tick is one job `enqueue_at` the next 5-minute boundary, scheduled again by
each run (and by every worker's sweeper should it go missing) under a job id made from that
boundary, so several workers schedule it once. Without Redis, the in-process runner keeps the same
schedule in a small timer of its own and runs due tasks on its one thread (short reads beside it).
"""
from __future__ import annotations

import heapq
import importlib
import itertools
import logging
import math
import queue
import threading
import time
from datetime import datetime, timedelta, timezone

from flask import current_app

log = logging.getLogger(__name__)

TICK = "intercity.jobs.schedule.tick"
TASK = "task"  # the runner's queue holds scope strings and (TASK, path, args) tuples


def tick_interval() -> int:
    return int(current_app.config.get("NOTIFY_TICK_SECONDS", 300))


def next_boundary(now: datetime, interval: int) -> datetime:
    """The first multiple of `interval` seconds (since the epoch) strictly after `now`."""
    seconds = (math.floor(now.timestamp() / interval) + 1) * interval
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def tick(now: datetime | None = None) -> dict:
    """The periodic job: alerts not sent yet, due digests, messages whose retry time has come, due drift checks."""
    from intercity.notify import alerts, digest, outbox
    from intercity.services import drift

    done = {"alerts": alerts.scan(), "digests": digest.send_due(now), "retried": outbox.deliver_due(now),
            # Drift checks per server, each at its own interval (a tick's granularity is enough for minutes).
            "drift_checks": drift.request_due(now)}
    if not current_app.config["JOBS_IN_PROCESS"]:
        ensure_scheduled()
    return done


def run_task(path: str, args: tuple = ()) -> None:
    module, _, name = path.rpartition(".")
    getattr(importlib.import_module(module), name)(*args)


def submit(path: str, *args, delay: float = 0, beside: bool = False) -> None:
    """Run `path(*args)` as a job, now or after `delay` seconds; a lost submission is caught by the next tick.

    `beside`: a short read that writes nothing to the database (a log read), which the single process
    runs beside its operations instead of after them; RQ's workers run every job side by side anyway.
    """
    runner = current_app.extensions.get("intercity_jobs")
    if runner is not None and beside and delay <= 0:
        runner.beside(path, tuple(args))
        return
    if runner is not None:
        task = (TASK, path, tuple(args))
        if delay > 0:
            timer_for(runner).add(time.monotonic() + delay, task)
        else:
            with runner.scopes.mutex:
                # The same task still waiting will see this commit's work too (an alert scan reads from
                # its cursor when it starts): a burst of commits makes one scan, not one each.
                waiting = task in runner.scopes.queue
            if waiting:
                return
            runner.scopes.put(task)  # in the queue at once, so wait_idle() waits for it
        runner.ensure_running()
        return
    from intercity.jobs import rq_queue

    try:
        options = {"job_timeout": 600, "result_ttl": 0, "failure_ttl": 86400}
        if delay > 0:
            rq_queue().enqueue_in(timedelta(seconds=delay), path, *args, **options)
        else:
            rq_queue().enqueue(path, *args, **options)
    except Exception:
        log.exception("could not enqueue %s; the next tick picks the work up", path)


def tick_job_id(at: datetime) -> str:
    return f"intercity-tick-{int(at.timestamp())}"


def ensure_scheduled(now: datetime | None = None) -> str | None:
    """With Redis: make sure the next tick is scheduled in RQ (idempotent; every worker may call it)."""
    from rq.job import Job

    from intercity.jobs import redis_connection, rq_queue

    if tick_interval() <= 0:
        return None
    at = next_boundary(now or datetime.now(timezone.utc), tick_interval())
    job_id = tick_job_id(at)
    try:
        if not Job.exists(job_id, connection=redis_connection()):
            rq_queue().enqueue_at(at, TICK, job_id=job_id, job_timeout=600, result_ttl=0, failure_ttl=86400)
    except Exception:
        log.exception("could not schedule the notification tick")
        return None
    return job_id


# -- in-process ---------------------------------------------------------------------------------

class Timer:
    """Tasks due at a monotonic time, plus the periodic tick, for the in-process runner's thread."""

    def __init__(self, interval: int):
        self.interval = interval
        self.lock = threading.Lock()
        self.heap: list = []
        self.counter = itertools.count()
        self.wake = None  # set by timer_for: nudges the runner to look again after an add()
        self._schedule_tick()

    def _schedule_tick(self) -> None:
        if self.interval <= 0:  # switched off (tests that must not see a tick)
            return
        now = datetime.now(timezone.utc)
        wait = (next_boundary(now, self.interval) - now).total_seconds()
        heapq.heappush(self.heap, (time.monotonic() + wait, next(self.counter), (TASK, TICK, ()), True))

    def add(self, when: float, task: tuple) -> None:
        with self.lock:
            heapq.heappush(self.heap, (when, next(self.counter), task, False))
        if self.wake is not None:
            self.wake()

    def seconds_to_next(self) -> float:
        with self.lock:
            return max(self.heap[0][0] - time.monotonic(), 0) if self.heap else 3600.0

    def pop_due(self) -> list[tuple]:
        due = []
        with self.lock:
            while self.heap and self.heap[0][0] <= time.monotonic():
                _, _, task, periodic = heapq.heappop(self.heap)
                due.append(task)
                if periodic:
                    self._schedule_tick()
        return due


def timer_for(runner) -> Timer:
    timer = getattr(runner, "timer", None)
    if timer is None:
        with runner.lock:
            timer = getattr(runner, "timer", None)
            if timer is None:
                timer = runner.timer = Timer(int(runner.app.config.get("NOTIFY_TICK_SECONDS", 300)))
                # A task added for "now" must not wait for the queue's timeout: poke the queue.
                timer.wake = lambda: runner.scopes.put((TASK, "intercity.jobs.schedule.nothing", ()))
    return timer


def nothing() -> None:
    """A no-op task that wakes the runner so it looks at its timer."""


def next_item(runner):
    """What the in-process runner does next: a submitted scope or task, or a timed task whose time has come."""
    timer = timer_for(runner)
    while True:
        for task in timer.pop_due():
            runner.scopes.put(task)
        try:
            return runner.scopes.get(timeout=timer.seconds_to_next())
        except queue.Empty:
            continue


def run_item(item) -> bool:
    """Run a task item of the runner's queue; False when the item is a scope (the runner drains it)."""
    if isinstance(item, tuple) and item and item[0] == TASK:
        run_task(item[1], item[2])
        return True
    return False
