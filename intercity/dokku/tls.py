"""TLS on Dokku (dokku-letsencrypt and core `certs:*`): command builders, output readers, failures in plain words.

The letsencrypt plugin's version number cannot be trusted (its plugin.toml said 0.20.4 for every
release from 0.21 to 0.25.0), so what a server can do is found by trying a command and reading
how it fails, never from the version. Uploaded certificates are checked here with `cryptography`
before anything is sent, and travel as a tar of `server.crt` and `server.key` on stdin.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from datetime import datetime, timezone

from intercity import validation
from intercity.dokku import commands
from intercity.dokku.commands import Command, _command, _existing_app
from intercity.dokku.parsers import DokkuError, RootNeeded
from intercity.validation import ValidationError

PLUGIN = "letsencrypt"
PLUGIN_URL = "https://github.com/dokku/dokku-letsencrypt.git"
# What a panel-side check calls "expiring soon": listed first in the digest and on the server page.
EXPIRING_DAYS = 14
CRON_COMMAND = "letsencrypt:auto-renew"
EMAIL = re.compile(r"[^@\s'\"]+@[^@\s'\"]+\.[^@\s'\"]+\Z")
_BANG = " !     "


# --- builders ----------------------------------------------------------------------------------


def plugin_installed() -> Command:
    """Prints nothing; exit 0 installed, 1 not (`plugn list | grep -q`)."""
    return _command("plugin:installed", "plugin:installed", PLUGIN)


def plugin_list(json_format: bool) -> Command:
    return _command("plugin:list", "plugin:list", *(("--format", "json") if json_format else ()))


def plugin_install() -> Command:
    return commands.plugin_install(PLUGIN_URL, PLUGIN)


def email(value: str) -> str:
    value = (value or "").strip()
    if not value:
        raise ValidationError("Enter the address Let's Encrypt writes to about expiring certificates.", "email")
    if not EMAIL.match(value) or len(value) > 254:
        raise ValidationError("Enter an email address such as ops@example.com.", "email")
    return validation.operand(value, "email")


def set_global_email(value: str) -> Command:
    return _command("letsencrypt:set", "letsencrypt:set", "--global", "email", email(value))


def global_report() -> Command:
    return _command("letsencrypt:report", "letsencrypt:report", "--global", "--format", "json")


def cron_job(flag: str | None = None) -> Command:
    if flag not in (None, "--add"):
        raise ValueError("the panel only reads the cron job or adds it")
    return _command("letsencrypt:cron-job", "letsencrypt:cron-job", *((flag,) if flag else ()))


def cron_list_global() -> Command:
    return _command("cron:list", "cron:list", "--global")


def enable(app: str, force: bool = False) -> Command:
    app = _existing_app(app)
    return _command("letsencrypt:enable", "letsencrypt:enable", app, *(("--force",) if force else ()), app=app)


def disable(app: str) -> Command:
    app = _existing_app(app)
    return _command("letsencrypt:disable", "letsencrypt:disable", app, app=app)


def revoke(app: str) -> Command:
    app = _existing_app(app)
    return _command("letsencrypt:revoke", "letsencrypt:revoke", app, app=app)


def active(app: str) -> Command:
    app = _existing_app(app)
    return _command("letsencrypt:active", "letsencrypt:active", app, app=app)


def app_report(app: str) -> Command:
    app = _existing_app(app)
    return _command("letsencrypt:report", "letsencrypt:report", app, "--format", "json", app=app)


def certs_report(app: str) -> Command:
    app = _existing_app(app)
    return _command("certs:report", "certs:report", app, "--format", "json", app=app)


def certs_add(app: str, bundle: bytes, update: bool = False) -> Command:
    """`certs:add|update APP < tar`: the key reaches Dokku on stdin only, never as a file the panel leaves."""
    app = _existing_app(app)
    sub = "certs:update" if update else "certs:add"
    return _command(sub, sub, app, app=app, stdin=bundle)


def certs_remove(app: str) -> Command:
    app = _existing_app(app)
    return _command("certs:remove", "certs:remove", app, app=app)


# --- reading output ----------------------------------------------------------------------------


def _json_object(stdout: str) -> dict:
    try:
        data = json.loads((stdout or "").strip() or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def parse_plugin_version(stdout: str, json_format: bool) -> str | None:
    """The letsencrypt row of `plugin:list`: JSON objects (0.38.22+) or `name version enabled description`."""
    if json_format:
        try:
            rows = json.loads(stdout or "[]")
        except ValueError:
            rows = []
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and row.get("name") == PLUGIN:
                return str(row.get("version") or "") or None
        return None
    for line in (stdout or "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == PLUGIN:
            return parts[1]
    return None


def parse_cron_job(stdout: str) -> bool | None:
    """`cron-job` with no flag (0.25.0+). Without a TTY its header is dropped, leaving only the hint line
    ("Run 'dokku letsencrypt:cron-job --remove' to disable."), so the hint is read too. None: cannot tell."""
    text = stdout or ""
    if "is not enabled" in text or "cron-job --add" in text:
        return False
    if "cron job is enabled" in text or "cron-job --remove" in text:
        return True
    return None


def parse_cron_list(stdout: str) -> bool:
    """`cron:list --global` (Dokku 0.36.7+): whether the plugin's renewal task is among the injected ones."""
    return CRON_COMMAND in (stdout or "")


