"""Server-side deadlines: every dokku command runs under `timeout`, and a scope waits for a command the panel lost sight of."""
from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from intercity.dokku import commands
from intercity.dokku.commands import Deadline
from intercity.extensions import db
from intercity.jobs import deadlines, kinds
from intercity.models import Operation
from intercity.models.base import utcnow
from intercity.services.operations import request_operation
from tests.support.builders import make_app
from tests.support.operations import finished, runs, set_env, settle, wait_until
from tests.support.ssh_fixtures import SUDO_USER, make_dokku_server


def test_dokku_runs_under_timeout_outside_sudo():
    command = commands.ps_restart("api")
    deadline = Deadline(30, 5)
    # The sudoers rule names only dokku, so timeout stays outside sudo.
    assert command.remote_line(sudo=True, deadline=deadline) == "timeout -k 5 30 sudo -n dokku ps:restart api"
    assert command.remote_line(sudo=False, deadline=deadline) == "timeout -k 5 30 dokku ps:restart api"
    pair = commands.then(command, commands.ps_report("api", True))
    line = pair.remote_line(sudo=True, deadline=deadline)
    assert line.startswith("timeout -k 5 30 sudo -n dokku ps:restart api && ")
    assert line.count("timeout -k 5 30 sudo -n dokku ") == 2


def test_a_kind_deadline_comes_from_its_declaration_and_stays_below_the_panel_wait(app):
    app.config.update(SSH_COMMAND_TIMEOUT=600, COMMAND_KILL_GRACE=10)
    assert deadlines.for_kind(kinds.get("server.check")) == Deadline(60, 10)
    # env.apply declares 900 s: the panel waits 600 s for a command, so the server stops it sooner.
    longest = deadlines.for_kind(kinds.get("env.apply"))
    assert longest.total + deadlines.WAIT_MARGIN <= 600
    app.config["COMMAND_DEADLINES"] = {"env.apply": 3}
    assert deadlines.for_kind(kinds.get("env.apply")) == Deadline(3, 10)


def double_processes(sshd, subcommand: str) -> list[int]:
    """Processes of this run's Dokku double running `subcommand` on the server."""
    # The launcher names the double's directory in its `-c` line.
    lib = str(sshd.public_dir / "lib").encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(lib in arg for arg in argv) and subcommand.encode() in argv:
            found.append(int(proc.name))
    return found


@pytest.mark.ssh
@pytest.mark.postgresql_only
@pytest.mark.parametrize("ssh_user", ["root", SUDO_USER])
def test_a_command_running_past_its_deadline_is_killed_on_the_server(app, admin, sshd, dokku, ssh_user):
    app.config.update(COMMAND_DEADLINES={"env.apply": 2}, COMMAND_KILL_GRACE=1)
    dokku.create_app("web")
    dokku.hang("config:set", 8)
    server = make_dokku_server(sshd, ssh_user=ssh_user)
    web = make_app(server, name="web")
    set_env(web, KEY="late")
    op_id = request_operation("env.apply", server=server, app=web, requested_by=admin,
                              payload={"set": ["KEY"], "unset": [], "restart": False}).id
    db.session.commit()

    wait_until(lambda: double_processes(sshd, "config:set"), 10, "config:set to start on the server")
    started = time.monotonic()
    # The database knew the command's deadline before the command ended (it was written before it started).
    recorded = db.session.get(Operation, op_id).commands_deadline_at
    assert recorded is not None

    wait_until(lambda: not double_processes(sshd, "config:set"), 6, "the server to stop config:set")
    assert time.monotonic() - started < 6  # long before its 8 s hang would have ended
    settle(app)
    op = db.session.get(Operation, op_id)
    assert op.status == "failed"
    assert op.reason.startswith("dokku config:set ran longer than its deadline of 2 s, so the server stopped it")
    assert not op.commands_in_doubt  # the panel saw it end: nothing to wait for
    (run,) = runs(op)
    assert run.exit_code == 124
    assert recorded >= run.started_at + timedelta(seconds=3)  # deadline plus grace, after it started
    assert "KEY" not in dokku.env("web")


def request_env(server, web, user, **values) -> int:
    set_env(web, **values)
    op = request_operation("env.apply", server=server, app=web, requested_by=user,
                           payload={"set": list(values), "unset": [], "restart": False})
    db.session.commit()
    return op.id


def config_set_calls(dokku) -> list[dict]:
    return [call for call in dokku.calls() if call["command"] == "config:set"]


