"""Typed, validated Dokku command builders: argv for the server, a redacted form for people."""
from __future__ import annotations

import base64
import re
import secrets
import shlex
from dataclasses import dataclass

from intercity import validation
from intercity.audit.rules import REDACTED
from intercity.validation import ValidationError

# sshd hands the whole command line to the login shell as one argument, and Linux caps a
# single argument at 128 KiB (MAX_ARG_STRLEN); stay well below it.
MAX_COMMAND_LINE = 100 * 1024


@dataclass(frozen=True)
class Deadline:
    """How long a command may run on the server: coreutils `timeout` sends SIGTERM to its process
    group after `seconds`, and SIGKILL `grace` seconds later if anything is still running."""

    seconds: int
    grace: int

    def prefix(self) -> str:
        # Outside sudo: the sudoers rule names only dokku, and timeout needs no privilege to
        # start it; sudo relays the TERM to dokku.
        return f"timeout -k {int(self.grace)} {int(self.seconds)}"

    @property
    def total(self) -> int:
        """Seconds after its start by which the command has certainly ended."""
        return int(self.seconds) + int(self.grace)


@dataclass(frozen=True, kw_only=True)
class Command:
    """One dokku invocation: what runs, what people see, and which secrets it carries."""

    argv: tuple[str, ...]
    display: tuple[str, ...]
    kind: str
    app: str | None = None
    stdin: bytes | None = None
    secrets: tuple[str, ...] = ()

    # One dokku invocation on the server (a pair has two, each under its own deadline).
    parts = 1

    def remote_line(self, sudo: bool, deadline: Deadline | None = None) -> str:
        line = " ".join(shlex.quote(arg) for arg in self.argv)
        # -n: fail at once instead of waiting for a password nobody will type.
        line = f"sudo -n {line}" if sudo else line
        return f"{deadline.prefix()} {line}" if deadline is not None else line


@dataclass(frozen=True, kw_only=True)
class Then:
    """Two commands in one exec: `second` runs only if `first` succeeded, and a boundary line printed
    on stdout and stderr between them tells their output apart (a random token per pair, so no
    command's output can forge it). Each part's argv is quoted by its own builder."""

    first: Command
    second: Command
    boundary: str

    stdin = None
    parts = 2

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.first.secrets + self.second.secrets

    @property
    def kind(self) -> str:
        return self.first.kind

    def remote_line(self, sudo: bool, deadline: Deadline | None = None) -> str:
        mark = shlex.quote(self.boundary)
        return (f"{self.first.remote_line(sudo, deadline)} && {{ printf '%s\\n' {mark}; "
                f"printf '%s\\n' {mark} >&2; {self.second.remote_line(sudo, deadline)}; }}")


def then(first: Command, second: Command) -> Then | None:
    """`first` then `second` in one exec, or None where that cannot be done safely (stdin, length)."""
    if first.stdin is not None or second.stdin is not None:
        return None
    pair = Then(first=first, second=second, boundary=f"intercity-boundary-{secrets.token_hex(16)}")
    if len(pair.remote_line(sudo=True).encode()) > MAX_COMMAND_LINE:
        return None
    return pair


def _command(kind: str, *args: str, app: str | None = None, stdin: bytes | None = None) -> Command:
    argv = ("dokku", *args)
    return Command(argv=argv, display=argv, kind=kind, app=app, stdin=stdin)


def _format(json_format: bool) -> tuple[str, ...]:
    return ("--format", "json") if json_format else ()


def _existing_app(app: str) -> str:
    # Apps imported from a server may predate Dokku's stricter naming rule.
    return validation.operand(validation.app_name(app, legacy=True), "name")


def _domain(hostname: str) -> str:
    # Dokku's own rule: rows already in the panel or read from a server may predate the DNS
    # rule, and `domains:set` of the remaining ones must not fail forever because of one.
    return validation.operand(validation.domain(hostname, legacy=True), "domain")


def _domains(domains: list[str]) -> list[str]:
    cleaned = list(dict.fromkeys(_domain(d) for d in domains))
    if not cleaned:
        raise ValidationError("Enter at least one domain.", "domain")
    return cleaned


# --- version -------------------------------------------------------------------------

