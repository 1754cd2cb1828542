"""The service plugins' backup, schedule, encryption, export and install commands, and readers of their output.

The plugins take S3 credentials and the encryption passphrase only as positional arguments, so
those commands carry them as `secrets` and show `[redacted]` in their place; everything they
print is dropped (`service_plugins.hides_output`). A schedule is one argument: every argument is
shell-quoted, and the expression is checked here to hold nothing a shell, cron or a copy from a
word processor (smart quotes) could change.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from intercity.audit.rules import REDACTED
from intercity.dokku import commands
from intercity.dokku.commands import Command, Deadline
from intercity.dokku.service_plugins import PLUGINS, plugin, service_name
from intercity.validation import ValidationError

# docker-s3backup's backup.sh prints this once the archive is in the bucket.
SUCCESS_LINE = re.compile(r"The backup for (\S+) finished successfully\.")
# S3 bucket names (3-63 lowercase letters, digits, dots, hyphens); the plugin pastes it into the URL as is.
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
REGION = re.compile(r"[a-z0-9-]{1,32}\Z")
SIGNATURE = re.compile(r"s3v4|s3\Z")
ENDPOINT = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?\Z")
# A credential or passphrase: printable ASCII without spaces or quotes of any kind.
SECRET = re.compile(r"[!#-&(-~]{8,256}\Z")
# One cron field: digits, names, `*`, ranges, steps and lists; nothing a shell treats specially but `*`,
# which quoting keeps.
CRON_FIELD = re.compile(r"(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*\Z")
CRON_MACROS = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight")


def bucket(name: str) -> str:
    name = (name or "").strip()
    if not BUCKET.match(name) or ".." in name:
        raise ValidationError("Enter the bucket's name: 3 to 63 lowercase letters, digits, dots and hyphens.",
                              "bucket")
    return name


def secret(value: str, field: str, what: str) -> str:
    value = value or ""
    if not SECRET.match(value):
        raise ValidationError(f"Enter the {what}: 8 to 256 printable characters, no spaces or quotes.", field)
    return value


def optional(value: str, pattern: re.Pattern, field: str, message: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if not pattern.match(value):
        raise ValidationError(message, field)
    return value


def schedule(expression: str) -> str:
    """A cron expression that reaches the plugin as typed: five fields (or a macro), single spaces."""
    text = (expression or "").strip()
    if any(ch in text for ch in "\u2018\u2019\u201c\u201d\"'`"):
        raise ValidationError("Leave out quotes (straight or curly): the panel quotes the schedule itself.",
                              "schedule")
    fields = text.split()
    if len(fields) == 1 and fields[0] in CRON_MACROS:
        return fields[0]
    if len(fields) != 5 or not all(CRON_FIELD.match(f) for f in fields):
        raise ValidationError("Enter five cron fields (minute hour day month weekday), e.g. 0 3 * * *.",
                              "schedule")
    return " ".join(fields)


def describe(expression: str) -> str:
    """The schedule in words (cron-descriptor), e.g. "At 03:00 AM"; the expression itself if it cannot tell."""
    from cron_descriptor import get_description

    try:
        return get_description(expression)
    except Exception:  # cron-descriptor raises its own several exception types for what it cannot read
        return expression


def _secret_command(kind_plugin: str, sub: str, service: str, hidden: tuple[str, ...], *shown: str) -> Command:
    plugin(kind_plugin)
    argv = ("dokku", f"{kind_plugin}:{sub}", service_name(service), *hidden, *shown)
    display = ("dokku", f"{kind_plugin}:{sub}", service, *(REDACTED for _ in hidden), *shown)
    return Command(argv=argv, display=display, kind=f"{kind_plugin}:{sub}", secrets=hidden)


def _plain(kind_plugin: str, sub: str, *args: str) -> Command:
    plugin(kind_plugin)
    argv = ("dokku", f"{kind_plugin}:{sub}", *args)
    return Command(argv=argv, display=argv, kind=f"{kind_plugin}:{sub}")


def backup_auth(kind_plugin: str, service: str, access_key: str, secret_key: str, region: str | None,
                signature: str | None, endpoint: str | None) -> Command:
    # Positional: an endpoint needs the region and signature version before it.
    shown = [region or "us-east-1"] if (region or signature or endpoint) else []
    if signature or endpoint:
        shown.append(signature or "s3v4")
    if endpoint:
        shown.append(endpoint)
    return _secret_command(kind_plugin, "backup-auth", service, (access_key, secret_key), *shown)


def backup_deauth(kind_plugin: str, service: str) -> Command:
    return _plain(kind_plugin, "backup-deauth", service_name(service))


def backup(kind_plugin: str, service: str, bucket_name: str) -> Command:
    return _plain(kind_plugin, "backup", service_name(service), bucket(bucket_name))


def backup_schedule(kind_plugin: str, service: str, expression: str, bucket_name: str) -> Command:
    return _plain(kind_plugin, "backup-schedule", service_name(service), schedule(expression), bucket(bucket_name))


def backup_schedule_cat(kind_plugin: str, service: str) -> Command:
    return _plain(kind_plugin, "backup-schedule-cat", service_name(service))


def backup_unschedule(kind_plugin: str, service: str) -> Command:
    return _plain(kind_plugin, "backup-unschedule", service_name(service))


def backup_set_encryption(kind_plugin: str, service: str, passphrase: str) -> Command:
    return _secret_command(kind_plugin, "backup-set-encryption", service, (passphrase,))


def backup_unset_encryption(kind_plugin: str, service: str) -> Command:
    return _plain(kind_plugin, "backup-unset-encryption", service_name(service))


def export(kind_plugin: str, service: str) -> Command:
    """The dump on stdout: streamed to a browser, or counted; never kept."""
    return _plain(kind_plugin, "export", service_name(service))


@dataclass(frozen=True, kw_only=True)
class CountedExport(Command):
    """`<plugin>:export SVC | wc -c`: the dump's size, counted on the server (a second full dump).

    The pipeline's own status would be wc's, so the export's status is carried out on a spare
    descriptor and becomes the exit status: POSIX sh, no `pipefail` needed.
    """

    def remote_line(self, sudo: bool, deadline: Deadline | None = None) -> str:
        inner = super().remote_line(sudo, deadline)
        return (f'{{ status=$( {{ {{ {inner}; printf %s "$?" >&4; }} | wc -c >&3; }} 4>&1 ); }} 3>&1; '
                'exit "${status:-1}"')


def counted_export(kind_plugin: str, service: str) -> CountedExport:
    plain = export(kind_plugin, service)
    return CountedExport(argv=plain.argv, display=(*plain.display, "|", "wc", "-c"), kind=plain.kind)


def plugin_install(kind_plugin: str) -> Command:
    """The official plugin of a service kind (postgres, redis, mysql)."""
    plugin(kind_plugin)
    return commands.plugin_install(PLUGINS[kind_plugin]["url"], kind_plugin)


# --- reading output --------------------------------------------------------------------


def backup_succeeded(stdout: str, stderr: str, kind_plugin: str, service: str) -> bool:
    """Whether docker-s3backup said this service's archive reached the bucket."""
    wanted = f"{kind_plugin}-{service}"
    return any(match.group(1) == wanted for match in SUCCESS_LINE.finditer(f"{stdout}\n{stderr}"))


def parse_size(stdout: str) -> int | None:
    text = (stdout or "").strip()
    return int(text) if text.isdigit() else None


def parse_schedule_line(stdout: str, kind_plugin: str, service: str) -> tuple[str, str] | None:
    """The cron file's line `<schedule> dokku <dokku> <plugin>:backup <svc> <bucket> [--use-iam]`:
    (schedule, bucket), or None when it does not have that shape."""
    for line in (stdout or "").splitlines():
        words = line.split()
        marker = f"{kind_plugin}:backup"
        if marker not in words:
            continue
        at = words.index(marker)
        if at < 3 or words[at - 2] != "dokku" or len(words) < at + 3 or words[at + 1] != service:
            continue
        return " ".join(words[:at - 2]), words[at + 2]
    return None


def quoted(expression: str) -> str:
    """How the schedule travels in the command line (for the page: what the server receives)."""
    return shlex.quote(expression)
