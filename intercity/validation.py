"""Validation rules for names, keys, hostnames and SSH keys: one place per rule, used by forms and services."""
from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

import idna
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

APP_NAME_NEW = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
# Dokku still accepts underscores in apps created before it tightened the rule.
APP_NAME_LEGACY = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
# An app's default vhost is `<app>.<server domain>`, so its name must fit in one DNS label.
APP_NAME_MAX = 63
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Dokku lowercases a domain, then accepts `_` or this pattern: the legacy rule for names
# already in the panel or read from a server.
DOMAIN_LEGACY = re.compile(r"^[a-z0-9.*-]*[a-z0-9*-]$")
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DOMAIN_MAX = 253
DEPLOY_KEY_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
UNIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")

SSH_KEY_TYPES = {
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
}


class ValidationError(ValueError):
    """A value a person typed breaks a rule; `field` says which input it belongs next to."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def app_name(name: str, *, legacy: bool = False) -> str:
    """Return the app name if Dokku accepts it; legacy names only for apps imported from a server."""
    name = (name or "").strip()
    if not name:
        raise ValidationError("Enter an app name.", "name")
    pattern = APP_NAME_LEGACY if legacy else APP_NAME_NEW
    if not pattern.match(name):
        raise ValidationError(
            "App names must begin with a lowercase letter or digit and may only contain "
            "lowercase letters, digits, dots and hyphens.",
            "name",
        )
    if not legacy and len(name) > APP_NAME_MAX:
        raise ValidationError(
            f"App names are at most {APP_NAME_MAX} characters (the app's default domain is a DNS label); "
            f"this one has {len(name)}.",
            "name",
        )
    return name


def operand(value: str, field: str | None = None) -> str:
    """Refuse a value that Dokku would read as an option (it starts with `-`)."""
    if not isinstance(value, str) or not value or value.startswith("-"):
        raise ValidationError(f"{value!r} cannot be passed to Dokku: it would be read as an option.", field)
    return value


def env_key(key: str) -> str:
    key = (key or "").strip()
    if not key:
        raise ValidationError("Enter a variable name.", "key")
    if not ENV_KEY.match(key):
        raise ValidationError(
            f"Invalid key name '{key}': use letters, digits and underscores, not starting with a digit.",
            "key",
        )
    return key


def dokku_storage_problem(value: str) -> str | None:
    """Why Dokku cannot store this value, or None when it can.

    Dokku writes an app's config with godotenv 1.5.1 and reads it back with godotenv's
    parser, which gives back every value except those ending in a double quote or a
    backslash (tests/test_env_storable.py checks this rule against a port of both).
    Integer-looking values (`007`) come back as numbers; the read-back reports that.
    """
    if value.endswith('"'):
        return ('ends with a double quote ("): Dokku would store a backslash in its place, and the '
                "app's next config change would then fail. Add a character after the quote, or leave it out.")
    if value.endswith("\\"):
        return ("ends with a backslash (\\): Dokku would store it but could no longer read any of the app's "
                "config. Add a character after the backslash, or leave it out.")
    return None


def env_value(value: str) -> str:
    """Normalise a value typed into a browser (CRLF line breaks become LF); refuse what Dokku cannot store."""
    if value is None:
        raise ValidationError("Enter a value.", "value")
    value = value.replace("\r\n", "\n")
    if "\x00" in value:
        raise ValidationError("Values cannot contain NUL bytes.", "value")
    problem = dokku_storage_problem(value)
    if problem:
        raise ValidationError("This value " + problem, "value")
    return value


def domain(hostname: str, *, legacy: bool = False) -> str:
    """Return the hostname as Dokku stores it: lowercased, internationalised names in punycode.

    New names follow DNS (labels of 1–63 characters without a leading or trailing hyphen,
    at most 253 in all, `*` only as the whole leftmost label). `legacy` applies Dokku's own,
    looser rule, for names already in the panel or read from a server.
    """
    value = (hostname or "").strip().lower()
    if not value:
        raise ValidationError("Enter a domain.", "domain")
    if value == "_":
        return value
    if value.startswith("-"):
        raise ValidationError(f"{value} is not a valid domain: it cannot start with a hyphen.", "domain")
    if legacy:
        if not DOMAIN_LEGACY.match(value):
            raise ValidationError(f"{value} is not a valid domain.", "domain")
        return value
    if not value.isascii():
        value = _punycode(value)
    if "/" in value or ":" in value:
        raise ValidationError(f"{value} is not a valid domain: enter the host name only, without a scheme or path.",
                              "domain")
    if len(value) > DOMAIN_MAX:
        raise ValidationError(f"A domain is at most {DOMAIN_MAX} characters; this one has {len(value)}.", "domain")
    labels = value.split(".")
    for index, label in enumerate(labels):
        if label == "*" and index == 0 and len(labels) > 1:
            continue
        if not label:
            raise ValidationError(f"{value} is not a valid domain: it has an empty part between dots.", "domain")
        if "*" in label:
            raise ValidationError(
                f"{value} is not a valid domain: * may only be the whole leftmost part (*.example.com).", "domain")
        if len(label) > 63:
            raise ValidationError(f"{value} is not a valid domain: each part between dots is at most 63 characters.",
                                  "domain")
        if label.startswith("-") or label.endswith("-"):
            raise ValidationError(f"{value} is not a valid domain: a part cannot start or end with a hyphen.",
                                  "domain")
        if not DNS_LABEL.match(label):
            raise ValidationError(
                f"{value} is not a valid domain: use letters, digits, dots and hyphens (and a leading *.) only.",
                "domain")
    return value


def _punycode(value: str) -> str:
    wildcard = value.startswith("*.")
    try:
        encoded = idna.encode(value[2:] if wildcard else value, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as error:
        raise ValidationError(f"{value} is not a valid internationalised domain ({error}).", "domain") from None
    return f"*.{encoded}" if wildcard else encoded


def domain_display(hostname: str) -> str:
    """A stored domain as people read it: `bücher.example (xn--bcher-kva.example)` for punycode."""
    if "xn--" not in hostname:
        return hostname
    wildcard = hostname.startswith("*.")
    try:
        decoded = idna.decode(hostname[2:] if wildcard else hostname)
    except (idna.IDNAError, UnicodeError):
        return hostname
    return f"{'*.' if wildcard else ''}{decoded} ({hostname})"


def deploy_key_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError("Enter a name for the key.", "name")
    if not DEPLOY_KEY_NAME.match(name):
        raise ValidationError("Key names may only contain letters, digits, hyphens and underscores.", "name")
    if name.startswith("-"):
        raise ValidationError("Key names cannot start with a hyphen (Dokku would read the name as an option).",
                              "name")
    return name


def server_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError("Enter a name for the server.", "name")
    if not SERVER_NAME.match(name):
        raise ValidationError(
            "Server names start with a letter or digit and may contain letters, digits, dots, "
            "hyphens and underscores (at most 63 characters).",
            "name",
        )
    return name


def host(value: str) -> str:
    value = (value or "").strip()
    if not value:
        raise ValidationError("Enter the server's hostname or IP address.", "host")
    m = IPV4.match(value)
    if m and all(0 <= int(part) <= 255 for part in m.groups()):
        return value
    if ":" in value:
        import ipaddress

        try:
            return str(ipaddress.IPv6Address(value.strip("[]")))
        except ValueError:
            pass
    elif HOSTNAME.match(value) and not IPV4.match(value):
        return value.lower()
    raise ValidationError(f"{value} is not a hostname or IP address.", "host")


def port(value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError("The SSH port must be a number.", "port") from None
    if not 1 <= number <= 65535:
        raise ValidationError("The SSH port must be between 1 and 65535.", "port")
    return number


def ssh_user(value: str) -> str:
    value = (value or "").strip() or "root"
    if value == "dokku":
        raise ValidationError(
            "The dokku user cannot be used: its forced command cannot run sudo and it cannot "
            "manage deploy keys. Use root, or a user with passwordless sudo for dokku.",
            "ssh_user",
        )
    if not UNIX_USER.match(value):
        raise ValidationError(f"{value} is not a valid Unix user name.", "ssh_user")
    return value


def host_key_fingerprint(value: str | None) -> str | None:
    """An expected host key fingerprint pasted by a person, as `SHA256:...` (optional)."""
    value = (value or "").strip()
    if not value:
        return None
    if not value.startswith("SHA256:"):
        value = "SHA256:" + value
    value = value.rstrip("=")
    if not FINGERPRINT.match(value):
        raise ValidationError(
            "Paste the SHA256 fingerprint as `ssh-keygen -lf` prints it, e.g. SHA256:abc…", "host_key_fingerprint"
        )
    return value


@dataclass(frozen=True)
class PublicKey:
    """An OpenSSH public key line, parsed."""

    key_type: str
    blob: bytes
    comment: str

    @property
    def fingerprint(self) -> str:
        return sha256_fingerprint(self.blob)

    @property
    def line(self) -> str:
        text = f"{self.key_type} {base64.b64encode(self.blob).decode()}"
        return f"{text} {self.comment}" if self.comment else text


def sha256_fingerprint(blob: bytes) -> str:
    """The fingerprint `ssh-keygen -lf` prints: SHA256 and unpadded base64 of the key's blob.

    (cryptography's `ssh_key_fingerprint` re-encodes the key it loaded, and it loads a security-key
    (sk-) key as its plain type, so for those it would not match what ssh-keygen and Dokku print.)
    """
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def public_key(text: str) -> PublicKey:
    """Parse one OpenSSH public key line; reject private keys, several keys and options."""
    text = (text or "").strip()
    if not text:
        raise ValidationError("Paste a public key.", "public_key")
    if "PRIVATE KEY" in text:
        raise ValidationError(
            "That is a private key. Paste the public key (the .pub file) and keep the private key secret.",
            "public_key",
        )
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise ValidationError("Paste exactly one public key, on one line.", "public_key")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
        raise ValidationError(
            "This is not an OpenSSH public key: it should start with ssh-ed25519, ssh-rsa or ecdsa-sha2-….",
            "public_key",
        )
    key_type, encoded = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) == 3 else ""
    try:
        blob = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise ValidationError("The key data is not valid base64 of an SSH key.", "public_key") from None
    try:
        # cryptography checks the key's structure: its type inside the data, lengths, curve points.
        key = load_ssh_public_key(f"{key_type} {encoded}".encode("ascii"))
    except UnsupportedAlgorithm:
        raise ValidationError("This kind of SSH key is not supported.", "public_key") from None
    except (ValueError, TypeError):
        raise ValidationError("The key data is truncated, has extra bytes or does not match its type.",
                              "public_key") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 1024:
        raise ValidationError("RSA keys shorter than 1024 bits are refused.", "public_key")
    return PublicKey(key_type, blob, comment)


def listed_key_material(listed: dict) -> tuple[str, str]:
    """(key type, public key line) of a key as `ssh-keys:list` gave it, where the listing had a line matching its
    fingerprint (JSON only); ("unknown", "") otherwise."""
    if listed.get("public_key"):
        try:
            parsed = public_key(listed["public_key"])
        except ValidationError:
            return "unknown", ""
        if parsed.fingerprint == listed["fingerprint"]:
            return parsed.key_type, parsed.line
    return "unknown", ""
