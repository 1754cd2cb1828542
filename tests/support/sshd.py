"""A real OpenSSH server on loopback, wired to the Dokku test double.

Plain classes with no pytest dependency, so fixtures (and ad-hoc scripts) can
use them:

* ``DokkuDouble(root)`` -- a Python API over the double's state directory
  (see ``tests/support/dokku_double.py`` for the layout and fault files).
* ``SshServer(workdir)`` -- runs ``/usr/sbin/sshd -D -e`` on a free
  127.0.0.1 port with its own ed25519 host key. Every session runs
  ``/bin/sh -c "$SSH_ORIGINAL_COMMAND"`` through a ForceCommand wrapper whose
  PATH starts with a directory holding a ``dokku`` launcher for the double, so
  ``ssh root@host dokku apps:list`` behaves like on a Dokku host.

Needs root (sshd, useradd, /etc/sudoers.d) and the Debian packages
openssh-server and sudo. Nothing is installed system-wide except, on request,
a test user and a sudoers drop-in, which ``close()`` removes again (with the
users it created).

Files the SSH *user* must reach (the wrapper, the launcher, authorized_keys,
the double's state) live in a world-readable directory made with mkdtemp,
because pytest's tmp dirs are private to root and sshd/sudo read these files
with the user's identity. The host key and sshd's config and log stay in
``workdir``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
SUDOERS_DIR = Path("/etc/sudoers.d")
DOUBLE_SOURCE = Path(__file__).with_name("dokku_double.py")


def _load_double():
    """Import dokku_double.py by path: it is a script, not part of a package."""
    spec = importlib.util.spec_from_file_location("intercity_dokku_double", DOUBLE_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_double = _load_double()
fingerprint_of = _double.fingerprint_of
parse_public_key = _double.parse_public_key
ALL_COMMANDS = _double.ALL_COMMANDS


def _shared_files(method):
    """Run a state-changing method with umask 0, like the double itself, so
    whichever user runs the double next (root, sudo, a plain user) can write."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        old = os.umask(0)
        try:
            return method(*args, **kwargs)
        finally:
            os.umask(old)

    return wrapper


