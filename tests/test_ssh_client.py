"""The SSH client and every dokku command builder and parser, through a real sshd and the Dokku double.

No database here: these tests drive `intercity.dokku.ssh` directly, as the executors do.
"""
from __future__ import annotations

import os
import socket
import time

import pytest

from intercity import crypto
from intercity.dokku import commands, parsers
from intercity.dokku.ssh import (AuthenticationFailed, CommandTimeout, Connection, DokkuUserRefused, HostKey,
                                 HostKeyMismatch, HostKeyNotVerified, Target, Unreachable, connect)
from tests.support.operations import AWKWARD
from tests.support.panel import ED25519
from tests.support.ssh_fixtures import SUDO_USER, SUDO_USER_WITH_PASSWORD

pytestmark = pytest.mark.ssh



@pytest.fixture(scope="module")
def key_pair():
    return crypto.generate_ssh_key("intercity-test-client")


def make_target(sshd, key_pair, **overrides) -> Target:
    settings = dict(host=sshd.host, port=sshd.port, user="root", private_key=key_pair[0],
                    pinned=HostKey(sshd.host_key_type, sshd.host_key_fingerprint), connect_timeout=5,
                    command_timeout=30)
    settings.update(overrides)
    return Target(**settings)


@pytest.fixture
def target(sshd, dokku, key_pair) -> Target:
    sshd.authorize("root", key_pair[1])
    return make_target(sshd, key_pair)


@pytest.fixture
def conn(target):
    with connect(target) as connection:
        yield connection


def run(conn, command, *, json_format=None):
    """Run a command and apply dokku's failure check, as the executors do; returns the result."""
    result = conn.run(command)
    parsers.check(command, result.exit_code, result.out, result.err)
    return result


def accepted_logins(sshd) -> int:
    return sshd.log().count("Accepted publickey for")


# --- commands and parsers ------------------------------------------------------------


def test_every_builder_and_parser_over_one_connection(sshd, dokku, conn):
    logins = accepted_logins(sshd)
    version = parsers.parse_version(run(conn, commands.version()).out)
    assert version == commands.DokkuVersion(0, 38, 27) and version.json_apps_list

    run(conn, commands.apps_create("web"))
    with pytest.raises(parsers.AppAlreadyExists, match="already exists"):
        run(conn, commands.apps_create("web"))
    assert parsers.parse_apps_list(run(conn, commands.apps_list(True)).out, True) == ["web"]
    assert parsers.parse_apps_list(run(conn, commands.apps_list(False)).out, False) == ["web"]
    report = parsers.parse_report_json(run(conn, commands.ps_report("web", True)).out)
    assert report["deployed"] == "false"
    assert parsers.parse_report(run(conn, commands.ps_report("web", False)).out)["Deployed"] == "false"

    for command in commands.config_set("web", {"A": "1", "B": "two words"}, restart=False):
        assert "--no-restart" in command.argv
        run(conn, command)
    run(conn, commands.config_unset("web", ["A"], restart=False))
    # Without a global vhost, apps:create leaves NO_VHOST=1 in the app's config (as real Dokku does).
    exported = parsers.parse_config_export_json(run(conn, commands.config_export_json("web")).out)
    assert exported == {"B": "two words", "NO_VHOST": "1"}

    run(conn, commands.domains_add("web", ["a.example.com", "axexample.com"]))
    listed = parsers.parse_domains(run(conn, commands.domains_report("web", True)).out, True)
    assert listed == ["a.example.com", "axexample.com"]
    assert parsers.parse_domains(run(conn, commands.domains_report("web", False)).out, False) == listed
    # Removing a.example.com with domains:remove would also take axexample.com (it is a regex).
    run(conn, commands.domains_remove_safely("web", listed, "a.example.com"))
    assert dokku.domains("web") == ["axexample.com"]
    run(conn, commands.domains_remove_safely("web", ["axexample.com"], "axexample.com"))
    assert dokku.domains("web") == []

    deploy_private, deploy_public = crypto.generate_ssh_key("deploy@laptop")
    added = run(conn, commands.ssh_keys_add("laptop", deploy_public))
    fingerprint = added.out.strip()
    assert fingerprint.startswith("SHA256:") and dokku.calls()[-1]["stdin_pipe"] is True
    with pytest.raises(parsers.DuplicateKeyName):
        run(conn, commands.ssh_keys_add("laptop", crypto.generate_ssh_key("other")[1]))
    with pytest.raises(parsers.DuplicateKey):
        run(conn, commands.ssh_keys_add("again", deploy_public))
    keys_json = parsers.parse_ssh_keys_list(run(conn, commands.ssh_keys_list(True)).out, True)
    keys_text = parsers.parse_ssh_keys_list(run(conn, commands.ssh_keys_list(False)).out, False)
    assert [(k["name"], k["fingerprint"]) for k in keys_json] == [("laptop", fingerprint)]
    assert [(k["name"], k["fingerprint"]) for k in keys_text] == [("laptop", fingerprint)]
    run(conn, commands.ssh_keys_remove_fingerprint(fingerprint))
    assert dokku.keys() == []
    dokku.add_key("named", crypto.generate_ssh_key("x")[1])
    run(conn, commands.ssh_keys_remove("named"))
    assert dokku.keys() == []

    with pytest.raises(parsers.AppNotDeployed, match="has not been deployed"):
        run(conn, commands.ps_restart("web"))
    assert not parsers.parse_ps_report(run(conn, commands.ps_report("web", True)).out, True).deployed
    dokku.mark_deployed("web")
    assert "Application deployed" in run(conn, commands.ps_restart("web")).out
    ps = parsers.parse_ps_report(run(conn, commands.ps_report("web", False)).out, False)
    assert (ps.deployed, ps.running, ps.processes) == (True, True, 1)

    run(conn, commands.apps_destroy("web"))
    assert dokku.apps() == []
    with pytest.raises(parsers.AppMissing, match="App web does not exist"):
        run(conn, commands.apps_destroy("web"))
    # All of it over one SSH login.
    assert accepted_logins(sshd) == logins