def parse_report(stdout: str) -> dict[str, str]:
    """`letsencrypt:report APP --format json` or `certs:report APP --format json`: a flat object."""
    return {str(key): "" if value is None else str(value) for key, value in _json_object(stdout).items()}


def parse_active(stdout: str) -> bool:
    return (stdout or "").strip().splitlines()[-1:] == ["true"]


def revocation_failure(stdout: str) -> str | None:
    """revoke exits 0 even when lego failed: its "Certificate revocation failed (code N)!" line says so."""
    match = re.search(r"Certificate revocation failed \(code (\d+)\)!", stdout or "")
    return match.group(1) if match else None


_OPENSSL_DATE = "%b %d %H:%M:%S %Y %Z"


def _openssl_time(value: str) -> datetime | None:
    value = re.sub(r"\s+", " ", (value or "").strip())
    if not value:
        return None
    try:
        return datetime.strptime(value, _OPENSSL_DATE).replace(tzinfo=timezone.utc)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def tls_state(le_report: dict | None, certs: dict | None) -> dict:
    """What the server says about an app's HTTPS, from the two reports (either may be missing).

    The one reading drift checks use too: `enabled` is whether the app serves a certificate
    (`certs:report` `enabled`), `source` whether Let's Encrypt manages it.
    """
    le_report, certs = le_report or {}, certs or {}
    enabled = certs.get("enabled", "").strip().lower() == "true"
    letsencrypt = le_report.get("active", "").strip().lower() == "true"
    expires = _openssl_time(certs.get("expires-at", ""))
    if expires is None and le_report.get("expiration", "").strip().isdigit():
        expires = datetime.fromtimestamp(int(le_report["expiration"]), tz=timezone.utc)
    autorenew = le_report.get("autorenew", "").strip().lower()
    return {
        "enabled": enabled or letsencrypt,
        "source": "letsencrypt" if letsencrypt else ("uploaded" if enabled else None),
        "issuer": certs.get("issuer", "").strip() or None,
        "subject": certs.get("subject", "").strip() or None,
        "hostnames": certs.get("hostnames", "").split(),
        "expires_at": expires.isoformat() if expires else None,
        "autorenew": {"true": True, "false": False}.get(autorenew),
        "email": le_report.get("computed-email", "").strip() or None,
    }


# --- failures in plain words (parsers.check asks this for every TLS command) --------------------


class NotInstalled(DokkuError):
    """The letsencrypt plugin is not installed (or `plugin:installed` said no)."""


class Unsupported(DokkuError):
    """The server's Dokku or plugin does not know the command or flag: a feature found missing by trying."""


def _lines(text: str) -> list[str]:
    return [line[len(_BANG):].strip() if line.startswith(_BANG) else line.strip() for line in text.splitlines()]


