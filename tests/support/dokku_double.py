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
    plugins/letsencrypt, letsencrypt/, apps/<app>/tls/, apps/<app>/letsencrypt/
                              dokku-letsencrypt and certs:* (see the TLS block below)

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

Service plugins (dokku-postgres 1.48.0, dokku-redis 1.43.0, dokku-mysql 1.44.3, which share
common-functions): with plugins/<plugin> present, <plugin>:list, info, create, link, unlink,
destroy, export, backup-auth, backup-deauth, backup, backup-schedule, backup-schedule-cat,
backup-unschedule, backup-set-encryption and backup-unset-encryption answer like the plugin's
bash (text only, the `=====>` headers dropped when quiet, failures through dokku_log_fail, the
LINKS file, the colour alias when DATABASE_URL is taken); without it they are unknown commands.
backup-auth writes plain files under services/<p>/<s>/backup/ as the plugin does; the cron file
is services/<p>/<s>/CRON; backup prints docker-s3backup's success line and uploads nothing;
export prints EXPORT_MAGIC and DUMP_SIZE bytes (file DUMP_SIZE, default 96 KiB). Where the
reference gives no text (argument errors of backup-*, plugin:install's progress lines) the
text is marked inferred in a comment. plugin:install (root only) creates the marker.

Deploys (tests/support/deploys.py records one: a build record, its log, event lines):
builds:list/info/output answer from the records (before 0.38.0 they are unknown
commands); ps:rebuild, ps:start and ps:scale print a canned deploy log and write a
build record; ps:stop marks the app stopped (ps:report then says `exited`); texts the
reference does not give are marked (inferred) where they are printed.

Known simplifications: no real builds (git:sync --build, git:from-image and ps:rebuild
print canned, INFERRED build steps; see their blocks), other plugins, containers or nginx
(restarts print a short canned deploy log); only the subcommands in ``COMMANDS`` exist;
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
import re
import stat
import sys
import time
from pathlib import Path

# Every `dokku` call starts this program: modules only a few commands need (random, shutil) are
# imported where they are used, which takes a fifth off each start.

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
        import shutil
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
    import random
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
    _le_post_domains_update(ctx)
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
    _le_post_domains_update(ctx)
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


def event_line(trigger: str, args, *, name: str = "", fingerprint: str = "", dokku_pid: int,
               at: datetime.datetime | None = None, traditional: bool = False, host: str | None = None,
               logger_pid: int | None = None) -> str:
    """One line as rsyslog writes `logger -t dokku-event -i`: RFC 3339 time (Debian 12's default
    template, as the golden records show) or the traditional `Jul  3 16:10:46` (no year, local time)."""
    at = at or datetime.datetime.now(datetime.timezone.utc)
    if traditional:
        local = at.astimezone()
        stamp = f"{local.strftime('%b')} {local.day:>2} {local.strftime('%H:%M:%S')}"
    else:
        stamp = at.isoformat(timespec="microseconds")
    return (f"{stamp} {host or os.uname().nodename} dokku-event[{logger_pid or os.getpid()}]: "
            f"INVOKED: {trigger}( {' '.join(args)} ) NAME={name} FINGERPRINT={fingerprint} DOKKU_PID={dokku_pid}\n")


def write_event_line(state: "State", line: str) -> None:
    with open(state.events_log, "a", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(line)


def log_event(ctx: Context, trigger: str, *args: str) -> None:
    """dokku_log_event: one syslog line per plugin trigger while events are on."""
    state = ctx.state
    if not state.events_enabled():
        return
    # The time format follows the host's rsyslog template: control/events-traditional switches it.
    traditional = (state.control_dir / "events-traditional").exists()
    write_event_line(state, event_line(trigger, args, name=os.environ.get("NAME", ""),
                                       fingerprint=os.environ.get("FINGERPRINT", ""), dokku_pid=os.getppid(),
                                       traditional=traditional))


# The triggers `events:list` names (20_events holds 160; the ones the panel reads are enough here). Inferred
# text: 0.38.27 prints each name padded with printf %-25s under the header.
EVENTS_LISTED = ("post-config-update", "post-create", "post-delete", "post-deploy", "post-domains-update",
                 "pre-delete", "receive-app")


def cmd_events_list(ctx: Context, args: list[str]) -> None:
    if not ctx.state.events_enabled():
        ctx.console.warn("Events logger disabled")
        return
    ctx.console.info2("Events currently logged")
    for name in EVENTS_LISTED:
        ctx.console.out(f"{name:<25}")


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
    import random
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
    if ctx.state.restart_failure() is not None:
        _deploy_build(ctx, app, "ps:rebuild", "build")  # records the failed build and fails
    log_event(ctx, "receive-app", app)
    (ctx.state.app_dir(app) / "STOPPED").unlink(missing_ok=True)
    _build(ctx, app, "ps:rebuild")  # the build steps (slowed, held or failed by the tests), its record


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
    "redis": ("Redis", "redis", "8.8.0", "REDIS", "DOKKU_REDIS", "redis", 6379),
    "mysql": ("MySQL", "mysql", "9.7.0", "DATABASE", "DOKKU_MYSQL", "mysql", 3306),
}
# How each plugin's export starts (functions `service_export`): pg_dump -Fc's magic, an RDB file's
# header, mysqldump's first comment. The rest of the double's dump is filler of DUMP_SIZE bytes.
EXPORT_MAGIC = {"postgres": b"PGDMP\x01\x0e\x00", "redis": b"REDIS0011", "mysql": b"-- MySQL dump 10.13\n"}
DEFAULT_DUMP_SIZE = 96 * 1024
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
    if plugin == "redis":  # dokku-redis functions `service_url`: no user, no database
        return f"{scheme}://:{password}@{host}:{port}"
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
    import shutil
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


def _running(ctx: Context, directory: Path) -> None:
    # common-functions: `service_backup` and `service_export` need the container up.
    if _read(directory / "STATUS", "running") == "missing":
        ctx.console.fail("Service container does not exist")
    if _read(directory / "STATUS", "running") != "running":
        ctx.console.fail("Service container is not running")


def _dump(plugin: str, service: str, directory: Path) -> bytes:
    size = int(_read(directory / "DUMP_SIZE", str(DEFAULT_DUMP_SIZE)))
    body = (f"{plugin} {service} ".encode() * (size // 8 + 1))
    return (EXPORT_MAGIC[plugin] + body)[:max(size, 0)]


def service_export(ctx: Context, plugin: str, args: list[str]) -> None:
    service = args[0] if args else ""
    directory = _verify_service(ctx, plugin, service)
    _running(ctx, directory)
    data = _dump(plugin, service, directory)
    # Written in pieces, as pg_dump streams it (a reader sees the first bytes before the last).
    for at in range(0, len(data), 16384):
        ctx.console.out(data[at:at + 16384], end=b"")


def service_backup_auth(ctx: Context, plugin: str, args: list[str]) -> None:
    # common-functions `service_backup_auth`: plain files under the service's backup/ folder.
    service = args[0] if args else ""
    directory = _verify_service(ctx, plugin, service)
    if len(args) < 3:
        ctx.console.fail("Please specify an aws access key id and secret key")  # text inferred
    backup = directory / "backup"
    backup.mkdir(exist_ok=True)
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_SIGNATURE_VERSION",
             "ENDPOINT_URL")
    for name in names:
        (backup / name).unlink(missing_ok=True)
    for name, value in zip(names, args[1:6]):
        (backup / name).write_text(value + "\n")


def service_backup_deauth(ctx: Context, plugin: str, args: list[str]) -> None:
    import shutil
    directory = _verify_service(ctx, plugin, args[0] if args else "")
    shutil.rmtree(directory / "backup", ignore_errors=True)


def service_backup(ctx: Context, plugin: str, args: list[str]) -> None:
    service = args[0] if args else ""
    directory = _verify_service(ctx, plugin, service)
    positional, iam = [a for a in args[1:] if a not in ("-u", "--use-iam")], any(
        a in ("-u", "--use-iam") for a in args[1:])
    if not positional:
        ctx.console.fail("Please specify an aws bucket for the backup")  # text inferred
    if not iam and not (directory / "backup" / "AWS_ACCESS_KEY_ID").exists():
        ctx.console.fail("Provide AWS credentials or use the --use-iam flag")
    _running(ctx, directory)
    # docker-s3backup's backup.sh; the double has no bucket, so nothing is uploaded.
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")
    (directory / "LAST_BACKUP").write_text(f"{positional[0]} {stamp}\n")
    ctx.console.out(f"{stamp}: The backup for {plugin}-{service} finished successfully.")


def _cron_path(directory: Path) -> Path:
    # Stands in for /etc/cron.d/dokku-<plugin>-<service>.
    return directory / "CRON"


def service_backup_schedule(ctx: Context, plugin: str, args: list[str]) -> None:
    service = args[0] if args else ""
    directory = _verify_service(ctx, plugin, service)
    if len(args) < 3:
        ctx.console.fail("Please specify a schedule and an aws bucket for the backup")  # text inferred
    schedule, bucket = args[1], args[2]
    iam = " --use-iam" if any(a in ("-u", "--use-iam") for a in args[3:]) else ""
    _cron_path(directory).write_text(f"{schedule} dokku /usr/bin/dokku {plugin}:backup {service} {bucket}{iam}\n")


def service_backup_schedule_cat(ctx: Context, plugin: str, args: list[str]) -> None:
    service = args[0] if args else ""
    directory = _verify_service(ctx, plugin, service)
    path = _cron_path(directory)
    if not path.exists():
        ctx.console.fail(f"There is no scheduled backup for {service}.")
    ctx.console.out(path.read_text(), end="")


def service_backup_unschedule(ctx: Context, plugin: str, args: list[str]) -> None:
    directory = _verify_service(ctx, plugin, args[0] if args else "")
    _cron_path(directory).unlink(missing_ok=True)


def service_backup_set_encryption(ctx: Context, plugin: str, args: list[str]) -> None:
    service = args[0] if args else ""
    directory = _verify_service(ctx, plugin, service)
    if len(args) < 2:
        ctx.console.fail("Please specify a GPG encryption key")  # text inferred
    (directory / "backup").mkdir(exist_ok=True)
    (directory / "backup" / "ENCRYPTION_KEY").write_text(args[1] + "\n")


def service_backup_unset_encryption(ctx: Context, plugin: str, args: list[str]) -> None:
    directory = _verify_service(ctx, plugin, args[0] if args else "")
    (directory / "backup" / "ENCRYPTION_KEY").unlink(missing_ok=True)


SERVICE_SUBCOMMANDS = {
    "list": service_list, "info": service_info, "create": service_create, "link": service_link,
    "unlink": service_unlink, "destroy": service_destroy, "export": service_export,
    "backup-auth": service_backup_auth, "backup-deauth": service_backup_deauth, "backup": service_backup,
    "backup-schedule": service_backup_schedule, "backup-schedule-cat": service_backup_schedule_cat,
    "backup-unschedule": service_backup_unschedule, "backup-set-encryption": service_backup_set_encryption,
    "backup-unset-encryption": service_backup_unset_encryption,
}


def cmd_plugin_install(ctx: Context, args: list[str]) -> None:
    """plugin:install <git-url> [--name N]: root only; the name is the URL's basename without
    `.git` and a leading `dokku-` (a positional name is ignored). Progress lines are inferred."""
    _require_root(ctx)
    flags, positional = {}, []
    i = 0
    while i < len(args):
        if args[i] in ("--name", "--committish") and i + 1 < len(args):
            flags[args[i]] = args[i + 1]
            i += 2
        else:
            positional.append(args[i])
            i += 1
    if not positional:
        ctx.console.fail("Please specify a plugin to install")  # text inferred
    url = positional[0]
    name = flags.get("--name") or url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git").removeprefix("dokku-")
    if _plugin_installed(ctx.state, name):
        ctx.console.info1(f"Plugin {name} already installed")  # text inferred
        return
    ctx.console.info1(f"Cloning plugin repo {url} to /var/lib/dokku/plugins/available/{name}")
    (ctx.state.root / "plugins").mkdir(exist_ok=True)
    (ctx.state.root / "plugins" / name).touch()
    ctx.console.info1(f"Plugin {name} enabled")


def cmd_plugin_installed(ctx: Context, args: list[str]) -> None:
    if not args or not _plugin_installed(ctx.state, args[0]):
        raise DokkuExit(1)


def service_command(command: str):
    """The handler of `<plugin>:<subcommand>`, or None (the plugin, or the subcommand, is not there)."""
    plugin, _, sub = command.partition(":")
    if plugin not in SERVICE_PLUGINS or sub not in SERVICE_SUBCOMMANDS:
        return None
    return lambda ctx, args: SERVICE_SUBCOMMANDS[sub](ctx, plugin, args)


# ---- deploys from the panel: git:sync, git:from-image, ps:rebuild; logs ----
# The reference gives no output text for these (no Docker where the golden records were made):
# every line below is INFERRED from Dokku's sources as summarised in dokku-next.md §4, not recorded.
# A build runs outside the double's state lock (a real one takes minutes and holds only the app's
# deploy lock), prints its steps as it goes and can be slowed, held and failed through control/:
#   build-delay    seconds to sleep between the build's lines (default 0)
#   build-gate     while this file exists, the build waits after its first steps (at most 60 s)
#   build-fail     a message: the build prints it as " !     <message>" and exits 1
#   bad-repos      one repository URL a line that cannot be fetched
# apps/<app>/GIT_SHA holds what git:sync fetched last, apps/<app>/SOURCE_IMAGE what git:from-image
# used last, apps/<app>/LOGS the lines `logs` prints (as `<time> app[<type>.<n>]: <text>`).

def _build_control(ctx: Context, name: str) -> Path:
    return ctx.state.control_dir / name


def _build(ctx: Context, app: str, source: str) -> None:
    """The deploy a build ends with (herokuish-like steps; INFERRED text)."""
    console = ctx.console
    delay_path = _build_control(ctx, "build-delay")
    delay = float(_read(delay_path, "0") or 0)
    ctx.state.set_locked(app, True)
    started = time.time()
    try:
        steps = [f"-----> Building {app} from herokuish ({source})",  # inferred
                 "-----> Adding BUILD_ENV to build environment...",
                 "       Installing dependencies",
                 "       Compiling the app"]
        for line in steps:
            console.out(line)
            time.sleep(delay)
        gate = _build_control(ctx, "build-gate")
        waited = 0.0
        while gate.exists() and waited < 60:
            time.sleep(0.1)
            waited += 0.1
        failure = _read(_build_control(ctx, "build-fail"))
        if failure:
            console.out("-----> Build failed")  # inferred
            record_build(ctx.state, app, source=source, status="failed", exit_code=1, started=started,
                         log=f" !     {failure}\n")
            console.fail(failure)
        console.out("-----> Build complete")
        time.sleep(delay)
        _deploy_output(ctx, app)
        ctx.state.set_deployed(app, True)
        record_build(ctx.state, app, source=source, started=started, log="-----> Build complete\n")
        log_event(ctx, "post-deploy", app)
    finally:
        ctx.state.set_locked(app, False)


def cmd_git_sync(ctx: Context, args: list[str]) -> None:
    # git:sync [--build|--build-if-changes] [--skip-deploy-branch] <app> <repo> [<ref>] (0.23.0)
    flags = {"--build": False, "--build-if-changes": False, "--skip-deploy-branch": False}
    positional = []
    for arg in args:
        if arg in flags:
            flags[arg] = True
        else:
            positional.append(arg)
    app = positional[0] if positional else ""
    ctx.verify_app_bash(app)
    if len(positional) < 2 or not positional[1]:
        ctx.console.fail("Missing GIT_REMOTE parameter")
    repo = positional[1]
    ref = positional[2] if len(positional) > 2 else ""
    if repo in _read(_build_control(ctx, "bad-repos")).split("\n"):
        ctx.console.err(f"fatal: repository '{repo}' not found")  # git's own text
        ctx.console.fail(f"Unable to fetch {repo}" + (f"#{ref}" if ref else ""))  # inferred
    sha_path = ctx.state.app_dir(app) / "GIT_SHA"
    before = _read(sha_path)
    after = hashlib.sha1(f"{repo}#{ref}".encode()).hexdigest()
    verb = "Fetching remote code for" if before else "Cloning"
    ctx.console.info1(f"{verb} {app} from {repo}" + (f"#{ref}" if ref else ""), quiet_able=True)  # inferred
    sha_path.write_text(after + "\n")
    log_event(ctx, "deploy-source-set", app, "git-sync", f"{repo}#{after}")
    if flags["--build"] or (flags["--build-if-changes"] and before != after):
        _build(ctx, app, "git:sync")
    elif flags["--build-if-changes"]:
        ctx.console.verbose("Skipping build as no changes were detected")  # inferred


def cmd_git_from_image(ctx: Context, args: list[str]) -> None:
    # git:from-image [--build-dir DIR] <app> <image> [<git-user> <git-email>] (0.24.0)
    positional = []
    i = 0
    while i < len(args):
        if args[i] == "--build-dir":
            i += 2
            continue
        positional.append(args[i])
        i += 1
    app = positional[0] if positional else ""
    ctx.verify_app_bash(app)
    if len(positional) < 2:
        ctx.console.fail("Please specify a docker image")  # inferred
    image_path = ctx.state.app_dir(app) / "SOURCE_IMAGE"
    wanted = " ".join(positional[1:])
    if _read(image_path) == wanted:
        # The same image and arguments leave nothing to commit: Dokku exits 0 early (dokku-next.md §4).
        ctx.console.warn("No changes detected, skipping git commit")  # inferred wording
        return
    image_path.write_text(wanted + "\n")
    log_event(ctx, "deploy-source-set", app, "docker-image", positional[1])
    _build(ctx, app, "git:from-image")


def cmd_logs(ctx: Context, args: list[str]) -> None:
    # logs <app> [-n N] [-t] [-q] [-p proc] (plugins/logs); default 100 lines.
    app, num, process, quiet = "", 100, "", False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-n", "--num") and i + 1 < len(args):
            num, i = int(args[i + 1]), i + 2
            continue
        if arg in ("-p", "--ps") and i + 1 < len(args):
            process, i = args[i + 1], i + 2
            continue
        if arg in ("-q", "--quiet"):
            quiet = True
        elif arg in ("-t", "--tail"):
            ctx.console.fail("the double does not tail logs")  # the panel never asks: it would never end
        elif not app:
            app = arg
        i += 1
    ctx.verify_app(app)
    if not ctx.state.deployed(app):
        ctx.console.fail(f"App {app} has not been deployed")
    path = ctx.state.app_dir(app) / "LOGS"
    lines = path.read_text("utf-8", "surrogateescape").splitlines() if path.exists() else []
    if process:
        lines = [line for line in lines if f" app[{process}." in line]
    for line in lines[-num:] if num > 0 else lines:
        ctx.console.out(line.split("]: ", 1)[1] if quiet and "]: " in line else line)


DEPLOY_COMMANDS = {"git:sync": cmd_git_sync, "git:from-image": cmd_git_from_image, "ps:rebuild": cmd_ps_rebuild,
                   "logs": cmd_logs}
# Commands that run without the double's state lock (a build takes long; logs only read).
UNLOCKED = frozenset(DEPLOY_COMMANDS)


COMMANDS = {
    "version": cmd_version,
    "events": cmd_events,
    "events:on": cmd_events_on,
    "events:off": cmd_events_off,
    "events:list": cmd_events_list,
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
    "plugin:install": cmd_plugin_install,
    "plugin:installed": cmd_plugin_installed,
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

COMMANDS.update(DEPLOY_COMMANDS)

GLOBAL_FLAGS = ("--quiet", "--trace", "--force")


# ---- TLS: dokku-letsencrypt 0.25.1 and core certs:* / cron:list / plugin:* ----
#
# State: plugins/letsencrypt holds the plugin release the double behaves as (plugin.toml said 0.20.4 for
# 0.21.0-0.25.0, so plugin:list shows 0.20.4 for those, and features are found by trying them);
# letsencrypt/properties.json the `set` properties ("--global" and per app); letsencrypt/autorenew the
# cron-job flag; apps/<app>/tls/server.{crt,key} the installed certificate; apps/<app>/letsencrypt/current
# the sha1 of the certificate Let's Encrypt issued (what `active` compares). Certificates are made with the
# openssl CLI, signed by a per-root stand-in CA named like Let's Encrypt's staging issuer.
# Fault files: control/lego (JSON {"exit_code", "output", "times"}: lego fails), control/lego-days (the
# validity of the next certificate, days), control/lego-revoke (lego's exit code for a failed revoke),
# control/cron-unlisted (cron:list shows no renewal task although the flag is set).
# Texts come from the plugin's sources (internal-functions, command-functions, tests/*.bats); where the
# reference gives none (plugin:install's progress, cron:list's table, certs:add/update/remove, the
# certs:report values' formats) they are INFERRED and marked so below.

LE_VALID_KEYS = ("dns-provider", "email", "graceperiod", "server", "lego-args", "lego-docker-options")
LE_GRACE = 2592000
CORE_PLUGINS = ("00_dokku-standard", "apps", "certs", "config", "cron", "domains", "nginx-vhosts", "plugin", "ps")


def _le_version(state: State) -> tuple[int, ...] | None:
    path = state.root / "plugins" / "letsencrypt"
    if not path.exists():
        return None
    return version_tuple(path.read_text().strip() or "0.25.1")


def _le_require(ctx: Context, args: list[str], since: str = "0.8.8") -> tuple[int, ...]:
    version = _le_version(ctx.state)
    if version is None or version < version_tuple(since):
        ctx.console.warn(f"`{' '.join([ctx.command, *args])}` is not a dokku command.")
        ctx.console.fail("See `dokku help` for a list of available commands.")
    return version


def _le_props_path(state: State) -> Path:
    return state.root / "letsencrypt" / "properties.json"


def _le_props(state: State) -> dict:
    path = _le_props_path(state)
    return json.loads(path.read_text()) if path.exists() else {}


def _le_computed(state: State, app: str, key: str, default: str = "") -> str:
    props = _le_props(state)
    return props.get(app, {}).get(key) or props.get("--global", {}).get(key) or default


def _tls_dir(state: State, app: str) -> Path:
    return state.app_dir(app) / "tls"


def _openssl(*args: str, stdin: bytes | None = None) -> str:
    import subprocess

    done = subprocess.run(["openssl", *args], input=stdin, capture_output=True)
    if done.returncode != 0:
        raise ValueError(done.stderr.decode(errors="replace").strip())
    return done.stdout.decode(errors="replace")


def _stand_in_ca(state: State) -> tuple[Path, Path]:
    base = state.root / "letsencrypt" / "ca"
    crt, key = base / "ca.crt", base / "ca.key"
    if not crt.exists():
        base.mkdir(parents=True, exist_ok=True)
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(key), "-out", str(crt), "-days", "3650",
                 "-subj", "/C=US/O=(STAGING) Let's Encrypt/CN=(STAGING) Double Ersatz R11")
    return crt, key


def _issue(state: State, app: str, domains: list[str], days: int) -> None:
    ca_crt, ca_key = _stand_in_ca(state)
    directory = _tls_dir(state, app)
    directory.mkdir(parents=True, exist_ok=True)
    key, csr, ext, crt = (directory / name for name in ("server.key", "server.csr", "san.ext", "server.crt"))
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={domains[0]}")
    ext.write_text("subjectAltName=" + ",".join(f"DNS:{d}" for d in domains) + "\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", str(days), "-extfile", str(ext), "-out", str(crt))
    csr.unlink()
    ext.unlink()
    marker = state.app_dir(app) / "letsencrypt"
    marker.mkdir(exist_ok=True)
    (marker / "current").write_text(hashlib.sha1(crt.read_bytes()).hexdigest() + "\n")


def _cert_facts(state: State, app: str) -> dict[str, str]:
    crt = _tls_dir(state, app) / "server.crt"
    if not crt.exists():
        return {}
    # Kept beside the certificate (keyed by its hash): reports read it often, openssl is slow to start.
    cache = state.app_dir(app) / ".tls-facts.json"
    digest = hashlib.sha1(crt.read_bytes()).hexdigest()
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("sha1") == digest:
            return cached["facts"]
    text = _openssl("x509", "-noout", "-in", str(crt), "-enddate", "-startdate", "-subject", "-issuer",
                    "-ext", "subjectAltName", "-nameopt", "compat")
    facts = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name in ("notAfter", "notBefore", "subject", "issuer"):
            facts[name] = value.strip()
    facts["names"] = " ".join(part.strip()[4:] for part in text.split("X509v3 Subject Alternative Name:")[-1]
                              .split(",") if part.strip().startswith("DNS:"))
    cache.write_text(json.dumps({"sha1": digest, "facts": facts}))
    return facts


def _le_active(state: State, app: str) -> bool:
    current = state.app_dir(app) / "letsencrypt" / "current"
    crt = _tls_dir(state, app) / "server.crt"
    return current.exists() and crt.exists() and \
        current.read_text().strip() == hashlib.sha1(crt.read_bytes()).hexdigest()


def _le_expiration(state: State, app: str) -> str:
    facts = _cert_facts(state, app)
    if not facts.get("notAfter"):
        return ""
    stamp = datetime.datetime.strptime(" ".join(facts["notAfter"].split()), "%b %d %H:%M:%S %Y %Z")
    return str(int(stamp.replace(tzinfo=datetime.timezone.utc).timestamp()))


def _le_app_domains(state: State, app: str) -> list[str]:
    return [d for d in state.read_domains(app) if d != "_"]


def _le_check_email(ctx: Context, app: str) -> None:
    if not _le_computed(ctx.state, app, "email"):
        ctx.console.warn("ERROR: Cannot request a certificate without an e-mail address!")
        ctx.console.warn("  please provide your e-mail address using")
        ctx.console.warn(f"  dokku letsencrypt:set {app} email <e-mail>")
        raise DokkuExit(1)


def _le_post_domains_update(ctx: Context) -> None:
    """The plugin's post-domains-update trigger (on add and set, for every app): it does not re-issue."""
    if _le_version(ctx.state) is not None:
        ctx.console.warn("Please run dokku letsencrypt:enable to add https support to the new domain")


def cmd_plugin_installed(ctx: Context, args: list[str]) -> None:
    name = args[0] if args else ""
    if not (name in CORE_PLUGINS or (ctx.state.root / "plugins" / name).exists()):
        raise DokkuExit(1)


def cmd_plugin_list(ctx: Context, args: list[str]) -> None:
    json_format = args[:2] == ["--format", "json"]
    if args and not json_format:
        ctx.console.fail("Invalid flag passed")  # INFERRED
    if json_format and not ctx.since("0.38.22"):
        ctx.console.fail("Invalid flag passed")  # INFERRED: plugin:list learnt --format json in 0.38.22
    rows = [{"name": name, "version": DEFAULT_VERSION if name in CORE_PLUGINS else "", "enabled": True,
             "core": name in CORE_PLUGINS, "description": f"dokku core {name} plugin"} for name in CORE_PLUGINS]
    plugins = ctx.state.root / "plugins"
    for entry in sorted(plugins.iterdir()) if plugins.is_dir() else []:
        version = entry.read_text().strip() or "1.48.0"
        if entry.name == "letsencrypt" and version_tuple("0.21.0") <= version_tuple(version) <= version_tuple("0.25.0"):
            version = "0.20.4"  # plugin.toml was not bumped from 0.21.0 to 0.25.0
        rows.append({"name": entry.name, "version": version, "enabled": True, "core": False,
                     "description": f"dokku {entry.name} plugin"})
    if json_format:
        ctx.console.out(json.dumps([{**row, "source_url": "", "committish": "", "branch": ""} for row in rows]))
        return
    for row in rows:
        ctx.console.out(f"  {row['name']:<20} {row['version']:<7} enabled    {row['description']}")


def cmd_plugin_install(ctx: Context, args: list[str]) -> None:
    _require_root(ctx)
    url = args[0] if args else ""
    name = args[args.index("--name") + 1] if "--name" in args[:-1] else \
        re.sub(r"^dokku-", "", url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))
    plugins = ctx.state.root / "plugins"
    plugins.mkdir(exist_ok=True)
    # INFERRED progress text.
    ctx.console.info1(f"Cloning plugin repo {url} to /var/lib/dokku/plugins/available/{name}")
    (plugins / name).write_text("0.25.1\n" if name == "letsencrypt" else "")
    ctx.console.info1(f"Plugin {name} enabled")


def cmd_le_set(ctx: Context, args: list[str]) -> None:
    _le_require(ctx, args, "0.20.0")
    target = args[0] if args else ""
    if target != "--global":
        ctx.verify_app_bash(target)
    key = args[1] if len(args) > 1 else ""
    if not key:
        ctx.console.fail("No key specified")
    if key not in LE_VALID_KEYS and not key.startswith("dns-provider-"):
        ctx.console.fail("Invalid key specified, valid keys include: dns-provider, dns-provider-*, email, "
                         "graceperiod, server, lego-args, lego-docker-options")
    props = _le_props(ctx.state)
    value = " ".join(args[2:])
    if value:
        props.setdefault(target, {})[key] = value
        ctx.console.info2(f"Setting {key} to {value}", quiet_able=True)
    else:
        props.setdefault(target, {}).pop(key, None)
        ctx.console.info2(f"Unsetting {key}", quiet_able=True)
    path = _le_props_path(ctx.state)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(props))


