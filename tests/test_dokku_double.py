"""Tests for the Dokku test double and the loopback OpenSSH fixture.

The rest of the suite trusts tests/support/{dokku_double,sshd}.py to behave
like a Dokku host reached over SSH, so these tests check that trust: a real
sshd, a real paramiko client that verifies the host key by fingerprint, exit
codes and streams as Dokku produces them, values arriving byte for byte, the
sudo path, and the fault injection other tests rely on.

Needs root and openssh-server + sudo (apt). One sshd serves the whole file;
tests that restart a server use their own.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.ssh_fixtures import SUDO_USER, SUDO_USER_WITH_PASSWORD, require_environment
from tests.support.sshd import DokkuDouble, SshServer

pytestmark = pytest.mark.ssh



# --------------------------------------------------------------------------
# A minimal paramiko client, as the panel is expected to use it
# --------------------------------------------------------------------------


class HostKeyMismatch(Exception):
    pass


@dataclass
class Result:
    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode()

    @property
    def err(self) -> str:
        return self.stderr.decode()


@dataclass
class ClientKey:
    pkey: paramiko.PKey
    public_line: str


def make_client_key(comment: str = "intercity-test") -> ClientKey:
    # paramiko cannot generate Ed25519 keys; cryptography can, and paramiko
    # loads the OpenSSH private key format.
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(pem))
    return ClientKey(pkey, f"{pkey.get_name()} {pkey.get_base64()} {comment}")


def sha256_fingerprint(key: paramiko.PKey) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def connect(server: SshServer, user: str, key: ClientKey, expected_fingerprint: str | None = None):
    """Open an authenticated Transport, refusing any host key but the expected one."""
    sock = socket.create_connection((server.host, server.port), timeout=10)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=10)
        presented = sha256_fingerprint(transport.get_remote_server_key())
        if presented != (expected_fingerprint or server.host_key_fingerprint):
            raise HostKeyMismatch(presented)
        transport.auth_publickey(user, key.pkey)
    except BaseException:
        transport.close()
        raise
    return transport


def run(transport: paramiko.Transport, argv: list[str] | str, stdin: bytes | None = None,
        timeout: float = 30) -> Result:
    """Run a command without a PTY (separate streams, real exit status)."""
    command = argv if isinstance(argv, str) else " ".join(shlex.quote(arg) for arg in argv)
    channel = transport.open_session(timeout=10)
    try:
        channel.exec_command(command)
        if stdin is not None:
            channel.sendall(stdin)
        channel.shutdown_write()
        stdout, stderr = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        while True:
            busy = False
            if channel.recv_ready():
                stdout += channel.recv(65536)
                busy = True
            if channel.recv_stderr_ready():
                stderr += channel.recv_stderr(65536)
                busy = True
            if not busy:
                # The exit status arrives after all data, so nothing is lost.
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    return Result(channel.recv_exit_status(), bytes(stdout), bytes(stderr))
                if time.monotonic() > deadline:
                    raise TimeoutError(command)
                time.sleep(0.005)
    finally:
        channel.close()


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    require_environment()
    with SshServer(tmp_path_factory.mktemp("sshd")) as sshd:
        yield sshd


@pytest.fixture(scope="session")
def client_key() -> ClientKey:
    return make_client_key()


@pytest.fixture(scope="session")
def root_ssh(server, client_key):
    server.authorize("root", client_key.public_line)
    transport = connect(server, "root", client_key)
    yield transport
    transport.close()


@pytest.fixture
def dokku(server) -> DokkuDouble:
    server.dokku.reset()
    return server.dokku


@pytest.fixture
def sh(root_ssh, dokku):
    """Run a command as root over the shared connection, on a fresh double."""
    return lambda argv, **kwargs: run(root_ssh, argv, **kwargs)


def run_local(server: SshServer, *args: str, stdin=subprocess.DEVNULL, user=None, env=None) -> Result:
    """Run the double's launcher directly (no SSH), for behaviour-only checks."""
    environment = {"PATH": "/usr/bin:/bin", **(env or {})}
    completed = subprocess.run(
        [str(server.bin_dir / "dokku"), *args], stdin=stdin, capture_output=True,
        env=environment, user=user, timeout=30,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


# --------------------------------------------------------------------------
# Server and transport
# --------------------------------------------------------------------------


def test_host_key_fingerprint_matches_the_key_file(server):
    key_type, key_b64 = server.host_public_key.split()[:2]
    assert key_type == server.host_key_type == "ssh-ed25519"
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    assert server.host_key_fingerprint == "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
    assert server.known_hosts_line() == f"[127.0.0.1]:{server.port} ssh-ed25519 {key_b64}"


def test_session_runs_through_a_shell_with_the_double_on_path(sh, server):
    result = sh("command -v dokku; id -un; test -p /dev/stdin && echo stdin-is-a-pipe")
    assert result.exit_code == 0
    assert result.out.splitlines() == [str(server.bin_dir / "dokku"), "root", "stdin-is-a-pipe"]


def test_unknown_key_is_rejected_and_revoke_removes_access(server, client_key):
    stranger = make_client_key("stranger")
    with pytest.raises(paramiko.AuthenticationException):
        connect(server, "root", stranger)

    server.authorize("root", stranger.public_line)
    connect(server, "root", stranger).close()
    server.revoke("root")
    try:
        with pytest.raises(paramiko.AuthenticationException):
            connect(server, "root", stranger)
    finally:
        server.authorize("root", client_key.public_line)  # the session key stays valid


def test_restart_with_new_host_key_keeps_port_and_changes_fingerprint(tmp_path, client_key):
    with SshServer(tmp_path / "sshd") as other:
        other.authorize("root", client_key.public_line)
        old_fingerprint, port = other.host_key_fingerprint, other.port
        connect(other, "root", client_key).close()

        new_fingerprint = other.restart_with_new_host_key()

        assert other.port == port
        assert new_fingerprint == other.host_key_fingerprint != old_fingerprint
        with pytest.raises(HostKeyMismatch):
            connect(other, "root", client_key, expected_fingerprint=old_fingerprint)
        transport = connect(other, "root", client_key, expected_fingerprint=new_fingerprint)
        assert run(transport, ["dokku", "version"]).exit_code == 0
        transport.close()

        other.stop()
        with pytest.raises(OSError):
            socket.create_connection((other.host, port), timeout=2).close()
        other.start()
        connect(other, "root", client_key).close()


# --------------------------------------------------------------------------
# Core commands over SSH
# --------------------------------------------------------------------------


def test_version(sh, dokku):
    for spelling in ("version", "-v", "--version"):
        assert sh(["dokku", spelling]) == Result(0, b"dokku version 0.38.27\n", b"")
    dokku.set_version("0.30.2")
    assert sh(["dokku", "version"]).out == "dokku version 0.30.2\n"


def test_apps_create_and_list(sh, dokku):
    empty = sh(["dokku", "apps:list"])
    assert empty == Result(0, b"=====> My Apps\n", b" !     You haven't deployed any applications yet\n")
    assert sh(["dokku", "apps:list", "--format", "json"]) == Result(0, b"[]\n", b"")

    created = sh(["dokku", "apps:create", "web-2"])
    assert created.exit_code == 0 and created.out.startswith("-----> Creating web-2...\n")
    # No global vhost: Dokku disables the app's vhost, which leaves NO_VHOST=1 in its config.
    assert "-----> Global server virtual host not set, disabling app vhost...\n" in created.out
    assert dokku.env("web-2") == {"NO_VHOST": b"1"}
    quiet = sh(["dokku", "--quiet", "apps:create", "api"])
    assert "Creating api" not in quiet.out and quiet.err == ""
    assert dokku.apps() == ["api", "web-2"]

    assert sh(["dokku", "apps:list"]).out == "=====> My Apps\napi\nweb-2\n"
    assert json.loads(sh(["dokku", "apps:list", "--format", "json"]).out) == ["api", "web-2"]
    assert sh(["dokku", "--quiet", "apps:list"]).out == "api\nweb-2\n"

    taken = sh(["dokku", "apps:create", "api"])
    assert (taken.exit_code, taken.err) == (1, " !     Name is already taken\n")
    bad = sh(["dokku", "apps:create", "Bad_Name"])
    assert bad.exit_code == 1 and bad.err.startswith(" !     App name must begin with lowercase")


def test_apps_list_json_needs_0_38_21(sh, dokku):
    dokku.set_version("0.38.20")
    result = sh(["dokku", "apps:list", "--format", "json"])
    assert result.exit_code == 2  # pflag: unknown flag
    assert result.err.startswith("Usage of apps:list:\n") and result.err.endswith("unknown flag: --format\n")


def test_missing_app_exits_20(sh):
    for argv in (["apps:exists", "ghost"], ["config:show", "ghost"],
                 ["domains:add", "ghost", "ghost.example.com"], ["apps:destroy", "ghost", "--force"]):
        result = sh(["dokku", *argv])
        assert (result.exit_code, result.err) == (20, " !     App ghost does not exist\n"), argv
    # ps:restart's build-log capture starts first, so even this goes to stdout.
    restart = sh(["dokku", "ps:restart", "ghost"])
    assert (restart.exit_code, restart.out, restart.err) == (20, " !     App ghost does not exist\n", "")


def test_unknown_command(sh):
    result = sh(["dokku", "frobnicate", "x"])
    assert result == Result(
        1, b"",
        b" !     `frobnicate x` is not a dokku command.\n !     See `dokku help` for a list of available commands.\n",
    )


def test_apps_destroy_confirmation_reads_stdin(sh, dokku):
    dokku.create_app("doomed")
    wrong = sh(["dokku", "apps:destroy", "doomed"], stdin=b"nope\n")
    assert wrong.exit_code == 1
    assert wrong.stdout == b"> "
    assert wrong.err == (
        " !     WARNING: Potentially Destructive Action\n"
        " !     This command will destroy app doomed.\n"
        ' !     To proceed, type "doomed"\n'
        "Confirmation did not match test. Aborted.\n"
    )
    assert dokku.apps() == ["doomed"]

    right = sh(["dokku", "apps:destroy", "doomed"], stdin=b"doomed\n")
    assert right.exit_code == 0 and "-----> Destroying doomed (including all add-ons)" in right.out
    dokku.create_app("doomed")
    assert sh(["dokku", "apps:destroy", "doomed", "--force"]).exit_code == 0
    assert dokku.apps() == []


# --------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------

# Everything a shell or Dokku's parsing could mangle. It does not end in a
# quote or a backslash: godotenv mangles those (see test_godotenv_losses_break_the_config).
AWKWARD = "he said \"hi\" & 'bye' $(id -u) `whoami` $HOME a=b=c\n  line two\t\\n ünïcødé ✓ 🚀 !x"


def test_config_set_encoded_arrives_byte_for_byte(sh, dokku):
    dokku.create_app("web")
    encoded = base64.b64encode(AWKWARD.encode()).decode()
    result = sh(["dokku", "config:set", "--encoded", "--no-restart", "web", f"SECRET={encoded}", "B=Yg=="])
    assert result.exit_code == 0, result.err
    assert result.out.startswith("-----> Setting config vars\n       B:       b\n       SECRET:  he said")
    assert dokku.env("web") == {"SECRET": AWKWARD.encode(), "B": b"b"}
    assert sh(["dokku", "config:get", "web", "SECRET"]).stdout == AWKWARD.encode() + b"\n"
    exported = json.loads(sh(["dokku", "config:export", "web", "--format", "json"]).out)
    assert exported == {"B": "b", "SECRET": AWKWARD}
    assert dokku.calls()[0]["argv"] == ["config:set", "--encoded", "--no-restart", "web",
                                        f"SECRET={encoded}", "B=Yg=="]


def test_config_set_plain_argument_survives_shlex_quoting(sh, dokku):
    dokku.create_app("web")
    assert sh(["dokku", "config:set", "--no-restart", "web", f"PLAIN={AWKWARD}"]).exit_code == 0
    assert dokku.env("web")["PLAIN"] == AWKWARD.encode()


def test_config_set_quiet_hides_values_and_bad_base64_fails(sh, dokku):
    dokku.create_app("web")
    assert sh(["dokku", "--quiet", "config:set", "--no-restart", "web", "TOKEN=s3cret"]) == Result(0, b"", b"")
    bad = sh(["dokku", "config:set", "--encoded", "web", "TOKEN=not*base64"])
    assert (bad.exit_code, bad.err) == (1, " !     illegal base64 data at input byte 3 for key 'TOKEN'\n")
    assert dokku.env("web") == {"TOKEN": b"s3cret"}


def test_integer_looking_values_are_stored_as_numbers(sh, dokku):
    dokku.create_app("web")
    pairs = [f"{key}={base64.b64encode(value).decode()}" for key, value in
             (("PIN", b"007"), ("SIGNED", b"+5"), ("TEXT", b"0x7"))]
    assert sh(["dokku", "config:set", "--encoded", "--no-restart", "web", *pairs]).exit_code == 0
    assert dokku.env("web") == {"PIN": b"7", "SIGNED": b"5", "TEXT": b"0x7"}
    assert dokku.env_file("web") == b'PIN=7\nSIGNED=5\nTEXT="0x7"\n'
    assert sh(["dokku", "config:get", "web", "PIN"]).out == "7\n"
    assert json.loads(sh(["dokku", "config:export", "web", "--format", "json"]).out)["PIN"] == "7"


def test_config_export_formats_show_and_unset(sh, dokku):
    dokku.create_app("web")
    dokku.set_env("web", {"A": "it's", "B": "x y"})
    export = lambda fmt: sh(["dokku", "config:export", "web", "--format", fmt]).out
    assert export("exports") == "export A='it'\\''s'\nexport B='x y'\n"
    assert export("shell") == "A='it'\\''s' B='x y' "
    assert export("envfile") == 'A="it\'s"\nB="x y"\n'
    assert sh(["dokku", "config:show", "web"]).out == "=====> web env vars\nA:  it's\nB:  x y\n"
    unset = sh(["dokku", "config:unset", "--no-restart", "web", "A", "NOPE"])
    assert unset.out == "-----> Unsetting A\n-----> Skipping NOPE, it is not set in the environment\n"
    missing = sh(["dokku", "config:get", "web", "A"])
    assert missing == Result(1, b"", b"")


def test_restart_after_config_set_and_injected_restart_failure(sh, dokku):
    dokku.create_app("web")
    dokku.mark_deployed("web")
    ok = sh(["dokku", "config:set", "web", "A=1"])
    assert ok.exit_code == 0 and "-----> Restarting app web\n" in ok.out

    dokku.fail_restarts("container exited with 1")
    failed = sh(["dokku", "config:set", "web", "A=2"])
    assert failed.exit_code == 0  # Dokku only warns
    assert "-----> Restarting app web\n" in failed.out
    assert failed.err == " !     Failure while restarting app: container exited with 1\n"
    assert dokku.env("web")["A"] == b"2"


def test_ps_restart_undeployed_and_stream_merge(sh, dokku):
    dokku.create_app("web")
    merged = sh(["dokku", "ps:restart", "web"])
    assert merged == Result(0, b" !     App web has not been deployed\n", b"")  # since 0.38: one stream
    dokku.set_version("0.37.9")
    separate = sh(["dokku", "ps:restart", "web"])
    assert separate == Result(0, b"", b" !     App web has not been deployed\n")
    dokku.mark_deployed("web")
    assert "=====> Application deployed:" in sh(["dokku", "ps:restart", "web"]).out


# --------------------------------------------------------------------------
# domains
# --------------------------------------------------------------------------


def test_domains_add_skip_validation_and_regex_remove(sh, dokku):
    dokku.create_app("web")
    added = sh(["dokku", "domains:add", "web", "a.example.com", "axexample.com", "b.example.com"])
    assert added.out.splitlines()[:3] == [
        "-----> Added a.example.com to web", "-----> Added axexample.com to web", "-----> Added b.example.com to web",
    ]
    again = sh(["dokku", "domains:add", "web", "a.example.com"])
    assert again.exit_code == 0
    assert again.out.startswith("-----> Skipping: a.example.com already added to web\n")
    invalid = sh(["dokku", "domains:add", "web", "ok.example.com", "http://x"])
    assert (invalid.exit_code, invalid.err) == (1, " !     http://x is invalid. exiting...\n")
    assert "ok.example.com" not in dokku.domains("web")  # all are validated first

    # sed semantics: the '.' matches any character, so both go.
    removed = sh(["dokku", "domains:remove", "web", "a.example.com", "never.added"])
    assert removed.out.startswith("-----> Removed a.example.com from web\n-----> Removed never.added from web\n")
    assert dokku.domains("web") == ["b.example.com"]
    sh(["dokku", "domains:remove", "web", ".*"])
    assert dokku.domains("web") == []


def test_domains_report_formats_by_version(sh, dokku):
    dokku.create_app("web")
    dokku.set_domains("web", ["a.example.com", "b.example.com"])
    go = sh(["dokku", "domains:report", "web"])
    assert go.out == (
        "=====> web domains information\n"
        "       Domains app enabled:           true\n"
        "       Domains app vhosts:            a.example.com b.example.com\n"
        "       Domains global enabled:        false\n"
        "       Domains global vhosts:         \n"
    )
    report_json = json.loads(sh(["dokku", "domains:report", "web", "--format", "json"]).out)
    assert report_json == {"app-enabled": "true", "app-vhosts": "a.example.com b.example.com",
                           "global-enabled": "false", "global-vhosts": ""}

    dokku.set_version("0.38.21")  # bash report: printf "%-30s %-25s"
    bash = sh(["dokku", "domains:report", "web"]).out.splitlines()
    assert bash[2] == "       Domains app vhosts:            a.example.com b.example.com "
    assert bash[1] == "       Domains app enabled:           true" + " " * 21

    dokku.set_version("0.37.5")  # no --format json before 0.38.0
    old = sh(["dokku", "domains:report", "web", "--format", "json"])
    assert old.exit_code == 1 and old.err.startswith(" !     Invalid flag passed, valid flags: --domains-app-enabled")


# --------------------------------------------------------------------------
# ssh-keys
# --------------------------------------------------------------------------


def test_ssh_keys_add_reads_the_key_from_the_pipe(sh, dokku):
    deploy = make_client_key("deploy@laptop")
    result = sh(["dokku", "ssh-keys:add", "deploy"], stdin=(deploy.public_line + "\n").encode())
    expected = sha256_fingerprint(deploy.pkey)
    assert result == Result(0, f"{expected}\n".encode(), b"")
    assert dokku.keys() == [{"name": "deploy", "fingerprint": expected, "public_key": deploy.public_line}]
    assert dokku.calls()[-1]["stdin_pipe"] is True

    listed = sh(["dokku", "ssh-keys:list"]).out
    assert listed == (f'{expected} NAME="deploy" SSHCOMMAND_ALLOWED_KEYS="no-agent-forwarding,'
                      'no-user-rc,no-X11-forwarding,no-port-forwarding"\n')

    same_name = sh(["dokku", "ssh-keys:add", "deploy"], stdin=make_client_key().public_line.encode())
    assert same_name == Result(1, b"", b"Duplicate ssh key name\n !     sshcommand returned an error: 1\n")
    same_key = sh(["dokku", "ssh-keys:add", "other"], stdin=deploy.public_line.encode())
    assert same_key == Result(1, b"", b"Duplicate ssh public key specified\n !     sshcommand returned an error: 1\n")
    garbage = sh(["dokku", "ssh-keys:add", "junk"], stdin=b"ssh-ed25519 not-base64\n")
    assert garbage.err == " !     Key specified in is not a valid ssh public key\n"

    # Removal is silent and succeeds even when nothing matches.
    assert sh(["dokku", "ssh-keys:remove", "nobody-here"]) == Result(0, b"", b"")
    assert sh(["dokku", "ssh-keys:remove", "--fingerprint", expected]) == Result(0, b"", b"")
    assert dokku.keys() == []


def test_ssh_keys_list_json_is_not_escaped(sh, dokku):
    dokku.add_key("ok", make_client_key("plain").public_line)
    listed = sh(["dokku", "ssh-keys:list", "--format", "json"])
    assert json.loads(listed.out)[0]["name"] == "ok"
    assert listed.out.startswith('[{ "fingerprint": "SHA256:')

    dokku.add_key("quoted", make_client_key('say "cheese"').public_line)
    broken = sh(["dokku", "ssh-keys:list", "--format", "json"])
    assert broken.exit_code == 0 and 'say "cheese"' in broken.out
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.out)


