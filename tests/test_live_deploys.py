"""Deploying from the panel and reading logs, end to end: the loopback sshd, the Dokku double, PostgreSQL, Chromium.

A build from a repository streams its output to the page while it runs and ends applied, once in
the timeline; a failing build ends failed with its reason; a URL with credentials is refused and
stored nowhere; following the logs shows the lines the app adds, new ones only, and stops at its
limit; log lines never reach an entry or the database; in the single process a log read does not wait
behind a running operation.
"""
from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import expect
from sqlalchemy import select, text

from intercity.extensions import db
from intercity.jobs import expiring
from intercity.jobs.panel_deploy_executors import build_key
from intercity.models import AuditEntry, CommandRun, Operation
from intercity.services import deploys as history_service
from intercity.services import panel_deploys as deploy_service
from intercity.services import env as env_service
from tests.support.builders import make_app
from tests.support.operations import finished
from tests.support.sessions import log_in
from tests.test_panel_browser import DONE, login, ready_server, shot

pytestmark = pytest.mark.postgresql_only

SECRET = "s3cr3t-log-value-42"


@pytest.fixture
def app_config(app_config):
    # Short follow limits keep the test short; production defaults are 3 s and 5 minutes.
    app_config.update(LOGS_FOLLOW_INTERVAL=0.5, LOGS_FOLLOW_LIMIT=4)
    return app_config


def _entries(op_id: int) -> list[str]:
    return list(db.session.scalars(select(AuditEntry.action).where(AuditEntry.operation_id == op_id)
                                   .order_by(AuditEntry.seq)))


def test_a_deploy_from_a_repository_streams_its_output_and_ends_applied(page, member, sshd, dokku):
    server = ready_server(sshd)
    make_app(server, name="api")
    dokku.create_app("api")
    dokku.hold_builds()  # the build waits after its first steps until the test has seen them live
    login(page, member)
    page.goto(f"/servers/{server.id}/apps/api")
    page.get_by_label("Repository URL").fill("https://git.example.com/team/api.git")
    page.get_by_label("Branch, tag or commit").fill("main")
    page.get_by_role("button", name="Deploy now").click()
    live = page.locator(".build-output pre")
    expect(live).to_contain_text("Cloning api from https://git.example.com/team/api.git#main", timeout=DONE)
    expect(live).to_contain_text("Building api from herokuish")
    shot(page, "deploy-live")
    db.session.rollback()
    op = db.session.scalar(select(Operation).where(Operation.kind == "app.deploy_from_repo"))
    assert op.status == "running"  # held at the gate: what the page showed came while it ran
    assert db.session.scalars(select(CommandRun).where(CommandRun.operation_id == op.id)).all() == []
    dokku.hold_builds(False)
    card = page.locator(f"#op-{op.id}")
    expect(card).to_have_attribute("data-status", "succeeded", timeout=DONE)
    expect(card).to_contain_text("Deployed on")
    expect(page.locator(".build-output")).to_have_count(0)
    shot(page, "deploy-applied")
    db.session.rollback()
    runs = db.session.scalars(select(CommandRun).where(CommandRun.operation_id == op.id)).all()
    assert len(runs) == 1  # written once, at the end
    assert json.loads(runs[0].argv) == ["dokku", "git:sync", "--build", "api", "https://git.example.com/team/api.git",
                                        "main"]
    assert "Application deployed:" in runs[0].stdout
    assert _entries(op.id) == ["app.deploy_from_repo_requested", "operation.succeeded"]
    assert db.session.scalar(select(AuditEntry.action).where(AuditEntry.action == "app.updated")) == "app.updated"
    assert dokku.synced_sha("api")
    assert [call["argv"][-4:] for call in dokku.calls() if call["command"] == "git:sync"] == [
        ["--build", "api", "https://git.example.com/team/api.git", "main"]]