def test_old_dokku_gets_the_text_formats(dokku, conn):
    dokku.set_version("0.35.0")
    version = parsers.parse_version(run(conn, commands.version()).out)
    assert not version.json_apps_list and not version.json_domains_report
    dokku.create_app("legacy_app")  # an underscore: allowed for apps that already exist
    dokku.set_domains("legacy_app", ["shop.example.com", "www.example.com"])
    # The JSON flag is refused by this version (pflag: exit 2), so the version decides the format.
    with pytest.raises(parsers.DokkuError, match="exit code 2"):
        run(conn, commands.apps_list(True))
    assert parsers.parse_apps_list(run(conn, commands.apps_list(version.json_apps_list)).out, False) == ["legacy_app"]
    report = run(conn, commands.domains_report("legacy_app", version.json_domains_report)).out
    assert "Domains app vhosts:            shop.example.com www.example.com " in report  # bash-era padding
    assert parsers.parse_domains(report, False) == ["shop.example.com", "www.example.com"]

    dokku.set_version("0.29.9")
    with pytest.raises(parsers.UnsupportedVersion, match="needs Dokku 0.30.0 or newer"):
        parsers.parse_version(run(conn, commands.version()).out)


def test_ssh_keys_list_json_falls_back_to_text_when_dokku_breaks_it(dokku, conn):
    dokku.add_key("quoted", crypto.generate_ssh_key('say "cheese"')[1])
    with pytest.raises(parsers.UnparseableOutput):
        parsers.parse_ssh_keys_list(run(conn, commands.ssh_keys_list(True)).out, True)
    assert [k["name"] for k in parsers.parse_ssh_keys_list(run(conn, commands.ssh_keys_list(False)).out, False)] \
        == ["quoted"]


def test_awkward_values_reach_dokku_byte_for_byte(dokku, conn):
    dokku.create_app("web")
    batch = commands.config_set("web", AWKWARD, restart=False)
    assert len(batch) >= 2  # the 64 KiB value needs a command line of its own
    for command in batch:
        run(conn, command)
    stored = dokku.env("web")
    assert stored == {key: value.encode("utf-8") for key, value in AWKWARD.items()}
    assert parsers.parse_config_export_json(run(conn, commands.config_export_json("web")).out) == AWKWARD
    # Nothing was interpreted by a shell on the way.
    assert not [call for call in dokku.calls() if call["command"] not in ("config:set", "config:export")]
    assert not os.path.exists("/tmp/pwned")


