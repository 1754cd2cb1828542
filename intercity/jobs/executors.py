"""One function per operation kind: read the desired state now, run dokku commands, record each run.

Executors receive an `OperationContext`. `ctx.run(command)` opens the operation's single SSH
connection on first use, runs the command, appends its redacted `CommandRun` (committed at once,
so the timeline shows progress), and raises the `DokkuError` the output amounts to. No database
transaction stays open while the network is used: every run commits before it starts.
"""
from __future__ import annotations

import contextlib
import logging
import re
import threading
import time

from flask import current_app
from sqlalchemy import select, update

from intercity import validation
from intercity.audit.capture import record_event
from intercity.audit.rules import Scope
from intercity.dokku import commands, parsers, ssh
from intercity.dokku.commands import Command, DokkuVersion
from intercity.dokku.parsers import DokkuError
from intercity.dokku.transcript import NOT_STORED, Redactor, display_argv, stored_stream, stores_output
from intercity.extensions import db
from intercity.jobs import readings
from intercity.models import App, CommandRun, DeployKey, Domain, EnvVar, Operation, Server
from intercity.models.base import utcnow
from intercity.validation import ValidationError

log = logging.getLogger(__name__)

_INTEGER = re.compile(r"[+-]?[0-9]+")


class OperationError(Exception):
    """The operation cannot go on; `message` is for people and holds no secret."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class LockLost(OperationError):
    pass


class ConnectionPool:
    """Connections a drain keeps between operations, reused only for an identical target.

    An operation uses one connection for all its commands; the next operation reuses it when
    server, user, key and pinned host key are unchanged (a burst of changes to one app then
    costs one handshake). Any SSH failure discards it. A worker's pool (`keeping_connections`)
    outlives its drains: an idle connection is kept `keep_idle` seconds for the next operation,
    then closed.
    """

    def __init__(self, keep_idle: float = 0):
        self.keep_idle = keep_idle
        self._target: ssh.Target | None = None
        self._connection: ssh.Connection | None = None
        self._idle_since: float | None = None
        # The idle timer (one at a time) closes a kept connection from its own thread.
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def get(self, target: ssh.Target) -> ssh.Connection | None:
        with self._lock:
            connection = self._connection
            fresh = self._idle_since is None or time.monotonic() - self._idle_since < self.keep_idle
            if connection is not None and target == self._target and fresh and connection.transport is not None \
                    and connection.transport.is_active():
                self._idle_since = None
                self._stop_timer()
                return connection
            self._close()
            return None

    def keep(self, target: ssh.Target, connection: ssh.Connection) -> None:
        with self._lock:
            if connection is not self._connection:
                self._close()
            self._target, self._connection, self._idle_since = target, connection, None
        if self.keep_idle and connection.transport is not None:
            # Traffic while idle, so that a firewall does not drop the kept connection silently.
            connection.transport.set_keepalive(KEEPALIVE_SECONDS)

    def get_current(self) -> ssh.Connection | None:
        return self._connection

    def idle(self) -> None:
        """A drain ended: keep the connection for a while (then close it), or close it now if this pool keeps none."""
        if not self.keep_idle:
            self.close()
            return
        with self._lock:
            if self._connection is None:
                return
            stamp = self._idle_since = time.monotonic()
            self._stop_timer()
            self._timer = threading.Timer(self.keep_idle, self._expire, args=(stamp,))
            self._timer.daemon = True
            self._timer.start()

    def _expire(self, stamp: float) -> None:
        with self._lock:
            if self._idle_since == stamp:  # not used since it went idle
                self._close()

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        self._stop_timer()
        if self._connection is not None:
            self._connection.close()
        self._target = self._connection = self._idle_since = None

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        self._timer = None


# How often a kept connection sends a keepalive while idle.
KEEPALIVE_SECONDS = 15
_resident = threading.local()


@contextlib.contextmanager
def keeping_connections(idle_seconds: float):
    """Within: drains on this thread share one pool that keeps an idle connection `idle_seconds` (a worker)."""
    if idle_seconds <= 0:
        yield None
        return
    pool = _resident.pool = ConnectionPool(keep_idle=idle_seconds)
    try:
        yield pool
    finally:
        _resident.pool = None
        pool.close()


def drain_pool() -> ConnectionPool:
    """The pool a drain uses: its worker's resident one, or its own (closed when the drain ends)."""
    return getattr(_resident, "pool", None) or ConnectionPool()