class DokkuDouble:
    """Read and arrange the Dokku double's state from tests.

    Values returned by ``env()`` are bytes, exactly as the double's config
    commands would read them back (so ``007`` is ``b"7"``).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._state = _double.State(self.root)
        self._ensure()

    @_shared_files
    def _ensure(self) -> None:
        self._state.ensure()

    # version / faults ------------------------------------------------------
    @_shared_files
    def set_version(self, version: str | None) -> None:
        """Emulate another Dokku version; None goes back to the default."""
        path = self.root / "VERSION"
        if version is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(version + "\n")

    @_shared_files
    def fail(self, subcommand: str = ALL_COMMANDS, exit_code: int = 1, stderr: str = "",
             stdout: str = "", times: int | None = None) -> None:
        """Make ``subcommand`` (or every command, by default) print the given
        text verbatim and exit with ``exit_code``, ``times`` times or forever."""
        fault = {"exit_code": exit_code, "stdout": stdout, "stderr": stderr}
        if times is not None:
            fault["times"] = times
        self._control("fail", subcommand).write_text(json.dumps(fault))

    @_shared_files
    def hang(self, subcommand: str, seconds: float) -> None:
        """Make ``subcommand`` (or ``_all``) sleep ``seconds`` before running."""
        self._control("hang", subcommand).write_text(str(seconds))

    @_shared_files
    def fail_restarts(self, message: str = "container failed to start") -> None:
        """Make app restarts fail: config:set/unset warn and exit 0, ps:restart exits 1."""
        (self.root / "control" / "restart-fail").write_text(message)

    def clear_faults(self) -> None:
        shutil.rmtree(self.root / "control", ignore_errors=True)
        self._ensure()

    def _control(self, kind: str, subcommand: str) -> Path:
        if not re.fullmatch(r"[a-z0-9_:-]+", subcommand):
            raise ValueError(f"not a subcommand name: {subcommand!r}")
        return self.root / "control" / kind / subcommand

    # apps ------------------------------------------------------------------
    def apps(self) -> list[str]:
        return self._state.app_names()

    @_shared_files
    def create_app(self, name: str) -> None:
        self._state.create_app(name)

    @_shared_files
    def mark_deployed(self, app: str, deployed: bool = True) -> None:
        self._state.set_deployed(app, deployed)

    @_shared_files
    def lock_deploys(self, app: str, locked: bool = True) -> None:
        """Hold (or release) the app's deploy lock, as `apps:lock` or a running deploy does."""
        self._state.set_locked(app, locked)

    # config ----------------------------------------------------------------
    def env(self, app: str) -> dict[str, bytes]:
        """The app's config (``--global`` for the global one), read as godotenv reads it;
        raises the double's EnvFileError when Dokku could not read it either."""
        return self._state.read_env(app)

    def env_file(self, app: str) -> bytes:
        """The raw ENV file, as godotenv.Write would have written it."""
        path = self._state.env_path(app)
        return path.read_bytes() if path.exists() else b""

    @_shared_files
    def set_env(self, app: str, values: dict[str, str | bytes]) -> None:
        """Replace the app's config; stored the way Dokku stores it."""
        self._state.write_env(
            app, {key: value.encode() if isinstance(value, str) else value for key, value in values.items()}
        )

    # domains ---------------------------------------------------------------
    def domains(self, app: str) -> list[str]:
        return self._state.read_domains(app)

    @_shared_files
    def set_domains(self, app: str, domains: list[str]) -> None:
        self._state.write_domains(app, list(domains))

    # ssh keys --------------------------------------------------------------
    def keys(self) -> list[dict[str, str]]:
        """[{'name', 'fingerprint', 'public_key'}] in authorized_keys order."""
        return [
            {"name": k["name"], "fingerprint": k["fingerprint"], "public_key": k["public_key"]}
            for k in self._state.keys()
        ]

    @_shared_files
    def add_key(self, name: str, public_key_line: str) -> str:
        """Add a key as sshcommand would; returns its SHA256 fingerprint."""
        return self._state.add_key_line(name, public_key_line)

    # events ----------------------------------------------------------------
    @property
    def events_log(self) -> Path:
        """The event log the double writes (the panel's DOKKU_EVENTS_LOG in tests)."""
        return self._state.events_log

    @_shared_files
    def set_events(self, enabled: bool = True, traditional: bool = False) -> None:
        """Turn the event log on or off, as events:on/off do; `traditional` writes `Jul  3 16:10:46` times."""
        self._state.set_events(enabled)
        marker = self.root / "control" / "events-traditional"
        marker.parent.mkdir(exist_ok=True)
        marker.touch() if traditional else marker.unlink(missing_ok=True)

    @_shared_files
    def write_event(self, trigger: str, *args: str, name: str = "", fingerprint: str = "", dokku_pid: int = 4242,
                    at=None, traditional: bool = False) -> str:
        """Append one event line (as if someone ran a command outside the panel) and return it."""
        line = _double.event_line(trigger, args, name=name, fingerprint=fingerprint, dokku_pid=dokku_pid,
                                  at=at, traditional=traditional)
        _double.write_event_line(self._state, line)
        return line

    # service plugins -------------------------------------------------------
    @_shared_files
    def install_plugin(self, plugin: str) -> None:
        """Install a service plugin (``postgres``): its commands exist from now on."""
        (self.root / "plugins").mkdir(exist_ok=True)
        (self.root / "plugins" / plugin).touch()

    def services(self, plugin: str) -> list[str]:
        return _double._services(self._state, plugin)

    def service_links(self, plugin: str, service: str) -> list[str]:
        return _double._links(_double._service_dir(self._state, plugin, service))

    def service_url(self, plugin: str, service: str) -> str:
        """The DSN a link sets (it carries the service's password)."""
        return _double._service_url(plugin, service, _double._service_dir(self._state, plugin, service))

    @_shared_files
    def set_service_status(self, plugin: str, service: str, status: str) -> None:
        (_double._service_dir(self._state, plugin, service) / "STATUS").write_text(status + "\n")

    def service_file(self, plugin: str, service: str, name: str) -> str | None:
        """A file of the service's directory (``CRON``, ``backup/AWS_ACCESS_KEY_ID``), or None."""
        path = _double._service_dir(self._state, plugin, service) / name
        return path.read_text() if path.exists() else None

    @_shared_files
    def set_dump_size(self, plugin: str, service: str, size: int) -> None:
        """How many bytes the service's export prints (0: the plugins' known empty dump)."""
        (_double._service_dir(self._state, plugin, service) / "DUMP_SIZE").write_text(f"{size}\n")

    def export_bytes(self, plugin: str, service: str) -> bytes:
        """What ``<plugin>:export <service>`` prints."""
        return _double._dump(plugin, service, _double._service_dir(self._state, plugin, service))

    @_shared_files
    def refuse_image(self, image: str) -> None:
        """Make pulling ``image`` (``postgres:99.0``) fail, as an unknown tag does."""
        path = self.root / "control" / "unpullable-images"
        path.write_text((path.read_text() if path.exists() else "") + image + "\n")

    # builds and logs (git:sync, git:from-image, ps:rebuild, logs) -----------
    @_shared_files
    def slow_builds(self, seconds_per_line: float) -> None:
        (self.root / "control" / "build-delay").write_text(str(seconds_per_line))

    @_shared_files
    def hold_builds(self, held: bool = True) -> None:
        """While held, a build waits after its first steps (at most 60 s)."""
        gate = self.root / "control" / "build-gate"
        gate.touch() if held else gate.unlink(missing_ok=True)

    @_shared_files
    def fail_builds(self, message: str) -> None:
        (self.root / "control" / "build-fail").write_text(message + "\n")

    @_shared_files
    def refuse_repo(self, url: str) -> None:
        path = self.root / "control" / "bad-repos"
        path.write_text((path.read_text() if path.exists() else "") + url + "\n")

    def synced_sha(self, app: str) -> str | None:
        path = self._state.app_dir(app) / "GIT_SHA"
        return path.read_text().strip() if path.exists() else None

    def source_image(self, app: str) -> str | None:
        path = self._state.app_dir(app) / "SOURCE_IMAGE"
        return path.read_text().strip() if path.exists() else None

    @_shared_files
    def add_log_lines(self, app: str, *texts: str, process: str = "web") -> None:
        """Lines the app prints (`logs` shows them), stamped like docker's log lines."""
        path = self._state.app_dir(app) / "LOGS"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        with open(path, "a", encoding="utf-8") as handle:
            for text in texts:
                handle.write(f"{stamp}.{time.time_ns() % 10**9:09d}Z app[{process}.1]: {text}\n")
    # TLS (dokku-letsencrypt, certs) ---------------------------------------
    @_shared_files
    def install_letsencrypt(self, release: str = "0.25.1") -> None:
        """The plugin as of `release` (0.21.0-0.25.0 list themselves as 0.20.4, as the real ones do)."""
        (self.root / "plugins").mkdir(exist_ok=True)
        (self.root / "plugins" / "letsencrypt").write_text(release + "\n")

    def letsencrypt_properties(self) -> dict:
        return _double._le_props(self._state)

    def renewal_job(self) -> bool:
        return (self.root / "letsencrypt" / "autorenew").exists()

    @_shared_files
    def remove_renewal_job(self) -> None:
        """As `letsencrypt:cron-job --remove` (or a lost crontab) leaves it."""
        (self.root / "letsencrypt" / "autorenew").unlink(missing_ok=True)

    @_shared_files
    def fail_lego(self, exit_code: int, output: str = "", times: int | None = 1) -> None:
        fault = {"exit_code": exit_code, "output": output}
        if times is not None:
            fault["times"] = times
        (self.root / "control" / "lego").write_text(json.dumps(fault))

    @_shared_files
    def certificate_days(self, days: int) -> None:
        """How long the next certificate Let's Encrypt issues is valid."""
        (self.root / "control" / "lego-days").write_text(str(days))

    @_shared_files
    def fail_revoke(self, exit_code: int = 1) -> None:
        (self.root / "control" / "lego-revoke").write_text(json.dumps({"exit_code": exit_code, "times": 1}))

    def run_by_hand(self, *argv: str) -> subprocess.CompletedProcess:
        """A command someone runs on the server themselves (root, outside the panel)."""
        env = {**os.environ, "DOKKU_DOUBLE_ROOT": str(self.root), "DOKKU_QUIET_OUTPUT": "1"}
        return subprocess.run(["/usr/bin/python3", "-I", "-S", str(DOUBLE_SOURCE), *argv], env=env,
                              capture_output=True, text=True, check=True)

    def tls_files(self, app: str) -> dict[str, bytes]:
        directory = self._state.app_dir(app) / "tls"
        return {p.name: p.read_bytes() for p in directory.iterdir()} if directory.is_dir() else {}

    # calls -----------------------------------------------------------------
    def calls(self) -> list[dict]:
        path = self._state.calls_log
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def clear_calls(self) -> None:
        self._state.calls_log.unlink(missing_ok=True)

    def reset(self) -> None:
        """Back to a fresh server: no apps, keys, config, faults, calls; default version."""
        for entry in self.root.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        self._ensure()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