def cmd_le_active(ctx: Context, args: list[str]) -> None:
    _le_require(ctx, args, "0.15.0")
    app = args[0] if args else ""
    ctx.verify_app_bash(app)
    ctx.console.out("true" if _le_active(ctx.state, app) else "false")


def _le_report_values(ctx: Context, app: str) -> dict[str, str]:
    values = {}
    for key in ("dns-provider", "email", "graceperiod", "lego-args", "lego-docker-options", "server"):
        glob = _le_props(ctx.state).get("--global", {}).get(key, "")
        own = "" if app == "--global" else _le_props(ctx.state).get(app, {}).get(key, "")
        default = {"graceperiod": str(LE_GRACE), "server": "https://acme-v02.api.letsencrypt.org/directory"}.get(key, "")
        values[f"global-{key}"] = glob
        if app != "--global":
            values[key] = own
            values[f"computed-{key}"] = own or glob or default
    if app != "--global":
        values["active"] = "true" if _le_active(ctx.state, app) else "false"
        values["autorenew"] = "true" if (ctx.state.root / "letsencrypt" / "autorenew").exists() else "false"
        values["expiration"] = _le_expiration(ctx.state, app)
    return values


def cmd_le_report(ctx: Context, args: list[str]) -> None:
    version = _le_require(ctx, args)
    json_format = "--format" in args
    if json_format and version < version_tuple("0.24.0"):
        # INFERRED: before 0.24.0 `--format` is taken for an info flag.
        ctx.console.fail("Invalid flag passed, valid flags: --letsencrypt-active, --letsencrypt-autorenew, "
                         "--letsencrypt-email, --letsencrypt-expiration")
    positional = [a for a in args if not a.startswith("--") or a == "--global"]
    positional = [a for a in positional if a != "json"]
    targets = positional[:1] or ctx.state.app_names()
    for target in targets:
        if target != "--global":
            ctx.verify_app_bash(target)
        values = _le_report_values(ctx, target)
        if json_format:
            ctx.console.out(json.dumps(values, separators=(",", ":")))  # jq -c
        else:
            ctx.console.info2(f"{target} letsencrypt information", quiet_able=True)
            for key, value in sorted(values.items()):
                ctx.console.verbose(f"{ucfirst(('Letsencrypt ' + key).replace('-', ' ')) + ':':<31}{value}")