class OperationContext:
    """What an executor needs: the operation's facts, the connection, the redactor, warnings."""

    def __init__(self, op: Operation, lock=None, pool: ConnectionPool | None = None):
        self.pool = pool or ConnectionPool()
        self._owns_pool = pool is None
        self.op_id = op.id
        self.kind = op.kind
        self.declared = op.kind_info
        self.payload = op.data
        self.server_id = op.server_id
        self.server_name = op.server_name
        self.app_id = op.app_id
        self.app_name = op.app_name
        self.lock = lock
        self.config = current_app.config
        self.warnings: list[str] = []
        self.connection: ssh.Connection | None = None
        self._reused = False
        self._version: DokkuVersion | None = None
        self.position = db.session.scalar(
            select(CommandRun.position).where(CommandRun.operation_id == op.id)
            .order_by(CommandRun.position.desc()).limit(1))
        self.position = 0 if self.position is None else self.position + 1
        self.redactor = Redactor(self._known_secrets())
        from intercity.jobs import deadlines  # it imports the models' package, as this module does

        self.deadline = deadlines.for_kind(self.declared)
        # Earlier operations of this scope that lost sight of a command: read the server back first.
        self.after_doubt: list[Operation] = []

    # -- desired state --

    def _known_secrets(self) -> list[str]:
        """Every current env value of the app (or, for server work, of every app on the server)."""
        query = select(EnvVar).join(App, EnvVar.app_id == App.id)
        if self.app_id is not None:
            query = query.where(App.id == self.app_id)
        else:
            query = query.where(App.server_id == self.server_id)
        return [var.value for var in db.session.scalars(query)]

    def server(self) -> Server:
        server = db.session.get(Server, self.server_id) if self.server_id is not None else None
        if server is None:
            raise OperationError(f"The server {self.server_name} was removed from the panel before this could run.")
        return server

    def app(self) -> App:
        app = db.session.get(App, self.app_id) if self.app_id is not None else None
        if app is None:
            raise OperationError(f"The app {self.app_name} was removed from the panel before this could run.")
        return app

    def warn(self, message: str) -> None:
        # Panel wording: the parts quoted from Dokku were redacted where they were quoted.
        if message not in self.warnings:
            self.warnings.append(message)

    # -- the connection --

    def connect(self, reuse: bool = True) -> ssh.Connection:
        server = self.server()
        if server.status == "host_key_mismatch" and not self.declared.checks_host_key:
            raise OperationError(
                f"Work on {server.name} is stopped: it presented a host key other than the pinned one. An admin "
                "must check the server and accept the new key on the server's page first."
            )
        pinned = None
        if server.host_key_type and server.host_key_fingerprint:
            pinned = ssh.HostKey(server.host_key_type, server.host_key_fingerprint)
        try:
            private_key = server.private_key
        except RuntimeError as error:  # the encryption key changed: say so, it names no secret
            raise OperationError(str(error)) from None
        target = ssh.Target(
            host=server.host, port=server.port, user=server.ssh_user, private_key=private_key,
            pinned=pinned, expected_fingerprint=server.expected_host_key_fingerprint,
            may_pin=self.declared.checks_host_key, connect_timeout=self.config["SSH_CONNECT_TIMEOUT"],
            command_timeout=self.config["SSH_COMMAND_TIMEOUT"], label=server.name,
        )
        db.session.commit()  # never hold a transaction across the network
        # A connection test (a kind that checks the host key) tests a new connection, never a kept one.
        reused = None if self.declared.checks_host_key or not reuse else self.pool.get(target)
        if reused is not None:
            self.connection, self._reused = reused, True
            return reused
        self._reused = False
        try:
            self.connection = ssh.connect(target, retries=self.config["SSH_RETRIES"],
                                          backoff=self.config.get("SSH_RETRY_BACKOFF", 2.0))
        except ssh.HostKeyMismatch as error:
            self._record_mismatch(error)
            raise
        except ssh.Unreachable as error:
            self._record_reachability(error)
            raise
        self._record_reachability(None)
        if pinned is None and self.declared.checks_host_key:
            self._pin(self.connection.host_key)
        else:
            self.pool.keep(target, self.connection)
        return self.connection

    def _record_reachability(self, error: ssh.Unreachable | None) -> None:
        """Any operation's connection says whether the server is reachable, not only a connection test."""
        server = self.server()
        if error is not None:
            if server.status != "host_key_mismatch":
                server.status, server.status_message = "unreachable", error.message
            server.unreachable_since = server.unreachable_since or utcnow()
            server.last_checked_at = utcnow()
        elif server.unreachable_since is not None or server.status == "unreachable":
            server.unreachable_since = None
            if server.status == "unreachable":
                server.status, server.status_message = "ready", None
        db.session.commit()

    def _pin(self, key: ssh.HostKey) -> None:
        """Trust on first use, after a successful login: audited as server.host_key_pinned."""
        server = self.server()
        server.host_key_type = key.type
        server.host_key_fingerprint = key.fingerprint
        db.session.commit()

    def _record_mismatch(self, error: ssh.HostKeyMismatch) -> None:
        server = self.server()
        seen = error.seen
        server.seen_host_key_type = seen.type if seen else None
        server.seen_host_key_fingerprint = seen.fingerprint if seen else None
        server.status = "host_key_mismatch"
        server.status_message = error.message
        server.last_checked_at = utcnow()
        record_event(
            db.session, "server.host_key_mismatch", scope=Scope(server_id=server.id, server_name=server.name),
            target_type="server", target_id=server.id, target_label=server.name, operation_id=self.op_id,
            diff={"host_key_type": [server.host_key_type, seen.type if seen else None],
                  "host_key_fingerprint": [error.expected, seen.fingerprint if seen else None]},
        )
        db.session.commit()

    def close(self, failed: BaseException | None = None) -> None:
        """Done with the operation: a connection in doubt (an SSH failure) is not kept for the next one."""
        if self.connection is None:
            return
        pooled = self.pool.get_current() is self.connection
        if not pooled:
            self.connection.close()
        elif self._owns_pool or isinstance(failed, ssh.SshError):
            self.pool.close()
        self.connection = None

    # -- running commands --

    def _ready(self, secrets: tuple[str, ...]) -> None:
        """Before a command: connected, still holding the scope's lock, no transaction open, its secrets known."""
        if self.connection is None:
            self.connect()
        if self.lock is not None and self.lock.lost:
            raise LockLost("The worker lost its lock on this queue (Redis expired it), so it stopped before the "
                           "next command. Retry to apply the current settings.")
        db.session.commit()
        self.redactor.add(*secrets)

    def _check(self, command: Command, result: ssh.RunResult) -> None:
        """What the command's output amounts to: a DokkuError raised, or warnings kept."""
        if result.exit_code is None:
            raise OperationError(f"dokku {command.kind} {result.error}.")
        for warning in parsers.check(command, result.exit_code, result.out, result.err):
            self.warn(warning)

    def _read(self, command: Command, result: ssh.RunResult | None) -> tuple[list[str], DokkuError | None]:
        """What a finished command's output amounts to: its warnings, or the DokkuError it means.

        Read before the command is recorded: for a config command, this reading is all its transcript keeps.
        """
        if result is None or result.exit_code is None:
            return [], None
        if result.exit_code in (124, 137):
            # coreutils timeout: 124 after SIGTERM, 137 when SIGKILL had to follow.
            return [], parsers.StoppedAtDeadline(
                f"dokku {command.kind} ran longer than its deadline of {self.deadline.seconds} s, so the server "
                "stopped it (timeout). Nothing of it runs any more; retry to apply the current settings.",
                result.exit_code)
        try:
            return parsers.check(command, result.exit_code, result.out, result.err, scrub=self.redactor.redact), None
        except DokkuError as found:
            return [], found

    def _settle(self, command: Command, result: ssh.RunResult, warnings: list[str], error: DokkuError | None) -> None:
        """Raise what the command's result means, or keep its warnings."""
        if result.exit_code is None:
            raise OperationError(f"dokku {command.kind} {result.error}.")
        if error is not None:
            raise error
        for warning in warnings:
            self.warn(warning)

    def _mark_deadline(self, command: Command | commands.Then) -> None:
        """Before a command starts: the database knows by when it has certainly ended on the server."""
        from intercity.jobs import deadlines

        ends = deadlines.ends_by(self.deadline, command.parts)
        db.session.execute(update(Operation).where(Operation.id == self.op_id).values(
            commands_deadline_at=ends))
        db.session.commit()

    def _lost_sight(self, error: ssh.SshError) -> None:
        """The panel no longer knows whether the command ended: the scope waits for its deadline."""
        if isinstance(error, ssh.ConnectionLost) and (error.result is None or error.result.error == "no session"):
            return  # the command was never started
        db.session.rollback()
        db.session.execute(update(Operation).where(Operation.id == self.op_id).values(commands_in_doubt=True))
        db.session.commit()

    def _exec(self, call):
        """Run `call(connection)`; a kept connection that died while idle is replaced once.

        Only when the server refused the session, i.e. before the command was sent, so nothing runs twice.
        """
        try:
            return call(self.connection)
        except ssh.ConnectionLost as error:
            if not (self._reused and error.result is not None and error.result.error == "no session"):
                raise
        log.info("the kept connection to %s had ended; connecting again", self.server_name)
        self.pool.close()
        self.connection = None
        self.connect(reuse=False)
        return call(self.connection)

    def run(self, command: Command, *, store_stdout: bool = True, on_output=None) -> ssh.RunResult:
        """Run one command and record it; `on_output(stream, data)` sees its output as it arrives."""
        self._ready(command.secrets)
        self._mark_deadline(command)
        failure: ssh.SshError | None = None
        try:
            from intercity.jobs.deadlines import wait_for

            result = self._exec(lambda connection: connection.run(
                command, deadline=self.deadline, on_output=on_output, timeout=wait_for(self.declared, self.deadline)))
        except (ssh.CommandTimeout, ssh.ConnectionLost) as error:
            failure, result = error, error.result
            self._lost_sight(error)
        found = self._read(command, result) if failure is None else ([], None)
        self._record(command, result, store_stdout, found)
        if failure is not None:
            raise failure
        self._settle(command, result, *found)
        return result

    def run_then(self, first: Command, second: Command, *, store_second: bool = True) -> ssh.RunResult:
        """`first`, then (if it succeeded) `second`, in one exec where that is safe; two execs otherwise.

        Each part is recorded as a CommandRun of its own, the first as soon as it is known to have
        succeeded (so a worker lost during the second still leaves it in the transcript).
        """
        pair = commands.then(first, second)
        if pair is None:
            self.run(first)
            return self.run(second, store_stdout=store_second)
        self._ready(pair.secrets)
        self._mark_deadline(pair)
        first_found: list[tuple[list[str], DokkuError | None]] = []

        def on_first(result: ssh.RunResult) -> None:
            first_found.append(self._read(first, result))
            self._record(first, result, True, first_found[0])

        failure: ssh.SshError | None = None
        try:
            first_result, second_result = self._exec(
                lambda connection: connection.run_then(pair, on_first, deadline=self.deadline))
        except (ssh.CommandTimeout, ssh.ConnectionLost) as error:
            failure, (first_result, second_result) = error, error.parts
            self._lost_sight(error)
        if not first_found:
            first_found.append(self._read(first, first_result) if failure is None else ([], None))
            self._record(first, first_result, True, first_found[0])
        second_found = ([], None)
        if second_result is not None:
            second_found = self._read(second, second_result) if failure is None else ([], None)
            self._record(second, second_result, store_second, second_found)
        if failure is not None:
            raise failure
        self._settle(first, first_result, *first_found[0])  # raises when the first failed: its output says why
        if second_result is None:
            raise OperationError(f"dokku {first.kind} failed, so dokku {second.kind} did not run.")
        self._settle(second, second_result, *second_found)
        return second_result

    def _record(self, command: Command, result: ssh.RunResult, store_stdout: bool,
                found: tuple[list[str], DokkuError | None] = ([], None)) -> None:
        warnings, error = found
        if stores_output(command):
            stdout = stored_stream(result.stdout, self.redactor)
            stderr = stored_stream(result.stderr, self.redactor)
        else:
            # Never Dokku's text: only the panel's one-line reading of what went wrong.
            reading = error.message if error else " ".join(warnings)
            stdout, stderr = "", reading if (result.stderr.total or reading) else ""
        if not (store_stdout and self.declared.store_output and stores_output(command)) and result.stdout.total:
            stdout = NOT_STORED
        db.session.add(CommandRun(
            operation_id=self.op_id, position=self.position, server_name=self.server_name,
            argv=display_argv(command, sudo=self.connection.target.sudo), exit_code=result.exit_code,
            stdout=stdout, stderr=stderr, error=result.error,
            started_at=result.started_at, finished_at=result.finished_at,
        ))
        db.session.commit()
        self.position += 1

    # -- helpers shared by executors --

    @property
    def version(self) -> DokkuVersion:
        """The server's Dokku version: as the last connection test read it, or read now."""
        if self._version is None:
            stored = self.server().dokku_version
            if stored:
                self._version = DokkuVersion.parse(stored)
            else:
                self._version = parsers.parse_version(self.run(commands.version()).out)
                self.server().dokku_version = str(self._version)
                db.session.commit()
        return self._version

    def list_keys(self) -> list[dict]:
        """ssh-keys:list as JSON, or as text when Dokku's unescaped JSON does not parse."""
        try:
            return parsers.parse_ssh_keys_list(self.run(commands.ssh_keys_list(True)).out, True)
        except parsers.UnparseableOutput:
            return parsers.parse_ssh_keys_list(self.run(commands.ssh_keys_list(False)).out, False)

    def store_remote_keys(self, keys: list[dict]) -> None:
        server = self.server()
        server.remote_keys = keys
        server.remote_keys_checked_at = utcnow()
        db.session.commit()
        readings.keys_seen(server.id, keys, self.op_id)


