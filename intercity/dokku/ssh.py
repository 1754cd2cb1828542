"""The SSH client that runs dokku commands: verified host keys, public-key auth only, no PTY, timeouts.

One `Connection` serves all commands of an operation. It never consults an agent, key files,
known_hosts or a password: the server's own key (decrypted in memory) is the only credential,
and the host key is checked against the pinned type and SHA256 fingerprint (or a fingerprint
the user pasted in advance). Failures become `SshError` subclasses whose messages say what to
fix; `transient` ones (network) are worth retrying.
"""
from __future__ import annotations

import errno
import io
import select
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime

import paramiko

from intercity.dokku.commands import Command, Deadline, Then
from intercity.models.base import utcnow

# How much of each stream is kept in memory: the start and the end (deploy errors come last).
CAPTURE_HEAD = 1024 * 1024
CAPTURE_TAIL = 1024 * 1024

# The algorithms a client offers for a pinned host key type (RSA keys sign with SHA-2).
_KEY_ALGORITHMS = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}


@dataclass(frozen=True)
class HostKey:
    type: str
    fingerprint: str

    @classmethod
    def of(cls, key: paramiko.PKey) -> "HostKey":
        return cls(key.get_name(), key.fingerprint)


# --- failures ------------------------------------------------------------------------


class SshError(Exception):
    """Reaching or using the server failed; `message` says what happened and what to do."""

    transient = False
    server_status = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Unreachable(SshError):
    """Network trouble: DNS, refused, timed out, no route. Retried with backoff."""

    transient = True
    server_status = "unreachable"


class AuthenticationFailed(SshError):
    pass


class DokkuUserRefused(SshError):
    pass


class HostKeyMismatch(SshError):
    """The server presented a host key other than the pinned (or expected) one."""

    server_status = "host_key_mismatch"

    def __init__(self, message: str, *, expected: str | None, seen: HostKey | None):
        super().__init__(message)
        self.expected = expected
        self.seen = seen


class HostKeyNotVerified(SshError):
    """No pinned or expected host key yet, and this connection may not pin one."""


class CommandTimeout(SshError):
    def __init__(self, message: str, result: "RunResult"):
        super().__init__(message)
        self.result = result


class ConnectionLost(SshError):
    def __init__(self, message: str, result: "RunResult | None" = None):
        super().__init__(message)
        self.result = result


# --- output capture ------------------------------------------------------------------


class Capture:
    """One output stream: the first and last CAPTURE_* bytes, and how much was dropped between."""

    def __init__(self, head: int = CAPTURE_HEAD, tail: int = CAPTURE_TAIL):
        self.head_limit, self.tail_limit = head, tail
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.tail_limit:
                del self.tail[: len(self.tail) - self.tail_limit]

    @property
    def omitted(self) -> int:
        return self.total - len(self.head) - len(self.tail)

    @property
    def data(self) -> bytes:
        """Everything, when nothing was dropped (tests and parsers); else head + tail."""
        return bytes(self.head + self.tail)


@dataclass
class RunResult:
    command: Command | None
    line: str
    exit_code: int | None
    stdout: Capture
    stderr: Capture
    started_at: datetime
    finished_at: datetime
    error: str | None = None

    @property
    def out(self) -> str:
        return self.stdout.data.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.data.decode("utf-8", "replace")


# --- the connection ------------------------------------------------------------------


@dataclass
class Target:
    """Where and as whom to connect, and which host key to trust."""

    host: str
    port: int
    user: str
    private_key: str  # OpenSSH PEM, in memory only
    pinned: HostKey | None = None
    expected_fingerprint: str | None = None
    # A connection test may trust a key on first use (TOFU) when nothing is pinned yet.
    may_pin: bool = False
    connect_timeout: float = 10
    command_timeout: float = 600
    label: str = field(default="", compare=False)

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}" + (f":{self.port}" if self.port != 22 else "")

    @property
    def sudo(self) -> bool:
        return self.user != "root"


def _load_key(pem: str) -> paramiko.PKey:
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(pem))
        except paramiko.SSHException:
            continue
    raise SshError("The panel's private key for this server cannot be read. Generate a new key pair for it.")