@pytest.mark.ssh
@pytest.mark.postgresql_only
def test_a_config_set_the_panel_stopped_waiting_for_never_overwrites_a_newer_value(
        app, admin, sshd, dokku, dokku_server, client, logged_in):
    # The panel waits 1 s for a command; the server stops it after 2 s (SIGKILL 1 s later).
    app.config.update(SSH_COMMAND_TIMEOUT=1, COMMAND_DEADLINES={"env.apply": 2}, COMMAND_KILL_GRACE=1,
                      SSH_CONNECT_TIMEOUT=2)
    dokku.create_app("web")
    dokku.hang("config:set", 5)  # without a deadline it would write the old value 5 s later
    web = make_app(dokku_server, name="web")
    first = finished(app, request_env(dokku_server, web, admin, API_KEY="old-rotated-away"))
    assert first.status == "failed"
    assert "may still be running on the server" in first.reason
    assert first.commands_in_doubt and "Later work on web waits until" in first.reason

    dokku.clear_faults()
    app.config["SSH_COMMAND_TIMEOUT"] = 30  # the network is fine again
    newer_id = request_env(dokku_server, web, admin, API_KEY="new-after-rotation")
    newer = finished(app, newer_id)
    assert (newer.status, newer.reason) == ("succeeded", None), newer.reason
    # It started only once the lost command had certainly ended, and read the server back first.
    assert newer.started_at >= first.commands_deadline_at
    assert runs(newer)[0].argv_list == ["dokku", "config:export", "web", "--format", "json"]
    assert any(w.startswith(f"Started once the earlier command on {dokku_server.name} (#{first.id}) had certainly "
                            "ended") for w in newer.warning_list)
    old_call, new_call = config_set_calls(dokku)
    assert new_call["time"] > old_call["time"] + 5  # after the old command's hang would have ended...
    assert not double_processes(sshd, "config:set")
    assert dokku.env("web") == {"API_KEY": b"new-after-rotation"}  # ...and the server holds the newer value

    # The timeline tells what happened.
    logged_in(admin)
    page = client.get(f"/servers/{dokku_server.id}/apps/web/audit").get_data(as_text=True)
    assert "may still be running on the server" in page
    assert "Later work on web waits until" in page
    assert f"Started once the earlier command on {dokku_server.name} (#{first.id}) had certainly ended" in page


def test_a_queued_card_says_it_waits_for_the_earlier_command(app, admin, client, logged_in):
    from tests.support.builders import make_server

    server = make_server(name="prod-1")
    web = make_app(server, name="web")
    earlier = request_operation("app.restart", server=server, app=web, requested_by=admin)
    db.session.flush()
    earlier.status, earlier.commands_in_doubt = "failed", True
    earlier.commands_deadline_at = utcnow() + timedelta(minutes=10)
    later = request_operation("app.restart", server=server, app=web, requested_by=admin)
    db.session.commit()
    app.extensions["intercity_jobs"].wait_idle()  # the runner looked and left it queued
    logged_in(admin)
    page = client.get(f"/operations/{later.id}").get_data(as_text=True)
    assert "Waiting until the earlier command on prod-1 has certainly ended" in page
    assert db.session.get(Operation, later.id).status == "queued"


@pytest.mark.ssh
@pytest.mark.postgresql_only
def test_after_a_lost_restart_nothing_applies_while_its_deploy_still_holds_the_lock(app, admin, dokku, dokku_server):
    app.config.update(SSH_COMMAND_TIMEOUT=1, COMMAND_DEADLINES={"app.restart": 2}, COMMAND_KILL_GRACE=1,
                      SSH_CONNECT_TIMEOUT=2)
    dokku.create_app("web")
    dokku.mark_deployed("web")
    dokku.hang("ps:restart", 4)
    web = make_app(dokku_server, name="web")
    restart = request_operation("app.restart", server=dokku_server, app=web, requested_by=admin)
    db.session.commit()
    restart = finished(app, restart.id)
    assert restart.status == "failed" and restart.commands_in_doubt
    dokku.clear_faults()
    app.config["SSH_COMMAND_TIMEOUT"] = 30
    dokku.lock_deploys("web")  # the deploy the CLI handed to Docker goes on

    change = finished(app, request_env(dokku_server, web, admin, LEVEL="debug"))
    assert change.status == "failed"
    assert change.reason.startswith(f"A deploy of web is still running on {dokku_server.name} (its deploy lock is "
                                    "in place)")
    assert [run.argv_list[1:] for run in runs(change)] == [["apps:locked", "web"]]  # nothing was changed
    assert "LEVEL" not in dokku.env("web")

    dokku.lock_deploys("web", False)
    again = request_operation("env.apply", server=dokku_server, app=web, requested_by=admin,
                              payload=change.data, retry_of=change)
    db.session.commit()
    again = finished(app, again.id)
    assert (again.status, again.reason) == ("succeeded", None)
    assert [run.argv_list[1:2] for run in runs(again)][:3] == [["apps:locked"], ["builds:list"], ["config:export"]]
    assert dokku.env("web")["LEVEL"] == b"debug"