# --- server-level work --------------------------------------------------------------


def server_check(ctx: OperationContext) -> None:
    try:
        found = parsers.parse_version(ctx.run(commands.version()).out)
        ctx._version = found
        keys = ctx.list_keys()
    except (ssh.SshError, DokkuError, OperationError) as error:
        server = ctx.server()
        # A changed host key stays the server's state until a check gets through with the pinned key.
        if not isinstance(error, ssh.HostKeyMismatch) and server.status != "host_key_mismatch":
            server.status = getattr(error, "server_status", "error")
            server.status_message = error.message
        server.last_checked_at = utcnow()
        if isinstance(error, parsers.UnsupportedVersion):
            server.dokku_version = str(error.version)
        db.session.commit()
        raise
    server = ctx.server()
    server.dokku_version = str(found)
    server.remote_keys = keys
    server.remote_keys_checked_at = utcnow()
    server.status = "ready"
    server.status_message = f"Connected as {server.ssh_user}; Dokku {found}."
    server.seen_host_key_type = None
    server.seen_host_key_fingerprint = None
    server.last_checked_at = utcnow()
    db.session.commit()
    readings.keys_seen(ctx.server_id, keys, ctx.op_id)


def server_refresh_keys(ctx: OperationContext) -> None:
    ctx.store_remote_keys(ctx.list_keys())


