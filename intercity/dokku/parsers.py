"""Dokku output parsers and failure detection, turning raw output into data and plain-language errors."""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

from intercity.audit.rules import REDACTED
from intercity.dokku.commands import MINIMUM, Command, DokkuVersion
from intercity.dokku.service_plugins import PLUGINS as _SERVICE_PLUGINS

# Dokku's log prefixes (reference §0); ` !     ` marks warnings and failures.
_BANG = " !     "
_PREFIXES = ("-----> ", "=====> ", _BANG, " ?     ")
# Plus the 7-space verbose prefix, for listings where no data line is indented.
_LOG_PREFIXES = (*_PREFIXES, "       ")


class DokkuError(Exception):
    """A dokku command failed; `message` is a sentence for a person and never holds env values."""

    transient = False

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class StoppedAtDeadline(DokkuError):
    """The server's `timeout` stopped the command at its deadline (exit 124, or 137 after SIGKILL)."""


class AppMissing(DokkuError):
    pass


class AppAlreadyExists(DokkuError):
    pass


class AppNotDeployed(DokkuError):
    pass


class RestartFailed(DokkuError):
    """The config change was stored, but the restart that should apply it failed."""


class NotDokku(DokkuError):
    pass


class SudoPasswordRequired(DokkuError):
    pass


class RootNeeded(DokkuError):
    """Dokku runs this command only as root (plugin:install): the panel's SSH user is not."""


class DuplicateKeyName(DokkuError):
    pass


class DuplicateKey(DokkuError):
    pass


class UnsupportedVersion(DokkuError):
    def __init__(self, version: DokkuVersion):
        super().__init__(
            f"This server runs Dokku {version}; the panel needs Dokku {MINIMUM} or newer. Upgrade Dokku first."
        )
        self.version = version


class EnvFileUnreadable(DokkuError):
    """The app's ENV file on the server cannot be parsed by Dokku (a value it cannot store got in)."""


class PluginMissing(DokkuError):
    """A service plugin's command is unknown: the plugin is not installed."""


class ServiceMissing(DokkuError):
    pass


class ServiceExists(DokkuError):
    pass


class AlreadyLinked(DokkuError):
    def __init__(self, message: str, exit_code: int | None, variable: str):
        super().__init__(message, exit_code)
        self.variable = variable


class NotLinked(DokkuError):
    pass


class ServiceLinked(DokkuError):
    """`destroy` refused: apps are still linked to the service."""


class UnparseableOutput(DokkuError):
    """Output did not have the expected shape (e.g. ssh-keys:list JSON, which Dokku does not escape)."""


# --- failures ------------------------------------------------------------------------


def _bang_lines(text: str) -> list[str]:
    return [line[len(_BANG):].strip() for line in text.splitlines() if line.startswith(_BANG)]


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    # Last line of defence: Dokku may echo an argument (and so a value) in an error.
    for secret in sorted(secrets, key=len, reverse=True):
        for form in (secret, base64.b64encode(secret.encode()).decode()):
            text = text.replace(form, REDACTED)
    return text


