"""Deploys end to end: the app page -> read operations over real SSH -> the double's builds and event log.

A deploy recorded on the double shows once in the app's timeline with the deploy key's name (event log
on) or as a push (off), however often the page opens and the builds are read; the panel's own deploy
kinds' builds are not imported; scaling, rebuild, stop and start reach the double; a Dokku without
build history is said plainly.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from intercity.extensions import db
from intercity.jobs import kinds
from intercity.models import AppBuild, AppDeployRead, Domain, EnvVar, Operation
from intercity.models.base import utcnow
from intercity.services.deploys import PANEL_DEPLOY_KINDS
from tests.support.builders import make_app
from tests.support.deploys import events_on, record_deploy
from tests.support.operations import run_op
from tests.support.panel import entries, finish, operations
from tests.support.ssh_fixtures import make_dokku_server

pytestmark = [pytest.mark.postgresql_only, pytest.mark.ssh]

# An env value of the app that its build log prints.
SECRET = "dpl0y-s3cret-token-value"


def text(response) -> str:
    return response.get_data(as_text=True)


def a_minute_passes() -> None:
    """Readings and requests of the app page look older than the once-a-minute limit."""
    past = utcnow() - timedelta(minutes=2)
    db.session.execute(update(Operation).values(created_at=past))
    db.session.execute(update(AppDeployRead).values(checked_at=past))
    db.session.commit()


def deployed_entries(app_name: str):
    return [e for e in entries() if e.action in ("app.deployed", "app.deploy_failed") and e.app_name == app_name]


def test_a_recorded_deploy_shows_once_with_the_key_name(app, client, logged_in, member, viewer, sshd, dokku):
    server = make_dokku_server(sshd, name="prod-1")
    web = make_app(server, name="web", status="active")
    db.session.add(Domain(app=web, hostname="web.example.com"))
    secret = EnvVar(app=web, key="API_TOKEN")
    secret.value = SECRET
    db.session.add(secret)
    db.session.commit()
    server_id, web_id = server.id, web.id
    dokku.create_app("web")
    events_on(dokku)
    push = record_deploy(dokku, "web", key_name="alice", sha="1a2b3c4d5e6f" + "0" * 28, seconds=42,
                         log=f"-----> Building\n       token is {SECRET}\n=====> Application deployed\n")
    # History only: a restart's build; not imported: a git:sync the panel's own deploy operation ran.
    restart = record_deploy(dokku, "web", source="ps:restart", key_name=None, started=push_time(push) + 100)
    sync = record_deploy(dokku, "web", source="git:sync", key_name=None, started=push_time(push) + 200)
    db.session.add(Operation(kind=PANEL_DEPLOY_KINDS[0], category="app", server_id=server_id, server_name="prod-1",
                             app_id=web_id, app_name="web", scope=f"app:{web_id}", payload={}, status="succeeded",
                             started_at=parse(sync["started_at"]) - timedelta(seconds=5),
                             finished_at=parse(sync["finished_at"]) + timedelta(seconds=5)))
    db.session.commit()
    page_url = f"/servers/{server_id}/apps/web"

    logged_in(member)
    client.get(page_url)  # opening the page reads builds and processes
    finish(app)
    assert [op.status for op in operations("app.builds")] == ["succeeded"]
    assert [op.status for op in operations("app.refresh")] == ["succeeded"]
    found = deployed_entries("web")
    assert len(found) == 1 and found[0].action == "app.deployed"
    changes = found[0].changes
    assert changes["deployed_by"] == [None, "alice"] and changes["source"] == [None, "git-hook"]
    assert changes["duration_seconds"] == [None, 42] and changes["git_sha"][1].startswith("1a2b3c4d5e6f")
    assert found[0].category == "app" and found[0].actor_kind == "dokku"
    rows = {row.build_id: row for row in db.session.scalars(select(AppBuild))}
    assert set(rows) == {push["id"], restart["id"], sync["id"]}
    assert rows[restart["id"]].recorded_as is None and rows[sync["id"]].recorded_as is None

    page = text(client.get(page_url))
    assert 'href="http://web.example.com"' in page and "deploy key alice" in page
    assert "1 running" in page  # processes per type
    timeline = text(client.get(f"{page_url}/audit"))
    assert "deployed" in timeline and "alice" in timeline

    # More page opens within the minute read nothing again; after it, the builds are read again, and the
    # deploy still gives one entry.
    client.get(page_url)
    finish(app)
    assert len(operations("app.builds")) == 1
    a_minute_passes()
    client.get(page_url)
    finish(app)
    run_op(app, "app.builds", server=server, user=member, target=web)
    assert len(operations("app.builds")) == 3 and all(op.status == "succeeded" for op in operations("app.builds"))
    assert len(deployed_entries("web")) == 1

    # A failing build is an entry of its own; events off: "by a push to prod-1".
    events_on(dokku, False)
    record_deploy(dokku, "web", status="failed", key_name=None, started=push_time(push) + 300)
    run_op(app, "app.builds", server=server, user=member, target=web)
    failed = [e for e in deployed_entries("web") if e.action == "app.deploy_failed"]
    assert len(failed) == 1 and failed[0].changes["by"] == [None, "a push to prod-1"]
    assert len(deployed_entries("web")) == 2

    # A build's log, read on request: its transcript, redacted and truncated like every one.
    assert client.post(f"{page_url}/builds/{push['id']}/output").status_code == 303
    finish(app)
    [log] = operations("app.build_output")
    assert log.status == "succeeded" and "Application deployed" in log.command_runs[-1].stdout
    # The app's env values are hidden in it wherever the app printed them; no page or entry shows them.
    assert SECRET not in log.command_runs[-1].stdout and "[redacted]" in log.command_runs[-1].stdout
    assert SECRET not in text(client.get(page_url)) and SECRET not in text(client.get(f"/operations/{log.id}"))
    assert all(SECRET not in (e.diff or "") for e in entries())
    assert client.post(f"{page_url}/builds/nope/output").status_code == 303
    assert len(operations("app.build_output")) == 1

    # A drift check has the builds listed too, so a push shows up without anyone opening the page.
    a_minute_passes()
    record_deploy(dokku, "web", key_name=None, started=push_time(push) + 400)
    check = run_op(app, "server.drift_check", server=server, user=member)
    finish(app)
    assert check.status == "succeeded", check.reason
    assert operations("app.builds")[-1].status == "succeeded" and len(deployed_entries("web")) == 3

    # Viewers read the deploy history; the home page lists every app with its link.
    client.post("/logout")
    logged_in(viewer)
    page = text(client.get(page_url))
    assert "deploy key alice" in page and "Scale" not in page
    home = client.get("/")
    listing = text(client.get(home.headers["Location"]))
    assert "prod-1" in listing and 'href="http://web.example.com"' in listing
    assert "web" in text(client.get("/apps?q=WE")) and "No app" in text(client.get("/apps?q=zzz"))


def push_time(record: dict) -> float:
    return parse(record["started_at"]).timestamp()


def parse(stamp: str):
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_scale_rebuild_stop_start_reach_the_double(app, client, logged_in, member, sshd, dokku):
    server = make_dokku_server(sshd, name="prod-1")
    web = make_app(server, name="web", status="active")
    db.session.commit()
    dokku.create_app("web")
    record_deploy(dokku, "web", key_name=None)
    page_url = f"/servers/{server.id}/apps/web"
    logged_in(member)
    client.get(page_url)
    finish(app)

    bad = client.post(f"{page_url}/scale", data={"scale-web": "lots", "new_type": "", "new_count": ""})
    assert bad.status_code == 422 and "whole number from 0 to 100 for web" in text(bad)
    assert operations("app.scale") == []
    unknown = client.post(f"{page_url}/scale", data={"scale-Web!": "1"})
    assert unknown.status_code == 422 and "is not a process type" in text(unknown)
    assert client.post(f"{page_url}/scale", data={"scale-web": "2", "new_type": "worker",
                                                  "new_count": "1"}).status_code == 303
    finish(app)
    assert operations("app.scale")[-1].status == "succeeded"
    assert ["ps:scale", "web", "web=2", "worker=1"] in [call["argv"] for call in dokku.calls()]
    page = text(client.get(page_url))
    assert 'name="scale-worker"' in page and "2 running" in page

    for action, command in (("stop", "ps:stop"), ("start", "ps:start"), ("rebuild", "ps:rebuild")):
        assert client.post(f"{page_url}/{action}").status_code == 303
        finish(app)
        assert operations(f"app.{action}")[-1].status == "succeeded", operations(f"app.{action}")[-1].reason
        assert [command, "web"] in [call["argv"] for call in dokku.calls()]
    assert {"app.scale_requested", "app.stop_requested", "app.start_requested",
            "app.rebuild_requested"} <= {e.action for e in entries()}
    # The panel's rebuild is a deploy of the app's last source: its build gives one entry, the push another.
    sources = sorted(e.changes["source"][1] for e in deployed_entries("web"))
    assert sources == ["git-hook", "ps:rebuild"]


def test_a_dokku_without_builds_and_an_app_missing_on_the_server(app, client, logged_in, member, sshd, dokku):
    dokku.set_version("0.37.5")
    server = make_dokku_server(sshd, name="old-1", dokku_version="0.37.5")
    make_app(server, name="web", status="active")
    make_app(server, name="gone", status="active")
    db.session.commit()
    dokku.create_app("web")
    record_deploy(dokku, "web", key_name=None, sha="b" * 40)
    logged_in(member)
    page_url = f"/servers/{server.id}/apps/web"
    client.get(page_url)
    finish(app)
    assert operations("app.builds")[-1].status == "succeeded"
    page = text(client.get(page_url))
    assert "keeps no list of deploys" in page and "b" * 12 in page
    assert [c["command"] for c in dokku.calls() if c["command"].startswith(("git:", "apps:report", "builds"))] == [
        "git:report", "apps:report"]

    dokku.set_version(None)
    server.dokku_version = "0.38.27"
    db.session.commit()
    client.get(f"/servers/{server.id}/apps/gone")
    finish(app)
    failed = [op for op in operations("app.builds") if op.app_name == "gone"]
    assert failed[-1].status == "failed" and "does not exist" in failed[-1].reason



def test_after_a_lost_restart_nothing_applies_while_a_build_still_runs(app, admin, sshd, dokku):
    from intercity.services.operations import request_operation
    from tests.support.operations import finished, runs, set_env

    server = make_dokku_server(sshd, name="prod-1")
    web = make_app(server, name="web", status="active")
    dokku.create_app("web")
    record_deploy(dokku, "web", key_name=None)
    # A restart whose command the panel lost sight of; its deadline has passed, its deploy has not ended.
    lost = request_operation("app.restart", server=server, app=web, requested_by=admin)
    db.session.flush()
    lost.status, lost.commands_in_doubt = "failed", True
    lost.commands_deadline_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    from tests.support.deploys import running_build

    build = running_build(dokku, "web", source="ps:restart")
    set_env(web, LEVEL="debug")
    change = request_operation("env.apply", server=server, app=web, requested_by=admin,
                               payload={"set": ["LEVEL"], "unset": [], "restart": False})
    db.session.commit()
    change = finished(app, change.id)
    assert change.status == "failed"
    assert change.reason.startswith(f"A build of web is still running on prod-1 (build {build['id']}")
    assert [run.argv_list[1:2] for run in runs(change)] == [["apps:locked"], ["builds:list"]]  # nothing changed
    assert "LEVEL" not in dokku.env("web")