def server_import(ctx: OperationContext) -> None:
    server = ctx.server()
    server_id = server.id
    in_panel = set(db.session.scalars(select(App.name).where(App.server_id == server_id)))
    wanted = ctx.payload.get("apps")
    json_list = ctx.version.json_apps_list
    on_server = parsers.parse_apps_list(ctx.run(commands.apps_list(json_list)).out, json_list)
    names = on_server
    if wanted is not None:
        for name in wanted:
            if name not in on_server:
                ctx.warn(f"{name} is not on the server, so it was not imported.")
            elif name in in_panel:
                ctx.warn(f"{name} is already in the panel.")
        names = [name for name in on_server if name in wanted]
    json_domains = ctx.version.json_domains_report
    for name in names:
        if name in in_panel:
            continue
        try:
            validation.app_name(name, legacy=True)
        except ValidationError:
            ctx.warn(f"{name} was not imported: the panel cannot manage an app with that name.")
            continue
        exported = ctx.run(commands.config_export_json(name), store_stdout=False)
        env = parsers.parse_config_export_json(exported.out)
        ctx.redactor.add(*env.values())
        hosts = parsers.parse_domains(ctx.run(commands.domains_report(name, json_domains)).out, json_domains)
        app = App(server=ctx.server(), name=name, imported=True, status="active")
        db.session.add(app)
        for key in sorted(env):
            try:
                validation.env_key(key)
            except ValidationError:
                ctx.warn(f"{name}: the variable {key!r} was not imported, its name is not valid.")
                continue
            var = EnvVar(app=app, key=key)
            var.value = env[key]
            db.session.add(var)
        for host in dict.fromkeys(hosts):
            try:
                hostname = validation.operand(validation.domain(host, legacy=True), "domain")
            except ValidationError:
                ctx.warn(f"{name}: the domain {host} was not imported, it is not a valid hostname.")
                continue
            db.session.add(Domain(app=app, hostname=hostname))
        db.session.commit()  # one app at a time: what was imported stays if a later app fails
        # What was read is what the server has: the imported rows start as applied.
        readings.app_seen(app.id, True)
        readings.env_seen(app.id, env, ctx.op_id)
        readings.domains_seen(app.id, hosts)
        in_panel.add(name)