class SshServerError(RuntimeError):
    pass


class SshServer:
    """An sshd on 127.0.0.1 whose sessions see the Dokku double as ``dokku``.

    ``dokku_root`` defaults to a directory next to the wrapper; pass one to
    share state with a DokkuDouble you made yourself (it must be readable by
    the SSH users if they run the double without sudo).
    """

    host = "127.0.0.1"
    host_key_type = "ssh-ed25519"
    _penalties_supported: bool | None = None

    def __init__(self, workdir: str | os.PathLike, *, dokku_root: str | os.PathLike | None = None,
                 port: int | None = None):
        if os.geteuid() != 0:
            raise SshServerError("SshServer must run as root (it starts sshd and manages users)")
        if not os.access(SSHD, os.X_OK):
            raise SshServerError(f"{SSHD} is missing: apt-get install openssh-server")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.public_dir = Path(tempfile.mkdtemp(prefix="intercity-sshd-"))
        self.public_dir.chmod(0o755)
        self.bin_dir = self.public_dir / "bin"
        self.keys_dir = self.public_dir / "authorized_keys"
        self.dokku = DokkuDouble(dokku_root or self.public_dir / "dokku")
        self.dokku.root.chmod(0o777)
        self.port = port or _free_port()
        self.host_key_path = self.workdir / "ssh_host_ed25519_key"
        self.config_path = self.workdir / "sshd_config"
        self.log_path = self.workdir / "sshd.log"
        self.pid_path = self.workdir / "sshd.pid"
        self.host_key_fingerprint = ""
        self.host_public_key = ""
        self._process: subprocess.Popen | None = None
        self._log = None
        self._sudoers_files: list[Path] = []
        self._created_users: list[str] = []
        self._write_runtime_files()
        self._generate_host_key()

    # setup -----------------------------------------------------------------
    def _write_runtime_files(self) -> None:
        lib_dir = self.public_dir / "lib"
        for directory in (self.bin_dir, self.keys_dir, lib_dir):
            directory.mkdir(mode=0o755)
        # A private copy, so the double works for users who cannot read the
        # repository checkout and keeps working if the checkout changes.
        double = lib_dir / "dokku_double.py"
        shutil.copyfile(DOUBLE_SOURCE, double)
        double.chmod(0o755)
        # Compiled once here, so each `dokku` call imports the bytecode instead of compiling 3,000 lines
        # (about half of a call's start-up); sshd's users can read it whether or not they can write there.
        _run("/usr/bin/python3", "-I", "-S", "-c", "import py_compile, sys; py_compile.compile(sys.argv[1], doraise=True)",
             str(double))
        launcher = self.bin_dir / "dokku"
        # sudo resets the environment, so the state root is baked in as the
        # default (sudoers also keeps DOKKU_DOUBLE_ROOT, which wins if set).
        launcher.write_text(
            "#!/bin/sh\n"
            "# Dokku test double launcher, written by tests/support/sshd.py.\n"
            f': "${{DOKKU_DOUBLE_ROOT:={shlex.quote(str(self.dokku.root))}}}"\n'
            "export DOKKU_DOUBLE_ROOT\n"
            "exec /usr/bin/python3 -I -S -c "
            f"{shlex.quote(f'import sys; sys.path.insert(0, {str(lib_dir)!r}); import dokku_double; dokku_double.run()')}"
            ' "$@"\n'
        )
        launcher.chmod(0o755)
        wrapper = self.public_dir / "force-command"
        wrapper.write_text(
            "#!/bin/sh\n"
            "# sshd ForceCommand: run the client's command with the double on PATH.\n"
            f"PATH={shlex.quote(str(self.bin_dir))}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
            f"DOKKU_DOUBLE_ROOT={shlex.quote(str(self.dokku.root))}\n"
            "export PATH DOKKU_DOUBLE_ROOT\n"
            'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'
        )
        wrapper.chmod(0o755)

    def _generate_host_key(self) -> None:
        for path in (self.host_key_path, self.host_key_path.with_suffix(".pub")):
            path.unlink(missing_ok=True)
        _run(SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "intercity-test-host",
             "-f", str(self.host_key_path))
        self.host_public_key = self.host_key_path.with_suffix(".pub").read_text().strip()
        _, blob, _ = parse_public_key(self.host_public_key)
        self.host_key_fingerprint = fingerprint_of(blob)

    def known_hosts_line(self) -> str:
        """A known_hosts entry for this server ('[127.0.0.1]:port ssh-ed25519 AAAA...')."""
        key_type, key_b64 = self.host_public_key.split()[:2]
        return f"[{self.host}]:{self.port} {key_type} {key_b64}"

    def _config_text(self, penalties: bool) -> str:
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {self.host_key_path}",
            f"PidFile {self.pid_path}",
            f"AuthorizedKeysFile {self.keys_dir}/%u",
            f"ForceCommand {self.public_dir}/force-command",
            # Without PAM, sshd checks the shadow entry itself (locked = '!').
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            # Otherwise sshd refuses key files under /tmp and group-writable dirs.
            "StrictModes no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PermitUserEnvironment no",
            "PrintMotd no",
            # Root's ~/.bashrc, which bash reads for sshd's sessions at shell level 1, runs `pyenv init` on
            # this machine: 165 ms a session and "cannot rehash" noise when suites overlap. A Dokku
            # server's login does no such thing; starting the shell at level 2 skips it.
            "SetEnv SHLVL=1",
            "PrintLastLog no",
            "UseDNS no",
            "LogLevel VERBOSE",
            # Parallel test connections must not be dropped as a flood.
            "MaxStartups 100:30:200",
            "MaxSessions 50",
            "LoginGraceTime 30",
        ]
        if penalties:
            # OpenSSH >= 9.8 would lock out 127.0.0.1 after failed logins,
            # making tests of wrong keys flaky.
            lines.append("PerSourcePenalties no")
        return "\n".join(lines) + "\n"

    def _write_config(self) -> None:
        self.config_path.write_text(self._config_text(penalties=False))
        if SshServer._penalties_supported is None:
            # Ask this sshd whether it knows the option (sshd -T prints every
            # setting it has, in lower case).
            result = subprocess.run([SSHD, "-T", "-f", str(self.config_path)],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise SshServerError(f"sshd rejected its config:\n{result.stderr}")
            SshServer._penalties_supported = "persourcepenalties" in result.stdout.lower()
        if SshServer._penalties_supported:
            self.config_path.write_text(self._config_text(penalties=True))

    # lifecycle -------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> "SshServer":
        if self.running:
            return self
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        self._write_config()
        self._log = open(self.log_path, "ab")
        self._process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                self._close_log()
                raise SshServerError(f"sshd exited with {self._process.returncode}:\n{self.log()}")
            if self._banner_ready():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise SshServerError(f"sshd did not accept connections within {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def _banner_ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                return sock.recv(64).startswith(b"SSH-2.0-")
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop the listener (sessions already open keep running until they end)."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart_with_new_host_key(self) -> str:
        """Restart on the same port with a fresh host key; returns its fingerprint."""
        self.stop()
        self._generate_host_key()
        self.start()
        return self.host_key_fingerprint

    def close(self) -> None:
        """Stop sshd and remove the sudoers drop-ins and the shared directory."""
        self.stop()
        for path in self._sudoers_files:
            path.unlink(missing_ok=True)
        self._sudoers_files.clear()
        for name in self._created_users:
            subprocess.run(["userdel", "--remove", name], capture_output=True)
        self._created_users.clear()
        shutil.rmtree(self.public_dir, ignore_errors=True)

    def __enter__(self) -> "SshServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # access ----------------------------------------------------------------
    def _keys_file(self, user: str) -> Path:
        if not re.fullmatch(r"[a-z_][a-z0-9_-]*\$?", user):
            raise ValueError(f"not a user name: {user!r}")
        return self.keys_dir / user

    def authorize(self, user: str, public_key_line: str) -> None:
        """Let ``public_key_line`` log in as ``user`` (keys accumulate)."""
        if parse_public_key(public_key_line) is None:
            raise ValueError(f"not an OpenSSH public key line: {public_key_line!r}")
        path = self._keys_file(user)
        with open(path, "a") as handle:
            handle.write(public_key_line.strip() + "\n")
        path.chmod(0o644)  # sshd reads it as the user

    def revoke(self, user: str) -> None:
        """Remove every key of ``user``."""
        self._keys_file(user).unlink(missing_ok=True)

    def ensure_sudo_user(self, name: str, passwordless: bool = True) -> str:
        """Create Unix user ``name`` if missing and let it run ``sudo dokku``.

        With ``passwordless=False`` sudo wants a password, so ``sudo -n dokku``
        fails with "sudo: a password is required". Sudo rules are per user:
        use different names for the two variants. Returns the user name.
        """
        self._keys_file(name)  # validates the name
        try:
            pwd.getpwnam(name)
        except KeyError:
            # '*' (not useradd's default '!'): with UsePAM no, sshd refuses
            # accounts whose password field starts with '!'.
            _run("useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", name)
            self._created_users.append(name)
        else:
            self._unlock(name)
        home = Path(pwd.getpwnam(name).pw_dir)
        if not home.is_dir():  # sshd prints "Could not chdir" to stderr otherwise
            home.mkdir(parents=True)
            shutil.chown(home, name, name)

        launcher = self.bin_dir / "dokku"
        tag = "NOPASSWD: " if passwordless else ""
        text = (
            "# Written by tests/support/sshd.py for Intercity's tests; removed by SshServer.close().\n"
            f'Defaults:{name} secure_path="{self.bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n'
            f'Defaults:{name} env_keep += "DOKKU_DOUBLE_ROOT"\n'
            f"Defaults:{name} !lecture\n"
            f"{name} ALL=(root) {tag}{launcher}\n"
        )
        # sudo ignores drop-ins whose names contain a dot or end in '~'.
        path = SUDOERS_DIR / f"intercity-test-{name}-{self.public_dir.name.replace('.', '-')}"
        staging = self.workdir / f"sudoers-{name}"
        staging.write_text(text)
        check = subprocess.run(["visudo", "-c", "-q", "-f", str(staging)], capture_output=True, text=True)
        if check.returncode != 0:
            raise SshServerError(f"visudo rejected the sudoers drop-in:\n{check.stdout}{check.stderr}")
        staging.chmod(0o440)
        shutil.move(staging, path)
        if path not in self._sudoers_files:
            self._sudoers_files.append(path)
        return name

    @staticmethod
    def _unlock(name: str) -> None:
        """Give an existing user a '*' password field if it is locked ('!')."""
        with open("/etc/shadow") as shadow:
            for line in shadow:
                fields = line.split(":")
                if fields[0] == name and fields[1].startswith("!"):
                    _run("usermod", "--password", "*", name)
                    return
