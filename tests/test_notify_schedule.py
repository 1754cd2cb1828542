"""The notification schedule: RQ's scheduler holds one tick per 5-minute boundary; the in-process runner runs the same."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from intercity.extensions import db
from intercity.models import OutboxMessage
from intercity.models.base import utcnow
from tests.support.builders import make_server, make_user
from tests.support.notify import wait_until


def test_next_boundary_is_the_next_five_minutes():
    from intercity.jobs.schedule import next_boundary

    at = datetime(2026, 12, 1, 10, 3, 20, tzinfo=timezone.utc)
    assert next_boundary(at, 300) == datetime(2026, 12, 1, 10, 5, tzinfo=timezone.utc)
    assert next_boundary(datetime(2026, 12, 1, 10, 5, tzinfo=timezone.utc), 300) == \
        datetime(2026, 12, 1, 10, 10, tzinfo=timezone.utc)


def test_rq_scheduler_holds_one_tick_and_each_tick_schedules_the_next(redis_queue, app_config, app):
    from rq.job import Job
    from rq.registry import ScheduledJobRegistry

    from intercity.jobs import redis_connection, rq_queue, schedule

    app.config["NOTIFY_TICK_SECONDS"] = 300
    registry = ScheduledJobRegistry(queue=rq_queue())
    try:
        first = schedule.ensure_scheduled()
        again = schedule.ensure_scheduled()  # another worker's sweeper: still one job
        assert first == again and registry.get_job_ids() == [first]
        job = Job.fetch(first, connection=redis_connection())
        assert job.func_name == schedule.TICK
        when = registry.get_scheduled_time(first)
        assert when.minute % 5 == 0 and when.second == 0 and when > datetime.now(timezone.utc)
        # The tick, run by a worker at its time, schedules the following boundary.
        done = schedule.tick()
        assert set(done) == {"alerts", "digests", "retried", "drift_checks"}
        later = schedule.ensure_scheduled(now=when + timedelta(seconds=1))
        assert later != first and set(registry.get_job_ids()) == {first, later}
    finally:
        rq_queue().empty()
        for job_id in registry.get_job_ids():
            registry.remove(job_id, delete_job=True)


def test_retries_go_to_rqs_scheduler_with_their_backoff(redis_queue, app_config, app):
    from rq.registry import ScheduledJobRegistry

    from intercity.jobs import rq_queue, schedule

    registry = ScheduledJobRegistry(queue=rq_queue())
    try:
        before = datetime.now(timezone.utc)
        schedule.submit("intercity.notify.outbox.deliver", 7, delay=120)
        [job_id] = registry.get_job_ids()
        when = registry.get_scheduled_time(job_id)
        assert before + timedelta(seconds=115) < when < before + timedelta(seconds=130)
    finally:
        for job_id in registry.get_job_ids():
            registry.remove(job_id, delete_job=True)


def test_the_in_process_runner_runs_the_same_tick(smtp, app_config, make_app):
    """Without Redis: a due digest goes out from the runner's own timer, no request or job needed."""
    from intercity.services.notifications import preferences_for

    other = make_app(NOTIFY_TICK_SECONDS=1)
    with other.app_context():
        user = make_user("member", email="dev@example.com")
        pref = preferences_for(user)
        pref.last_digest_at = utcnow() - timedelta(days=8)
        db.session.commit()
        make_server(name="prod-1")
        other.extensions["intercity_jobs"].ensure_running()
        received = smtp.wait_for(1, timeout=20)
        assert received[0]["To"] == "dev@example.com" and "Digest" in received[0]["Subject"]
        wait_until(lambda: db.session.scalar(select(OutboxMessage.status).where(OutboxMessage.kind == "digest")) == "sent",
                   message="the digest marked sent")
        db.session.remove()


def test_digest_send_on_demand(smtp, app, runner):
    dev = make_user("member", email="dev@example.com")
    off = make_user("member", email="off@example.com")
    from intercity.services.notifications import preferences_for

    preferences_for(dev)  # a digest covers what happens after a person's preferences exist
    preferences_for(off).digest_frequency = "off"
    db.session.commit()
    make_server(name="prod-1")
    result = runner.invoke(args=["digest", "send", "--user", "dev@example.com"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("dev@example.com: sent (250 Message accepted")
    assert [m["To"] for m in smtp.wait_for(1)] == ["dev@example.com"]
    result = runner.invoke(args=["digest", "send"])
    assert result.exit_code == 0 and "dev@example.com: nothing new" in result.output
    assert "off@example.com" not in result.output
    result = runner.invoke(args=["digest", "send", "--user", "nobody@example.com"])
    assert result.exit_code == 1 and "No active user has the address nobody@example.com" in result.output