def deploy_keys_apply(ctx: OperationContext) -> None:
    server_id = ctx.server().id
    listed = ctx.list_keys()
    on_server = {key["fingerprint"] for key in listed}

    def panel_key(name: str) -> DeployKey | None:
        return db.session.scalar(select(DeployKey).where(DeployKey.server_id == server_id, DeployKey.name == name))

    for removal in ctx.payload.get("remove", []):
        name, fingerprint = removal.get("name"), removal.get("fingerprint")
        current = panel_key(name) if name else None
        if current is not None and current.fingerprint == fingerprint:
            continue  # added back since: it stays
        if fingerprint and fingerprint not in on_server:
            continue  # already gone
        if removal.get("adopted") or not name or name.startswith("-"):
            # Adopted keys keep names Dokku never validated, and a name with a leading `-`
            # would be read as an option: remove those by fingerprint.
            ctx.run(commands.ssh_keys_remove_fingerprint(fingerprint))
        else:
            ctx.run(commands.ssh_keys_remove(name))
    for name in ctx.payload.get("add", []):
        key = panel_key(name)
        if key is None:
            continue  # removed from the panel since it was requested
        if key.fingerprint in on_server:
            continue
        line = key.public_key
        ctx.run(commands.ssh_keys_add(name, line))
    ctx.store_remote_keys(ctx.list_keys())


