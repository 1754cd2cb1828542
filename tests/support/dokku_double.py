#!/usr/bin/python3
"""A stand-in for the ``dokku`` command, for Intercity's test suite.

The panel talks to Dokku over SSH and parses what comes back, so this double
reproduces Dokku's *observable* behaviour -- output text, which stream it goes
to, exit codes, how stdin is read -- for the commands the panel uses. The facts
come from Dokku's sources (0.38.27 and older) and from what real Dokku 0.38.27
answered, recorded in tests/support/golden/ (tests/test_dokku_golden.py replays
every record into the double and compares).

It is run as a script by ``/usr/bin/python3`` (stdlib only, no venv), normally
through sshd via the launcher that ``tests/support/sshd.py`` writes. The test
helpers import it as a module to share the storage code.

State lives on disk under ``$DOKKU_DOUBLE_ROOT``::

    VERSION                   dokku version to emulate (default 0.38.27)
    apps/<app>/               one directory per app (like $DOKKU_ROOT/<app>)
    apps/<app>/created-at     UNIX time of apps:create
    apps/<app>/ENV            config, written exactly like godotenv.Write
    apps/<app>/VHOST          one domain per line (like Dokku's VHOST file)
    apps/<app>/DEPLOYED       marker: the app counts as deployed
    apps/<app>/.deploy.lock   the deploy lock (apps:lock, or a deploy in progress)
    apps/<app>/builds/        build records <id>.json and logs <id>.log (builds:*, 0.38.0+)
    apps/<app>/SCALE, STOPPED process counts (JSON) and the ps:stop marker
    apps/<app>/GIT_SHA, GIT_UPDATED_AT, DEPLOY_SOURCE[_METADATA]  what git:report / apps:report say
    ENV, VHOST                the --global config and global domains
    events-on, events.log     events:on marker and the event log `events` prints
    authorized_keys           the dokku user's keys, in sshcommand's format
    calls.log                 one JSON object per invocation (see below)
    control/                  fault injection (see below)
    plugins/<name>            marker: the service plugin (postgres) is installed
    services/<plugin>/<svc>/  IMAGE, IMAGE_VERSION, PASSWORD, LINKS (one app a line) and
                              an optional STATUS (default running) of one service

Config storage: values are stored byte for byte, except that -- as in Dokku,
whose godotenv 1.5.1 writes integers with ``%d`` -- a value that Go's
strconv.Atoi accepts is stored as that number: ``007`` becomes ``7``,
``+5`` becomes ``5``. The ENV file is read back the way godotenv 1.5.1's
parser does (real Dokku 0.38.27 confirms it, see the golden records), which
loses two more kinds of value: a value ending in ``"`` comes back ending in a
backslash instead (and the next write leaves a file that cannot be parsed), and
a value ending in a backslash makes the file unparsable at once. A file that
cannot be parsed fails every config command that reads it with godotenv's
error (``config:get`` exits 1 silently); ``ps:report`` and ``domains:report``
do not read it.

calls.log: each invocation appends ``{"argv": [...], "command": "<canonical
subcommand>", "stdin_pipe": bool, "euid": int, "user": str, "sudo_user":
str|null, "time": float}``. argv is logged as received; config:set values
are in it (base64 with --encoded).

Fault injection, read on every invocation (files under ``$ROOT/control/``):

    fail/<command>     JSON {"exit_code": 1, "stdout": "", "stderr": "",
                       "times": N}; the command prints stdout/stderr verbatim
                       (no prefix added) and exits with exit_code, without
                       touching state. "times" (optional) limits how many
                       invocations fail; the file is removed when it runs out.
    hang/<command>     a number of seconds to sleep before doing anything.
    unpullable-images  one image:tag a line that <plugin>:create cannot pull.
    restart-fail       a message: restarts triggered by config:set/unset print
                       " !     Failure while restarting app: <msg>" and still
                       exit 0 (as Dokku does); ps:restart prints the message
                       and exits 1.

``<command>`` is the canonical subcommand (``apps:list``, ``version``,
``config:set``; aliases such as ``apps`` or ``-v`` are resolved first), or
``_all`` for every command.

Environment: ``DOKKU_DOUBLE_ROOT`` (required); ``DOKKU_DOUBLE_ALLOW_NONROOT``
lets ssh-keys:add/remove run without root; ``DOKKU_QUIET_OUTPUT``,
``SSHCOMMAND_CHECK_DUPLICATE_NAME`` and ``SSHCOMMAND_CHECK_DUPLICATE_FINGERPRINT``
behave as in Dokku.

Version-dependent behaviour (from ``VERSION``): ``apps:list --format`` exists
from 0.38.21 (before, pflag rejects it: exit 2); ``domains:report`` uses the
Go report format from 0.38.22 and the bash ``printf "%-30s %-25s"`` one before,
and accepts ``--format json`` from 0.38.0; ``ps:restart`` writes its stderr to
stdout from 0.38.0.

Service plugins (dokku-postgres 1.48.0): with plugins/postgres present, postgres:list,
info, create, link, unlink and destroy answer like the plugin's bash (text only, the
`=====>` headers dropped when quiet, failures through dokku_log_fail, the LINKS file, the
colour alias when DATABASE_URL is taken); without it they are unknown commands.

Deploys (tests/support/deploys.py records one: a build record, its log, event lines):
builds:list/info/output answer from the records (before 0.38.0 they are unknown
commands); ps:rebuild, ps:start and ps:scale print a canned deploy log and write a
build record; ps:stop marks the app stopped (ps:report then says `exited`); texts the
reference does not give are marked (inferred) where they are printed.

Known simplifications: no real builds, other plugins, containers or nginx (restarts
print a short canned deploy log); only the subcommands in ``COMMANDS`` exist;
nginx output is that of a host where nginx is not running (as in the golden
records); ``--force`` after the
subcommand is only understood by apps:destroy (as in Dokku, Go subcommands
reject unknown flags with exit 2). sed/grep regexes (domains:remove,
ssh-keys:remove, the duplicate-name check) are translated from POSIX BREs;
the texts of sed's and jq's error messages are approximations.
"""

from __future__ import annotations

import base64
import datetime
import fcntl
import hashlib
import json
import os
import pwd
import random
import re
import shutil
import socket
import stat
import sys
import time
from pathlib import Path

DEFAULT_VERSION = "0.38.27"
ALL_COMMANDS = "_all"
ROOT_ENV = "DOKKU_DOUBLE_ROOT"

# Shown in paths Dokku prints; the double never touches these.
DOKKU_HOME = "/home/dokku"
AUTHORIZED_KEYS_PATH = "/home/dokku/.ssh/authorized_keys"
SSHCOMMAND_ALLOWED_KEYS = "no-agent-forwarding,no-user-rc,no-X11-forwarding,no-port-forwarding"

NEW_APP_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*\Z")
LEGACY_APP_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
ENV_KEY = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
HOSTNAME = re.compile(r"[a-z0-9.*-]*[a-z0-9*-]\Z")
APP_NAME_ERROR = (
    "App name must begin with lowercase alphanumeric character, "
    "and may only contain lowercase alphanumerics, dots, and hyphens"
)

SSH_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ssh-dss",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)

# How sshcommand writes a key into the dokku user's authorized_keys.
SSHCOMMAND_LINE = (
    'command="FINGERPRINT={fingerprint} NAME=\\"{name}\\" `cat /home/dokku/.sshcommand` '
    '$SSH_ORIGINAL_COMMAND",{options} {key}'
)
SSHCOMMAND_LINE_RE = re.compile(
    r'command="FINGERPRINT=(?P<fingerprint>\S*) NAME=\\"(?P<name>.*)\\" `cat [^`]*` '
    r'\$SSH_ORIGINAL_COMMAND",(?P<options>\S*) (?P<key>.*)\Z'
)

# Go's unicode.IsSpace, which strings.TrimSpace uses (Python's str.isspace
# also counts \x1c-\x1f, which Go does not).
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


class EnvFileError(Exception):
    """The ENV file cannot be parsed; the message is godotenv's."""


class DokkuExit(Exception):
    """Raised to end the command with an exit code (like os.Exit in Go)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


# --------------------------------------------------------------------------
# Small helpers shared with tests/support/sshd.py
# --------------------------------------------------------------------------


def version_tuple(version: str) -> tuple[int, ...]:
    """'0.38.27' -> (0, 38, 27); anything after a '-' or '+' is ignored."""
    core = re.split(r"[-+]", version.strip().lstrip("v"), maxsplit=1)[0]
    return tuple(int(part) for part in re.findall(r"\d+", core)[:3])


def parse_public_key(line: str) -> tuple[str, bytes, str] | None:
    """Parse 'type base64 [comment]' like ssh-keygen -l would; None if invalid."""
    parts = line.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return None
    # The blob repeats the key type as an SSH string; ssh-keygen rejects a
    # mismatch, and a truncated ed25519 key.
    if len(blob) < 4:
        return None
    type_len = int.from_bytes(blob[:4], "big")
    if blob[4 : 4 + type_len] != parts[0].encode():
        return None
    if parts[0] == "ssh-ed25519" and len(blob) != 4 + type_len + 4 + 32:
        return None
    return parts[0], blob, parts[2] if len(parts) == 3 else ""


def fingerprint_of(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob (unpadded base64)."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def go_json(value) -> str:
    """Compact JSON as Go's encoding/json writes it (sorted map keys, HTML-safe)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    # Go escapes these even inside strings; outside strings they cannot occur.
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def go_text(value: bytes) -> str:
    """A value for encoding/json, which replaces invalid UTF-8 with U+FFFD."""
    return value.decode("utf-8", "replace")


def raw_text(value: bytes) -> str:
    """A value as text that encodes back to the same bytes."""
    return value.decode("utf-8", "surrogateescape")


def go_trim_space(value: bytes) -> bytes:
    return raw_text(value).strip(GO_SPACE).encode("utf-8", "surrogateescape")


# ---- godotenv 1.5.1: how Dokku writes (and reads back) the ENV files ----

_ATOI = re.compile(rb"[+-]?[0-9]+\Z")


def godotenv_atoi(value: bytes) -> int | None:
    """strconv.Atoi: optional sign, ASCII digits, int64 range; else None."""
    if not _ATOI.match(value):
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**63 else None


def godotenv_escape(value: bytes) -> bytes:
    # Same order as godotenv's doubleQuoteEscape: the backslash goes first so
    # the backslashes added afterwards are not doubled again.
    for char in (b"\\", b"\n", b"\r", b'"', b"!", b"$", b"`"):
        replacement = {b"\n": b"\\n", b"\r": b"\\r"}.get(char, b"\\" + char)
        value = value.replace(char, replacement)
    return value


def godotenv_marshal(env: dict[str, bytes]) -> bytes:
    """godotenv.Marshal: sorted lines, integers bare, the rest double-quoted."""
    lines = []
    for key, value in env.items():
        number = godotenv_atoi(value)
        if number is not None:
            lines.append(key.encode() + b"=" + str(number).encode())
        else:
            lines.append(key.encode() + b'="' + godotenv_escape(value) + b'"')
    return b"\n".join(sorted(lines))