def test_a_failing_build_ends_failed_with_its_reason(app, member, sshd, dokku):
    from tests.support.ssh_fixtures import make_dokku_server

    server = make_dokku_server(sshd)
    target = make_app(server, name="api")
    dokku.create_app("api")
    env_service.set_var(target, member, key="NPM_TOKEN", value=SECRET, restart=False)
    db.session.commit()
    dokku.fail_builds(f"npm ERR! Missing script: \"build\" (token {SECRET})")
    deploy_service.save_source(target, member, url="git@git.example.com:team/api.git", ref=None)
    op = deploy_service.deploy_from_repo(target, member)
    db.session.commit()
    op = finished(app, op.id)
    assert op.status == "failed"
    assert op.reason == ("The build from the repository of api failed (exit code 1): npm ERR! Missing script: "
                         "\"build\" (token [redacted]). The app keeps running its previous release.")
    assert _entries(op.id)[-1] == "operation.failed"
    run = db.session.scalar(select(CommandRun).where(CommandRun.operation_id == op.id))
    assert "-----> Build failed" in run.stdout and SECRET not in run.stdout + run.stderr
    # The live view had the same lines, redacted; it is kept a minute after the build ended.
    live = expiring.buffer().get(build_key(op.id))
    assert "-----> Build failed" in live and "token [redacted]" in live and SECRET not in live

    # A repository the server cannot fetch says so, and how private repositories are reached.
    dokku.clear_faults()
    dokku.refuse_repo("git@git.example.com:team/api.git")
    op = deploy_service.deploy_from_repo(target, member)
    db.session.commit()
    op = finished(app, op.id)
    assert "could not fetch the repository (repository 'git@git.example.com:team/api.git' not found)" in op.reason
    assert "git:auth" in op.reason


def test_a_url_with_credentials_is_refused_and_stored_nowhere(app, client, member, sshd, dokku):
    from tests.support.ssh_fixtures import make_dokku_server

    server = make_dokku_server(sshd)
    make_app(server, name="api")
    db.session.commit()
    log_in(client, member)
    url = f"/servers/{server.id}/apps/api/deploy-source"
    for bad in ("https://deployer:ghp_tok3nvalue@github.com/team/api.git", "https://ghp_tok3nvalue@github.com/t/a.git",
                "ssh://git:ghp_tok3nvalue@github.com/team/api.git"):
        response = client.post(url, data={"repo_url": bad, "repo_ref": "main", "action": "deploy"})
        assert response.status_code == 422
        page = response.get_data(as_text=True)
        assert "That URL carries credentials" in page
        assert "git:auth" in page  # how private repositories are reached instead
        assert "ghp_tok3nvalue" not in page
    db.session.rollback()
    assert db.session.scalar(select(Operation).where(Operation.kind == "app.deploy_from_repo")) is None
    for table in ("audit_entries", "apps", "operations"):
        assert "ghp_tok3nvalue" not in str(db.session.execute(text(f"SELECT * FROM {table}")).all())
    ok = client.post(url, data={"repo_url": "git@github.com:team/api.git", "repo_ref": "v1.2", "action": "save"})
    assert ok.status_code == 303


def test_deploying_the_same_image_again_builds_nothing_and_says_to_rebuild(app, member, sshd, dokku):
    from tests.support.ssh_fixtures import make_dokku_server

    server = make_dokku_server(sshd)
    target = make_app(server, name="api")
    dokku.create_app("api")
    first = deploy_service.deploy_image(target, member, image="nginx:1.27")
    db.session.commit()
    assert finished(app, first.id).status == "succeeded"
    again = deploy_service.deploy_image(target, member, image="nginx:1.27")
    db.session.commit()
    again = finished(app, again.id)
    assert again.status == "succeeded"
    assert any("built nothing" in warning and "Rebuild" in warning for warning in again.warning_list)
    rebuilt = history_service.rebuild_app(target, member)
    db.session.commit()
    assert finished(app, rebuilt.id).status == "succeeded"
    assert [c["command"] for c in dokku.calls() if c["command"] in ("git:from-image", "ps:rebuild")] == [
        "git:from-image", "git:from-image", "ps:rebuild"]