# --- app-level work -----------------------------------------------------------------


def app_create(ctx: OperationContext) -> None:
    name = ctx.app().name
    try:
        ctx.run(commands.apps_create(name))
    except parsers.AppAlreadyExists:
        ctx.warn(f"{name} already existed on the server; the panel manages it now.")
    readings.app_seen(ctx.app_id, True)


def app_destroy(ctx: OperationContext) -> None:
    name = ctx.app().name
    try:
        ctx.run(commands.apps_destroy(name))
    except parsers.AppMissing:
        ctx.warn(f"{name} was already gone from the server.")
    app = ctx.app()
    db.session.delete(app)  # env vars and domains go with it, each with its own entry
    db.session.commit()


def app_restart(ctx: OperationContext) -> None:
    ctx.run(commands.ps_restart(ctx.app().name))


def env_apply(ctx: OperationContext) -> None:
    app = ctx.app()
    name = app.name
    requested = list(dict.fromkeys([*ctx.payload.get("set", []), *ctx.payload.get("unset", [])]))
    current = {var.key: var.value for var in db.session.scalars(
        select(EnvVar).where(EnvVar.app_id == app.id, EnvVar.key.in_(requested)))}
    # The desired state decides, not the request: a key set since is set, one removed since is unset.
    to_set = {key: current[key] for key in requested if key in current}
    to_unset = [key for key in requested if key not in current]
    restart = bool(ctx.payload.get("restart", True))
    if not requested:
        return
    work: list[Command] = []
    if to_set:
        work += commands.config_set(name, to_set, restart=restart and not to_unset)
    if to_unset:
        work.append(commands.config_unset(name, to_unset, restart=restart))
    for command in work[:-1]:
        ctx.run(command)
    # Read back (never stored) in the same exec as the last change, and compare: Dokku writes
    # integer-looking values as numbers.
    exported = ctx.run_then(work[-1], commands.config_export_json(name), store_second=False)
    stored = parsers.parse_config_export_json(exported.out)
    readings.env_seen(ctx.app_id, stored, ctx.op_id)
    for key in parsers.readback_mismatches(to_set, stored):
        if key not in stored:
            ctx.warn(f"Dokku does not list {key} after setting it.")
        elif _INTEGER.fullmatch(to_set[key]):
            ctx.warn(f"Dokku stored a different value for {key} (it writes integer-looking values as numbers).")
        else:
            ctx.warn(f"Dokku stored a different value for {key}.")
    for key in to_unset:
        if key in stored:
            ctx.warn(f"{key} is still set on the server after config:unset.")