def go_quote(data: bytes) -> str:
    """Go's %q of a string (strconv.Quote): printable runes kept, the rest escaped."""
    out = ['"']
    text = data.decode("utf-8", "surrogateescape")
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an invalid UTF-8 byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in ('"', "\\"):
            out.append("\\" + char)
        elif char in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                        "\t": "\\t", "\v": "\\v"}[char])
        elif char == " " or char.isprintable():
            out.append(char)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}" if code >= 0x80 else f"\\x{code:02x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out) + '"'


_GODOTENV_SPACE = b"\t\v\f\r \x85\xa0"  # godotenv's isSpace, applied per byte
_ESCAPE = re.compile(rb"\\.")  # Go's '.' does not match a newline
_UNESCAPE = re.compile(rb"\\([^$])")
_EXPAND_VAR = re.compile(rb"(\\)?(\$)(\()?\{?([A-Z0-9_]+)?\}?")


def _godotenv_expand_escapes(value: bytes) -> bytes:
    value = _ESCAPE.sub(
        lambda m: {b"\\n": b"\n", b"\\r": b"\r"}.get(m.group(0), m.group(0)), value
    )
    return _UNESCAPE.sub(rb"\1", value)


def _godotenv_expand_variables(value: bytes, known: dict[str, bytes]) -> bytes:
    def replace(match: re.Match) -> bytes:
        # godotenv compares group 2 (always "$") with "(", so only a leading
        # backslash counts as an escape.
        if match.group(1) == b"\\":
            return match.group(0)[1:]
        if match.group(4):
            name = match.group(4).decode()
            if name in known:
                return known[name]
            return os.environb.get(match.group(4), b"")
        return match.group(0)

    return _EXPAND_VAR.sub(replace, value)


def godotenv_parse(src: bytes) -> tuple[dict[str, bytes], str | None]:
    """A port of godotenv 1.5.1's parseBytes: (values parsed so far, error)."""
    src = src.replace(b"---\n", b"\n").replace(b"\r\n", b"\n")
    out: dict[str, bytes] = {}
    cutset: bytes = src
    while True:
        # getStatementStart: skip whitespace and comment lines.
        while True:
            stripped = cutset.lstrip(b" \t\n\v\f\r")
            if not stripped:
                return out, None
            if stripped[:1] != b"#":
                cutset = stripped
                break
            newline = stripped.find(b"\n")
            if newline == -1:
                return out, None
            cutset = stripped[newline:]

        # locateKeyName
        src_k = cutset.lstrip(_GODOTENV_SPACE)
        if src_k.startswith(b"export"):
            trimmed = src_k[len(b"export"):]
            if trimmed[:1] and trimmed[:1] in _GODOTENV_SPACE:
                src_k = trimmed.lstrip(_GODOTENV_SPACE)
        key, offset = b"", 0
        for index, char in enumerate(src_k):
            if bytes([char]) in _GODOTENV_SPACE:
                continue
            if char in b"=:":
                key, offset = src_k[:index], index + 1
                break
            if char == ord("_") or chr(char).isalpha() or chr(char).isnumeric() or char == ord("."):
                continue
            return out, (f"unexpected character {go_quote(chr(char).encode())} "
                         f"in variable name near {go_quote(src_k)}")
        if not src_k:
            return out, "zero length string"
        name = key.decode("utf-8", "surrogateescape").rstrip(GO_SPACE)
        rest = src_k[offset:].lstrip(_GODOTENV_SPACE)

        # extractVarValue
        quote = rest[:1]
        if quote not in (b'"', b"'"):
            ends = [i for i in (rest.find(b"\n"), rest.find(b"\r")) if i != -1]
            end_of_line = min(ends) if ends else len(rest)
            if end_of_line == 0:
                out[name], cutset = b"", rest
                continue
            line = rest[:end_of_line].decode("utf-8", "replace")
            end_of_var = len(line)
            for i in range(end_of_var - 1, 0, -1):
                if line[i] == "#" and line[i - 1] in _GODOTENV_SPACE.decode("latin-1"):
                    end_of_var = i
                    break
            value = line[:end_of_var].strip(_GODOTENV_SPACE.decode("latin-1")).encode()
            out[name] = _godotenv_expand_variables(value, out)
            cutset = rest[end_of_line:]
            continue
        for i in range(1, len(rest)):
            if rest[i : i + 1] != quote or rest[i - 1 : i] == b"\\":
                continue
            # The bug behind the losses: Trim*Func strips *every* quote at
            # both ends, including an escaped one right before the closing quote.
            value = rest[:i].rstrip(quote).lstrip(quote)
            if quote == b'"':
                value = _godotenv_expand_variables(_godotenv_expand_escapes(value), out)
            out[name] = value
            cutset = rest[i + 1 :]
            break
        else:
            end = rest.find(b"\n")
            # godotenv formats this one with %s: the raw text, quotes and all.
            raw = rest[: end if end != -1 else len(rest)]
            return out, "unterminated quoted value " + raw.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------
# POSIX basic regular expressions (Dokku uses sed and grep on user input)
# --------------------------------------------------------------------------

_POSIX_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z",
    "lower": "a-z", "space": " \\t\\n\\r\\f\\v", "blank": " \\t",
    "xdigit": "0-9A-Fa-f", "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
}


def _bracket_to_python(expr: str) -> str:
    """Translate one POSIX bracket expression ('[...]') to Python syntax."""
    body = expr[1:-1]
    out = "["
    if body.startswith("^"):
        out += "^"
        body = body[1:]
    items: list[str] = []
    i = 0
    while i < len(body):
        if body.startswith("[:", i):
            end = body.index(":]", i + 2)
            items.append(_POSIX_CLASSES.get(body[i + 2 : end], ""))
            i = end + 2
            continue
        if i + 2 < len(body) and body[i + 1] == "-":
            items.append(re.escape(body[i]) + "-" + re.escape(body[i + 2]))
            i += 3
            continue
        items.append(re.escape(body[i]))  # backslash is literal in POSIX brackets
        i += 1
    return out + "".join(items) + "]"


def bre_to_python(pattern: str) -> str:
    """Translate a GNU basic regular expression to Python ``re`` syntax.

    Raises ValueError where sed/grep would report a malformed expression.
    """
    out: list[str] = []
    at_start = True  # a '*' here is literal in a BRE
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if i + 1 >= len(pattern):
                raise ValueError("trailing backslash")
            nxt = pattern[i + 1]
            i += 2
            if nxt == "(":
                out.append("(")
                at_start = True
                continue
            if nxt in "){}+?":
                out.append(nxt)
            elif nxt.isdigit():
                out.append("\\" + nxt)
            elif nxt in "wWsSbB":
                out.append("\\" + nxt)
            elif nxt in "<>":
                out.append(r"\b")
            elif nxt == "n":
                out.append("\n")
            else:
                out.append(re.escape(nxt))
            at_start = False
            continue
        if char == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] == "^":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                j += 1
            while j < len(pattern) and pattern[j] != "]":
                if pattern[j] == "[" and j + 1 < len(pattern) and pattern[j + 1] in ":.=":
                    close = pattern.find(pattern[j + 1] + "]", j + 2)
                    if close == -1:
                        raise ValueError("unterminated character class")
                    j = close + 2
                else:
                    j += 1
            if j >= len(pattern):
                raise ValueError("unterminated [")
            out.append(_bracket_to_python(pattern[i : j + 1]))
            i = j + 1
            at_start = False
            continue
        if char == "*":
            if at_start:
                out.append(r"\*")
            elif not (out and out[-1] in ("*", "+", "?")):  # 'a**' is 'a*' in a BRE
                out.append("*")
        elif char == ".":
            out.append(".")
        else:
            out.append(re.escape(char))
        at_start = False
        i += 1
    translated = "".join(out)
    try:
        re.compile(translated)
    except re.error as exc:
        raise ValueError(str(exc)) from exc
    return translated


# --------------------------------------------------------------------------
# On-disk state
# --------------------------------------------------------------------------