def check(command: Command, exit_code: int, stdout: str, stderr: str, scrub=None) -> list[str]:
    """Raise the DokkuError a run amounts to (exit 0 included); return warnings otherwise.

    Matching runs on the raw output; only the pieces of output quoted in a message pass
    through `scrub` (the operation's redactor; by default the command's own secrets are
    removed), so a secret cannot hide a failure and the panel's own words are never redacted.
    """
    if scrub is None:
        scrub = lambda text: _scrub(text, command.secrets)  # noqa: E731
    code, stdout, stderr = exit_code, stdout or "", stderr or ""
    # Since 0.38 ps:restart merges stderr into stdout, so look at both streams' text.
    text = f"{stdout}\n{stderr}"
    lower = stderr.lower()
    app = command.app or "the app"
    bangs = _bang_lines(text)

    refused = "is not in the sudoers file" in lower or "is not allowed to execute" in lower
    if refused or "sudo: a password is required" in lower or "sudo: a terminal is required" in lower:
        raise SudoPasswordRequired(
            ("The SSH user may not run dokku with sudo" if refused else "sudo asked for a password")
            + ". The SSH user needs passwordless sudo for dokku: add a sudoers rule such as "
            "`%dokku ALL=(ALL:ALL) NOPASSWD:SETENV: /usr/bin/dokku`, or connect as root.",
            code,
        )
    if code == 127 and re.search(r"timeout: (command )?not found", stderr):
        # Every command runs under coreutils `timeout`, which every Dokku host (Debian, Ubuntu) has.
        raise NotDokku("The server has no `timeout` command (coreutils); the panel runs every dokku command "
                       "under it. Install coreutils on the server.", code)
    if code == 127 or re.search(r"dokku: (command )?not found", stderr):
        raise NotDokku("Dokku is not installed on this server: the dokku command was not found.", code)
    if code == 20:
        if command.app is None:
            match = re.search(r"App (\S+) does not exist", text)
            app = match.group(1) if match else app
        raise AppMissing(f"App {app} does not exist on the server.", code)

    if code == 0:
        for line in bangs:
            if line.startswith("Failure while restarting app"):
                detail = scrub(line.partition(":")[2].strip())
                raise RestartFailed(
                    f"The change was saved, but restarting {app} failed"
                    + (f" ({detail})" if detail else "")
                    + ". Check the app's deploy output on the server, fix the cause and restart it.",
                    code,
                )
            if re.fullmatch(r"App \S+ has not been deployed", line):
                raise AppNotDeployed(
                    f"App {app} has not been deployed yet, so there is nothing to restart. Deploy it first.", code
                )
        benign = {"You haven't deployed any applications yet"}
        # A service plugin's empty list is a warning on stderr, not a problem.
        warnings = [line for line in bangs if line not in benign
                    and not re.fullmatch(r"There are no \S+ services", line)]
        # e.g. `sudo: unable to resolve host x`: worth showing, not a failure.
        warnings += [line.strip() for line in stderr.splitlines() if line.startswith("sudo: ")]
        return [scrub(w) for w in warnings]

    if command.kind == "apps:locked" and code == 1 and "Deploy lock does not exist" in bangs:
        return []  # its answer "not locked", not a failure
    if command.kind == "ssh-keys:list" and "authorized_keys is empty" in text:
        return []
    if command.kind == "ssh-keys:remove" and "No public keys found." in bangs:
        return ["There were no deploy keys on the server, so there was nothing to remove."]
    raise _known_failure(command, code, text, bangs, scrub) or _generic_failure(command, code, stderr, bangs, scrub)


def _known_failure(command: Command, code: int, text: str, bangs: list[str], scrub=None) -> DokkuError | None:
    # Matched per command: a failed deploy can print almost anything, app logs included.
    lower = text.lower()
    kind = command.kind
    if "unable to determine dokku's version" in lower:
        return DokkuError(
            "Dokku is installed but cannot tell its version (its VERSION file is missing). "
            "Repair the Dokku installation.",
            code,
        )
    failure = _service_failure(command, code, text, bangs)
    if failure is None:
        from intercity.dokku import tls  # it imports this module, so it is asked here

        failure = tls.explain_failure(command, code, text)
    if failure is not None:
        return failure
    from intercity.dokku.deploys import build_failure  # it imports this module's errors

    failure = build_failure(command, code, text, bangs, scrub or _scrub_for(command))
    if failure is not None:
        return failure
    if "is not a dokku command" in lower:
        return DokkuError(
            f"The Dokku on this server does not know the command {kind}. "
            f"The panel needs Dokku {MINIMUM} or newer with its core plugins enabled.",
            code,
        )
    if kind.startswith("config") and ("unterminated quoted value" in lower or "in variable name near" in lower):
        return EnvFileUnreadable(
            f"Dokku cannot read the config of {command.app or 'the app'} on the server: its ENV file holds a "
            "value ending in a double quote or a backslash, which Dokku cannot store. Every config change "
            "of the app fails until that value is fixed in the app's ENV file on the server.",
            code,
        )
    if kind.startswith("config") and "invalid key name" in lower:
        return DokkuError("Dokku refused a variable name: use letters, digits and underscores, "
                          "not starting with a digit.", code)
    if kind == "apps:create" and "name is already taken" in lower:
        return AppAlreadyExists(f"An app named {command.app} already exists on the server.", code)
    if kind == "apps:create" and "app name must begin with" in lower:
        return DokkuError(
            f"Dokku refused the app name {command.app}: names must begin with a lowercase letter or digit "
            "and may only contain lowercase letters, digits, dots and hyphens.",
            code,
        )
    if kind == "ssh-keys:add" and "duplicate ssh key name" in lower:
        return DuplicateKeyName(
            f"A deploy key named {command.argv[2]} is already on the server. Choose another name, "
            "or remove the existing key first.",
            code,
        )
    if kind == "ssh-keys:add" and "duplicate ssh public key" in lower:
        return DuplicateKey(
            "This public key is already on the server under another name. Dokku accepts each key only once: "
            "remove the other entry first, or keep using it.",
            code,
        )
    if kind == "ssh-keys:add" and ("not a valid ssh public key" in lower or "invalid ssh public key" in lower):
        return DokkuError("The server did not accept this as an SSH public key.", code)
    if kind.startswith("ssh-keys:"):
        match = re.search(r"authorized_keys line (\d+) failed ssh-keygen check", text)
        if match:
            return DokkuError(
                f"Line {match.group(1)} of the dokku user's authorized_keys file on the server is not a valid "
                "key. Dokku cannot manage deploy keys until that line is fixed or removed on the server.",
                code,
            )
        if "must be run as root" in lower:
            return DokkuError(
                "Managing deploy keys needs root on the server: connect as root, or as a user with "
                "passwordless sudo for dokku.",
                code,
            )
    if kind.startswith("domains:"):
        for line in bangs:
            if line.endswith(" is invalid. exiting..."):
                domain = line.removesuffix(" is invalid. exiting...")
                return DokkuError(f"Dokku rejected the domain {domain}: it is not a valid hostname.", code)
    return None


