"""Server-side deadlines: every dokku command runs under `timeout`, and a scope waits for a command the panel lost sight of."""
from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from intercity.dokku import commands
from intercity.dokku.commands import Deadline
from intercity.extensions import db
from intercity.jobs import deadlines, kinds
from intercity.models import Operation
from intercity.services.operations import request_operation
from tests.support.builders import make_app
from tests.support.operations import runs, set_env, settle
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
    script = str(sshd.public_dir / "lib" / "dokku_double.py")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if script.encode() in argv and subcommand.encode() in argv:
            found.append(int(proc.name))
    return found


def wait_for(predicate, timeout: float, what: str):
    limit = time.monotonic() + timeout
    while True:
        db.session.commit()
        db.session.expire_all()
        value = predicate()
        if value:
            return value
        if time.monotonic() > limit:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.ssh
@pytest.mark.postgresql_only
@pytest.mark.parametrize("ssh_user", ["root", SUDO_USER])
def test_a_command_running_past_its_deadline_is_killed_on_the_server(app, admin, sshd, dokku, ssh_user):
    app.config.update(COMMAND_DEADLINES={"env.apply": 1}, COMMAND_KILL_GRACE=1)
    dokku.create_app("web")
    dokku.hang("config:set", 6)
    server = make_dokku_server(sshd, ssh_user=ssh_user)
    web = make_app(server, name="web")
    set_env(web, KEY="late")
    op_id = request_operation("env.apply", server=server, app=web, requested_by=admin,
                              payload={"set": ["KEY"], "unset": [], "restart": False}).id
    db.session.commit()

    wait_for(lambda: double_processes(sshd, "config:set"), 5, "config:set to start on the server")
    started = time.monotonic()
    # The database knew the command's deadline before the command ended (it was written before it started).
    recorded = db.session.get(Operation, op_id).commands_deadline_at
    assert recorded is not None

    wait_for(lambda: not double_processes(sshd, "config:set"), 4, "the server to stop config:set")
    assert time.monotonic() - started < 4  # long before its 6 s hang would have ended
    settle(app)
    op = db.session.get(Operation, op_id)
    assert op.status == "failed"
    assert op.reason.startswith("dokku config:set ran longer than its deadline of 1 s, so the server stopped it")
    assert not op.commands_in_doubt  # the panel saw it end: nothing to wait for
    (run,) = runs(op)
    assert run.exit_code == 124
    assert recorded >= run.started_at + timedelta(seconds=2)  # deadline plus grace, after it started
    assert "KEY" not in dokku.env("web")