def cmd_le_enable(ctx: Context, args: list[str]) -> None:
    version = _le_require(ctx, args)
    app = args[0] if args else ""
    force = "--force" in args or "-f" in args
    ctx.verify_app_bash(app)
    console = ctx.console
    domains = _le_app_domains(ctx.state, app)
    if not domains:
        console.warn(f"No domains detected for {app}")
        raise DokkuExit(1)
    console.info2(f"Enabling letsencrypt for {app}")
    _le_check_email(ctx, app)
    expiration = _le_expiration(ctx.state, app)
    if version >= version_tuple("0.25.0") and not force and _le_active(ctx.state, app) and expiration \
            and int(expiration) - time.time() > int(_le_computed(ctx.state, app, "graceperiod", str(LE_GRACE))):
        console.info1(f"Certificate is still valid for {app}, skipping certificate request")
        console.info1("Pass --force to letsencrypt:enable to request a new certificate anyway")
        return
    console.info1(f"Enabling ACME proxy for {app}...")
    console.info1(f"Getting letsencrypt certificate for {app} via HTTP-01")
    for domain in domains:
        console.err(f"        - Domain '{domain}'")
    fault = _take_control(ctx.state, "lego")
    if fault is not None:
        output = fault.get("output", "")
        for line in output.splitlines():
            console.out("       " + line)
        if re.search(r"urn:ietf:params:acme:error:rateLimited|429.*Too Many Requests|too many certificates|"
                     r"too many failed authorizations", output):
            console.warn("Let's Encrypt rate-limited this request.")
            console.warn("See https://letsencrypt.org/docs/rate-limits/ for the active limits and remediation guidance.")
            console.warn(f"Use 'dokku letsencrypt:set {app} server staging' while iterating to avoid the production limits.")
        console.info1("Certificate retrieval failed!")
        console.info1(f"Disabling ACME proxy for {app}...")
        console.warn("Failed to setup letsencrypt")
        console.fail("Check log output for further information on failure", int(fault.get("exit_code", 1)))
    days_path = ctx.state.control_dir / "lego-days"
    days = int(days_path.read_text().strip()) if days_path.exists() else 90
    console.info1("Certificate retrieved successfully.")
    console.info1("Installing let's encrypt certificates")
    _issue(ctx.state, app, domains, days)
    console.info1(f"Disabling ACME proxy for {app}...")
    console.info1("Done")