def test_integer_looking_values_come_back_as_numbers(dokku, conn):
    dokku.create_app("web")
    sent = {"PORT_PADDED": "007", "SIGNED": "+5", "HEX": "0x7"}
    for command in commands.config_set("web", sent, restart=False):
        run(conn, command)
    stored = parsers.parse_config_export_json(run(conn, commands.config_export_json("web")).out)
    assert stored == {"PORT_PADDED": "7", "SIGNED": "5", "HEX": "0x7"}
    assert parsers.readback_mismatches(sent, stored) == ["PORT_PADDED", "SIGNED"]


def test_no_pty_keeps_streams_apart_and_returns_dokkus_exit_code(dokku, conn):
    result = conn.run(commands.ps_report("nope", False))
    assert (result.exit_code, result.out, result.err) == (20, "", " !     App nope does not exist\n")
    tty = conn.run("test -t 0 || echo no-tty; test -p /dev/stdin && echo stdin-pipe")
    assert tty.out.split() == ["no-tty", "stdin-pipe"]


def test_dokku_error_output_becomes_a_clear_message(dokku, conn):
    dokku.fail("apps:create", exit_code=1, stderr=" !     Something broke on the server\n")
    with pytest.raises(parsers.DokkuError, match="Something broke on the server"):
        run(conn, commands.apps_create("web"))
    dokku.fail("version", exit_code=127, stderr="sh: 1: dokku: not found\n")
    with pytest.raises(parsers.NotDokku, match="not installed"):
        run(conn, commands.version())


# --- connection failures --------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_refused_connection_is_retried_with_backoff_then_reported(sshd, key_pair, dokku):
    waits = []
    with pytest.raises(Unreachable, match=r"refused the connection.*gave up after 3 attempts") as caught:
        connect(make_target(sshd, key_pair, port=closed_port()), retries=2, backoff=0.5, sleep=waits.append)
    assert caught.value.transient
    assert waits == [0.5, 1.0]


def test_dns_failure_is_reported(sshd, key_pair):
    with pytest.raises(Unreachable, match="cannot resolve no-such-host.invalid"):
        connect(make_target(sshd, key_pair, host="no-such-host.invalid"))


def test_silent_server_times_out(sshd, key_pair):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # the kernel completes the handshake; nobody ever says SSH-2.0
    try:
        started = time.monotonic()
        with pytest.raises(Unreachable, match="did not answer as an SSH server within 1 s"):
            connect(make_target(sshd, key_pair, port=listener.getsockname()[1], connect_timeout=1))
        assert time.monotonic() - started < 4
    finally:
        listener.close()


def test_unknown_key_is_an_authentication_failure(sshd, dokku, key_pair):
    # `dokku` revoked every key: the panel's key is not installed.
    with pytest.raises(AuthenticationFailed, match="not in authorized_keys of root@127.0.0.1"):
        connect(make_target(sshd, key_pair))


def test_command_timeout_stops_waiting_and_keeps_partial_output(dokku, target):
    dokku.hang("apps:list", 5)
    with connect(target) as connection:
        started = time.monotonic()
        with pytest.raises(CommandTimeout, match="did not finish within 0.5 s") as caught:
            connection.run(commands.apps_list(True), timeout=0.5)
        assert time.monotonic() - started < 2
        assert caught.value.result.exit_code is None and caught.value.result.error == "timed out after 0.5 s"


def test_the_dokku_user_is_refused(sshd, key_pair):
    with pytest.raises(DokkuUserRefused, match="cannot manage deploy keys"):
        Connection(make_target(sshd, key_pair, user="dokku"))


# --- host keys ------------------------------------------------------------------------


def test_pinned_host_key_is_the_only_type_offered(target):
    with connect(target) as connection:
        assert connection.host_key == target.pinned
        assert connection.transport.get_security_options().key_types == ("ssh-ed25519",)


def test_other_fingerprint_is_a_mismatch(sshd, dokku, key_pair, target):
    wrong = HostKey("ssh-ed25519", "SHA256:" + "A" * 43)
    logins = accepted_logins(sshd)
    with pytest.raises(HostKeyMismatch, match="not the pinned SHA256:AAAA") as caught:
        connect(make_target(sshd, key_pair, pinned=wrong), retries=2)
    assert caught.value.seen == HostKey(sshd.host_key_type, sshd.host_key_fingerprint)
    assert not caught.value.transient
    time.sleep(0.2)
    assert accepted_logins(sshd) == logins  # the panel's key was never offered to the impostor


