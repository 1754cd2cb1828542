"""Real `python worker.py` processes on real Redis: ordering, dead workers, lost jobs and the stall report.

These run on PostgreSQL only: the workers are separate processes that share the test's
database, which is what a team's deployment looks like.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue, Worker
from sqlalchemy import select, update

from intercity.extensions import db
from intercity.jobs import locks
from intercity.jobs.runner import sweep
from intercity.models import CommandRun, EnvVar, Operation
from intercity.models.base import utcnow
from intercity.services.operations import request_operation, retry
from tests.support.builders import make_app
from tests.support import databases
from tests.support.operations import set_env, wait_until

pytestmark = [pytest.mark.ssh, pytest.mark.postgresql_only]

ROOT = Path(__file__).resolve().parent.parent
LOCK_TTL = 2
# Workers whose env.apply commands the server stops after 2 s (8 - 1 s grace - 5 s margin), with
# SIGKILL 1 s later, so a scope waits only seconds for a killed worker's command.
SHORT_DEADLINES = {"INTERCITY_SSH_COMMAND_TIMEOUT": "8", "INTERCITY_COMMAND_KILL_GRACE": "1",
                   "INTERCITY_SSH_CONNECT_TIMEOUT": "2"}


@pytest.fixture
def jobs_on_redis(redis_queue, app_config):
    """The app under test enqueues to Redis (a queue of its own) with a short lock TTL."""
    app_config["JOBS_LOCK_TTL"] = LOCK_TTL
    return redis_queue


class Workers:
    """`python worker.py` subprocesses configured like the app under test."""

    def __init__(self, app_config, database_url, redis_url, queue, tmp_path):
        keys = databases.test_config(database_url)
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url, "REDIS_URL": redis_url, "INTERCITY_QUEUE": queue,
            "SECRET_KEY": keys["SECRET_KEY"], "INTERCITY_ENCRYPTION_KEY": keys["INTERCITY_ENCRYPTION_KEY"],
            "INTERCITY_INSTANCE_PATH": str(tmp_path / "worker-instance"),
            "INTERCITY_JOBS_LOCK_TTL": str(LOCK_TTL), "INTERCITY_JOBS_SWEEP_INTERVAL": "1",
            "INTERCITY_SSH_RETRY_BACKOFF_MS": "50", "INTERCITY_SSH_CONNECT_TIMEOUT": "5",
        }
        self.queue = Queue(queue, connection=Redis.from_url(redis_url))
        self.logs = tmp_path
        self.processes: list[subprocess.Popen] = []

    def start(self, count: int = 1) -> list[subprocess.Popen]:
        started = []
        for _ in range(count):
            log = open(self.logs / f"worker-{len(self.processes)}.log", "wb")
            process = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=self.env,
                                       stdout=log, stderr=subprocess.STDOUT)
            log.close()
            self.processes.append(process)
            started.append(process)
        deadline = time.monotonic() + 30
        while Worker.count(queue=self.queue) < len([p for p in self.processes if p.poll() is None]):
            if time.monotonic() > deadline or any(p.poll() is not None for p in started):
                raise AssertionError("workers did not start:\n" + self.output())
            time.sleep(0.1)
        return started

    def kill(self, process: subprocess.Popen) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def output(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.logs.glob("worker-*.log")))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workers(jobs_on_redis, app_config, database_url, redis_url, tmp_path):
    pool = Workers(app_config, database_url, redis_url, jobs_on_redis, tmp_path)
    yield pool
    pool.stop()


def test_two_workers_apply_fifty_alternating_changes_in_order(jobs_on_redis, app, admin, dokku, dokku_server,
                                                             workers):
    dokku.create_app("web")
    web = make_app(dokku_server, name="web")
    workers.start(2)
    ids = []
    for n in range(50):
        value = f"{'blue' if n % 2 == 0 else 'green'}-{n}"
        set_env(web, COLOUR=value)
        op = request_operation("env.apply", server=dokku_server, app=web, requested_by=admin,
                               payload={"set": ["COLOUR"], "unset": [], "restart": False})
        db.session.commit()  # each change is its own request, enqueued after its commit
        ids.append(op.id)

    def finished():
        ops = db.session.scalars(select(Operation).where(Operation.id.in_(ids)).order_by(Operation.id)).all()
        return ops if all(op.status in ("succeeded", "failed") for op in ops) else None

    ops = wait_until(finished, 180, "50 operations to finish", workers.output)
    assert [op.status for op in ops] == ["succeeded"] * 50, [op.reason for op in ops if op.reason]
    assert dokku.env("web") == {"COLOUR": b"green-49"}
    # One at a time, in the order they were requested.
    for earlier, later in zip(ops, ops[1:]):
        assert earlier.finished_at <= later.started_at
    # Both processes were consuming the queue throughout. Which one Redis hands each job to is up to
    # the machine's scheduling (on a loaded machine one may take them all), so that is not asserted.
    counts = [w.successful_job_count for w in Worker.all(queue=workers.queue)]
    assert len(counts) == 2 and sum(counts) >= 50, counts
    assert all(process.poll() is None for process in workers.processes), workers.output()


def test_worker_killed_mid_operation_is_failed_by_the_sweeper_and_retry_succeeds(
        jobs_on_redis, app, member, dokku, dokku_server, workers):
    dokku.create_app("web")
    web = make_app(dokku_server, name="web")
    dokku.hang("config:export", 6)  # the read-back, after config:set ran and was recorded
    workers.env.update(SHORT_DEADLINES)
    (victim,) = workers.start(1)
    set_env(web, KEY="kept-value")
    op = request_operation("env.apply", server=dokku_server, app=web, requested_by=member,
                           payload={"set": ["KEY"], "unset": [], "restart": False})
    db.session.commit()
    op_id = op.id
    wait_until(lambda: any(c["command"] == "config:export" for c in dokku.calls()), 30, "the read-back to start",
               workers.output)
    workers.kill(victim)
    assert db.session.get(Operation, op_id).status == "running"
    dokku.clear_faults()

    workers.start(1)  # its sweeper finds the running operation whose lock has expired
    failed = wait_until(lambda: (o := db.session.get(Operation, op_id)).status == "failed" and o, 30,
                        "the sweeper", workers.output)
    assert failed.reason.startswith("The worker applying this operation stopped before it finished")
    (config_set,) = db.session.scalars(select(CommandRun).where(CommandRun.operation_id == op_id))
    assert config_set.exit_code == 0 and config_set.argv_list[:3] == ["dokku", "--quiet", "config:set"]
    assert db.session.scalar(select(EnvVar.id).where(EnvVar.key == "KEY")) is not None  # desired state kept

    again = retry(failed, member)
    db.session.commit()
    again_id = again.id
    done = wait_until(lambda: (o := db.session.get(Operation, again_id)).status in ("succeeded", "failed") and o,
                      30, "the retry", workers.output)
    assert (done.status, done.reason) == ("succeeded", None)
    assert done.started_at >= failed.commands_deadline_at  # the killed worker's command had certainly ended
    assert dokku.env("web") == {"KEY": b"kept-value"}


def test_a_config_set_of_a_killed_worker_never_overwrites_a_newer_value(
        jobs_on_redis, app, member, dokku, dokku_server, workers):
    dokku.create_app("web")
    web = make_app(dokku_server, name="web")
    dokku.hang("config:set", 6)  # without a deadline it would write the old value 6 s later
    workers.env.update(SHORT_DEADLINES)
    (victim,) = workers.start(1)
    ids = []
    for value in ("old-rotated-away", "new-after-rotation"):
        set_env(web, API_KEY=value)
        ids.append(request_operation("env.apply", server=dokku_server, app=web, requested_by=member,
                                     payload={"set": ["API_KEY"], "unset": [], "restart": False}).id)
        db.session.commit()
        if len(ids) == 1:
            wait_until(lambda: any(c["command"] == "config:set" for c in dokku.calls()), 30,
                       "config:set to start", workers.output)
            workers.kill(victim)  # SIGKILL mid-command
            dokku.clear_faults()

    workers.start(1)  # its sweeper fails the killed worker's operation; the newer one waits for the deadline
    first, newer = wait_until(
        lambda: (ops := [db.session.get(Operation, i) for i in ids])[1].status in ("succeeded", "failed") and ops,
        40, "the newer change", workers.output)
    assert (newer.status, newer.reason) == ("succeeded", None)
    assert first.status == "failed" and first.commands_in_doubt
    assert first.reason.startswith("The worker applying this operation stopped before it finished")
    assert newer.started_at >= first.commands_deadline_at
    old_call, new_call = [c for c in dokku.calls() if c["command"] == "config:set"]
    time.sleep(max(0.0, old_call["time"] + 6.5 - time.time()))  # past the old command's hang
    assert new_call["time"] > old_call["time"] + 2  # not before the server had stopped the old one
    assert dokku.env("web") == {"API_KEY": b"new-after-rotation"}


def test_sweeper_reenqueues_queued_work_whose_job_was_lost(jobs_on_redis, app, admin, dokku_server):
    web = make_app(dokku_server, name="web")
    op = request_operation("app.restart", server=dokku_server, app=web, requested_by=admin)
    db.session.commit()
    queue = Queue(jobs_on_redis, connection=Redis.from_url(app.config["REDIS_URL"]))
    assert queue.count == 1  # enqueued after commit
    queue.empty()  # Redis lost it (flushed, restarted without persistence)
    db.session.execute(update(Operation).where(Operation.id == op.id)
                       .values(created_at=utcnow() - timedelta(minutes=5)))
    db.session.commit()

    assert sweep() == {"failed": [], "requeued": [f"app:{web.id}"]}
    assert [job.args for job in queue.get_jobs()] == [(f"app:{web.id}",)]
    assert sweep() == {"failed": [], "requeued": []}  # a job is waiting: not enqueued twice


def test_a_scope_drained_elsewhere_is_left_to_its_holder(jobs_on_redis, app, admin, dokku, dokku_server):
    from intercity.jobs.runner import drain

    dokku.create_app("web")
    web = make_app(dokku_server, name="web")
    op = request_operation("app.refresh", server=dokku_server, app=web, requested_by=admin)
    db.session.commit()
    holder = locks.scope_lock(op.scope)
    assert holder.acquire()
    try:
        drain(op.scope)  # returns at once: the holder re-checks after releasing
        assert db.session.get(Operation, op.id).status == "queued" and dokku.calls() == []
        assert locks.scope_locked(op.scope)
    finally:
        holder.release()
    drain(op.scope)
    db.session.expire_all()
    assert db.session.get(Operation, op.id).status == "succeeded"


def test_healthz_and_every_page_report_a_stalled_queue(jobs_on_redis, app, admin, dokku_server, client):
    web = make_app(dokku_server, name="web")
    assert client.get("/healthz").get_json()["jobs"]["state"] == "ok"
    assert "No worker has picked up" not in client.get("/login").get_data(as_text=True)

    op = request_operation("app.restart", server=dokku_server, app=web, requested_by=admin)
    db.session.commit()
    db.session.execute(update(Operation).where(Operation.id == op.id)
                       .values(created_at=utcnow() - timedelta(minutes=2)))
    db.session.commit()

    response = client.get("/healthz")
    assert response.status_code == 200
    jobs = response.get_json()["jobs"]
    assert (jobs["state"], jobs["stalled"], jobs["workers"]) == ("stalled", 1, 0)
    assert "1 operation(s) queued for over a minute" in jobs["detail"]
    assert response.get_json()["status"] == "degraded"
    assert "No worker has picked up queued operations for over a minute" in client.get("/login").get_data(as_text=True)

    # A worker that is busy (it started something a moment ago) is consuming: no stall.
    other = request_operation("app.refresh", server=dokku_server, app=web, requested_by=admin)
    db.session.commit()
    db.session.execute(update(Operation).where(Operation.id == other.id)
                       .values(status="running", started_at=utcnow(), heartbeat_at=utcnow()))
    db.session.commit()
    assert client.get("/healthz").get_json()["jobs"]["state"] == "ok"


def test_the_lock_outlives_a_run_of_short_operations(jobs_on_redis, app, admin, dokku, dokku_server):
    """Each operation is shorter than a heartbeat interval; together they take longer than the lock's TTL."""
    import threading

    from intercity.jobs.runner import drain

    app.config["JOBS_LOCK_TTL"] = 1
    dokku.create_app("web")
    # Each read takes a fifth of a second at least, so ten of them outlast the TTL however fast the server is.
    dokku.hang("ps:report", 0.2)
    web = make_app(dokku_server, name="web")
    ids = []
    for n in range(10):
        ids.append(request_operation("app.refresh", server=dokku_server, app=web, requested_by=admin).id)
        db.session.commit()
    scope = f"app:{web.id}"
    samples: list[bool] = []
    done = threading.Event()

    def watch():
        with app.app_context():
            while not done.is_set():
                samples.append(locks.scope_locked(scope))
                time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        drain(scope)
    finally:
        done.set()
        watcher.join()
    assert time.monotonic() - started > 1.5  # longer than the TTL
    held = samples[samples.index(True):]
    assert all(held[:-2]), "the lock lapsed while the drain held it"
    db.session.expire_all()
    assert [db.session.get(Operation, i).status for i in ids] == ["succeeded"] * 10