def _take_control(state: State, name: str) -> dict | None:
    path = state.control_dir / name
    if not path.exists():
        return None
    fault = json.loads(path.read_text() or "{}")
    times = fault.get("times")
    if times is not None:
        if times <= 1:
            path.unlink()
        else:
            path.write_text(json.dumps({**fault, "times": times - 1}))
    return fault


def _remove_tls(state: State, app: str) -> None:
    import shutil
    shutil.rmtree(_tls_dir(state, app), ignore_errors=True)
    shutil.rmtree(state.app_dir(app) / "letsencrypt", ignore_errors=True)


def cmd_le_disable(ctx: Context, args: list[str]) -> None:
    _le_require(ctx, args, "0.10.0")
    app = args[0] if args else ""
    ctx.verify_app_bash(app)
    ctx.console.info1("Disabling letsencrypt for app")
    ctx.console.verbose(f"Removing letsencrypt files for {app}")
    ctx.console.verbose(f"Removing SSL endpoint from {app}")
    _remove_tls(ctx.state, app)
    ctx.console.info1("Done")


def cmd_le_revoke(ctx: Context, args: list[str]) -> None:
    _le_require(ctx, args)
    app = args[0] if args else ""
    ctx.verify_app_bash(app)
    _le_check_email(ctx, app)
    console = ctx.console
    console.info2(f"Revoke letsencrypt certificate from {app}...")
    console.info1(f"Revoking letsencrypt certificate for {app} via HTTP-01")
    fault = _take_control(ctx.state, "lego-revoke")
    if fault is not None:
        # The plugin returns 0 here (`fn-letsencrypt-acme-revoke ... || true` in effect).
        console.info1(f"Certificate revocation failed (code {int(fault.get('exit_code', 1))})!")
    else:
        console.info1("Certificate revoked successfully.")
        _remove_tls(ctx.state, app)
    console.info1("Done")