def test_ssh_keys_add_needs_a_pipe_and_root(server, dokku):
    key_line = make_client_key().public_line
    no_pipe = run_local(server, "ssh-keys:add", "k", stdin=subprocess.DEVNULL)
    assert no_pipe == Result(1, b"", b" !     No key specified via file or pipe\n")

    as_nobody = run_local(server, "ssh-keys:add", "k", stdin=subprocess.PIPE, user="nobody")
    assert as_nobody == Result(1, b"", b" !     This command must be run as root\n")

    key_file = server.public_dir / "key.pub"
    key_file.write_text(key_line + "\n")
    from_file = run_local(server, "ssh-keys:add", "k", str(key_file))
    assert from_file.exit_code == 0 and dokku.keys()[0]["public_key"] == key_line


# --------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------


def test_injected_failures(sh, dokku):
    dokku.fail("apps:list", exit_code=3, stdout="partial\n", stderr=" !     boom\n")
    assert sh(["dokku", "apps:list"]) == Result(3, b"partial\n", b" !     boom\n")
    assert sh(["dokku", "apps"]).exit_code == 3  # aliases resolve first
    assert sh(["dokku", "version"]).exit_code == 0

    dokku.fail(exit_code=255, stderr="everything is down\n")  # every command
    assert sh(["dokku", "version"]) == Result(255, b"", b"everything is down\n")

    dokku.clear_faults()
    dokku.fail("version", times=1)
    assert sh(["dokku", "version"]).exit_code == 1
    assert sh(["dokku", "version"]).exit_code == 0