def domains_apply(ctx: OperationContext) -> None:
    app = ctx.app()
    name = app.name
    wanted = set(db.session.scalars(select(Domain.hostname).where(Domain.app_id == app.id)))
    add = [host for host in ctx.payload.get("add", []) if host in wanted]
    remove = {host for host in ctx.payload.get("remove", []) if host not in wanted}
    if add:
        ctx.run(commands.domains_add(name, add))
        readings.domains_added(app.id, add)
    if remove:
        # domains:remove treats its argument as a regex: set what remains instead.
        json_format = ctx.version.json_domains_report
        present = parsers.parse_domains(ctx.run(commands.domains_report(name, json_format)).out, json_format)
        remaining = [host for host in present if host not in remove]
        for host in [h for h in remaining if h.startswith("-")]:
            # Dokku would read it as an option, so `domains:set` could never succeed with it.
            ctx.warn(f"{host} was dropped from {name}: Dokku would read it as an option.")
            remaining.remove(host)
        if remaining != present:
            ctx.run(commands.domains_set(name, remaining) if remaining else commands.domains_clear(name))
        readings.domains_seen(ctx.app_id, remaining)  # the report, less what was just taken off


# --- after a command the panel lost sight of -----------------------------------------


def read_back_first(ctx: OperationContext) -> None:
    """Before applying: the server's state as an earlier, lost command of this scope may have left it.

    The earlier command has certainly ended (the drain waited for its deadline); what it did is
    read from the server, and where that is not what the panel wants the warning says so. This
    operation then applies the panel's current wanted state as usual.
    """
    earlier = ctx.after_doubt
    _check_deploys_ended(ctx, earlier)
    reader = _READ_BACKS.get(ctx.kind)
    if reader is not None:
        reader(ctx, earlier)
    db.session.execute(update(Operation).where(Operation.id.in_([op.id for op in earlier]))
                       .values(doubt_resolved_by_id=ctx.op_id))
    db.session.commit()
    numbers = ", ".join(f"#{op.id}" for op in earlier)
    ctx.warn(f"Started once the earlier command on {ctx.server_name} ({numbers}) had certainly ended; "
             "the server's state was read back first.")


def _handed_to_docker(op: Operation) -> bool:
    # A restart hands its deploy to Docker; so does config:set / config:unset without --no-restart.
    return op.kind_info.hands_to_docker or (op.kind == "env.apply" and bool(op.data.get("restart", True)))