def cmd_le_cron_job(ctx: Context, args: list[str]) -> None:
    version = _le_require(ctx, args)
    flag = args[0] if args else ""
    marker = ctx.state.root / "letsencrypt" / "autorenew"
    if flag == "--add":
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        ctx.console.info1("Added cron job to dokku's crontab.")
    elif flag == "--remove":
        marker.unlink(missing_ok=True)
        ctx.console.info1("Removed cron job from dokku's crontab.")
    elif not flag:
        if version < version_tuple("0.25.0"):
            return  # INFERRED: no status before 0.25.0; the bare form printed nothing
        if marker.exists():
            ctx.console.info2("Auto-renew cron job is enabled", quiet_able=True)
            ctx.console.verbose("Run 'dokku letsencrypt:cron-job --remove' to disable.")
        else:
            ctx.console.info2("Auto-renew cron job is not enabled", quiet_able=True)
            ctx.console.verbose("Run 'dokku letsencrypt:cron-job --add' to enable.")
    else:
        ctx.console.fail(f"Invalid flag '{flag}', specify --add, --remove, or no flag to display status.")


def cmd_cron_list(ctx: Context, args: list[str]) -> None:
    if not ctx.since("0.36.7"):
        parse_flags(ctx, args)  # before 0.36.7 --global is an unknown flag (pflag: exit 2)
    flags, positional = parse_flags(ctx, args, bools=("global",), strings=("format",))
    tasks = []
    if (ctx.state.root / "letsencrypt" / "autorenew").exists() and _le_version(ctx.state) is not None \
            and not (ctx.state.control_dir / "cron-unlisted").exists():
        tasks.append(("letsencrypt-auto-renew", "24 6 * * *", "dokku letsencrypt:auto-renew"))
    if not flags["global"]:
        ctx.verify_app(positional[0] if positional else "")
        tasks = []
    # INFERRED table layout.
    ctx.console.out(f"{'ID':<26} {'Schedule':<12} Command")
    for task in tasks:
        ctx.console.out(f"{task[0]:<26} {task[1]:<12} {task[2]}")