def test_injected_hang(sh, dokku):
    dokku.hang("apps:list", 1.0)
    with pytest.raises(TimeoutError):
        sh(["dokku", "apps:list"], timeout=0.3)
    started = time.monotonic()
    assert sh(["dokku", "apps:list"]).exit_code == 0
    assert time.monotonic() - started >= 1.0


def test_calls_are_logged(sh, dokku):
    sh(["dokku", "--quiet", "apps:list"])
    (call,) = dokku.calls()
    assert call["argv"] == ["--quiet", "apps:list"]
    assert call["command"] == "apps:list"
    assert (call["euid"], call["user"], call["sudo_user"]) == (0, "root", None)


# --------------------------------------------------------------------------
# godotenv storage losses (as real Dokku 0.38.27 shows them)
# --------------------------------------------------------------------------


def test_godotenv_losses_break_the_config(server, dokku):
    dokku.create_app("web")
    dokku.set_env("web", {"A_QUOTE": 'ends with "', "Z": "kept"})
    assert dokku.env("web") == {"A_QUOTE": b"ends with \\", "Z": b"kept"}

    # A trailing backslash swallows the rest of the file: every config command
    # that reads it fails with godotenv's error; config:get fails silently.
    dokku.set_env("web", {"A_SLASH": "C:\\", "Z": "kept"})
    failed = run_local(server, "config:set", "--no-restart", "web", "NEW=1")
    assert failed.exit_code == 1
    # The backslash escapes the closing quote, so the value runs on to Z's opening quote.
    assert failed.err == ' !     unexpected character "\\"" in variable name near "kept\\"\\n"\n'
    assert run_local(server, "config:get", "web", "Z") == Result(1, b"", b"")
    assert b"NEW" not in dokku.env_file("web")