def test_a_server_without_the_pinned_key_type_is_a_mismatch(sshd, key_pair, target):
    pinned = HostKey("ecdsa-sha2-nistp256", "SHA256:" + "B" * 43)
    with pytest.raises(HostKeyMismatch) as caught:
        connect(make_target(sshd, key_pair, pinned=pinned))
    # The probe learns what the server offers now, so an admin can compare and accept it.
    assert caught.value.seen == HostKey("ssh-ed25519", sshd.host_key_fingerprint)


def test_unpinned_keys_need_a_connection_test_or_an_expected_fingerprint(sshd, key_pair, target):
    with pytest.raises(HostKeyNotVerified, match="Run a connection test first"):
        connect(make_target(sshd, key_pair, pinned=None))
    with connect(make_target(sshd, key_pair, pinned=None, may_pin=True)) as first:
        assert first.host_key == HostKey("ssh-ed25519", sshd.host_key_fingerprint)
    with connect(make_target(sshd, key_pair, pinned=None, expected_fingerprint=sshd.host_key_fingerprint)):
        pass
    with pytest.raises(HostKeyMismatch, match="not the expected SHA256:CCCC"):
        connect(make_target(sshd, key_pair, pinned=None, expected_fingerprint="SHA256:" + "C" * 43, may_pin=True))


# --- sudo ---------------------------------------------------------------------------------


def test_sudo_user_runs_dokku_through_sudo_n(sshd, dokku, key_pair):
    sshd.ensure_sudo_user(SUDO_USER)
    sshd.authorize(SUDO_USER, key_pair[1])
    with connect(make_target(sshd, key_pair, user=SUDO_USER)) as connection:
        assert parsers.parse_version(run(connection, commands.version()).out).minor == 38
        run(connection, commands.ssh_keys_add("ci", crypto.generate_ssh_key("ci")[1]))
    calls = dokku.calls()
    assert [(c["command"], c["euid"], c["sudo_user"], c["stdin_pipe"]) for c in calls] == [
        ("version", 0, SUDO_USER, True), ("ssh-keys:add", 0, SUDO_USER, True)]


def test_sudo_asking_for_a_password_fails_clearly(sshd, dokku, key_pair):
    sshd.ensure_sudo_user(SUDO_USER_WITH_PASSWORD, passwordless=False)
    sshd.authorize(SUDO_USER_WITH_PASSWORD, key_pair[1])
    with connect(make_target(sshd, key_pair, user=SUDO_USER_WITH_PASSWORD)) as connection:
        result = connection.run(commands.version())
        assert result.line == "sudo -n dokku version"
        with pytest.raises(parsers.SudoPasswordRequired, match="needs passwordless sudo for dokku"):
            parsers.check(commands.version(), result.exit_code, result.out, result.err)
    assert dokku.calls() == []


# --- two commands in one exec ---------------------------------------------------------------------


def test_a_change_and_its_read_back_share_one_exec_and_keep_their_own_output(dokku, conn):
    dokku.create_app("web")
    # a value that prints like a boundary cannot split the output: each pair has its own random token
    values = {"A": "1", "FAKE": "intercity-boundary-0000\nintercity-boundary-0000"}
    (change,) = commands.config_set("web", values, restart=False)
    pair = commands.then(change, commands.config_export_json("web"))
    dokku.clear_calls()
    early = []
    first, second = conn.run_then(pair, early.append)
    assert [call["command"] for call in dokku.calls()] == ["config:set", "config:export"]
    assert len(early) == 1 and early[0].exit_code == 0 and early[0].out == first.out
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert (first.out, first.err, second.err) == ("", "", "")  # --quiet, and the boundary lines are gone
    assert parsers.parse_config_export_json(second.out) == values
    assert first.started_at <= first.finished_at <= second.started_at <= second.finished_at


def test_when_the_change_fails_the_read_back_does_not_run(dokku, conn):
    dokku.create_app("web")
    dokku.fail("config:set", exit_code=1, stderr=" !     something broke\n")
    (change,) = commands.config_set("web", {"A": "1"}, restart=False)
    dokku.clear_calls()
    early = []
    first, second = conn.run_then(commands.then(change, commands.config_export_json("web")), early.append)
    assert second is None and early == []
    assert (first.exit_code, first.err) == (1, " !     something broke\n")
    assert [call["command"] for call in dokku.calls()] == ["config:set"]


def test_a_pair_is_refused_where_it_cannot_be_safe():
    key = commands.ssh_keys_add("alice", ED25519)  # reads its stdin
    assert commands.then(key, commands.ssh_keys_list(True)) is None