def _socket(target: Target) -> socket.socket:
    where = f"{target.host} port {target.port}"
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise Unreachable(f"The panel cannot resolve {target.host} (DNS lookup failed: {error.strerror}). "
                          "Check the host name.") from None
    last: Exception | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(target.connect_timeout)
        try:
            sock.connect(address)
            sock.settimeout(None)
            return sock
        except OSError as error:
            sock.close()
            last = error
    if isinstance(last, ConnectionRefusedError):
        raise Unreachable(f"{where} refused the connection: is SSH running on that port, and does a "
                          "firewall allow the panel in?")
    if isinstance(last, (socket.timeout, TimeoutError)):
        raise Unreachable(f"{where} did not answer within {target.connect_timeout:g} s (timed out). "
                          "Check the address and the firewall.")
    reason = (last.strerror if isinstance(last, OSError) and last.strerror else str(last)) or "no route"
    if isinstance(last, OSError) and last.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        reason = "no route to the host"
    raise Unreachable(f"{where} is unreachable ({reason}).")


class Connection:
    """An authenticated SSH connection to one server; use as a context manager."""

    def __init__(self, target: Target):
        if target.user == "dokku":
            raise DokkuUserRefused(
                "The dokku SSH user cannot be used: its forced command cannot run sudo and it cannot manage "
                "deploy keys. Connect as root, or as a user with passwordless sudo for dokku."
            )
        self.target = target
        self.transport: paramiko.Transport | None = None
        self.host_key: HostKey | None = None

    # -- connecting --

    def open(self) -> "Connection":
        target = self.target
        pkey = _load_key(target.private_key)
        self.transport = self._handshake(restrict=target.pinned is not None)
        try:
            self.host_key = HostKey.of(self.transport.get_remote_server_key())
            self._verify(self.host_key)
            self._authenticate(pkey)
        except BaseException:
            self.close()
            raise
        return self

    def _handshake(self, restrict: bool) -> paramiko.Transport:
        target = self.target
        sock = _socket(target)
        transport = paramiko.Transport(sock)
        transport.banner_timeout = target.connect_timeout
        transport.handshake_timeout = target.connect_timeout
        transport.auth_timeout = target.connect_timeout
        if restrict:
            # Offer only the pinned key type, so the server cannot pick another key we never saw.
            pinned = target.pinned.type
            transport.get_security_options().key_types = _KEY_ALGORITHMS.get(pinned, (pinned,))
        try:
            transport.start_client(timeout=target.connect_timeout)
        except paramiko.SSHException as error:
            transport.close()
            text = str(error)
            if restrict and "host key" in text.lower():
                # The server has no key of the pinned type any more: find out what it offers now.
                raise self._mismatch(self._probe_host_key()) from None
            if "banner" in text.lower() or "timeout" in text.lower() or isinstance(error.__cause__, socket.timeout):
                raise Unreachable(
                    f"{target.host} port {target.port} accepted the connection but did not answer as an SSH "
                    f"server within {target.connect_timeout:g} s (timed out)."
                ) from None
            raise Unreachable(f"The SSH handshake with {target.host} port {target.port} failed: {text}.") from None
        except (OSError, EOFError) as error:
            transport.close()
            raise Unreachable(f"The connection to {target.host} port {target.port} broke during the SSH "
                              f"handshake ({error.__class__.__name__}).") from None
        if not (transport.is_active() and transport.initial_kex_done):
            # start_client returns quietly when its timeout passes before the key exchange is done.
            transport.close()
            raise Unreachable(
                f"{target.host} port {target.port} accepted the connection but did not answer as an SSH "
                f"server within {target.connect_timeout:g} s (timed out)."
            )
        return transport

    def _probe_host_key(self) -> HostKey | None:
        """Which key the server offers without restrictions (no authentication happens)."""
        try:
            transport = self._handshake(restrict=False)
        except SshError:
            return None
        try:
            return HostKey.of(transport.get_remote_server_key())
        finally:
            transport.close()

    def _mismatch(self, seen: HostKey | None) -> HostKeyMismatch:
        target = self.target
        expected = target.pinned.fingerprint if target.pinned else target.expected_fingerprint
        what = "pinned" if target.pinned else "expected"
        shown = f"{seen.type} {seen.fingerprint}" if seen else "a key of another type"
        return HostKeyMismatch(
            f"{target.host} presented the host key {shown}, not the {what} {expected}. "
            "All work on this server is stopped until an admin checks the server's host key and accepts the "
            "new one. If nobody changed or reinstalled the server, someone may be intercepting the connection.",
            expected=expected, seen=seen,
        )

    def _verify(self, presented: HostKey) -> None:
        target = self.target
        if target.pinned is not None:
            if presented != target.pinned:
                raise self._mismatch(presented)
            return
        if target.expected_fingerprint:
            if presented.fingerprint != target.expected_fingerprint:
                raise self._mismatch(presented)
            return
        if not target.may_pin:
            raise HostKeyNotVerified(
                f"The host key of {target.host} has not been verified yet. Run a connection test first: it "
                "shows and pins the key's fingerprint."
            )

    def _authenticate(self, pkey: paramiko.PKey) -> None:
        target = self.target
        try:
            # Public key only: no agent, no key files, no password or keyboard-interactive prompts.
            self.transport.auth_publickey(target.user, pkey)
        except paramiko.BadAuthenticationType as error:
            raise AuthenticationFailed(
                f"{target.user}@{target.host} does not accept public keys (it allows only "
                f"{', '.join(error.allowed_types) or 'nothing'}). Enable PubkeyAuthentication for this user."
            ) from None
        except paramiko.AuthenticationException:
            raise AuthenticationFailed(
                f"The panel's key is not in authorized_keys of {target.user}@{target.host}. Add the public key "
                "shown on the server's page to that user's ~/.ssh/authorized_keys."
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise Unreachable(f"The connection to {target.host} broke while logging in ({error}).") from None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def __enter__(self) -> "Connection":
        return self.open() if self.transport is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- running --

    def run_then(self, pair: Then, on_first, *, timeout: float | None = None,
                 deadline: Deadline | None = None) -> tuple[RunResult, RunResult | None]:
        """Run both parts of `pair` in one exec; each part's result as if it had run alone.

        `on_first(result)` is called as soon as the first part is known to have succeeded (its
        boundary arrived on both streams), while the second still runs. The second part's result
        is None when the first failed (it never ran). CommandTimeout and ConnectionLost carry the
        parts that arrived in `error.parts`.
        """
        marker = pair.boundary.encode() + b"\n"
        seen: dict[str, datetime] = {}

        def watch(stdout: Capture, stderr: Capture) -> None:
            if "first" not in seen and stdout.omitted == 0 and stderr.omitted == 0 \
                    and _cut(stdout.data, marker) and _cut(stderr.data, marker):
                seen["first"] = utcnow()
                on_first(_part(pair.first, stdout, stderr, marker, 0, 0, None, started_at, seen["first"]))

        started_at = utcnow()
        try:
            whole = self.run(pair, timeout=timeout, deadline=deadline, _watch=watch)
        except (CommandTimeout, ConnectionLost) as error:
            error.parts = _split(pair, error.result, marker, seen.get("first"))
            raise
        return _split(pair, whole, marker, seen.get("first"))

    def run(self, command: Command | Then | str, *, timeout: float | None = None, deadline: Deadline | None = None,
            _watch=None, on_output=None) -> RunResult:
        """Run one command on a fresh channel without a PTY: separate streams, the real exit status.

        With a `deadline`, each dokku invocation runs under coreutils `timeout` on the server, so it
        ends there even when the panel stops waiting or loses the connection.

        Raises CommandTimeout or ConnectionLost (each carrying what arrived so far); a non-zero exit
        status is returned, not raised: dokku's parsers decide what it means.

        `on_output(stream, data)` ("stdout" or "stderr", bytes) sees the output as it arrives, for
        a live view of a long command (a build); the result still carries all of it.
        """
        if self.transport is None or not self.transport.is_active():
            raise ConnectionLost(f"The SSH connection to {self.target.host} is closed.")
        timeout = self.target.command_timeout if timeout is None else timeout
        if isinstance(command, (Command, Then)):
            line, stdin = command.remote_line(sudo=self.target.sudo, deadline=deadline), command.stdin
        else:
            line, stdin = command, None
        stdout, stderr = Capture(), Capture()
        started = utcnow()
        deadline = time.monotonic() + timeout

        def result(exit_code=None, error=None) -> RunResult:
            return RunResult(command if isinstance(command, (Command, Then)) else None, line, exit_code, stdout,
                             stderr, started, utcnow(), error)

        try:
            channel = self.transport.open_session(timeout=self.target.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise ConnectionLost(f"The server refused to open a session ({error}).", result(error="no session"))
        try:
            channel.exec_command(line)
            if stdin:
                # Over exec without a PTY the remote stdin is a pipe (ssh-keys:add needs one).
                channel.settimeout(max(0.1, deadline - time.monotonic()))
                channel.sendall(stdin)
                channel.settimeout(None)
            channel.shutdown_write()
            ready = channel.fileno()
            while True:
                while channel.recv_ready():
                    data = channel.recv(65536)
                    stdout.feed(data)
                    if on_output is not None and data:
                        on_output("stdout", data)
                while channel.recv_stderr_ready():
                    data = channel.recv_stderr(65536)
                    stderr.feed(data)
                    if on_output is not None and data:
                        on_output("stderr", data)
                if _watch is not None:
                    _watch(stdout, stderr)
                # EOF comes after the last byte of both streams; the exit status may come before or after it.
                if channel.closed or (channel.eof_received and channel.exit_status_ready()):
                    if not (channel.recv_ready() or channel.recv_stderr_ready()):
                        break
                    continue
                if not self.transport.is_active():
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    message = (f"dokku did not finish within {timeout:g} s; the panel stopped waiting "
                               "(the command may still be running on the server).")
                    raise CommandTimeout(message, result(error=f"timed out after {timeout:g} s"))
                if channel.eof_received:
                    channel.status_event.wait(min(left, 0.5))  # only the exit status is still to come
                else:
                    select.select([ready], [], [], min(left, 0.5))
            code = channel.recv_exit_status() if channel.exit_status_ready() else -1
        except (socket.timeout, TimeoutError):
            message = f"Sending input to {self.target.host} timed out after {timeout:g} s."
            raise CommandTimeout(message, result(error=f"timed out after {timeout:g} s")) from None
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise ConnectionLost(f"The connection to {self.target.host} was lost while a command ran ({error}).",
                                 result(error="connection lost")) from None
        finally:
            channel.close()
        if code == -1:
            if not self.transport.is_active():
                raise ConnectionLost(f"The connection to {self.target.host} was lost while a command ran.",
                                     result(error="connection lost"))
            return result(None, "ended without an exit status (killed by a signal?)")
        return result(code)


def _cut(data: bytes, marker: bytes) -> tuple[bytes, bytes] | None:
    """(before, after) the boundary line, or None while it has not arrived."""
    at = data.find(marker)
    if at == -1:
        return None
    return data[:at], data[at + len(marker):]


def _capture(data: bytes) -> Capture:
    capture = Capture()
    capture.feed(data)
    return capture


def _part(command: Command, stdout: Capture, stderr: Capture, marker: bytes, index: int, exit_code,
          error, started: datetime, finished: datetime) -> RunResult:
    out, err = _cut(stdout.data, marker), _cut(stderr.data, marker)
    return RunResult(command, " ".join(command.display), exit_code, _capture(out[index]), _capture(err[index]),
                     started, finished, error)


def _split(pair: Then, whole: RunResult, marker: bytes, boundary_at: datetime | None
           ) -> tuple[RunResult, RunResult | None]:
    """The two parts of a pair's result; the whole is the first's when no boundary arrived (it failed)."""
    if whole.stdout.omitted or whole.stderr.omitted:
        # Capture kept only the head and tail, so the boundary may be among the dropped bytes.
        return RunResult(pair.first, whole.line, None, whole.stdout, whole.stderr, whole.started_at,
                         whole.finished_at, "printed too much to tell its output from the next command's"), None
    if not (_cut(whole.stdout.data, marker) and _cut(whole.stderr.data, marker)):
        return RunResult(pair.first, whole.line, whole.exit_code, whole.stdout, whole.stderr, whole.started_at,
                         whole.finished_at, whole.error), None
    at = boundary_at or whole.finished_at
    first = _part(pair.first, whole.stdout, whole.stderr, marker, 0, 0, None, whole.started_at, at)
    second = _part(pair.second, whole.stdout, whole.stderr, marker, 1, whole.exit_code, whole.error, at,
                   whole.finished_at)
    return first, second


def connect(target: Target, *, retries: int = 0, backoff: float = 2.0, sleep=time.sleep) -> Connection:
    """Open a connection, retrying transient network failures `retries` times with exponential backoff."""
    attempt = 0
    while True:
        try:
            return Connection(target).open()
        except SshError as error:
            if not error.transient or attempt >= retries:
                if error.transient and attempt:
                    error.message = f"{error.message} (gave up after {attempt + 1} attempts)"
                    error.args = (error.message,)
                raise
            sleep(backoff * (2 ** attempt))
            attempt += 1