def _certs_read_tar(ctx: Context) -> tuple[bytes, bytes]:
    import io
    import tarfile

    data = sys.stdin.buffer.read() if ctx.stdin_pipe else b""
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
            crt = next((tar.extractfile(m).read() for n, m in names.items() if n.endswith(".crt")), None)
            key = next((tar.extractfile(m).read() for n, m in names.items() if n.endswith(".key")), None)
    except tarfile.TarError:
        crt = key = None
    if not crt or not key:
        ctx.console.fail("Tar archive must contain a .crt and a .key file")  # INFERRED
    return crt, key


def _certs_install(ctx: Context, args: list[str], update: bool) -> None:
    app = args[0] if args else ""
    ctx.verify_app_bash(app)
    if update and not (_tls_dir(ctx.state, app) / "server.crt").exists():
        ctx.console.fail(f"An app-specific SSL endpoint is not defined for {app}")  # INFERRED
    crt, key = _certs_read_tar(ctx)
    try:
        cert_key = _openssl("x509", "-noout", "-pubkey", stdin=crt)
        own_key = _openssl("pkey", "-pubout", stdin=key)
    except ValueError:
        ctx.console.fail("Certificate or key is not valid")  # INFERRED
    if cert_key.strip() != own_key.strip():
        ctx.console.fail("Certificate and key do not match")  # INFERRED
    _remove_tls(ctx.state, app)
    directory = _tls_dir(ctx.state, app)
    directory.mkdir(parents=True)
    (directory / "server.crt").write_bytes(crt)
    (directory / "server.key").write_bytes(key)
    ctx.console.info1(f"{'Updating' if update else 'Adding'} SSL endpoint for {app}...")  # INFERRED