class State:
    """The double's state directory; also used by the tests' DokkuDouble API."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # paths -----------------------------------------------------------------
    @property
    def apps_dir(self) -> Path:
        return self.root / "apps"

    @property
    def control_dir(self) -> Path:
        return self.root / "control"

    @property
    def calls_log(self) -> Path:
        return self.root / "calls.log"

    @property
    def keys_file(self) -> Path:
        return self.root / "authorized_keys"

    def app_dir(self, app: str) -> Path:
        if not LEGACY_APP_NAME.match(app):
            raise ValueError(f"not an app name: {app!r}")
        return self.apps_dir / app

    def ensure(self) -> None:
        for path in (self.root, self.apps_dir, self.control_dir / "fail", self.control_dir / "hang"):
            path.mkdir(parents=True, exist_ok=True)

    def lock(self):
        """An exclusive lock serialising commands that read-modify-write state."""
        self.ensure()
        handle = open(self.root / ".lock", "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        return handle

    # version ---------------------------------------------------------------
    def version(self) -> str:
        path = self.root / "VERSION"
        return path.read_text().strip() if path.exists() else DEFAULT_VERSION

    # apps ------------------------------------------------------------------
    def app_names(self) -> list[str]:
        if not self.apps_dir.is_dir():
            return []
        # Dokku lists $DOKKU_ROOT minus dotfiles and names starting uppercase.
        return sorted(
            entry.name
            for entry in self.apps_dir.iterdir()
            if entry.is_dir() and not entry.name.startswith(".") and not entry.name[:1].isupper()
        )

    def app_exists(self, app: str) -> bool:
        return bool(LEGACY_APP_NAME.match(app)) and (self.apps_dir / app).is_dir()

    def create_app(self, app: str) -> None:
        directory = self.app_dir(app)
        directory.mkdir(parents=True)
        (directory / "created-at").write_text(str(int(time.time())))

    def destroy_app(self, app: str) -> None:
        shutil.rmtree(self.app_dir(app))

    def _marker(self, app: str, name: str, present: bool) -> None:
        marker = self.app_dir(app) / name
        if present:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def locked(self, app: str) -> bool:
        return (self.app_dir(app) / ".deploy.lock").exists()

    def set_locked(self, app: str, locked: bool = True) -> None:
        self._marker(app, ".deploy.lock", locked)

    def deployed(self, app: str) -> bool:
        return (self.app_dir(app) / "DEPLOYED").exists()

    def set_deployed(self, app: str, deployed: bool = True) -> None:
        self._marker(app, "DEPLOYED", deployed)

    # config ----------------------------------------------------------------
    def env_path(self, app: str) -> Path:
        return self.root / "ENV" if app == "--global" else self.app_dir(app) / "ENV"

    def read_env(self, app: str) -> dict[str, bytes]:
        """The config as godotenv reads it; EnvFileError if it cannot be parsed."""
        path = self.env_path(app)
        data = path.read_bytes() if path.exists() else b""
        env, error = godotenv_parse(data)
        if error:
            raise EnvFileError(error)
        return env

    def write_env(self, app: str, env: dict[str, bytes]) -> None:
        path = self.env_path(app)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(godotenv_marshal(env) + b"\n")  # godotenv.Write adds "\n"

    # domains ---------------------------------------------------------------
    def vhost_path(self, app: str) -> Path:
        return self.root / "VHOST" if app == "--global" else self.app_dir(app) / "VHOST"

    def read_domains(self, app: str) -> list[str]:
        path = self.vhost_path(app)
        if not path.exists():
            return []
        return [line for line in path.read_text("utf-8", "surrogateescape").split("\n") if line]

    def write_domains(self, app: str, domains: list[str]) -> None:
        text = "".join(domain + "\n" for domain in domains)
        self.vhost_path(app).write_text(text, "utf-8", "surrogateescape")

    # ssh keys --------------------------------------------------------------
    def key_lines(self) -> list[str]:
        if not self.keys_file.exists():
            return []
        return self.keys_file.read_text("utf-8", "surrogateescape").splitlines()

    def write_key_lines(self, lines: list[str]) -> None:
        self.keys_file.write_text("".join(line + "\n" for line in lines), "utf-8", "surrogateescape")

    def keys(self) -> list[dict[str, str]]:
        """Keys with sshcommand's prefix, as ssh-keys:list sees them."""
        found = []
        for line in self.key_lines():
            match = SSHCOMMAND_LINE_RE.match(line)
            if match:
                found.append(
                    {
                        "name": match["name"],
                        "fingerprint": match["fingerprint"],
                        "options": match["options"],
                        "public_key": match["key"],
                    }
                )
        return found

    def add_key_line(self, name: str, public_key: str) -> str:
        parsed = parse_public_key(public_key)
        if parsed is None:
            raise ValueError(f"not a valid ssh public key: {public_key!r}")
        fingerprint = fingerprint_of(parsed[1])
        line = SSHCOMMAND_LINE.format(
            fingerprint=fingerprint, name=name, options=SSHCOMMAND_ALLOWED_KEYS,
            key=public_key.strip(),
        )
        self.write_key_lines(self.key_lines() + [line])
        return fingerprint

    # control ---------------------------------------------------------------
    def hang_seconds(self, command: str) -> float:
        total = 0.0
        for name in (command, ALL_COMMANDS):
            path = self.control_dir / "hang" / name
            if path.exists():
                total += float(path.read_text().strip() or 0)
        return total

    def take_fault(self, command: str) -> dict | None:
        """The injected failure for this command, consuming one of its 'times'."""
        for name in (command, ALL_COMMANDS):
            path = self.control_dir / "fail" / name
            if not path.exists():
                continue
            fault = json.loads(path.read_text() or "{}")
            times = fault.get("times")
            if times is not None:
                if times <= 1:
                    path.unlink()
                else:
                    path.write_text(json.dumps({**fault, "times": times - 1}))
            return fault
        return None

    def restart_failure(self) -> str | None:
        path = self.control_dir / "restart-fail"
        return path.read_text().strip() if path.exists() else None

    # events ----------------------------------------------------------------
    @property
    def events_log(self) -> Path:
        return self.root / "events.log"

    def events_enabled(self) -> bool:
        return (self.root / "events-on").exists()

    def set_events(self, enabled: bool) -> None:
        marker = self.root / "events-on"
        if enabled:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def log_call(self, entry: dict) -> None:
        # One write() per line so concurrent invocations don't interleave.
        line = json.dumps(entry) + "\n"
        fd = os.open(self.calls_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


class Console:
    """Dokku's log helpers (plugins/common/functions, log.go)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        # ps:restart since 0.38 tees everything into the build log, which
        # merges stderr into stdout.
        self.merge_stderr = False

    @staticmethod
    def _write(stream, data: str | bytes, end: str | bytes) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if isinstance(end, str):
            end = end.encode()
        stream.buffer.write(data + end)
        stream.buffer.flush()

    def out(self, data: str | bytes = "", end: str | bytes = "\n") -> None:
        self._write(sys.stdout, data, end)

    def err(self, data: str | bytes = "", end: str | bytes = "\n") -> None:
        self._write(sys.stdout if self.merge_stderr else sys.stderr, data, end)

    def info1(self, message: str, quiet_able: bool = False) -> None:
        if not (quiet_able and self.quiet):
            self.out("-----> " + message)

    def info2(self, message: str, quiet_able: bool = False) -> None:
        if not (quiet_able and self.quiet):
            self.out("=====> " + message)

    def verbose(self, message: str | bytes) -> None:
        prefix = b"       " if isinstance(message, bytes) else "       "
        self.out(prefix + message)

    def warn(self, message: str) -> None:
        self.err(" !     " + message)

    def fail(self, message: str, code: int = 1):
        self.warn(message)
        raise DokkuExit(code)


class Context:
    def __init__(self, state: State, console: Console, command: str, stdin_pipe: bool, force: bool):
        self.state = state
        self.console = console
        self.command = command
        self.stdin_pipe = stdin_pipe
        self.force = force
        self.version = version_tuple(state.version() or DEFAULT_VERSION)

    def since(self, version: str) -> bool:
        return self.version >= version_tuple(version)

    # App checks ------------------------------------------------------------
    def verify_app(self, app: str) -> None:
        """Go's common.VerifyAppName."""
        if app == "":
            self.console.fail("Please specify an app to run the command on")
        if not LEGACY_APP_NAME.match(app):
            self.console.fail(APP_NAME_ERROR)
        if not self.state.app_exists(app):
            self.console.fail(f"App {app} does not exist", 20)

    def verify_app_bash(self, app: str) -> None:
        """Bash's verify_app_name: a bad name is reported as a missing app."""
        if app == "":
            self.console.fail("Please specify an app to run the command on")
        if not self.state.app_exists(app):
            self.console.fail(f"App {app} does not exist", 20)


def parse_flags(ctx: Context, args: list[str], bools=(), strings=()) -> tuple[dict, list[str]]:
    """spf13/pflag as Dokku's Go subcommands use it: flags anywhere, '--' ends
    them, an unknown flag prints an error and usage to stderr and exits 2."""
    flags: dict = {name: False for name in bools}
    flags.update({name: None for name in strings})
    positional: list[str] = []

    def bad(message: str):
        # Real Dokku prints the usage header before pflag's error (golden record 9).
        usage = "".join(f"      --{name}\n" for name in sorted([*bools, *strings]))
        ctx.console.err(f"Usage of {ctx.command}:\n{usage}{message}", end="\n")
        raise DokkuExit(2)

    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            positional.extend(args[i + 1 :])
            break
        if arg.startswith("--"):
            name, has_value, value = arg[2:].partition("=")
            if name in bools:
                flags[name] = value.lower() in ("1", "t", "true") if has_value else True
            elif name in strings:
                if has_value:
                    flags[name] = value
                elif i + 1 < len(args):
                    i += 1
                    flags[name] = args[i]
                else:
                    bad(f"flag needs an argument: --{name}")
            else:
                bad(f"unknown flag: --{name}")
        elif arg.startswith("-") and len(arg) > 1:
            bad(f"unknown shorthand flag: '{arg[1]}' in {arg}")
        else:
            positional.append(arg)
        i += 1
    return flags, positional


# --------------------------------------------------------------------------
# Reports (common.ReportSingleApp)
# --------------------------------------------------------------------------


def ucfirst(text: str) -> str:
    return text[:1].upper() + text[1:]


def run_report(ctx: Context, report_type: str, args: list[str], collect, *, legacy_keys: bool) -> None:
    """ps:report and (Go era) domains:report."""
    console = ctx.console
    output_format, info_flags, positional = "stdout", [], []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--format":
            output_format = args[i + 1] if i + 1 < len(args) else ""
            i += 2
            continue
        if arg.startswith("--") and arg != "--global":
            info_flags.append(arg)
        else:
            positional.append(arg)
        i += 1
    if len(info_flags) > 1:
        return  # Dokku drops ParseReportArgs' error: no output, exit 0.
    info_flag = info_flags[0] if info_flags else ""
    if output_format not in ("stdout", "json"):
        console.fail("Invalid --format value specified")
    if output_format == "json" and info_flag:
        console.fail("--format flag cannot be specified when specifying an info flag")

    apps = positional[:1] or ctx.state.app_names()
    if not apps:
        console.warn("You haven't deployed any applications yet")
        return
    for app in apps:
        if app != "--global":
            ctx.verify_app(app)
        flags = collect(app)
        if output_format == "json":
            data = {}
            for key, value in flags.items():
                bare = key[2:]
                trimmed = bare[len(report_type) + 1 :] if bare.startswith(report_type + "-") else bare
                data[trimmed] = value
                if legacy_keys:
                    data[bare] = value
            console.out(go_json(data))
            continue
        if info_flag:
            if info_flag not in flags:
                console.fail("Invalid flag passed, valid flags: " + ", ".join(sorted(flags)))
            console.out(flags[info_flag])
            continue
        width = max([31, *(len(key) for key in flags)])
        console.info2(f"{app} {report_type} information", quiet_able=True)
        for key in sorted(flags):
            label = ucfirst(key[2:].replace("-", " ").replace(".", " ")) + ":"
            console.verbose(label.ljust(width) + flags[key])


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


def cmd_version(ctx: Context, args: list[str]) -> None:
    version = ctx.state.version()
    if not version:
        ctx.console.fail("Unable to determine dokku's version")
    ctx.console.out(f"dokku version {version}")


def cmd_help(ctx: Context, args: list[str]) -> None:
    ctx.console.out("Usage: dokku [--quiet|--trace|--force] COMMAND <app> [command-specific-options]")


# ---- apps ----


def cmd_apps_list(ctx: Context, args: list[str]) -> None:
    # --format arrived in 0.38.21; before that pflag rejects it (exit 2).
    strings = ("format",) if ctx.since("0.38.21") else ()
    flags, _ = parse_flags(ctx, args, strings=strings)
    output_format = flags.get("format") or "stdout"
    apps = ctx.state.app_names()
    if output_format == "json":
        ctx.console.out(go_json(apps))
        return
    if output_format != "stdout":
        ctx.console.fail("Invalid format specified, supported formats: json, stdout")
    ctx.console.info2("My Apps", quiet_able=True)
    for app in apps:
        ctx.console.out(app)
    if not apps:
        ctx.console.warn("You haven't deployed any applications yet")


def cmd_apps_create(ctx: Context, args: list[str]) -> None:
    _, positional = parse_flags(ctx, args)
    app = positional[0] if positional else ""
    if app == "":
        ctx.console.fail("Please specify an app to run the command on")
    if not NEW_APP_NAME.match(app):
        ctx.console.fail(APP_NAME_ERROR)
    if ctx.state.app_exists(app):
        ctx.console.fail("Name is already taken")
    ctx.state.create_app(app)
    console = ctx.console
    console.info1(f"Creating {app}...", quiet_able=True)
    log_event(ctx, "post-create", app)
    # What Dokku's post-create triggers print on a host without nginx
    # running; without a global vhost they also disable the app's vhost,
    # which leaves NO_VHOST=1 in its config.
    if not ctx.state.read_domains("--global"):
        console.info1("Global server virtual host not set, disabling app vhost...", quiet_able=True)
        ctx.state.write_env(app, {"NO_VHOST": b"1"})
        log_event(ctx, "post-config-update", app, "set", "NO_VHOST")
        log_event(ctx, "post-domains-update", app, "disable")
    console.info1("No port set, setting to random open high port")
    console.info1(f"Random port {random.randint(1025, 65535)}")
    for _ in range(2):
        _nginx_rebuild(ctx, app)


def _scanln() -> str:
    """fmt.Scanln into one string: one token, then a newline."""
    line = sys.stdin.buffer.readline().decode("utf-8", "surrogateescape")
    if line == "":
        raise ValueError("EOF")
    content = line.rstrip("\n").lstrip(" \t\r")
    if content == "":
        raise ValueError("unexpected newline")
    token, _, rest = content.partition(" ")
    if rest.strip(" \t\r"):
        raise ValueError("expected newline")
    return token.rstrip("\r")


def cmd_apps_destroy(ctx: Context, args: list[str]) -> None:
    flags, positional = parse_flags(ctx, args, bools=("force",))
    app = positional[0] if positional else ""
    ctx.verify_app(app)
    if not (flags["force"] or ctx.force or os.environ.get("DOKKU_APPS_FORCE_DELETE") == "1"):
        console = ctx.console
        console.warn("WARNING: Potentially Destructive Action")
        console.warn(f"This command will destroy app {app}.")
        console.warn(f'To proceed, type "{app}"')
        console.out("> ", end="")
        try:
            response = _scanln()
        except ValueError as error:
            console.fail(str(error))
        if response != app:
            # Sic: Dokku hard-codes "test" in this message.
            console.err("Confirmation did not match test. Aborted.")
            raise DokkuExit(1)
    ctx.console.info1(f"Destroying {app} (including all add-ons)")
    ctx.console.info1("Cleaning up...")
    ctx.console.info1("Retiring old containers and images")
    ctx.state.destroy_app(app)


def cmd_apps_exists(ctx: Context, args: list[str]) -> None:
    _, positional = parse_flags(ctx, args)
    app = positional[0] if positional else ""
    if app == "":
        ctx.console.fail("Please specify an app to run the command on")
    if not ctx.state.app_exists(app):
        ctx.console.fail(f"App {app} does not exist", 20)


def cmd_apps_locked(ctx: Context, args: list[str]) -> None:
    # Go's CommandLocked: "Deploy lock exists" (quiet-able) and exit 0, or an error and exit 1.
    _, positional = parse_flags(ctx, args)
    app = positional[0] if positional else ""
    ctx.verify_app(app)
    if not ctx.state.locked(app):
        ctx.console.fail("Deploy lock does not exist")
    if not ctx.console.quiet:  # common.LogQuiet: the bare text
        ctx.console.out("Deploy lock exists")


def _read_marker(state: State, app: str, name: str, default: str) -> str:
    path = state.app_dir(app) / name
    return path.read_text().strip() if path.exists() else default


def _apps_report_flags(ctx: Context, app: str) -> dict[str, str]:
    created = ctx.state.app_dir(app) / "created-at"
    return {
        "--app-created-at": created.read_text().strip() if created.exists() else "",
        "--app-deploy-source": _read_marker(ctx.state, app, "DEPLOY_SOURCE", "git-push" if ctx.state.deployed(app) else ""),
        "--app-deploy-source-metadata": _read_marker(ctx.state, app, "DEPLOY_SOURCE_METADATA", ""),
        "--app-dir": f"{DOKKU_HOME}/{app}",
        "--app-global-disable-autocreation": "",
        "--app-locked": "true" if ctx.state.locked(app) else "false",
    }


def cmd_apps_report(ctx: Context, args: list[str]) -> None:
    run_report(ctx, "app", args, lambda app: _apps_report_flags(ctx, app), legacy_keys=True)


# ---- config ----


def go_base64_decode(text: str) -> bytes:
    """base64.StdEncoding.DecodeString, with Go's error offsets.

    Raises ValueError("illegal base64 data at input byte N").
    """
    src = text.encode("utf-8", "surrogateescape")
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    si = 0
    out = bytearray()

    def corrupt(offset: int):
        raise ValueError(f"illegal base64 data at input byte {offset}")

    while si < len(src):
        quantum: list[int] = []
        dlen = 4
        j = 0
        while j < 4:
            if si == len(src):
                if j == 0:
                    return bytes(out)
                corrupt(si - j)  # padding is required
            char = src[si]
            si += 1
            if char in b"\r\n":
                continue  # Go skips newlines anywhere
            index = alphabet.find(bytes([char]))
            if index != -1:
                quantum.append(index)
                j += 1
                continue
            if char != ord("="):
                corrupt(si - 1)
            if j in (0, 1):
                corrupt(si - 1)
            if j == 2:
                while si < len(src) and src[si] in b"\r\n":
                    si += 1
                if si == len(src):
                    corrupt(len(src))
                if src[si] != ord("="):
                    corrupt(si - 1)
                si += 1
            while si < len(src) and src[si] in b"\r\n":
                si += 1
            if si < len(src):
                corrupt(si)
            dlen = j
            break
        value = 0
        for k, index in enumerate(quantum):
            value |= index << (18 - 6 * k)
        chunk = value.to_bytes(3, "big")
        out += chunk[: {4: 3, 3: 2, 2: 1}[dlen]]
        if dlen < 4:
            break
    return bytes(out)


def pretty_env(prefix: str, entries: dict[str, bytes]) -> bytes:
    """prettyPrintEnvEntries: columnize with 'KEY:' padded, values trimmed."""
    if not entries:
        return b""
    width = max(len(key) + 1 for key in entries)
    lines = [
        prefix.encode() + (key + ":").ljust(width).encode() + b"  " + go_trim_space(entries[key])
        for key in sorted(entries)
    ]
    return b"\n".join(lines)


def _config_target(ctx: Context, flags: dict, positional: list[str]) -> tuple[str, list[str]]:
    if flags.get("global"):
        return "--global", positional
    app = positional[0] if positional else ""
    ctx.verify_app(app)
    return app, positional[1:]


def _maybe_restart(ctx: Context, app: str, no_restart: bool) -> None:
    if no_restart or app == "--global" or not ctx.state.deployed(app):
        return
    ctx.console.info1(f"Restarting app {app}")
    failure = ctx.state.restart_failure()
    if failure is not None:
        # Dokku only warns; config:set/unset still exit 0.
        ctx.console.warn(f"Failure while restarting app: {failure}")
        return
    _deploy_output(ctx, app)


def cmd_config_set(ctx: Context, args: list[str]) -> None:
    flags, positional = parse_flags(ctx, args, bools=("encoded", "no-restart", "global"))
    app, pairs = _config_target(ctx, flags, positional)
    if not pairs:
        ctx.console.fail("At least one env pair must be given")
    updated: dict[str, bytes] = {}
    for pair in pairs:
        if "=" not in pair:
            ctx.console.fail(f"Invalid env pair: {pair}")
        key, _, value = pair.partition("=")
        if flags["encoded"]:
            try:
                updated[key] = go_base64_decode(value)
            except ValueError as error:
                ctx.console.fail(f"{error} for key '{key}'")
        else:
            updated[key] = os.fsencode(value)
    # Dokku loads the ENV file before it checks the keys.
    env = _read_env(ctx, app)
    for key in updated:
        if not ENV_KEY.match(key):
            ctx.console.fail(f"Invalid key name: '{key}'")
    env.update(updated)
    ctx.state.write_env(app, env)
    if not ctx.console.quiet:
        ctx.console.info1("Setting config vars")
        ctx.console.out(pretty_env("       ", updated))
    log_event(ctx, "post-config-update", app, "set", *sorted(updated))
    _maybe_restart(ctx, app, flags["no-restart"])


def cmd_config_unset(ctx: Context, args: list[str]) -> None:
    flags, positional = parse_flags(ctx, args, bools=("no-restart", "global"))
    app, keys = _config_target(ctx, flags, positional)
    if not keys:
        ctx.console.fail("At least one key must be given")
    env = _read_env(ctx, app)
    changed = False
    for key in keys:
        if key in env:
            ctx.console.info1(f"Unsetting {key}", quiet_able=True)
            del env[key]
            changed = True
        else:
            ctx.console.info1(f"Skipping {key}, it is not set in the environment", quiet_able=True)
    if changed:
        ctx.state.write_env(app, env)
        log_event(ctx, "post-config-update", app, "unset", *keys)
        _maybe_restart(ctx, app, flags["no-restart"])


def _read_env(ctx: Context, app: str, *, silent: bool = False) -> dict[str, bytes]:
    """The config, or Dokku's failure when the ENV file cannot be parsed."""
    try:
        return ctx.state.read_env(app)
    except EnvFileError as error:
        if silent:
            raise DokkuExit(1) from None  # config:get prints nothing
        ctx.console.fail(str(error))


def _load_env(ctx: Context, app: str, merged: bool, *, silent: bool = False) -> dict[str, bytes]:
    env = _read_env(ctx, app, silent=silent)
    if merged and app != "--global":
        combined = _read_env(ctx, "--global", silent=silent)
        combined.update(env)
        return combined
    return env


def cmd_config_get(ctx: Context, args: list[str]) -> None:
    flags, positional = parse_flags(ctx, args, bools=("quoted", "global", "merged"))
    app, rest = _config_target(ctx, flags, positional)
    if not rest:
        ctx.console.fail("Expected: key")
    if len(rest) > 1:
        ctx.console.fail(f"Unexpected argument(s): [{' '.join(rest[1:])}]")
    env = _load_env(ctx, app, flags["merged"], silent=True)
    if rest[0] not in env:
        raise DokkuExit(1)  # Dokku prints nothing for a missing key
    value = env[rest[0]]
    if flags["quoted"]:
        value = b"'" + value.replace(b"'", b"'\\''") + b"'"
    ctx.console.out(value)


def cmd_config_show(ctx: Context, args: list[str]) -> None:
    flags, positional = parse_flags(ctx, args, bools=("global", "merged"))
    app, _ = _config_target(ctx, flags, positional)
    env = _load_env(ctx, app, flags["merged"])
    header = "global env vars" if app == "--global" else f"{app} env vars"
    ctx.console.info2(header, quiet_able=True)
    ctx.console.out(pretty_env("", env))


def cmd_config_keys(ctx: Context, args: list[str]) -> None:
    flags, positional = parse_flags(ctx, args, bools=("global", "merged"))
    app, _ = _config_target(ctx, flags, positional)
    for key in sorted(_load_env(ctx, app, flags["merged"])):
        ctx.console.out(key)


def _single_quote(value: bytes) -> bytes:
    return b"'" + value.replace(b"'", b"'\\''") + b"'"


def cmd_config_export(ctx: Context, args: list[str]) -> None:
    flags, positional = parse_flags(ctx, args, bools=("global", "merged"), strings=("format",))
    app, _ = _config_target(ctx, flags, positional)
    output_format = flags["format"] or "exports"
    env = _load_env(ctx, app, flags["merged"])
    keys = sorted(env)
    out = ctx.console.out
    if output_format == "exports":
        out(b"\n".join(b"export " + k.encode() + b"=" + _single_quote(env[k]) for k in keys))
    elif output_format == "envfile":
        out(godotenv_marshal(env))
    elif output_format == "json":
        out(go_json({k: go_text(env[k]) for k in keys}))
    elif output_format == "json-list":
        # A nil Go slice marshals as null.
        out(go_json([{"name": k, "value": go_text(env[k])} for k in keys] or None))
    elif output_format == "shell":
        out(b"".join(k.encode() + b"=" + _single_quote(env[k]) + b" " for k in keys), end="")
    elif output_format == "docker-args":
        out(b" ".join(b"--env=" + k.encode() + b"=" + _single_quote(env[k]) for k in keys))
    elif output_format == "docker-args-keys":
        out(" ".join(f"--env={k}" for k in keys))
    elif output_format == "pack-keys":
        out(" ".join(f"--env {k}" for k in keys))
    elif output_format == "pretty":
        out(pretty_env("", env))
    else:
        ctx.console.fail(f"Unknown export format: {output_format}")


# ---- domains (bash plugin until 0.38.22 for the report) ----


def _valid_hostname(domain: str) -> bool:
    lowered = domain.lower()
    return lowered == "_" or bool(HOSTNAME.match(lowered))


def _domains_args(ctx: Context, args: list[str]) -> tuple[str, list[str]]:
    app = args[0] if args else ""
    if len(args) < 2:
        # Checked before the app, with Dokku's garbled usage text.
        ctx.console.fail(f"Please specify a domain name. Usage: dokku {app}  <domain> [<domain> ...]")
    ctx.verify_app_bash(app)
    return app, args[1:]


def _vhost_enabled(ctx: Context, app: str) -> bool:
    # Dokku 0.38.27 reports the app's vhost enabled even with NO_VHOST=1 in
    # its config (golden records 34/35), and never reads the ENV file here.
    return True


def _nginx_rebuild(ctx: Context, app: str) -> None:
    """What nginx-vhosts prints on a host where nginx is not running."""
    ctx.console.info1("Creating http nginx.conf")
    ctx.console.verbose("Reloading nginx")
    if not ctx.state.deployed(app) and not ctx.console.quiet:
        ctx.console.warn(f"No web listeners specified for {app}")


def _proxy_rebuild(ctx: Context, app: str) -> None:
    """post-domains-update: configure each domain (sorted), then nginx."""
    for domain in sorted(ctx.state.read_domains(app)):
        ctx.console.info1(f"Configuring {domain}...(using built-in template)")
    _nginx_rebuild(ctx, app)


def cmd_domains_add(ctx: Context, args: list[str]) -> None:
    app, domains = _domains_args(ctx, args)
    for domain in domains:
        if not _valid_hostname(domain):
            ctx.console.fail(f"{domain} is invalid. exiting...")
    current = ctx.state.read_domains(app)
    for domain in domains:
        if domain in current:  # grep -x --fixed-strings
            ctx.console.info1(f"Skipping: {domain} already added to {app}")
        else:
            current.append(domain)
            ctx.state.write_domains(app, current)
            ctx.console.info1(f"Added {domain} to {app}")
    log_event(ctx, "post-domains-update", app, "add", *domains)
    _proxy_rebuild(ctx, app)


def cmd_domains_remove(ctx: Context, args: list[str]) -> None:
    app, domains = _domains_args(ctx, args)
    for domain in domains:
        # Dokku runs: sed -i "\|^$DOMAIN\$|d" VHOST -- the domain is a regex.
        script = f"\\|^{domain}$|d"
        try:
            if re.search(r"(?<!\\)\|", domain):
                raise ValueError("the '|' ends sed's address")
            pattern = re.compile(bre_to_python(domain))
        except ValueError:
            ctx.console.err(f"sed: -e expression #1, char {len(script)}: unterminated address regex")
            raise DokkuExit(1)
        kept = [line for line in ctx.state.read_domains(app) if not pattern.fullmatch(line)]
        ctx.state.write_domains(app, kept)
        ctx.console.info1(f"Removed {domain} from {app}")
    _proxy_rebuild(ctx, app)


def cmd_domains_set(ctx: Context, args: list[str]) -> None:
    app, domains = _domains_args(ctx, args)
    for domain in domains:
        if not _valid_hostname(domain):
            ctx.console.fail(f"{domain} is invalid. exiting...")
    ctx.state.write_domains(app, domains)
    ctx.console.info1(f"Set {' '.join(domains)} for {app}")
    log_event(ctx, "post-domains-update", app, "set", *domains)
    _proxy_rebuild(ctx, app)


def cmd_domains_clear(ctx: Context, args: list[str]) -> None:
    app = args[0] if args else ""
    ctx.verify_app_bash(app)
    ctx.state.write_domains(app, [])
    log_event(ctx, "post-domains-update", app, "clear")
    _proxy_rebuild(ctx, app)
    ctx.console.info1(f"Cleared domains in {app}")


def _domains_values(ctx: Context, app: str) -> dict[str, str]:
    global_domains = ctx.state.read_domains("--global")
    global_enabled = any(_valid_hostname(domain) for domain in global_domains)
    values = {
        "--domains-global-enabled": "true" if global_enabled else "false",
        "--domains-global-vhosts": " ".join(global_domains) if global_enabled else "",
    }
    if app != "--global":
        values["--domains-app-enabled"] = "true" if _vhost_enabled(ctx, app) else "false"
        values["--domains-app-vhosts"] = " ".join(ctx.state.read_domains(app))
    return values


def _domains_report_bash(ctx: Context, args: list[str]) -> None:
    """internal-functions cmd-domains-report, used before 0.38.22."""
    console = ctx.console
    json_output = False
    if ctx.since("0.38.0") and "--format" in args:
        index = args.index("--format")
        json_output = args[index + 1 : index + 2] == ["json"]
        args = args[:index] + args[index + 2 :]
    app = args[0] if args else ""
    info_flag = args[1] if len(args) > 1 else ""
    if app.startswith("--"):
        app, info_flag = "", app
    apps = [app] if app else ctx.state.app_names()
    for name in apps:
        try:
            ctx.verify_app_bash(name)
            values = _domains_values(ctx, name)
            # tr '\n' ' ' leaves a trailing space after every vhost.
            values["--domains-app-vhosts"] = "".join(d + " " for d in ctx.state.read_domains(name))
            if values["--domains-global-vhosts"]:
                values["--domains-global-vhosts"] += " "
            flag_order = ["--domains-app-enabled", "--domains-app-vhosts",
                          "--domains-global-enabled", "--domains-global-vhosts"]
            if json_output:
                console.out(go_json({flag[len("--domains-"):]: values[flag].strip() for flag in flag_order}))
            elif not info_flag:
                console.info2(f"{name} domains information", quiet_able=True)
                for flag in flag_order:
                    label = ucfirst(flag[2:].replace("-", " ") + ":")
                    console.verbose(f"{label:<30} {values[flag]:<25}")
            elif info_flag in values:
                if values[info_flag]:
                    console.out(values[info_flag])
            else:
                console.fail("Invalid flag passed, valid flags: " + " ".join(flag_order))
        except DokkuExit:
            # Without an app, each report runs as `... | tee || true`.
            if app:
                raise


def cmd_domains_report(ctx: Context, args: list[str]) -> None:
    if not ctx.since("0.38.22"):
        _domains_report_bash(ctx, args)
        return
    run_report(ctx, "domains", args, lambda app: _domains_values(ctx, app), legacy_keys=False)


# ---- ssh-keys ----


def _require_root(ctx: Context) -> None:
    if os.geteuid() != 0 and not os.environ.get("DOKKU_DOUBLE_ALLOW_NONROOT"):
        ctx.console.fail("This command must be run as root")


def _grep_name(name: str) -> re.Pattern | None:
    try:
        return re.compile(r' NAME=\\"' + bre_to_python(name) + r'\\" ')
    except ValueError:
        return None


def _sshcommand_error(ctx: Context, message: str) -> None:
    ctx.console.err(message)
    ctx.console.fail("sshcommand returned an error: 1")


def _authorized_keys_valid(lines: list[str]) -> int | None:
    """Index (1-based) of the first line `ssh-keygen -lf` rejects, else None."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        match = SSHCOMMAND_LINE_RE.match(line)
        candidate = match["key"] if match else line
        if parse_public_key(candidate) is None:
            return number
    return None


def cmd_ssh_keys_add(ctx: Context, args: list[str]) -> None:
    _require_root(ctx)
    console = ctx.console
    name = args[0] if args else ""
    if name == "":
        console.err("Usage: sshcommand acl-add <USER> <NAME> <KEY_FILE>")
        raise DokkuExit(1)
    if len(args) > 1:
        try:
            content = Path(args[1]).read_text("utf-8", "surrogateescape")
        except OSError:
            console.fail("No key specified via file or pipe")
        lines = [line for line in content.splitlines() if line.strip()]
        if len(lines) > 1:
            console.fail(
                "Too many keys provided, set one per invocation of dokku ssh-keys:add <NAME> <KEY_FILE>"
            )
        key = lines[0] if lines else ""
        key = key.strip()
        if not key:
            console.fail("Empty key was specified")
    elif ctx.stdin_pipe:
        # Dokku reads only the first line of the pipe; an empty pipe ends
        # the command with exit 1 and no output at all.
        key = sys.stdin.buffer.readline().decode("utf-8", "surrogateescape")
        if key == "":
            raise DokkuExit(1)
        key = key.strip()
    else:
        console.fail("No key specified via file or pipe")
    parsed = parse_public_key(key)
    if parsed is None:
        console.fail("Key specified in is not a valid ssh public key")
    fingerprint = fingerprint_of(parsed[1])
    lines = ctx.state.key_lines()
    if os.environ.get("SSHCOMMAND_CHECK_DUPLICATE_NAME", "true") != "false":
        pattern = _grep_name(name)
        if pattern and any(pattern.search(line) for line in lines):
            _sshcommand_error(ctx, "Duplicate ssh key name")
    if os.environ.get("SSHCOMMAND_CHECK_DUPLICATE_FINGERPRINT", "true") != "false":
        if any(entry["fingerprint"] == fingerprint for entry in ctx.state.keys()):
            _sshcommand_error(ctx, "Duplicate ssh public key specified")
    ctx.state.add_key_line(name, key)
    bad_line = _authorized_keys_valid(ctx.state.key_lines())
    if bad_line is not None:
        console.fail(f"{AUTHORIZED_KEYS_PATH} line {bad_line} failed ssh-keygen check.")
    console.out(fingerprint)


def cmd_ssh_keys_remove(ctx: Context, args: list[str]) -> None:
    _require_root(ctx)
    console = ctx.console
    by_fingerprint = bool(args) and args[0] == "--fingerprint"
    target = (args[1] if len(args) > 1 else "") if by_fingerprint else (args[0] if args else "")
    if not target:
        if by_fingerprint:
            console.fail("A fingerprint is required to remove a key, "
                         "ie: dokku ssh-keys:remove --fingerprint <fingerprint>")
        console.fail("A name is required to remove a key, ie: dokku ssh-keys:remove <name>")
    lines = ctx.state.key_lines()
    if not any(line.strip() for line in lines) or _authorized_keys_valid(lines) is not None:
        console.fail("No public keys found.")
    # sshcommand deletes with sed, so the name (or fingerprint) is a regex.
    delimiter = "#" if by_fingerprint else "/"
    try:
        if re.search(r"(?<!\\)" + re.escape(delimiter), target):
            raise ValueError("the delimiter ends sed's address")
        body = bre_to_python(target)
    except ValueError:
        console.err("sed: -e expression #1, char 1: unterminated address regex")
        raise DokkuExit(1)
    pattern = re.compile(('"FINGERPRINT=' + body + " ") if by_fingerprint else (r' NAME=\\"' + body + r'\\" '))
    ctx.state.write_key_lines([line for line in lines if not pattern.search(line)])


def cmd_ssh_keys_list(ctx: Context, args: list[str]) -> None:
    console = ctx.console
    output_format = "text"
    if args and args[0] == "--format":
        output_format = args[1] if len(args) > 1 else ""
        args = args[2:]
        if output_format not in ("text", "json"):
            console.fail("Invalid output format specified, supported formats: json, text")
    name = args[0] if args else None
    if not ctx.state.keys_file.exists() or ctx.state.keys_file.stat().st_size == 0:
        console.err("authorized_keys is empty for dokku")
        raise DokkuExit(1)
    entries = ctx.state.keys()
    if output_format == "text":
        selected = [e for e in entries if name is None or e["name"] == name]
        if name is not None and not selected:
            raise DokkuExit(1)
        for entry in selected:
            console.out(f'{entry["fingerprint"]} NAME="{entry["name"]}" '
                        f'SSHCOMMAND_ALLOWED_KEYS="{entry["options"]}"')
        return
    # Built with sed and no escaping: a quote in a name or comment breaks it.
    raw = "[" + ",".join(
        f'{{ "fingerprint": "{e["fingerprint"]}", "name": "{e["name"]}", '
        f'"SSHCOMMAND_ALLOWED_KEYS": "{e["options"]}", "public-key": "{e["public_key"]}" }}'
        for e in entries
    ) + "]"
    if name is None:
        console.out(raw)
        return
    # With a name the text goes through `jq -cM`, which must parse it.
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as error:
        console.err(f"jq: error (at <stdin>:1): {error.msg} at line {error.lineno}, column {error.colno}")
        raise DokkuExit(2)
    selected = [entry for entry in parsed if entry.get("name") == name]
    console.out(json.dumps(selected, ensure_ascii=False, separators=(",", ":")))


# ---- ps ----


def _container_id(app: str) -> str:
    return hashlib.sha256(app.encode()).hexdigest()[:11]


def _deploy_output(ctx: Context, app: str) -> None:
    console = ctx.console
    domains = ctx.state.read_domains(app)
    console.info1("Deploying web (count=1)")
    console.verbose("Attempting pre-flight checks (web.1)")
    console.verbose("Default container check successful (web.1)")
    console.info1("Running post-deploy")
    console.info2("Application deployed:")
    for domain in domains or [f"{app}.localhost"]:
        console.verbose(f"http://{domain}")


def cmd_ps_restart(ctx: Context, args: list[str]) -> None:
    flags, positional = parse_flags(ctx, args, bools=("all",), strings=("parallel",))
    # Since 0.38 the build-log capture (which merges the streams) starts
    # first: even "App x does not exist" goes to stdout.
    if ctx.since("0.38.0"):
        ctx.console.merge_stderr = True
    if flags["all"]:
        if positional:
            ctx.console.fail("Unable to restart all apps when specifying a process name")
        apps = ctx.state.app_names()
    else:
        app = positional[0] if positional else ""
        ctx.verify_app(app)
        apps = [app]
    for app in apps:
        if not ctx.state.deployed(app):
            ctx.console.warn(f"App {app} has not been deployed")
            continue
        failure = ctx.state.restart_failure()
        if failure is not None:
            ctx.console.fail(failure)
        _deploy_output(ctx, app)


def _ps_report_flags(ctx: Context, app: str) -> dict[str, str]:
    """Dokku 0.38.27's ps report (38 JSON keys with the legacy ones)."""
    deployed = app != "--global" and ctx.state.deployed(app)
    flags = {
        "--ps-computed-dockerfile-start-cmd": "",
        "--ps-computed-procfile-path": "Procfile",
        "--ps-computed-restart-policy": "on-failure:10",
        "--ps-computed-skip-deploy": "false",
        "--ps-computed-start-cmd": "",
        "--ps-computed-stop-timeout-seconds": "30",
        "--ps-global-procfile-path": "",
        "--ps-global-restart-policy": "",
        "--ps-global-skip-deploy": "",
        "--ps-global-stop-timeout-seconds": "",
    }
    if app == "--global":
        return flags
    scale = scale_of(ctx.state, app) if deployed else {}
    down = stopped(ctx.state, app)
    flags.update(
        {
            "--deployed": "true" if deployed else "false",
            "--processes": str(sum(scale.values())),
            "--ps-can-scale": "true",
            "--ps-dockerfile-start-cmd": "",
            "--ps-procfile-path": "",
            "--ps-restart-policy": "",
            "--ps-skip-deploy": "",
            "--ps-start-cmd": "",
            "--ps-stop-timeout-seconds": "",
            "--restore": "true",
            "--running": "true" if deployed and not down and sum(scale.values()) else "false",
        }
    )
    for proc, qty in sorted(scale.items()):
        for n in range(1, qty + 1):
            state = "exited" if down else "running"  # docker's state word for a stopped container (inferred)
            cid = _container_id(app if (proc, n) == ("web", 1) else f"{app}.{proc}.{n}")
            flags[f"--status-{proc}.{n}"] = f"{state} (CID: {cid})"
    return flags


def cmd_ps_report(ctx: Context, args: list[str]) -> None:
    run_report(ctx, "ps", args, lambda app: _ps_report_flags(ctx, app), legacy_keys=True)


# ---- events ----


def log_event(ctx: Context, trigger: str, *args: str) -> None:
    """dokku_log_event: one syslog line per plugin trigger while events are on."""
    state = ctx.state
    if not state.events_enabled():
        return
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
    line = (f"{stamp} {socket.gethostname()} dokku-event[{os.getpid()}]: "
            f"INVOKED: {trigger}( {' '.join(args)} ) NAME={os.environ.get('NAME', '')} "
            f"FINGERPRINT={os.environ.get('FINGERPRINT', '')} DOKKU_PID={os.getppid()}\n")
    with open(state.events_log, "a", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(line)


def cmd_events(ctx: Context, args: list[str]) -> None:
    path = ctx.state.events_log
    if path.exists():
        lines = path.read_text("utf-8", "surrogateescape").splitlines()
        for line in lines[-100:]:
            ctx.console.out(line)


def cmd_events_on(ctx: Context, args: list[str]) -> None:
    ctx.console.out("Enabling dokku events logger")
    ctx.state.set_events(True)


def cmd_events_off(ctx: Context, args: list[str]) -> None:
    ctx.console.out("Disabling dokku events logger")
    ctx.state.set_events(False)



# ---- builds, scaling, rebuild, stop, start, git:report (0.38 builds plugin) ----
# Storage: apps/<app>/builds/<id>.json (the record, as plugins/builds/builds.go `Build`) and
# <id>.log; apps/<app>/SCALE (JSON {proc: qty}); apps/<app>/STOPPED; apps/<app>/GIT_SHA,
# GIT_UPDATED_AT, DEPLOY_SOURCE, DEPLOY_SOURCE_METADATA. Texts the reference does not give are
# marked (inferred); the record's fields and source values are from the reference.

BUILD_SOURCES = ("git-hook", "ps:rebuild", "ps:restart", "ps:start", "deploy", "config-redeploy", "git:sync",
                 "git:from-archive", "git:from-image", "git:load-image", "unknown")
BUILDS_SINCE = "0.38.0"


def _rfc3339(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def builds_dir(state: State, app: str) -> Path:
    return state.app_dir(app) / "builds"


def record_build(state: State, app: str, *, source: str, kind: str = "build", status: str = "succeeded",
                 exit_code: int | None = 0, started: float | None = None, finished: float | None = None,
                 pid: int | None = None, log: str = "", build_id: str | None = None) -> dict:
    """Write one build record (and its log) as Dokku's builds plugin does; returns the record."""
    started = time.time() if started is None else started
    build_id = build_id or f"{int(started)}-{random.randrange(16 ** 8):08x}"  # id format (inferred)
    record = {"id": build_id, "app": app, "kind": kind, "pid": pid or os.getpid(),
              "started_at": _rfc3339(started), "status": status, "source": source}
    if status != "running":
        record["finished_at"] = _rfc3339(started if finished is None else finished)
        record["exit_code"] = exit_code
    directory = builds_dir(state, app)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{build_id}.json").write_text(json.dumps(record))
    (directory / f"{build_id}.log").write_text(log)
    return record


def _builds(state: State, app: str) -> list[dict]:
    directory = builds_dir(state, app)
    paths = list(directory.glob("*.json")) if directory.exists() else []
    # Newest first (inferred); builds started within the same second in the order they were written.
    ordered = sorted(paths, key=lambda p: (json.loads(p.read_text())["started_at"], p.stat().st_mtime_ns), reverse=True)
    return [json.loads(path.read_text()) for path in ordered]


def _build_view(record: dict) -> dict:
    # listView: the record plus display_status, duration and log_path (duration's format inferred).
    view = dict(record)
    view["display_status"] = record["status"]
    if record.get("finished_at"):
        began = datetime.datetime.fromisoformat(record["started_at"].replace("Z", "+00:00"))
        ended = datetime.datetime.fromisoformat(record["finished_at"].replace("Z", "+00:00"))
        view["duration"] = f"{int((ended - began).total_seconds())}s"
    else:
        view["duration"] = ""
    view["log_path"] = f"/var/lib/dokku/data/builds/{record['app']}/{record['id']}.log"
    return view


def _require_builds(ctx: Context, args: list[str]) -> None:
    if not ctx.since(BUILDS_SINCE):  # no builds plugin before 0.38.0: an unknown command
        ctx.console.warn(f"`{' '.join([ctx.command, *args])}` is not a dokku command.")
        ctx.console.warn("See `dokku help` for a list of available commands.")
        raise DokkuExit(1)


def cmd_builds_list(ctx: Context, args: list[str]) -> None:
    _require_builds(ctx, args)
    flags, positional = parse_flags(ctx, args, strings=("format", "kind", "status"))
    output = flags["format"] or "stdout"
    if flags["kind"] and flags["kind"] not in ("build", "deploy"):
        ctx.console.fail(f"Invalid --kind value {flags['kind']}")
    if positional:
        ctx.verify_app(positional[0])
        records = _builds(ctx.state, positional[0])
    else:  # no app: the builds running now, across apps
        records = [r for app in ctx.state.app_names() for r in _builds(ctx.state, app) if r["status"] == "running"]
    records = [r for r in records if (not flags["kind"] or r["kind"] == flags["kind"])
               and (not flags["status"] or r["status"] == flags["status"])]
    if output == "json":
        ctx.console.out(json.dumps([_build_view(r) for r in records], separators=(",", ":")))
        return
    if not records:
        ctx.console.out("No builds recorded for this app")  # stream (inferred)
        return
    ctx.console.out("ID  KIND  SOURCE  STATUS  STARTED  DURATION")  # table layout (inferred)
    for r in map(_build_view, records):
        ctx.console.out(f"{r['id']}  {r['kind']}  {r['source']}  {r['display_status']}  {r['started_at']}  "
                        f"{r['duration']}")


def _find_build(ctx: Context, app: str, build_id: str) -> dict:
    ctx.verify_app(app)
    records = _builds(ctx.state, app)
    if build_id == "current":
        records = [r for r in records if r["status"] == "running"] or records[:1]
    found = [r for r in records if build_id in ("current", r["id"])]
    if not found:
        ctx.console.fail(f"Build {build_id} not found for {app}")  # text (inferred)
    return found[0]


def cmd_builds_info(ctx: Context, args: list[str]) -> None:
    _require_builds(ctx, args)
    flags, positional = parse_flags(ctx, args, strings=("format",))
    if len(positional) < 2:
        ctx.console.fail("Please specify an app and a build id")  # text (inferred)
    view = _build_view(_find_build(ctx, positional[0], positional[1]))
    if flags["format"] == "json":
        ctx.console.out(json.dumps(view, separators=(",", ":")))
        return
    for key in ("id", "app", "kind", "source", "status", "started_at", "finished_at", "duration", "exit_code"):
        ctx.console.verbose(f"{key.replace('_', ' ').capitalize() + ':':<14}{view.get(key, '')}")  # (inferred)


def cmd_builds_output(ctx: Context, args: list[str]) -> None:
    _require_builds(ctx, args)
    _, positional = parse_flags(ctx, args)
    app = positional[0] if positional else ""
    record = _find_build(ctx, app, positional[1] if len(positional) > 1 else "current")
    path = builds_dir(ctx.state, app) / f"{record['id']}.log"
    ctx.console.out(path.read_text() if path.exists() else "", end="")


def scale_of(state: State, app: str) -> dict[str, int]:
    path = state.app_dir(app) / "SCALE"
    if path.exists():
        return json.loads(path.read_text())
    return {"web": 1} if state.deployed(app) else {}  # only web is scaled to 1 on first deploy


def stopped(state: State, app: str) -> bool:
    return (state.app_dir(app) / "STOPPED").exists()


def _deploy_build(ctx: Context, app: str, source: str, kind: str, trigger_events: bool = True) -> None:
    """A deploy as ps:rebuild / ps:start / ps:scale run it: output, a build record, event lines."""
    failure = ctx.state.restart_failure()
    started = time.time()
    if trigger_events:
        log_event(ctx, "receive-app" if kind == "build" else "pre-deploy", app)
    if failure is not None:
        record_build(ctx.state, app, source=source, kind=kind, status="failed", exit_code=1, started=started,
                     log=f" !     {failure}\n")
        ctx.console.fail(failure)
    (ctx.state.app_dir(app) / "STOPPED").unlink(missing_ok=True)
    _deploy_output(ctx, app)
    record_build(ctx.state, app, source=source, kind=kind, started=started, log="-----> Deploying web (count=1)\n")
    if trigger_events:
        log_event(ctx, "post-deploy", app)


def cmd_ps_rebuild(ctx: Context, args: list[str]) -> None:
    _, positional = parse_flags(ctx, args, bools=("all",), strings=("parallel",))
    if ctx.since("0.38.0"):
        ctx.console.merge_stderr = True
    app = positional[0] if positional else ""
    ctx.verify_app(app)
    if not ctx.state.deployed(app):
        ctx.console.warn(f"App {app} has not been deployed")  # as ps:restart (inferred)
        return
    ctx.console.info1(f"Rebuilding {app} from its last source")  # (inferred)
    _deploy_build(ctx, app, "ps:rebuild", "build")


def cmd_ps_start(ctx: Context, args: list[str]) -> None:
    _, positional = parse_flags(ctx, args, bools=("all",), strings=("parallel",))
    app = positional[0] if positional else ""
    ctx.verify_app(app)
    if not ctx.state.deployed(app):
        ctx.console.warn(f"App {app} has not been deployed")
        return
    ctx.console.info1(f"Starting {app}")  # (inferred)
    log_event(ctx, "pre-start", app)
    _deploy_build(ctx, app, "ps:start", "deploy", trigger_events=False)


def cmd_ps_stop(ctx: Context, args: list[str]) -> None:
    _, positional = parse_flags(ctx, args, bools=("all",), strings=("parallel",))
    app = positional[0] if positional else ""
    ctx.verify_app(app)
    if not ctx.state.deployed(app):
        ctx.console.warn(f"App {app} has not been deployed")
        return
    ctx.console.info1(f"Stopping {app} ...")  # (inferred)
    (ctx.state.app_dir(app) / "STOPPED").write_text("")
    log_event(ctx, "post-stop", app)


SCALE_ARG = re.compile(r"([a-zA-Z0-9][a-zA-Z0-9_-]*)=(-?[0-9]+)\Z")


def cmd_ps_scale(ctx: Context, args: list[str]) -> None:
    flags, positional = parse_flags(ctx, args, bools=("skip-deploy",), strings=("format",))
    output = flags["format"] or "stdout"
    if output == "json" and not ctx.since("0.38.21"):
        ctx.console.err("unknown flag: --format")  # pflag (inferred text)
        raise DokkuExit(2)
    app = positional[0] if positional else ""
    ctx.verify_app(app)
    scale = scale_of(ctx.state, app)
    pairs = positional[1:]
    if pairs:
        for pair in pairs:
            match = SCALE_ARG.match(pair)
            if not match or int(match.group(2)) < 0:
                ctx.console.fail(f"Invalid scale argument specified: {pair}")  # text (inferred)
            scale[match.group(1)] = int(match.group(2))
        (ctx.state.app_dir(app) / "SCALE").write_text(json.dumps(scale))
        log_event(ctx, "ps-set-scale", app, "false", "false", *pairs)
        ctx.console.info1(f"Scaling {app} processes: {' '.join(pairs)}")  # (inferred)
        if ctx.state.deployed(app) and not flags["skip-deploy"]:
            _deploy_build(ctx, app, "deploy", "deploy", trigger_events=False)
        return
    if output == "json":
        ctx.console.out(json.dumps([{"process_type": k, "quantity": v} for k, v in sorted(scale.items())],
                                   separators=(",", ":")))
        return
    # docs/processes/process-management.md
    ctx.console.info1(f"Scaling for {app}", quiet_able=True)
    ctx.console.out("proctype: qty")
    ctx.console.out("--------: ---")
    for proc, qty in sorted(scale.items()):
        ctx.console.out(f"{proc}:  {qty}")


def _git_report_flags(ctx: Context, app: str) -> dict[str, str]:
    app_dir = ctx.state.app_dir(app)

    def read(name: str) -> str:
        path = app_dir / name
        return path.read_text().strip() if path.exists() else ""

    return {"--git-deploy-branch": "", "--git-global-deploy-branch": "master", "--git-computed-deploy-branch":
            "master", "--git-keep-git-dir": "", "--git-rev-env-var": "", "--git-sha": read("GIT_SHA"),
            "--git-source-image": read("SOURCE_IMAGE"), "--git-last-updated-at": read("GIT_UPDATED_AT")}


def cmd_git_report(ctx: Context, args: list[str]) -> None:
    if "--format" in args and not ctx.since("0.38.0"):
        ctx.console.fail("Invalid flag passed, valid flags: " + ", ".join(sorted(_git_report_flags(ctx, "-"))))
    run_report(ctx, "git", args, lambda app: _git_report_flags(ctx, app), legacy_keys=True)


# ---- service plugins (dokku-postgres 1.48.0; common-functions is shared with redis and mysql) ----

# Installed plugins are marker files under plugins/; each service is a directory under
# services/<plugin>/<service>/ with IMAGE, IMAGE_VERSION, PASSWORD, LINKS and STATUS files.
SERVICE_PLUGINS = {
    # prefix: (PLUGIN_SERVICE, default image, default version, default alias, alt alias, scheme, port)
    "postgres": ("Postgres", "postgres", "18.4", "DATABASE", "DOKKU_POSTGRES", "postgres", 5432),
}
SERVICE_NAME = re.compile(r"[A-Za-z0-9_-]+\Z")
ALIAS_COLORS = ("AQUA", "BLACK", "BLUE", "FUCHSIA", "GRAY", "GREEN", "LIME", "MAROON", "NAVY", "OLIVE",
                "PURPLE", "RED", "SILVER", "TEAL", "WHITE", "YELLOW")


def _plugin_installed(state: State, plugin: str) -> bool:
    return (state.root / "plugins" / plugin).exists()


def _service_dir(state: State, plugin: str, service: str) -> Path:
    return state.root / "services" / plugin / service


def _services(state: State, plugin: str) -> list[str]:
    base = state.root / "services" / plugin
    return sorted(entry.name for entry in base.iterdir() if entry.is_dir()) if base.is_dir() else []


def _read(path: Path, default: str = "") -> str:
    return path.read_text().strip() if path.exists() else default


def _links(directory: Path) -> list[str]:
    return [line for line in _read(directory / "LINKS").split("\n") if line]


def _service_url(plugin: str, service: str, directory: Path) -> str:
    _, _, _, _, _, scheme, port = SERVICE_PLUGINS[plugin]
    password = _read(directory / "PASSWORD")
    host = "dokku-" + plugin + "-" + re.sub(r"[._]", "-", service)
    database = re.sub(r"[.-]", "_", service)
    return f"{scheme}://{plugin}:{password}@{host}:{port}/{database}"


def _verify_service(ctx: Context, plugin: str, service: str) -> Path:
    if not service:
        ctx.console.fail("Please specify a valid name for the service")
    directory = _service_dir(ctx.state, plugin, service)
    if not SERVICE_NAME.match(service) or not directory.is_dir():
        ctx.console.fail(f"{SERVICE_PLUGINS[plugin][0]} service {service} does not exist")
    return directory


def _service_args(args: list[str]) -> tuple[list[str], dict]:
    """service_parse_args: long flags become getopts letters; getopts stops at the first operand.

    In getopts' string "na:c:...n:..." the first `n` takes no argument, so `--no-restart` alone
    turns restarts off and a following "false" (the README's example) is an operand, ignored.
    """
    long_to_short = {"--alias": "-a", "--image": "-i", "--image-version": "-I", "--no-restart": "-n",
                     "--querystring": "-q", "--password": "-p"}
    takes_value = {"-a", "-i", "-I", "-q", "-p"}
    options: dict = {}
    positional: list[str] = []
    items = [long_to_short.get(arg, arg) for arg in args]
    i = 0
    while i < len(items):
        arg = items[i]
        if arg in takes_value and i + 1 < len(items):
            options[arg] = items[i + 1]
            i += 2
        elif arg == "-n":
            options["-n"] = True
            i += 1
        else:
            positional = items[i:]
            break
    return positional, options


def _service_info_flags(ctx: Context, plugin: str, service: str, directory: Path) -> list[tuple[str, str]]:
    links = _links(directory)
    image = f"{_read(directory / 'IMAGE')}:{_read(directory / 'IMAGE_VERSION')}"
    root = f"/var/lib/dokku/services/{plugin}/{service}"
    return [
        ("--config-dir", f"{root}/data"),
        ("--config-options", _read(directory / "CONFIG_OPTIONS")),
        ("--data-dir", f"{root}/data"),
        ("--dsn", _service_url(plugin, service, directory)),
        ("--exposed-ports", "-"),
        ("--id", hashlib.sha256(service.encode()).hexdigest()),
        ("--internal-ip", "172.17.0.5"),
        ("--initial-network", ""),
        # service_linked_apps: `tr '\n' ' '` leaves a trailing space.
        ("--links", " ".join(links) + " " if links else "-"),
        ("--post-create-network", ""),
        ("--post-start-network", ""),
        ("--service-root", root),
        ("--status", _read(directory / "STATUS", "running")),
        ("--version", image),
    ]


def _print_service_info(ctx: Context, plugin: str, service: str, directory: Path, flag: str = "") -> None:
    flags = _service_info_flags(ctx, plugin, service, directory)
    if not flag:
        ctx.console.info2(f"{service} {plugin} service information", quiet_able=True)
        for key, value in flags:
            label = ucfirst(key[2:].replace("-", " "))
            ctx.console.verbose(f"{label:<20} {value:<25}")
        return
    for key, value in flags:
        if key == flag:
            ctx.console.out(value)
            return
    ctx.console.fail("Invalid flag passed, valid flags:" + "".join(" " + key for key, _ in flags))


def service_list(ctx: Context, plugin: str, args: list[str]) -> None:
    names = _services(ctx.state, plugin)
    label = SERVICE_PLUGINS[plugin][0]
    if not names:
        ctx.console.warn(f"There are no {label} services")
        return
    ctx.console.info2(f"{label} services", quiet_able=True)
    for name in names:
        ctx.console.out(name)


def service_info(ctx: Context, plugin: str, args: list[str]) -> None:
    service = args[0] if args else ""
    directory = _verify_service(ctx, plugin, service)
    _print_service_info(ctx, plugin, service, directory, args[1] if len(args) > 1 else "")


def service_create(ctx: Context, plugin: str, args: list[str]) -> None:
    label, image, version, *_ = SERVICE_PLUGINS[plugin]
    service = args[0] if args else ""
    _, options = _service_args(args[1:])
    if not SERVICE_NAME.match(service):
        ctx.console.fail("Please specify a valid name for the service. Valid characters are: [A-Za-z0-9_]+")
    directory = _service_dir(ctx.state, plugin, service)
    if directory.is_dir():
        ctx.console.fail(f"{label} service {service} already exists")
    image = options.get("-i", image)
    version = options.get("-I", version)
    if f"{image}:{version}" in _read(ctx.state.control_dir / "unpullable-images").split("\n"):
        ctx.console.err(f"Error response from daemon: manifest for {image}:{version} not found: "
                        "manifest unknown: manifest unknown")
        ctx.console.fail(f"{label} image {image}:{version} pull failed")
    directory.mkdir(parents=True)
    (directory / "IMAGE").write_text(image + "\n")
    (directory / "IMAGE_VERSION").write_text(version + "\n")
    password = options.get("-p") or os.urandom(16).hex()  # openssl rand -hex 16
    if options.get("-p"):
        ctx.console.warn("Specified password may not be as secure as the auto-generated password")
    (directory / "PASSWORD").write_text(password + "\n")
    (directory / "LINKS").write_text("")
    if not ctx.console.quiet:
        ctx.console.verbose("Waiting for container to be ready")
    ctx.console.info2(f"{label} container created: {service}")
    _print_service_info(ctx, plugin, service, directory)


def _link_args(ctx: Context, plugin: str, args: list[str]) -> tuple[str, str, Path, dict]:
    service = args[0] if args else ""
    app = args[1] if len(args) > 1 else ""
    if not service:
        ctx.console.fail("Please specify a valid name for the service")
    if not app:
        ctx.console.fail("Please specify an app to run the command on")
    ctx.verify_app_bash(app)
    directory = _verify_service(ctx, plugin, service)
    _, options = _service_args(args[2:])
    return service, app, directory, options


def service_link(ctx: Context, plugin: str, args: list[str]) -> None:
    service, app, directory, options = _link_args(ctx, plugin, args)
    _, _, _, default_alias, alt_alias, _, _ = SERVICE_PLUGINS[plugin]
    url = _service_url(plugin, service, directory)
    env = _read_env(ctx, app)
    # config_all's lines are "KEY:  value"; the plugin greps them, keys and values alike.
    lines = [f"{key}:  {os.fsdecode(value)}" for key, value in env.items()]
    linked = [line.split(":", 1)[0] for line in lines if url in line]
    if "-a" in options:
        alias = options["-a"].upper().removesuffix("_URL")
        if any(f"{alias}_URL" in line for line in lines):
            ctx.console.fail(f"Specified alias {alias} already in use")
    else:
        alias = default_alias
        if any(f"{default_alias}_URL" in line for line in lines):
            alias = next((f"{alt_alias}_{color}" for color in ALIAS_COLORS
                          if not any(f"{alt_alias}_{color}_URL" in line for line in lines)), "")
        if not alias:
            ctx.console.fail("Unable to use default or generated URL alias")
    if linked:
        ctx.console.fail(f"Already linked as {linked[0]}")
    links = sorted(set(_links(directory)) | {app})
    (directory / "LINKS").write_text("".join(name + "\n" for name in links))
    if "-q" in options:
        url = f"{url}?{options['-q'].removeprefix('?')}"
    env[f"{alias}_URL"] = url.encode()
    ctx.state.write_env(app, env)
    if not ctx.console.quiet:
        ctx.console.info1("Setting config vars")
        ctx.console.out(pretty_env("       ", {f"{alias}_URL": url.encode()}))
    log_event(ctx, "post-config-update", app, "set", f"{alias}_URL")
    if options.get("-n"):
        ctx.console.verbose("Skipping restart of linked app")
    else:
        _maybe_restart(ctx, app, False)


def service_unlink(ctx: Context, plugin: str, args: list[str]) -> None:
    service, app, directory, options = _link_args(ctx, plugin, args)
    url = _service_url(plugin, service, directory)
    links = [name for name in _links(directory) if name != app]
    (directory / "LINKS").write_text("".join(name + "\n" for name in links))
    env = _read_env(ctx, app)
    keys = [key for key, value in env.items() if url in f"{key}:  {os.fsdecode(value)}"]
    if not keys:
        ctx.console.fail(f"Not linked to app {app}")
    for key in keys:
        ctx.console.info1(f"Unsetting {key}", quiet_able=True)
        del env[key]
    ctx.state.write_env(app, env)
    log_event(ctx, "post-config-update", app, "unset", *keys)
    if options.get("-n"):
        ctx.console.verbose("Skipping restart of linked app")
    else:
        _maybe_restart(ctx, app, False)


def service_destroy(ctx: Context, plugin: str, args: list[str]) -> None:
    label = SERVICE_PLUGINS[plugin][0]
    service = args[0] if args else ""
    directory = _verify_service(ctx, plugin, service)
    if _links(directory):
        ctx.console.fail("Cannot delete linked service")
    force = (args[1] if len(args) > 1 else "") in ("force", "-f", "--force") or ctx.force
    if not force:
        ctx.console.warn("WARNING: Potentially Destructive Action")
        ctx.console.warn(f"This command will destroy {service} {label} service.")
        ctx.console.warn(f'To proceed, type "{service}"')
        ctx.console.out("")
        # bash's `read -rp "> "` shows its prompt only when stdin is a terminal.
        if sys.stdin.readline().rstrip("\n") != service:
            ctx.console.warn(f"Confirmation did not match {service}. Aborted.")
            raise DokkuExit(1)
    ctx.console.info2(f"Deleting {service}", quiet_able=True)
    if not ctx.console.quiet:
        ctx.console.verbose("Removing data")
    shutil.rmtree(directory)
    ctx.console.info2(f"{label} container deleted: {service}")


SERVICE_SUBCOMMANDS = {
    "list": service_list, "info": service_info, "create": service_create, "link": service_link,
    "unlink": service_unlink, "destroy": service_destroy,
}


def service_command(command: str):
    """The handler of `<plugin>:<subcommand>`, or None (the plugin, or the subcommand, is not there)."""
    plugin, _, sub = command.partition(":")
    if plugin not in SERVICE_PLUGINS or sub not in SERVICE_SUBCOMMANDS:
        return None
    return lambda ctx, args: SERVICE_SUBCOMMANDS[sub](ctx, plugin, args)


COMMANDS = {
    "version": cmd_version,
    "events": cmd_events,
    "events:on": cmd_events_on,
    "events:off": cmd_events_off,
    "help": cmd_help,
    "apps:list": cmd_apps_list,
    "apps:create": cmd_apps_create,
    "apps:destroy": cmd_apps_destroy,
    "apps:exists": cmd_apps_exists,
    "apps:report": cmd_apps_report,
    "apps:locked": cmd_apps_locked,
    "config:set": cmd_config_set,
    "config:unset": cmd_config_unset,
    "config:get": cmd_config_get,
    "config:show": cmd_config_show,
    "config:keys": cmd_config_keys,
    "config:export": cmd_config_export,
    "domains:add": cmd_domains_add,
    "domains:remove": cmd_domains_remove,
    "domains:set": cmd_domains_set,
    "domains:clear": cmd_domains_clear,
    "domains:report": cmd_domains_report,
    "ssh-keys:add": cmd_ssh_keys_add,
    "ssh-keys:remove": cmd_ssh_keys_remove,
    "ssh-keys:list": cmd_ssh_keys_list,
    "ps:restart": cmd_ps_restart,
    "ps:report": cmd_ps_report,
    "ps:rebuild": cmd_ps_rebuild,
    "ps:start": cmd_ps_start,
    "ps:stop": cmd_ps_stop,
    "ps:scale": cmd_ps_scale,
    "builds:list": cmd_builds_list,
    "builds:info": cmd_builds_info,
    "builds:output": cmd_builds_output,
    "git:report": cmd_git_report,
}

ALIASES = {
    "-v": "version",
    "--version": "version",
    "apps": "apps:list",
    "config": "config:show",
    "domains": "domains:report",
    "ssh-keys": "ssh-keys:list",
}

GLOBAL_FLAGS = ("--quiet", "--trace", "--force")


def stdin_is_pipe() -> bool:
    """Dokku's `[[ -p /dev/stdin ]]`."""
    try:
        return stat.S_ISFIFO(os.fstat(0).st_mode)
    except OSError:
        return False


def main(argv: list[str]) -> int:
    root = os.environ.get(ROOT_ENV)
    if not root:
        sys.stderr.write(f" !     dokku double: {ROOT_ENV} is not set\n")
        return 1
    state = State(root)
    state.ensure()

    # parse_args: leading global flags are removed; --force counts anywhere.
    args = list(argv)
    quiet = bool(os.environ.get("DOKKU_QUIET_OUTPUT"))
    trace = False
    app_flag = None
    while args and (args[0] in GLOBAL_FLAGS or args[0] == "--app"):
        flag = args.pop(0)
        if flag == "--quiet":
            quiet = True
        elif flag == "--trace":
            trace = True
        elif flag == "--app" and args:
            app_flag = args.pop(0)
    force = "--force" in argv
    raw_command = args[0] if args else "help"
    command = ALIASES.get(raw_command, raw_command)
    rest = args[1:]
    if app_flag is not None:
        rest.insert(0, app_flag)  # core plugins get the app as first argument

    pipe = stdin_is_pipe()
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    state.log_call(
        {
            "argv": list(argv),
            "command": command,
            "stdin_pipe": pipe,
            "euid": os.geteuid(),
            "user": user,
            "sudo_user": os.environ.get("SUDO_USER"),
            "time": time.time(),
        }
    )

    delay = state.hang_seconds(command)
    if delay > 0:
        time.sleep(delay)

    console = Console(quiet)
    if trace:
        console.err("+ dokku " + " ".join(argv))
    with state.lock():
        fault = state.take_fault(command)
        if fault is not None:
            console.out(fault.get("stdout", ""), end="")
            console.err(fault.get("stderr", ""), end="")
            return int(fault.get("exit_code", 1))
        handler = COMMANDS.get(command)
        if handler is None and _plugin_installed(state, command.partition(":")[0]):
            handler = service_command(command)
        if handler is None:
            console.warn(f"`{' '.join(args)}` is not a dokku command.")
            console.warn("See `dokku help` for a list of available commands.")
            return 1
        ctx = Context(state, console, command, pipe, force)
        try:
            handler(ctx, rest)
        except DokkuExit as done:
            return done.code
    return 0


if __name__ == "__main__":
    # Files the double creates must stay usable whichever user runs it next
    # (root over SSH, root through sudo, or a plain user).
    os.umask(0)
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:
        sys.exit(141)
