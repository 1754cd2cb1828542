"""Download a database service's export (`<plugin>:export svc`), streamed from SSH to the browser.

The one place a web request holds an SSH channel: it connects only to a server whose host key
is pinned, runs the export under a server-side `timeout` (a Redis export can wait forever for
a snapshot) and stops reading at a deadline of its own. Nothing is written to the panel's disk:
each chunk goes from the channel to the response. The download is a security entry, written
when the stream ends: `service.exported` with its size, or `service.export_failed` with the
reason; a failure after the first byte raises, so the server cuts the download instead of
ending it as if it were complete.
"""
from __future__ import annotations

import select
import time
from collections.abc import Iterator

from flask import current_app

from intercity.audit.capture import record_event
from intercity.audit.rules import Scope
from intercity.dokku import parsers, service_backups, service_plugins, ssh
from intercity.dokku.commands import Deadline
from intercity.extensions import db
from intercity.models import Server
from intercity.models.base import utcnow
from intercity.services.permissions import require
from intercity.validation import ValidationError

CHUNK = 64 * 1024


class ExportCut(Exception):
    """The export failed after bytes were sent: raised inside the stream so the download is cut."""


class _Export:
    def __init__(self, server: Server, plugin: str, name: str):
        config = current_app.config
        self.plugin, self.name, self.server_name = plugin, name, server.name
        self.scope = Scope(server_id=server.id, server_name=server.name)
        self.deadline = Deadline(int(config.get("SERVICE_EXPORT_DEADLINE", 3600)),
                                 int(config.get("COMMAND_KILL_GRACE", 10)))
        self.target = ssh.Target(host=server.host, port=server.port, user=server.ssh_user,
                                 private_key=server.private_key,
                                 pinned=ssh.HostKey(server.host_key_type, server.host_key_fingerprint),
                                 expected_fingerprint=server.expected_host_key_fingerprint,
                                 connect_timeout=config["SSH_CONNECT_TIMEOUT"], label=server.name)
        self.command = service_backups.export(plugin, name)
        self.until = 0.0
        self.sent = 0
        self.stderr = ssh.Capture(head=16 * 1024, tail=16 * 1024)
        self.connection: ssh.Connection | None = None
        self.channel = None

    def record(self, failed: str | None) -> None:
        where = dict(scope=self.scope, target_type="service", target_label=f"{self.plugin} {self.name}")
        if failed:
            record_event(db.session, "service.export_failed", diff={"bytes": [None, self.sent],
                                                                    "reason": [None, failed]}, **where)
        else:
            record_event(db.session, "service.exported", diff={"bytes": [None, self.sent]}, **where)
        db.session.commit()

    def start(self) -> bytes:
        """Connect, run the export, wait for its first bytes; a failure here raises ValidationError."""
        self.until = time.monotonic() + self.deadline.total + 5
        try:
            self.connection = ssh.connect(self.target)
            self.channel = self.connection.transport.open_session(timeout=self.target.connect_timeout)
            self.channel.exec_command(self.command.remote_line(sudo=self.target.sudo, deadline=self.deadline))
            self.channel.shutdown_write()
            first = next(self._read(), b"")
        except ssh.SshError as error:
            self.close()
            self.record(error.message)
            raise ValidationError(error.message, None) from None
        except Exception as error:  # paramiko's own errors while opening the channel
            self.close()
            reason = (f"The connection to {self.server_name} failed while the export started "
                      f"({error.__class__.__name__}).")
            self.record(reason)
            raise ValidationError(reason, None) from None
        if not first:
            reason = self.ended_badly(empty=True)
            self.close()
            self.record(reason)
            raise ValidationError(reason, None)
        return first

    def _read(self) -> Iterator[bytes]:
        channel = self.channel
        while True:
            if channel.recv_ready():
                data = channel.recv(CHUNK)
                if data:
                    yield data
                    continue
            if channel.recv_stderr_ready():
                self.stderr.feed(channel.recv_stderr(CHUNK))
                continue
            if channel.eof_received and not channel.recv_ready() and not channel.recv_stderr_ready():
                return
            left = self.until - time.monotonic()
            if left <= 0:
                raise ssh.CommandTimeout(f"The export did not finish within {self.deadline.total} s; the panel "
                                         "stopped it.", None)
            select.select([channel.fileno()], [], [], min(left, 0.5))

    def ended_badly(self, empty: bool = False) -> str | None:
        """Why the finished export failed (its exit status, or nothing printed), or None."""
        channel = self.channel
        left = max(0.1, self.until - time.monotonic())
        channel.status_event.wait(left)
        code = channel.recv_exit_status() if channel.exit_status_ready() else None
        if code is None:
            return "The export ended without an exit status; the download is incomplete."
        if code in (124, 137):
            return (f"{self.plugin}:export {self.name} ran longer than {self.deadline.seconds} s, so the server "
                    "stopped it (timeout).")
        if code != 0:
            try:
                parsers.check(self.command, code, "", self.stderr.data.decode("utf-8", "replace"),
                              scrub=lambda text: text)
            except parsers.DokkuError as error:
                return error.message
            return f"{self.plugin}:export {self.name} failed with exit code {code}."
        if empty:
            return f"{self.plugin}:export {self.name} printed nothing: the service's dump is empty."
        return None

    def stream(self, first: bytes) -> Iterator[bytes]:
        failed = "The download was stopped before the export finished."
        try:
            self.sent = len(first)
            yield first
            for data in self._read():
                self.sent += len(data)
                yield data
            failed = self.ended_badly()
        except ssh.SshError as error:
            failed = error.message
        except OSError as error:
            failed = f"The connection to {self.server_name} broke during the export ({error.__class__.__name__})."
        finally:
            self.close()
            self.record(failed)
        if failed:
            raise ExportCut(failed)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def open_export(server: Server, user, *, plugin: str, name: str) -> tuple[str, Iterator[bytes]]:
    """(file name, chunks) of the service's export; raises ValidationError when it fails before its first byte."""
    require(user, "admin")
    plugin = service_plugins.plugin(plugin)
    name = service_plugins.service_name(name)
    if not (server.host_key_type and server.host_key_fingerprint) or server.status == "host_key_mismatch":
        raise ValidationError(f"Test the connection to {server.name} first: the panel downloads exports only "
                              "from a server whose host key it has pinned.", None)
    export = _Export(server, plugin, name)
    db.session.commit()  # no transaction stays open across the network
    first = export.start()
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    filename = f"{plugin}-{name}-{stamp}.{service_plugins.PLUGINS[plugin]['extension']}"
    return filename, export.stream(first)