def cmd_certs_add(ctx: Context, args: list[str]) -> None:
    _certs_install(ctx, args, update=False)


def cmd_certs_update(ctx: Context, args: list[str]) -> None:
    _certs_install(ctx, args, update=True)


def cmd_certs_remove(ctx: Context, args: list[str]) -> None:
    app = args[0] if args else ""
    ctx.verify_app_bash(app)
    if not (_tls_dir(ctx.state, app) / "server.crt").exists():
        ctx.console.fail(f"An app-specific SSL endpoint is not defined for {app}")  # INFERRED
    _remove_tls(ctx.state, app)
    ctx.console.info1(f"Removing SSL endpoint from {app}...")  # INFERRED


def _certs_values(ctx: Context, app: str) -> dict[str, str]:
    facts = _cert_facts(ctx.state, app)
    return {
        "--ssl-dir": f"{DOKKU_HOME}/{app}/tls",
        "--ssl-enabled": "true" if facts else "false",
        "--ssl-hostnames": facts.get("names", ""),
        "--ssl-expires-at": facts.get("notAfter", ""),  # INFERRED format: openssl's notAfter
        "--ssl-issuer": facts.get("issuer", ""),
        "--ssl-starts-at": facts.get("notBefore", ""),
        "--ssl-subject": facts.get("subject", ""),
        "--ssl-verified": "self signed" if facts and facts.get("issuer") == facts.get("subject") else
        ("verified by a certificate authority" if facts else ""),  # INFERRED wording
    }