def _scrub_for(command: Command):
    return lambda text: _scrub(text, command.secrets)


def _service_failure(command: Command, code: int, text: str, bangs: list[str]) -> DokkuError | None:
    """The service plugins' dokku_log_fail messages (dokku-postgres common-functions), in plain words."""
    plugin, _, sub = command.kind.partition(":")
    if plugin not in _SERVICE_PLUGINS:
        return None
    label = _SERVICE_PLUGINS[plugin]["label"]
    service = command.argv[2] if len(command.argv) > 2 else "the service"
    if "is not a dokku command" in text:
        return PluginMissing(
            f"The {label} plugin (dokku-{plugin}) is not installed on this server. An admin installs it with "
            f"`sudo dokku plugin:install {_SERVICE_PLUGINS[plugin]['url']} --name {plugin}`.", code)
    for line in bangs:
        if line.endswith(" does not exist") and line.startswith(_SERVICE_PLUGINS[plugin]["service"] + " service "):
            return ServiceMissing(f"The {label} service {service} does not exist on the server.", code)
        if line.endswith(" already exists"):
            return ServiceExists(f"A {label} service named {service} already exists on the server.", code)
        if line.startswith("Already linked as "):
            variable = line.removeprefix("Already linked as ").strip()
            return AlreadyLinked(f"{service} is already linked to {command.app} (as {variable}).", code, variable)
        if line.startswith("Not linked to app "):
            return NotLinked(f"{service} is not linked to {command.app} on the server.", code)
        if line == "Cannot delete linked service":
            return ServiceLinked(
                f"Dokku refused to destroy {service} (“Cannot delete linked service”): apps are still linked to it. "
                "Unlink it from every app first; destroying it would take their database away.", code)
        if line.endswith(" pull failed") and " image " in line:
            image = line.split(" image ", 1)[1].removesuffix(" pull failed")
            return DokkuError(f"The server could not pull the image {image}: check the version (a Docker tag "
                              "of the official image, e.g. 17.2).", code)
        if line.startswith("Please specify a valid name for the service"):
            return DokkuError(f"Dokku refused the service name {service}: use letters, digits, underscores "
                              "and hyphens.", code)
        if line.startswith("Specified alias ") or line.startswith("Unable to use default or generated URL alias"):
            return DokkuError(f"Dokku found no free variable name to link {service} to {command.app}.", code)
    return None


def _generic_failure(command: Command, code: int, stderr: str, bangs: list[str], scrub) -> DokkuError:
    if command.kind.startswith("config"):
        # Only Dokku's last failure line: config output echoes values (the ENV-file errors,
        # which quote the whole file, are read in _known_failure and never quoted).
        lines = bangs[-1:]
    else:
        # The last few lines: a failed deploy can print hundreds before them.
        lines = (bangs or [line.strip() for line in stderr.splitlines() if line.strip()])[-3:]
    reason = scrub(" ".join(lines))
    if reason:
        return DokkuError(f"dokku {command.kind} failed (exit code {code}): {reason}", code)
    return DokkuError(f"dokku {command.kind} failed with exit code {code} and gave no reason.", code)


# --- parsers -------------------------------------------------------------------------


def _json(stdout: str, what: str):
    try:
        return json.loads(stdout)
    except ValueError:
        raise UnparseableOutput(f"The JSON output of {what} could not be read.") from None