# --------------------------------------------------------------------------
# The sudo user path
# --------------------------------------------------------------------------


def test_sudo_user_runs_dokku_as_root(server, client_key, dokku):
    server.ensure_sudo_user(SUDO_USER)
    server.authorize(SUDO_USER, client_key.public_line)
    transport = connect(server, SUDO_USER, client_key)
    try:
        assert run(transport, "id -un").out == f"{SUDO_USER}\n"
        assert run(transport, ["sudo", "-n", "dokku", "version"]) == Result(0, b"dokku version 0.38.27\n", b"")

        # Without sudo the user is not root, so key management is refused.
        refused = run(transport, ["dokku", "ssh-keys:add", "deploy"], stdin=b"x\n")
        assert refused == Result(1, b"", b" !     This command must be run as root\n")

        key = make_client_key("via-sudo")
        added = run(transport, ["sudo", "-n", "dokku", "ssh-keys:add", "deploy"], stdin=key.public_line.encode())
        assert added == Result(0, f"{sha256_fingerprint(key.pkey)}\n".encode(), b"")
        last = dokku.calls()[-1]
        # sudo without a TTY hands the SSH pipe straight through.
        assert (last["euid"], last["sudo_user"], last["stdin_pipe"]) == (0, SUDO_USER, True)

        # sudo may only run the double.
        other = run(transport, ["sudo", "-n", "id"])
        assert other.exit_code == 1 and "password is required" in other.err
    finally:
        transport.close()