def cmd_certs_report(ctx: Context, args: list[str]) -> None:
    run_report(ctx, "ssl", args, lambda app: _certs_values(ctx, app), legacy_keys=False)


TLS_COMMANDS = {
    "plugin:installed": cmd_plugin_installed,
    "plugin:list": cmd_plugin_list,
    "plugin:install": cmd_plugin_install,
    "letsencrypt:set": cmd_le_set,
    "letsencrypt:active": cmd_le_active,
    "letsencrypt:report": cmd_le_report,
    "letsencrypt:enable": cmd_le_enable,
    "letsencrypt:disable": cmd_le_disable,
    "letsencrypt:revoke": cmd_le_revoke,
    "letsencrypt:cron-job": cmd_le_cron_job,
    "cron:list": cmd_cron_list,
    "certs:add": cmd_certs_add,
    "certs:update": cmd_certs_update,
    "certs:remove": cmd_certs_remove,
    "certs:report": cmd_certs_report,
}
COMMANDS.update(TLS_COMMANDS)


def stdin_is_pipe() -> bool:
    """Dokku's `[[ -p /dev/stdin ]]`."""
    try:
        return stat.S_ISFIFO(os.fstat(0).st_mode)
    except OSError:
        return False


def _run_unlocked(state: State, console: Console, command: str, rest: list[str], pipe: bool, force: bool) -> int:
    with state.lock():
        fault = state.take_fault(command)
    if fault is not None:
        console.out(fault.get("stdout", ""), end="")
        console.err(fault.get("stderr", ""), end="")
        return int(fault.get("exit_code", 1))
    try:
        COMMANDS[command](Context(state, console, command, pipe, force), rest)
    except DokkuExit as done:
        return done.code
    return 0


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
    if command in UNLOCKED:
        return _run_unlocked(state, console, command, rest, pipe, force)
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


def run() -> None:
    """The program: `dokku <command> [args]` (the launcher imports this module, so its compiled form is reused)."""
    # Files the double creates must stay usable whichever user runs it next
    # (root over SSH, root through sudo, or a plain user).
    os.umask(0)
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:
        sys.exit(141)


if __name__ == "__main__":
    run()