def parse_version(stdout: str) -> DokkuVersion:
    """The server's Dokku version; UnsupportedVersion when it is older than MINIMUM."""
    try:
        found = DokkuVersion.parse(stdout)
    except ValueError:
        raise UnparseableOutput("`dokku version` did not print a version number.") from None
    if not found.supported:
        raise UnsupportedVersion(found)
    return found


def parse_apps_list(stdout: str, json_format: bool) -> list[str]:
    if json_format:
        names = _json(stdout, "apps:list")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise UnparseableOutput("apps:list did not print a list of app names.")
        return names
    return [line.strip() for line in stdout.splitlines() if line.strip() and not line.startswith(_LOG_PREFIXES)]


def parse_report(stdout: str) -> dict[str, str]:
    """Text report (`       App dir:    /home/dokku/x`) as label -> value; bash-era trailing spaces dropped."""
    report = {}
    for line in stdout.splitlines():
        if line.startswith(_PREFIXES) or ":" not in line:
            continue
        label, _, value = line.partition(":")
        report[label.strip()] = value.strip()
    return report


def parse_report_json(stdout: str) -> dict:
    report = _json(stdout, "the report")
    if not isinstance(report, dict):
        raise UnparseableOutput("The report's JSON output is not an object.")
    return report


def parse_domains(stdout: str, json_format: bool) -> list[str]:
    """The app's own vhosts from domains:report."""
    if json_format:
        vhosts = parse_report_json(stdout).get("app-vhosts")
    else:
        vhosts = parse_report(stdout).get("Domains app vhosts")
    if not isinstance(vhosts, str):
        raise UnparseableOutput("domains:report did not list the app's domains.")
    return vhosts.split()


@dataclass(frozen=True)
class PsReport:
    deployed: bool
    running: bool | None  # None: some processes run and others do not ("mixed")
    processes: int | None  # None: Dokku could not count them (it reports -1)


def parse_ps_report(stdout: str, json_format: bool) -> PsReport:
    if json_format:
        raw = parse_report_json(stdout)
        fields = [str(raw.get(k, "")) for k in ("deployed", "running", "processes")]
    else:
        raw = parse_report(stdout)
        fields = [raw.get(k, "") for k in ("Deployed", "Running", "Processes")]
    deployed, running, processes = (f.strip().lower() for f in fields)
    if deployed not in ("true", "false"):
        raise UnparseableOutput("ps:report did not say whether the app is deployed.")
    return PsReport(
        deployed=deployed == "true",
        running={"true": True, "false": False}.get(running),
        processes=int(processes) if processes.isdigit() else None,
    )


def parse_config_export_json(stdout: str) -> dict[str, str]:
    data = _json(stdout, "config:export")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UnparseableOutput("config:export did not print a JSON object.")
    # Dokku writes strings; anything else is turned back into its JSON text (7 -> "7").
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in data.items()}


_KEY_LINE = re.compile(r'^(\S+)\s+NAME="(.*?)"(?:\s+SSHCOMMAND_ALLOWED_KEYS="[^"]*")?\s*$')


def parse_ssh_keys_list(stdout: str, json_format: bool) -> list[dict]:
    """Keys as {name, fingerprint, public_key}; public_key is None in text format.

    Dokku builds the JSON with sed and does not escape it, so a key comment with a quote
    breaks it: UnparseableOutput then tells the caller to run the text format instead.
    """
    if not stdout.strip():
        # An empty authorized_keys prints nothing (check() lets that exit 1 through).
        return []
    if json_format:
        entries = _json(stdout, "ssh-keys:list")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise UnparseableOutput("ssh-keys:list did not print a JSON list.")
        return [
            {"name": e.get("name", ""), "fingerprint": e.get("fingerprint", ""), "public_key": e.get("public-key")}
            for e in entries
        ]
    keys = []
    for line in stdout.splitlines():
        if not line.strip() or line.startswith(_LOG_PREFIXES):
            continue
        match = _KEY_LINE.match(line)
        if not match:
            raise UnparseableOutput("A line of ssh-keys:list could not be read.")
        keys.append({"name": match.group(2), "fingerprint": match.group(1), "public_key": None})
    return keys


def readback_mismatches(expected: dict[str, str], stored: dict[str, str]) -> list[str]:
    """Keys whose stored value is not what was sent (Dokku stores `007` as `7`); names only."""
    return sorted(key for key, value in expected.items() if stored.get(key) != value)