def test_sudo_user_without_nopasswd_gets_password_required(server, client_key, dokku):
    server.ensure_sudo_user(SUDO_USER_WITH_PASSWORD, passwordless=False)
    server.authorize(SUDO_USER_WITH_PASSWORD, client_key.public_line)
    transport = connect(server, SUDO_USER_WITH_PASSWORD, client_key)
    try:
        result = run(transport, ["sudo", "-n", "dokku", "version"])
        assert result == Result(1, b"", b"sudo: a password is required\n")
        assert dokku.calls() == []
    finally:
        transport.close()


# --------------------------------------------------------------------------
# Service plugins (dokku-postgres)
# --------------------------------------------------------------------------


def test_postgres_commands_need_the_plugin(sh, dokku):
    missing = sh(["dokku", "postgres:list"])
    assert missing == Result(
        1, b"",
        b" !     `postgres:list` is not a dokku command.\n !     See `dokku help` for a list of available commands.\n",
    )
    dokku.install_plugin("postgres")
    assert sh(["dokku", "postgres:list"]) == Result(0, b"", b" !     There are no Postgres services\n")


def test_postgres_create_info_and_list(sh, dokku):
    dokku.install_plugin("postgres")
    created = sh(["dokku", "postgres:create", "shop-db", "--image-version", "17.2"])
    assert created.exit_code == 0
    assert "=====> Postgres container created: shop-db\n" in created.out
    # Creation ends with the full info, DSN (and so the password) included.
    assert dokku.service_url("postgres", "shop-db") in created.out
    assert sh(["dokku", "postgres:create", "shop-db"]).err == " !     Postgres service shop-db already exists\n"
    bad = sh(["dokku", "postgres:create", "shop.db"])
    assert bad.exit_code == 1 and "Valid characters are: [A-Za-z0-9_]+" in bad.err
    dokku.refuse_image("postgres:99.0")
    pull = sh(["dokku", "postgres:create", "other", "-I", "99.0"])
    assert pull.exit_code == 1 and pull.err.endswith(" !     Postgres image postgres:99.0 pull failed\n")
    assert dokku.services("postgres") == ["shop-db"]

    assert sh(["dokku", "postgres:list"]).out == "=====> Postgres services\nshop-db\n"
    assert sh(["dokku", "--quiet", "postgres:list"]).out == "shop-db\n"
    assert sh(["dokku", "postgres:info", "shop-db", "--version"]).out == "postgres:17.2\n"
    assert sh(["dokku", "postgres:info", "shop-db", "--status"]).out == "running\n"
    assert sh(["dokku", "postgres:info", "shop-db", "--links"]).out == "-\n"
    full = sh(["dokku", "postgres:info", "shop-db"]).out
    assert full.startswith("=====> shop-db postgres service information\n")
    assert "       Status               running                  \n" in full
    bad_flag = sh(["dokku", "postgres:info", "shop-db", "--colour"])
    assert bad_flag.exit_code == 1 and bad_flag.err.startswith(" !     Invalid flag passed, valid flags: --config-dir")
    ghost = sh(["dokku", "postgres:info", "ghost", "--status"])
    assert (ghost.exit_code, ghost.err) == (1, " !     Postgres service ghost does not exist\n")


