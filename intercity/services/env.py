"""Environment variables: set, edit, remove, paste a .env block, reveal one value.

Each change updates the desired state (EnvVar rows, one audit entry per key) and asks for
one `env.apply` operation naming the keys; the job reads current values when it runs.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from sqlalchemy import select

from intercity import crypto, validation
from intercity.audit.capture import record_event
from intercity.audit.rules import Scope
from intercity.extensions import db
from intercity.models import App, EnvVar, Operation
from intercity.services.apps import ensure_usable
from intercity.services.operations import request_operation
from intercity.services.permissions import require
from intercity.validation import ValidationError

# base64 of a value must fit one dokku command line (100 KiB) with room for the rest.
MAX_VALUE_BYTES = 64 * 1024


@dataclass
class EnvResult:
    """What a change did: keys set (new or changed), keys unchanged, and the operation (None if nothing changed)."""

    set: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    operation: Operation | None = None


class EnvBlockError(ValidationError):
    """A pasted block has bad lines; `lines` holds (line number, message) for each."""

    def __init__(self, lines: list[tuple[int, str]]):
        self.lines = lines
        text = "; ".join(f"line {n}: {m}" for n, m in lines)
        super().__init__(f"Nothing was changed. Fix these lines and paste again: {text}", "block")


def normalise_value(value: str, field_name: str = "value") -> str:
    try:
        value = validation.env_value(value)
    except ValidationError as error:
        raise ValidationError(error.message, field_name) from None
    if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        raise ValidationError("Values are limited to 64 KiB.", field_name)
    return value


def get_var(app: App, key: str) -> EnvVar | None:
    return db.session.scalar(select(EnvVar).where(EnvVar.app_id == app.id, EnvVar.key == key))



def refuse_linked(var: EnvVar | None, field: str = "key") -> None:
    """A variable a service link set belongs to the link: only unlinking removes or changes it."""
    if var is not None and var.linked_service:
        plugin, _, service = var.linked_service.partition(" ")
        raise ValidationError(f"{var.key} was set by linking {plugin} service {service}: unlink the service "
                              "on the server's page instead of changing it here.", field)


def _apply(app: App, user, pairs: dict[str, str], restart: bool) -> EnvResult:
    result = EnvResult()
    changed = []
    for key in pairs:
        refuse_linked(get_var(app, key), "block" if len(pairs) > 1 else "key")
    for key, value in pairs.items():
        var = get_var(app, key)
        if var is None:
            var = EnvVar(app=app, key=key)
            var.value = value
            db.session.add(var)
        elif var.value_fingerprint == crypto.fingerprint(value):
            result.unchanged.append(key)
            continue
        else:
            var.value = value
        result.set.append(key)
        changed.append(var)
    if result.set:
        db.session.flush()
        result.operation = request_operation(
            "env.apply", server=app.server, app=app, requested_by=user,
            payload={"set": result.set, "unset": [], "restart": bool(restart)}, applies=changed,
        )
    return result


def set_var(app: App, user, *, key: str, value: str, restart: bool = True) -> EnvResult:
    """Add a variable, or give an existing one a new value."""
    require(user, "member")
    ensure_usable(app)
    key = validation.env_key(key)
    value = normalise_value(value)
    return _apply(app, user, {key: value}, restart)


def edit_var(app: App, user, *, key: str, value: str, restart: bool = True) -> EnvResult:
    """A new value for a variable that exists."""
    require(user, "member")
    ensure_usable(app)
    if get_var(app, key) is None:
        raise ValidationError(f"{app.name} has no variable {key} (it may have been removed).", "key")
    value = normalise_value(value)
    return _apply(app, user, {key: value}, restart)


def remove_var(app: App, user, *, key: str, restart: bool = True) -> EnvResult:
    require(user, "member")
    ensure_usable(app)
    var = get_var(app, key)
    if var is None:
        raise ValidationError(f"{app.name} has no variable {key}.", "key")
    refuse_linked(var)
    db.session.delete(var)
    db.session.flush()
    operation = request_operation("env.apply", server=app.server, app=app, requested_by=user,
                                  payload={"set": [], "unset": [key], "restart": bool(restart)}, applies=[var])
    return EnvResult(removed=[key], operation=operation)


@dataclass
class EnvPreview:
    """What pasting a block would do; `token` changes when the block or the current values do."""

    added: list[str]
    changed: list[str]
    unchanged: list[str]
    token: str


def preview_block(app: App, user, *, text: str) -> EnvPreview:
    """Keys a pasted block would add, change and leave as they are (a paste never removes one)."""
    require(user, "member")
    ensure_usable(app)
    pairs = parse_block(text)
    if not pairs:
        raise ValidationError("Paste at least one line of the form KEY=value.", "block")
    added, changed, unchanged = [], [], []
    state = []
    for key, value in pairs.items():
        var = get_var(app, key)
        fingerprint = crypto.fingerprint(value)
        if var is None:
            added.append(key)
        elif var.value_fingerprint == fingerprint:
            unchanged.append(key)
        else:
            changed.append(key)
        state.append(f"{key}={fingerprint}:{var.value_fingerprint if var else '-'}")
    # Keyed fingerprints only: the token shows nothing of the values it stands for.
    token = hashlib.sha256("\n".join(state).encode()).hexdigest()[:32]
    return EnvPreview(added, changed, unchanged, token)


def paste_block(app: App, user, *, text: str, restart: bool = True) -> EnvResult:
    """Set every variable of a .env block in one operation; a single bad line changes nothing."""
    require(user, "member")
    ensure_usable(app)
    pairs = parse_block(text)
    if not pairs:
        raise ValidationError("Paste at least one line of the form KEY=value.", "block")
    return _apply(app, user, pairs, restart)


def reveal(app: App, user, *, key: str) -> str:
    """A value in clear for a member or admin, recorded as a security entry."""
    require(user, "member")
    var = get_var(app, key)
    if var is None:
        raise ValidationError(f"{app.name} has no variable {key}.", "key")
    record_event(db.session, "env_var.revealed", target_type="env_var", target_id=var.id, target_label=var.key,
                 scope=Scope(server_id=app.server_id, server_name=app.server.name, app_id=app.id, app_name=app.name))
    return var.value


# --- .env parsing ---------------------------------------------------------------------

_INLINE_COMMENT = re.compile(r"\s#.*$")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$", "`": "`"}


def parse_block(text: str) -> dict[str, str]:
    """Parse a .env block: KEY=value per line, `export ` allowed, `#` comment lines and blank lines skipped.

    Unquoted values run to the end of the line or to a ` #` comment (a `#` with no space before it is
    kept), and are trimmed, as python-dotenv, Docker Compose and Dokku read them.
    'single quotes' keep everything literally; "double quotes" understand \\n, \\t, \\", \\\\ and may
    span several lines. Browsers send CRLF line breaks: they become LF. Raises EnvBlockError
    naming every bad line; nothing is returned half-parsed.
    """
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    pairs: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    errors: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        number = i + 1
        line = lines[i]
        i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export ") or stripped.startswith("export\t"):
            stripped = stripped[len("export"):].lstrip()
        key, sep, rest = stripped.partition("=")
        key = key.strip()
        if not sep:
            # The line itself is not echoed: a stray line is often part of a secret.
            errors.append((number, "expected KEY=value, but there is no “=” on this line"))
            continue
        if not validation.ENV_KEY.match(key):
            # Not echoed either: what precedes a stray "=" may be part of a URL with a password.
            errors.append((number, "the name before “=” is not a valid variable name: use letters, digits and "
                                   "underscores, not starting with a digit"))
            continue
        raw, rest = rest, rest.lstrip()
        if rest.startswith("'"):
            end = rest.find("'", 1)
            if end == -1:
                errors.append((number, f"the value of {key} opens a ' quote that is not closed on this line"))
                continue
            value, tail = rest[1:end], rest[end + 1:]
        elif rest.startswith('"'):
            value, tail, consumed, problem = _double_quoted(rest[1:], lines, i)
            if problem:
                errors.append((number, f"the value of {key} {problem}"))
                i += consumed
                continue
            i += consumed
        else:
            # As dotenv, Docker Compose and Dokku read it: whitespace then `#` starts a comment;
            # a `#` inside the value (`a#b`, `https://x/#top`) stays.
            value, tail = _INLINE_COMMENT.sub("", raw).strip(), ""
        tail = tail.strip()
        if tail and not tail.startswith("#"):
            errors.append((number, f"unexpected text after the quoted value of {key}"))
            continue
        if "\x00" in value:
            errors.append((number, f"the value of {key} contains a NUL byte"))
            continue
        problem = validation.dokku_storage_problem(value)
        if problem:
            errors.append((number, f"the value of {key} {problem}"))
            continue
        if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            errors.append((number, f"the value of {key} is longer than 64 KiB"))
            continue
        if key in first_seen:
            errors.append((number, f"{key} is already set on line {first_seen[key]}"))
            continue
        first_seen[key] = number
        pairs[key] = value
    if errors:
        raise EnvBlockError(errors)
    return pairs


def _double_quoted(start: str, lines: list[str], next_index: int) -> tuple[str, str, int, str | None]:
    """Read a double-quoted value that may continue on the following lines.

    Returns (value, text after the closing quote, extra lines consumed, problem or None).
    """
    out: list[str] = []
    text = start
    consumed = 0
    while True:
        j = 0
        while j < len(text):
            ch = text[j]
            if ch == "\\" and j + 1 < len(text):
                nxt = text[j + 1]
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
                j += 2
                continue
            if ch == '"':
                return "".join(out), text[j + 1:], consumed, None
            out.append(ch)
            j += 1
        if next_index + consumed >= len(lines):
            return "", "", consumed, 'opens a " quote that is never closed'
        out.append("\n")
        text = lines[next_index + consumed]
        consumed += 1