_VERSION = re.compile(r"(?<![\d.])v?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, order=True)
class DokkuVersion:
    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> DokkuVersion:
        """Read `dokku version 0.38.27`, `v0.30.1` or `0.30.0-rc1`; ValueError otherwise."""
        match = _VERSION.search(text or "")
        if not match:
            raise ValueError("no Dokku version number found")
        major, minor, patch = match.groups()
        return cls(int(major), int(minor), int(patch or 0))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def supported(self) -> bool:
        return self >= MINIMUM

    @property
    def json_apps_list(self) -> bool:
        return self >= DokkuVersion(0, 38, 21)

    @property
    def json_domains_report(self) -> bool:
        return self >= DokkuVersion(0, 38, 0)


MINIMUM = DokkuVersion(0, 30, 0)


def version() -> Command:
    return _command("version", "version")


# --- plugins -------------------------------------------------------------------------


def plugin_install(url: str, name: str) -> Command:
    """`plugin:install <url> --name <name>`: root only (Dokku refuses under another user). Only --name is
    parsed; a positional name after the URL is ignored by Dokku."""
    return _command("plugin:install", "plugin:install", url, "--name", name)


# --- apps ----------------------------------------------------------------------------


def apps_list(json_format: bool) -> Command:
    return _command("apps:list", "apps:list", *_format(json_format))


def apps_create(app: str) -> Command:
    app = validation.operand(validation.app_name(app), "name")
    return _command("apps:create", "apps:create", app, app=app)


def apps_destroy(app: str) -> Command:
    app = _existing_app(app)
    # Without --force Dokku prompts for the app name on stdin.
    return _command("apps:destroy", "--force", "apps:destroy", app, app=app)



# --- config --------------------------------------------------------------------------


def _encode(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def config_set(app: str, pairs: dict[str, str], restart: bool) -> list[Command]:
    """Set variables with values base64-encoded; split so no command line exceeds the limit.

    Every call but the last is `--no-restart`, so the app restarts at most once, with all values.
    """
    app = _existing_app(app)
    if not pairs:
        raise ValidationError("Enter at least one variable.", "key")
    encoded: dict[str, tuple[str, str]] = {}
    for key, value in pairs.items():
        # Checked, not changed: the value is sent exactly as given so that the read-back
        # compares like with like; one Dokku cannot store (set before that was refused) is
        # never sent, as it would break the app's config on the server.
        validation.env_value(value)
        key = validation.operand(validation.env_key(key), "key")
        encoded[key] = (value, f"{key}={_encode(value)}")

    prefix = ("--quiet", "config:set", "--encoded", "--no-restart", app)
    base = len(_command("config:set", *prefix).remote_line(sudo=True).encode())
    chunks: list[list[str]] = [[]]
    size = base
    for key in sorted(encoded):
        arg_size = 1 + len(shlex.quote(encoded[key][1]))
        if base + arg_size > MAX_COMMAND_LINE:
            raise ValidationError(
                f"The value of {key} is too large to send to Dokku (at most about 75 KB per value).", "value"
            )
        if size + arg_size > MAX_COMMAND_LINE:
            chunks.append([])
            size = base
        chunks[-1].append(key)
        size += arg_size

    commands = []
    for index, keys in enumerate(chunks):
        last = index == len(chunks) - 1
        head = ("dokku", "--quiet", "config:set", "--encoded")
        if not (last and restart):
            head += ("--no-restart",)
        head += (app,)
        commands.append(
            Command(
                argv=head + tuple(encoded[k][1] for k in keys),
                display=head + tuple(f"{k}={REDACTED}" for k in keys),
                kind="config:set",
                app=app,
                # Empty values would make a redactor match everywhere; they reveal nothing.
                secrets=tuple(dict.fromkeys(encoded[k][0] for k in keys if encoded[k][0])),
            )
        )
    return commands


def config_unset(app: str, keys: list[str], restart: bool) -> Command:
    app = _existing_app(app)
    names = sorted({validation.operand(validation.env_key(k), "key") for k in keys})
    if not names:
        raise ValidationError("Choose at least one variable to remove.", "key")
    flags = () if restart else ("--no-restart",)
    return _command("config:unset", "--quiet", "config:unset", *flags, app, *names, app=app)


def config_export_json(app: str) -> Command:
    app = _existing_app(app)
    return _command("config:export", "config:export", app, "--format", "json", app=app)


# --- domains -------------------------------------------------------------------------


def domains_add(app: str, domains: list[str]) -> Command:
    app = _existing_app(app)
    return _command("domains:add", "domains:add", app, *_domains(domains), app=app)


def domains_set(app: str, domains: list[str]) -> Command:
    app = _existing_app(app)
    return _command("domains:set", "domains:set", app, *_domains(domains), app=app)


def domains_clear(app: str) -> Command:
    app = _existing_app(app)
    return _command("domains:clear", "domains:clear", app, app=app)


def domains_remove_safely(app: str, current: list[str], remove: str) -> Command:
    """Remove one domain by setting the rest: `domains:remove` treats its argument as a regex."""
    target = _domain(remove)
    remaining = [d for d in current if d.strip().lower() != target]
    return domains_set(app, remaining) if remaining else domains_clear(app)


def domains_report(app: str, json_format: bool) -> Command:
    app = _existing_app(app)
    return _command("domains:report", "domains:report", app, *_format(json_format), app=app)


# --- ssh keys ------------------------------------------------------------------------


def _key_name(name: str) -> str:
    return validation.operand(validation.deploy_key_name(name), "name")


def ssh_keys_add(name: str, public_key_line: str) -> Command:
    name = _key_name(name)
    key = validation.public_key(public_key_line)
    # Dokku reads the first line of stdin when stdin is a pipe.
    return _command("ssh-keys:add", "ssh-keys:add", name, stdin=(key.line + "\n").encode())


def ssh_keys_remove(name: str) -> Command:
    return _command("ssh-keys:remove", "ssh-keys:remove", _key_name(name))


def ssh_keys_remove_fingerprint(fingerprint: str) -> Command:
    fingerprint = (fingerprint or "").strip()
    if not validation.FINGERPRINT.match(fingerprint):
        raise ValidationError("That is not a SHA256 key fingerprint (SHA256:…).", "fingerprint")
    return _command("ssh-keys:remove", "ssh-keys:remove", "--fingerprint", fingerprint)


def ssh_keys_list(json_format: bool) -> Command:
    # ssh-keys:list only recognises --format as its first argument.
    return _command("ssh-keys:list", "ssh-keys:list", *_format(json_format))


# --- ps ------------------------------------------------------------------------------


def apps_locked(app: str) -> Command:
    """Exit 0 while the app's deploy lock is held (a deploy or restart running, or `apps:lock`), 1 when not."""
    app = _existing_app(app)
    return _command("apps:locked", "apps:locked", app, app=app)


def ps_restart(app: str) -> Command:
    app = _existing_app(app)
    return _command("ps:restart", "ps:restart", app, app=app)


def ps_report(app: str, json_format: bool) -> Command:
    app = _existing_app(app)
    return _command("ps:report", "ps:report", app, *_format(json_format), app=app)


# --- deploys: build history (Dokku 0.38+), what is running, scaling ---------------------

BUILDS_SINCE = DokkuVersion(0, 38, 0)
# Process types as Procfile names them; a count Dokku accepts.
PROCESS_TYPE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}\Z")
MAX_SCALE = 100


def builds_list(app: str) -> Command:
    app = _existing_app(app)
    return _command("builds:list", "builds:list", app, "--format", "json", app=app)


def builds_info(app: str, build_id: str) -> Command:
    app = _existing_app(app)
    return _command("builds:info", "builds:info", app, _build_id(build_id), "--format", "json", app=app)


def builds_output(app: str, build_id: str) -> Command:
    app = _existing_app(app)
    return _command("builds:output", "builds:output", app, _build_id(build_id), app=app)


def _build_id(build_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,79}", build_id or ""):
        raise ValidationError("That is not a build id Dokku lists.", "build")
    return build_id


def git_report(app: str, json_format: bool) -> Command:
    app = _existing_app(app)
    return _command("git:report", "git:report", app, *_format(json_format), app=app)


def apps_report(app: str, json_format: bool) -> Command:
    app = _existing_app(app)
    return _command("apps:report", "apps:report", app, *_format(json_format), app=app)


def events() -> Command:
    """The last 100 lines of Dokku's event log (empty when it was never switched on)."""
    return _command("events", "events")


def ps_scale(app: str, counts: dict[str, int]) -> Command:
    app = _existing_app(app)
    if not counts:
        raise ValidationError("Give at least one process type a count.", "scale")
    pairs = []
    for proc in sorted(counts):
        if not PROCESS_TYPE.match(proc):
            raise ValidationError(f"{proc!r} is not a process type: use lowercase letters, digits, - and _.", "scale")
        count = counts[proc]
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_SCALE:
            raise ValidationError(f"The count for {proc} must be a whole number from 0 to {MAX_SCALE}.", "scale")
        pairs.append(f"{proc}={count}")
    return _command("ps:scale", "ps:scale", app, *pairs, app=app)


def ps_rebuild(app: str) -> Command:
    app = _existing_app(app)
    return _command("ps:rebuild", "ps:rebuild", app, app=app)


def ps_stop(app: str) -> Command:
    app = _existing_app(app)
    return _command("ps:stop", "ps:stop", app, app=app)


def ps_start(app: str) -> Command:
    app = _existing_app(app)
    return _command("ps:start", "ps:start", app, app=app)