def test_postgres_link_unlink_and_destroy(sh, dokku):
    dokku.install_plugin("postgres")
    dokku.create_app("shop")
    dokku.mark_deployed("shop")
    sh(["dokku", "postgres:create", "shop-db"])
    url = dokku.service_url("postgres", "shop-db")
    assert url.startswith("postgres://postgres:") and url.endswith("@dokku-postgres-shop-db:5432/shop_db")

    # --no-restart takes no value (getopts' "n" comes first), so this keeps the app running.
    linked = sh(["dokku", "postgres:link", "shop-db", "shop", "--no-restart"])
    assert linked.exit_code == 0 and "Skipping restart of linked app" in linked.out
    assert "Deploying web" not in linked.out
    assert dokku.env("shop")["DATABASE_URL"] == url.encode()
    assert sh(["dokku", "postgres:info", "shop-db", "--links"]).out == "shop \n"
    again = sh(["dokku", "postgres:link", "shop-db", "shop"])
    assert (again.exit_code, again.err) == (1, " !     Already linked as DATABASE_URL\n")
    assert sh(["dokku", "postgres:destroy", "shop-db", "-f"]).err == " !     Cannot delete linked service\n"

    # DATABASE_URL taken: the second service gets a colour alias; without -n the app restarts.
    sh(["dokku", "postgres:create", "audit-db"])
    second = sh(["dokku", "postgres:link", "audit-db", "shop"])
    assert "Deploying web" in second.out
    assert dokku.env("shop")["DOKKU_POSTGRES_AQUA_URL"] == dokku.service_url("postgres", "audit-db").encode()
    assert sh(["dokku", "postgres:link", "audit-db", "ghost"]).exit_code == 20

    unlinked = sh(["dokku", "postgres:unlink", "shop-db", "shop", "--no-restart"])
    assert unlinked.exit_code == 0 and "DATABASE_URL" not in dokku.env("shop")
    not_linked = sh(["dokku", "postgres:unlink", "shop-db", "shop"])
    assert (not_linked.exit_code, not_linked.err) == (1, " !     Not linked to app shop\n")

    wrong = sh(["dokku", "postgres:destroy", "shop-db"], stdin=b"nope\n")
    assert wrong.exit_code == 1 and "Confirmation did not match shop-db. Aborted." in wrong.err
    done = sh(["dokku", "postgres:destroy", "shop-db", "-f"])
    assert done.exit_code == 0 and done.out.endswith("=====> Postgres container deleted: shop-db\n")
    assert dokku.services("postgres") == ["audit-db"]