def _check_deploys_ended(ctx: OperationContext, earlier: list[Operation]) -> None:
    """A deploy the lost command started can outlive the CLI: apply nothing while the app's deploy lock is held."""
    if ctx.app_id is None or not any(_handed_to_docker(op) for op in earlier):
        return
    name = ctx.app().name
    if ctx.run(commands.apps_locked(name)).exit_code == 0:
        raise OperationError(
            f"A deploy of {name} is still running on {ctx.server_name} (its deploy lock is in place), perhaps "
            f"the one the earlier command started. Nothing was changed; retry once it has finished "
            f"(`dokku apps:locked {name}` on the server tells).")
    # Dokku 0.38 and newer also keep a build record while a build or deploy runs: one still running
    # (its lock already released, or taken by no lock) means the same.
    if ctx.version >= commands.BUILDS_SINCE:
        from intercity.dokku.builds import parse_builds

        running = [b for b in parse_builds(ctx.run(commands.builds_list(name)).out) if b.status == "running"]
        if running:
            since = running[0].started_at.strftime("%H:%M:%S UTC") if running[0].started_at else "earlier"
            raise OperationError(
                f"A build of {name} is still running on {ctx.server_name} (build {running[0].id}, started {since}), "
                f"perhaps the one the earlier command started. Nothing was changed; retry once it has finished "
                f"(`dokku builds:list {name}` on the server tells).")


def _earlier_names(earlier: list[Operation], added: str, removed: str) -> tuple[set[str], set[str]]:
    adds, removes = set(), set()
    for op in earlier:
        adds.update(op.data.get(added, []))
        removes.update(item.get("name") if isinstance(item, dict) else item for item in op.data.get(removed, []))
    return adds, removes


def _read_back_env(ctx: OperationContext, earlier: list[Operation]) -> None:
    app = ctx.app()
    name = app.name
    wanted = {var.key: var.value for var in db.session.scalars(select(EnvVar).where(EnvVar.app_id == app.id))}
    mine = set(ctx.payload.get("set", [])) | set(ctx.payload.get("unset", []))
    exported = ctx.run(commands.config_export_json(name), store_stdout=False)
    on_server = parsers.parse_config_export_json(exported.out)
    ctx.redactor.add(*on_server.values())
    readings.env_seen(ctx.app_id, on_server, ctx.op_id)
    sets, unsets = _earlier_names(earlier, "set", "unset")
    for key in sorted((sets | unsets) - mine):  # this operation applies its own keys anyway
        if key in wanted and parsers.readback_mismatches({key: wanted[key]}, on_server):
            ctx.warn(f"{key} on the server is not what the panel holds (the earlier change did not reach it); "
                     "retry that change.")
        elif key not in wanted and key in on_server:
            ctx.warn(f"{key} is still set on the server (the earlier removal did not reach it); retry that change.")


def _read_back_domains(ctx: OperationContext, earlier: list[Operation]) -> None:
    app = ctx.app()
    wanted = set(db.session.scalars(select(Domain.hostname).where(Domain.app_id == app.id)))
    json_format = ctx.version.json_domains_report
    present = set(parsers.parse_domains(ctx.run(commands.domains_report(app.name, json_format)).out, json_format))
    readings.domains_seen(ctx.app_id, present)
    mine = set(ctx.payload.get("add", [])) | set(ctx.payload.get("remove", []))
    adds, removes = _earlier_names(earlier, "add", "remove")
    for host in sorted((adds | removes) - mine):
        if host in wanted and host not in present:
            ctx.warn(f"{host} is not on the server (the earlier change did not reach it); retry that change.")
        elif host not in wanted and host in present:
            ctx.warn(f"{host} is still on the server (the earlier removal did not reach it); retry that change.")


# Per kind, how the server's state is read back (deploy_keys.apply lists the keys first anyway).
_READ_BACKS = {"env.apply": _read_back_env, "domains.apply": _read_back_domains}


def failure_reason(error: BaseException) -> str:
    """A sentence for people; unexpected errors are logged, not shown (they might quote a secret)."""
    if isinstance(error, (DokkuError, ssh.SshError, OperationError, ValidationError)):
        return error.message
    log.error("operation failed unexpectedly", exc_info=error)
    return f"The panel hit an unexpected error ({error.__class__.__name__}); it has been logged."