def test_following_the_logs_shows_new_lines_and_stops_at_its_limit(page, member, sshd, dokku, caplog):
    server = ready_server(sshd)
    target = make_app(server, name="api")
    dokku.create_app("api")
    dokku.mark_deployed("api")
    env_service.set_var(target, member, key="TOKEN", value=SECRET, restart=False)
    db.session.commit()
    dokku.add_log_lines("api", "GET / 200", f"token is {SECRET}")
    dokku.add_log_lines("api", "worker started", process="worker")
    login(page, member)
    page.goto(f"/servers/{server.id}/apps/api")
    page.get_by_role("button", name="Follow").click()
    lines = page.locator("#log-lines")
    expect(lines).to_contain_text("GET / 200", timeout=DONE)
    expect(lines).to_contain_text("token is [redacted]")
    dokku.add_log_lines("api", "GET /health 200")
    expect(lines).to_contain_text("GET /health 200", timeout=DONE)
    expect(page.locator("[data-follow=ended]")).to_contain_text("Stopped following", timeout=DONE)
    shot(page, "logs-followed")
    reads = len([call for call in dokku.calls() if call["command"] == "logs"])
    page.wait_for_timeout(1500)  # three intervals: an ended follow asks no more
    assert len([call for call in dokku.calls() if call["command"] == "logs"]) == reads
    shown = lines.inner_text()
    assert shown.count("GET / 200") == 1  # new lines only
    assert SECRET not in page.content()
    # Show logs of one process type replaces the follow.
    page.get_by_label("Process type", exact=True).fill("worker")
    page.get_by_role("button", name="Show logs").click()
    expect(lines).to_contain_text("worker started", timeout=DONE)
    expect(lines).not_to_contain_text("GET / 200")

    # Nothing of the logs reached an entry, a command run, an operation or any other table.
    db.session.rollback()
    assert db.session.scalar(select(Operation).where(Operation.kind.like("%log%"))) is None
    for table in db.metadata.sorted_tables:
        dump = str(db.session.execute(table.select()).all())
        assert "GET /health" not in dump and "worker started" not in dump, table.name
    assert SECRET not in caplog.text and "GET /health" not in caplog.text
    reads = [call["argv"] for call in dokku.calls() if call["command"] == "logs"]
    assert reads[0] == ["logs", "api", "-n", "100"] and reads[-1] == ["logs", "api", "-n", "100", "-p", "worker"]


def test_viewers_do_not_read_logs(app, client, viewer, sshd, dokku):
    from tests.support.ssh_fixtures import make_dokku_server

    server = make_dokku_server(sshd)
    make_app(server, name="api")
    db.session.commit()
    log_in(client, viewer)
    assert client.post(f"/servers/{server.id}/apps/api/logs", data={"lines": "10"}).status_code == 403
    page = client.get(f"/servers/{server.id}/apps/api").get_data(as_text=True)
    assert "Logs are for members and admins" in page
    assert [call for call in dokku.calls() if call["command"] == "logs"] == []


def test_in_the_single_process_a_log_read_does_not_wait_behind_a_running_operation(app, member, sshd, dokku):
    from intercity.models.base import utcnow
    from intercity.services import apps as app_service
    from intercity.services import logs
    from tests.support.ssh_fixtures import make_dokku_server

    server = make_dokku_server(sshd)
    target = make_app(server, name="api")
    dokku.create_app("api")
    dokku.mark_deployed("api")
    dokku.add_log_lines("api", "GET / 200")
    db.session.commit()
    dokku.hang("ps:restart", 5)
    restart = app_service.restart_app(target, member)
    db.session.commit()  # the restart goes to the runner's one thread first
    token = logs.start(target, member, lines=10)
    deadline = time.monotonic() + 30
    while (record := logs.find(target, member, token))["state"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.05)
    read_at = utcnow()
    assert record["state"] == "done" and record["new"][-1].endswith("GET / 200"), record["error"]
    # The read ended while the restart was still on the server: it did not queue behind it.
    op = finished(app, restart.id)
    assert op.status == "succeeded" and op.finished_at > read_at
