"""A worker keeps its connection to a server between operations (SSH_KEEP_IDLE), and replaces a dead one."""
from __future__ import annotations

import paramiko
import pytest

from tests.support.builders import make_app
from tests.support.operations import apply_env, runs, wait_until

pytestmark = [pytest.mark.ssh, pytest.mark.postgresql_only]


def logins(sshd) -> int:
    return sshd.log().count("Accepted publickey")


def test_operations_in_separate_drains_share_the_kept_connection(app, admin, sshd, dokku, dokku_server):
    dokku.create_app("web")
    web = make_app(dokku_server, name="web")
    before = logins(sshd)
    first = apply_env(app, web, admin, KEY="one")  # a drain of its own: the runner is idle after it
    second = apply_env(app, web, admin, KEY="two")
    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert dokku.env("web") == {"KEY": b"two"}
    assert logins(sshd) - before == 1


def test_without_keeping_each_drain_makes_its_own_connection(app_config, request):
    app_config["SSH_KEEP_IDLE"] = 0
    app = request.getfixturevalue("app")
    sshd, dokku, admin = (request.getfixturevalue(name) for name in ("sshd", "dokku", "admin"))
    web = make_app(request.getfixturevalue("dokku_server"), name="web")
    dokku.create_app("web")
    before = logins(sshd)
    apply_env(app, web, admin, KEY="one")
    assert apply_env(app, web, admin, KEY="two").status == "succeeded"
    assert logins(sshd) - before == 2


def test_a_kept_connection_is_closed_once_it_has_been_idle_for_the_keep_time(app_config, request):
    app_config["SSH_KEEP_IDLE"] = 1
    app = request.getfixturevalue("app")
    sshd, dokku, admin = (request.getfixturevalue(name) for name in ("sshd", "dokku", "admin"))
    web = make_app(request.getfixturevalue("dokku_server"), name="web")
    dokku.create_app("web")
    closed = sshd.log().count("Connection closed by")
    assert apply_env(app, web, admin, KEY="one").status == "succeeded"
    # No further operation: the idle timer itself closes it, and the next operation connects again.
    wait_until(lambda: sshd.log().count("Connection closed by") > closed, 10, "the kept connection to be closed")
    before = logins(sshd)
    assert apply_env(app, web, admin, KEY="two").status == "succeeded"
    assert logins(sshd) - before == 1


def test_a_kept_connection_that_refuses_a_session_is_replaced_before_anything_runs(
        app, admin, sshd, dokku, dokku_server, monkeypatch):
    dokku.create_app("web")
    web = make_app(dokku_server, name="web")
    apply_env(app, web, admin, KEY="one")
    before = logins(sshd)
    real = paramiko.Transport.open_session
    refused = []

    def open_session(transport, *args, **kwargs):
        if not refused:  # the kept connection's first session: as if the server had gone away meanwhile
            refused.append(transport)
            raise paramiko.SSHException("Unable to open channel.")
        return real(transport, *args, **kwargs)

    monkeypatch.setattr(paramiko.Transport, "open_session", open_session)
    op = apply_env(app, web, admin, KEY="two")
    assert (op.status, op.reason, op.commands_in_doubt) == ("succeeded", None, False)
    assert refused and logins(sshd) - before == 1
    assert [run.exit_code for run in runs(op)] == [0, 0]  # config:set and its read-back, once each
    assert dokku.env("web") == {"KEY": b"two"}