def test_redis_and_mysql_share_the_commands_with_their_own_urls_and_aliases(sh, dokku):
    assert sh(["dokku", "redis:list"]).exit_code == 1  # not installed: an unknown command
    assert sh(["dokku", "plugin:install", "https://github.com/dokku/dokku-redis.git", "--name", "redis"]).exit_code == 0
    dokku.install_plugin("mysql")
    dokku.create_app("shop")
    sh(["dokku", "redis:create", "cache"])
    sh(["dokku", "mysql:create", "shop-db"])
    assert sh(["dokku", "redis:info", "cache", "--version"]).out == "redis:8.8.0\n"
    assert dokku.service_url("redis", "cache").endswith("@dokku-redis-cache:6379")
    assert dokku.service_url("mysql", "shop-db").startswith("mysql://mysql:")
    sh(["dokku", "redis:link", "cache", "shop", "--no-restart"])
    sh(["dokku", "mysql:link", "shop-db", "shop", "--no-restart"])
    env = dokku.env("shop")
    assert env["REDIS_URL"] == dokku.service_url("redis", "cache").encode()
    assert env["DATABASE_URL"] == dokku.service_url("mysql", "shop-db").encode()
    assert sh(["dokku", "redis:info", "ghost", "--status"]).err == " !     Redis service ghost does not exist\n"