def explain_failure(command: Command, code: int, text: str):
    """The DokkuError a failed TLS command amounts to, or None when it is no TLS command."""
    kind = command.kind
    if not (kind.startswith(("letsencrypt:", "certs:", "cron:")) or kind in ("plugin:install", "plugin:installed",
                                                                           "plugin:list")):
        return None
    app = command.app or "the app"
    lower = text.lower()
    lines = _lines(text)
    if kind == "plugin:installed" and code == 1:
        return NotInstalled("The letsencrypt plugin is not installed on this server.", code)
    if "is not a dokku command" in lower and kind.startswith("letsencrypt:"):
        return NotInstalled("The letsencrypt plugin (dokku-letsencrypt) is not installed on this server. An admin "
                            "installs it from the server's page.", code)
    if "is not a dokku command" in lower or "unknown flag" in lower:
        return Unsupported(f"This server's Dokku or plugin does not know `{' '.join(command.argv[1:3])}`.", code)
    if "must be run as root" in lower:
        return RootNeeded("Installing a plugin needs root on the server: connect as root, or as a user "
                          "whose sudo rule lets it run dokku as root.", code)
    if any(line.startswith("No domains detected for") for line in lines):
        return DokkuError(
            f"{app} has no domain Let's Encrypt can certify (the server's default `_` does not count). Add the "
            "app's own domain, point its DNS at the server, then enable HTTPS again.", code)
    if "cannot request a certificate without an e-mail address" in lower:
        return DokkuError(
            "Let's Encrypt needs an email address and none is set. Set the server's Let's Encrypt email on the "
            "server page, then try again.", code)
    if "rate-limited" in lower or "ratelimited" in lower or "too many certificates" in lower:
        return DokkuError(
            "Let's Encrypt refused: its rate limit for these domains is reached (too many certificates or failed "
            "attempts). Wait before trying again (the limits reset within a week), and remove the server's shared "
            "default domain from the app if many apps use it.", code)
    if "no http or https proxy port mapping was found" in lower:
        return DokkuError(
            f"{app} has no http or https port mapping, so Let's Encrypt cannot reach it on port 80. Add one "
            f"(`dokku ports:add {app} http:80:<container port>`) and try again.", code)
    if "certificate retrieval failed" in lower or "failed to setup letsencrypt" in lower:
        if re.search(r"unauthorized|timeout during connect|connection refused|invalid response|"
                     r"no valid ip addresses|dns problem|nxdomain", lower):
            return DokkuError(
                f"Let's Encrypt could not reach {app} over HTTP to validate its domains (HTTP-01). Check that each "
                "domain's DNS points at this server, that port 80 is open in the firewall, and that no proxy in "
                f"front (Cloudflare \"Flexible\") answers instead. The ACME client exited with code {code}.", code)
        return DokkuError(f"Let's Encrypt did not issue a certificate for {app} (the ACME client exited "
                                  f"with code {code}); its output is in the transcript.", code)
    if kind == "certs:remove":
        return DokkuError(f"Dokku could not remove the certificate of {app}: "
                                  f"{' '.join(line for line in lines if line)[-300:]}", code)
    return None


# --- uploaded certificates ---------------------------------------------------------------------


@dataclass
class Certificate:
    """What the panel knows of an uploaded certificate; none of it is secret."""

    subject: str
    issuer: str
    names: list[str]
    not_after: datetime
    sha256: str
    uncovered: list[str] = field(default_factory=list)

    def facts(self) -> dict:
        """The entry's record of it: subject, issuer, SANs, expiry, SHA-256 fingerprint."""
        return {"subject": self.subject, "issuer": self.issuer, "names": self.names,
                "expires_at": self.not_after.isoformat(), "sha256": self.sha256}


def covers(name: str, domain: str) -> bool:
    name, domain = name.lower().rstrip("."), domain.lower().rstrip(".")
    if name == domain:
        return True
    if name.startswith("*."):
        head, _, rest = domain.partition(".")
        return bool(head) and rest == name[2:]
    return False


def inspect(certificate_pem: str, key_pem: str, domains: list[str], now: datetime) -> Certificate:
    """Check an upload before anything is sent: both parse, the key matches, it has not expired.

    Names the certificate does not cover are returned as `uncovered` (a warning, not a refusal:
    an app may serve a domain through another certificate or not over HTTPS at all).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtensionOID, NameOID

    try:
        chain = x509.load_pem_x509_certificates((certificate_pem or "").strip().encode())
    except ValueError:
        raise ValidationError("This is not a PEM certificate (-----BEGIN CERTIFICATE-----).", "certificate") from None
    cert = chain[0]
    try:
        key = serialization.load_pem_private_key((key_pem or "").strip().encode(), password=None)
    except (ValueError, TypeError):
        raise ValidationError("This is not an unencrypted PEM private key (-----BEGIN PRIVATE KEY----- or "
                              "-----BEGIN RSA/EC PRIVATE KEY-----).", "private_key") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise ValidationError("This private key does not belong to the certificate: its public key differs. "
                              "Upload the key the certificate was issued for.", "private_key")
    not_after = cert.not_valid_after_utc
    if not_after <= now:
        raise ValidationError(f"This certificate expired on {not_after:%Y-%m-%d %H:%M} UTC.", "certificate")
    try:
        names = list(cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
                     .value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = [attr.value for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    wanted = [d for d in domains if d and d != "_"]
    return Certificate(
        subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(), names=[str(n) for n in names],
        not_after=not_after, sha256=":".join(digest[i:i + 2] for i in range(0, len(digest), 2)),
        uncovered=[d for d in wanted if not any(covers(str(n), d) for n in names)])


def bundle(certificate_pem: str, key_pem: str) -> bytes:
    """The tar `certs:add` reads on stdin: server.crt and server.key, built in memory."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, text in (("server.crt", certificate_pem), ("server.key", key_pem)):
            data = (text.strip() + "\n").encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def key_forms(key_pem: str) -> list[str]:
    """What a transcript redactor must hide of a key: the PEM, each base64 line of it, and its hash."""
    lines = [line.strip() for line in (key_pem or "").splitlines() if line.strip() and not line.startswith("-----")]
    return [key_pem.strip(), *lines, hashlib.sha256(key_pem.encode()).hexdigest()]
