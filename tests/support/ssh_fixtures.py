"""Fixtures for end-to-end tests through the real SSH client: a loopback sshd and the Dokku double behind it.

    def test_create_app(app, member, dokku, dokku_server):
        create_app(dokku_server, member, name="web")
        db.session.commit()              # after commit the operation is enqueued...
        wait_for_operations(app)         # ...and, without Redis, applied by the in-process runner
        assert dokku.apps() == ["web"]

* `sshd` (session): one `SshServer` (tests/support/sshd.py) for the whole run. Do not restart it
  with a new host key: start your own `SshServer` for that (see test_operations.py).
* `dokku` (function): the double behind `sshd`, reset to a fresh Dokku host (no apps, config,
  domains, keys, faults or logged calls; default version) with every authorized SSH key
  revoked, so only keys a test authorizes get in. Arrange and inspect it with its methods
  (`create_app`, `env`, `domains`, `keys`, `fail`, `hang`, `set_version`, `calls`, ...).
* `dokku_server` (function, needs `app`): a `Server` row for `sshd` as root, its public key
  authorized, its host key pinned and Dokku version stored as a connection test leaves them.
* `make_dokku_server(sshd, **overrides)`: the builder behind it, for variants: `pinned=False`
  (a fresh server before its first connection test), `authorize=False` (the key is not
  installed), `ssh_user=SUDO_USER` (a real Unix user with passwordless sudo for the
  double; `passwordless_sudo=False` makes sudo ask for a password: use another user name).
* `wait_for_operations(app)`: block until the in-process runner has applied what was enqueued.
"""
from __future__ import annotations

import os
import shutil

import pytest

from tests.support.sshd import SSHD, DokkuDouble, SshServer, _double

DEFAULT_DOKKU_VERSION = _double.DEFAULT_VERSION

# Unix users of this run alone: sudo reads every drop-in in /etc/sudoers.d, and the `secure_path` of
# another run's drop-in for the same name (two suites at once, or one that was killed) would send this
# run's `sudo dokku` to that run's double, whose rules differ.
RUN_TAG = f"{os.getpid():x}"
SUDO_USER = f"intercity-ops-{RUN_TAG}"
SUDO_USER_WITH_PASSWORD = f"intercity-ops-pw-{RUN_TAG}"


def require_environment() -> None:
    if os.geteuid() != 0:
        pytest.fail("The SSH fixtures must run as root: they start sshd and create a sudo user.")
    if not os.access(SSHD, os.X_OK):
        pytest.fail(f"{SSHD} is missing: apt-get install openssh-server (or run `make test`, which installs it)")
    if shutil.which("sudo") is None:
        pytest.fail("sudo is missing: apt-get install sudo (or run `make test`, which installs it)")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> SshServer:
    require_environment()
    server = SshServer(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.close()


@pytest.fixture
def dokku(sshd) -> DokkuDouble:
    if not sshd.running:
        sshd.start()
    for path in sshd.keys_dir.iterdir():
        path.unlink()
    sshd.dokku.reset()
    yield sshd.dokku
    sshd.dokku.clear_faults()  # a hang left behind would slow the next test down


def make_dokku_server(sshd: SshServer, *, pinned: bool = True, authorize: bool = True, ssh_user: str = "root",
                      passwordless_sudo: bool = True, **overrides):
    """A Server row for the loopback sshd (needs an app context)."""
    from tests.support.builders import make_server

    if ssh_user != "root":
        sshd.ensure_sudo_user(ssh_user, passwordless=passwordless_sudo)
    if pinned:
        # As a connection test leaves it: host key pinned, Dokku version read, status ready.
        overrides.setdefault("host_key_type", sshd.host_key_type)
        overrides.setdefault("host_key_fingerprint", sshd.host_key_fingerprint)
        overrides.setdefault("status", "ready")
        overrides.setdefault("dokku_version", dokku_version(sshd))
    overrides.setdefault("host", sshd.host)
    overrides.setdefault("port", sshd.port)
    server = make_server(ssh_user=ssh_user, **overrides)
    if authorize:
        sshd.authorize(ssh_user, server.public_key)
    return server


def dokku_version(sshd: SshServer) -> str:
    """The version the double emulates now (after `dokku.set_version`, update `Server.dokku_version` too)."""
    path = sshd.dokku.root / "VERSION"
    return path.read_text().strip() if path.exists() else DEFAULT_DOKKU_VERSION


@pytest.fixture
def dokku_server(app, sshd, dokku):
    return make_dokku_server(sshd)


def wait_for_operations(app) -> None:
    runner = app.extensions.get("intercity_jobs")
    if runner is None:
        raise RuntimeError("wait_for_operations works with the in-process runner; with Redis, run a worker")
    runner.wait_idle()