def test_backups_schedules_encryption_and_export(sh, dokku):
    dokku.install_plugin("postgres")
    sh(["dokku", "postgres:create", "db"])
    missing = sh(["dokku", "postgres:backup", "db", "bucket-1"])
    assert (missing.exit_code, missing.err) == (1, " !     Provide AWS credentials or use the --use-iam flag\n")
    assert sh(["dokku", "postgres:backup-auth", "db", "AKIA1234", "secret12", "eu-west-1"]).exit_code == 0
    assert dokku.service_file("postgres", "db", "backup/AWS_SECRET_ACCESS_KEY") == "secret12\n"
    done = sh(["dokku", "postgres:backup", "db", "bucket-1"])
    assert done.exit_code == 0 and done.out.endswith(": The backup for postgres-db finished successfully.\n")
    dokku.set_service_status("postgres", "db", "exited")
    stopped = sh(["dokku", "postgres:backup", "db", "bucket-1"])
    assert (stopped.exit_code, stopped.err) == (1, " !     Service container is not running\n")
    dokku.set_service_status("postgres", "db", "running")

    assert sh(["dokku", "postgres:backup-schedule-cat", "db"]).err == " !     There is no scheduled backup for db.\n"
    sh(["dokku", "postgres:backup-schedule", "db", "0 3 * * *", "bucket-1"])
    assert sh(["dokku", "postgres:backup-schedule-cat", "db"]).out == (
        "0 3 * * * dokku /usr/bin/dokku postgres:backup db bucket-1\n")
    sh(["dokku", "postgres:backup-unschedule", "db"])
    assert sh(["dokku", "postgres:backup-schedule-cat", "db"]).exit_code == 1
    sh(["dokku", "postgres:backup-set-encryption", "db", "passphrase1"])
    assert dokku.service_file("postgres", "db", "backup/ENCRYPTION_KEY") == "passphrase1\n"
    sh(["dokku", "postgres:backup-unset-encryption", "db"])
    assert dokku.service_file("postgres", "db", "backup/ENCRYPTION_KEY") is None

    exported = sh(["dokku", "postgres:export", "db"])
    assert exported.exit_code == 0 and exported.stdout == dokku.export_bytes("postgres", "db")
    assert exported.stdout.startswith(b"PGDMP") and len(exported.stdout) == 96 * 1024
    dokku.set_dump_size("postgres", "db", 0)
    assert sh(["dokku", "postgres:export", "db"]).stdout == b""


def test_apps_locked_answers_with_its_exit_code(sh, dokku):
    # Go's CommandLocked: LogQuiet text and exit 0 when locked, an error and exit 1 when not.
    dokku.create_app("web")
    assert sh(["dokku", "apps:locked", "web"]) == Result(1, b"", b" !     Deploy lock does not exist\n")
    dokku.lock_deploys("web")
    assert sh(["dokku", "apps:locked", "web"]) == Result(0, b"Deploy lock exists\n", b"")
    assert sh(["dokku", "--quiet", "apps:locked", "web"]) == Result(0, b"", b"")
    assert sh(["dokku", "apps:locked", "ghost"]) == Result(20, b"", b" !     App ghost does not exist\n")
