"""Dokku's service plugins (dokku-postgres first): command builders and readers of their text output.

The plugins print no JSON, so their text is read with and without the `=====>` headers (Dokku
drops them without a TTY). The full `<plugin>:info` prints the DSN, password included, so the
panel asks for one flag per call and never for `--dsn` outside the audited reveal.
"""
from __future__ import annotations

import re

from intercity.dokku.commands import Command, _command, _existing_app
from intercity.validation import ValidationError

# The plugins the panel manages, one description each (their common-functions are identical, so
# every command below is the same for all three); each is installed as
# `dokku plugin:install <url> --name <plugin>`. `export` says what `<plugin>:export` prints.
PLUGINS = {
    "postgres": {"label": "PostgreSQL", "service": "Postgres", "url": "https://github.com/dokku/dokku-postgres.git",
                 "default_image": "postgres", "default_alias": "DATABASE", "extension": "dump",
                 "export": "pg_dump's custom format (pg_dump -Fc --no-acl --no-owner): binary, read it back "
                           "with pg_restore"},
    "redis": {"label": "Redis", "service": "Redis", "url": "https://github.com/dokku/dokku-redis.git",
              "default_image": "redis", "default_alias": "REDIS", "extension": "rdb",
              "export": "Redis's RDB snapshot (BGSAVE, then dump.rdb): binary; importing it replaces the "
                        "service's data and restarts it"},
    "mysql": {"label": "MySQL", "service": "MySQL", "url": "https://github.com/dokku/dokku-mysql.git",
              "default_image": "mysql", "default_alias": "DATABASE", "extension": "sql",
              "export": "SQL text from mysqldump (--single-transaction --no-tablespaces --quick, utf8mb4)"},
}
# is_valid_service_name; the plugin's own message leaves out the hyphen it accepts.
SERVICE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
# A Docker tag: what `-I/--image-version` takes (e.g. 17.2, 16-alpine).
IMAGE_VERSION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
# The flags the panel reads, one per call: none of them prints a secret.
SAFE_INFO_FLAGS = ("--status", "--version", "--links")
_HEADER_PREFIXES = ("=====> ", "-----> ", " !     ")


def plugin(name: str) -> str:
    if name not in PLUGINS:
        raise ValidationError("Choose a service type the panel knows ("
                              + ", ".join(spec["label"] for spec in PLUGINS.values()) + ").", "plugin")
    return name


def service_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError("Enter a name for the service.", "name")
    if not SERVICE_NAME.match(name):
        raise ValidationError("Use letters, digits, underscores and hyphens only (at most 64).", "name")
    return name


def image_version(version: str | None) -> str | None:
    version = (version or "").strip()
    if not version:
        return None
    if not IMAGE_VERSION.match(version):
        raise ValidationError("Enter an image tag such as 17.2 or 16-alpine, or leave it empty.", "version")
    return version


def _service_command(kind_plugin: str, sub: str, *args: str, app: str | None = None) -> Command:
    plugin(kind_plugin)
    return _command(f"{kind_plugin}:{sub}", f"{kind_plugin}:{sub}", *args, app=app)


def service_list(name: str) -> Command:
    return _service_command(name, "list")


def service_info(name: str, service: str, flag: str) -> Command:
    if flag not in SAFE_INFO_FLAGS:
        raise ValueError(f"the panel reads only {', '.join(SAFE_INFO_FLAGS)} (the full info prints the DSN)")
    return _service_command(name, "info", service_name(service), flag)


def service_dsn(name: str, service: str) -> Command:
    """The connection URL with its password: only for the audited reveal, its output never stored."""
    return _service_command(name, "info", service_name(service), "--dsn")


def service_create(name: str, service: str, version: str | None = None) -> Command:
    args = [service_name(service)]
    version = image_version(version)
    if version:
        args += ["--image-version", version]
    return _service_command(name, "create", *args)


def service_link(name: str, service: str, app: str, restart: bool) -> Command:
    # `--no-restart` takes no value: the plugin's getopts string lists a bare `n` first, so the
    # README's `--no-restart "false"` also skips the restart and its "false" is ignored.
    flags = () if restart else ("--no-restart",)
    app = _existing_app(app)
    return _service_command(name, "link", service_name(service), app, *flags, app=app)


def service_unlink(name: str, service: str, app: str, restart: bool) -> Command:
    flags = () if restart else ("--no-restart",)
    app = _existing_app(app)
    return _service_command(name, "unlink", service_name(service), app, *flags, app=app)


def service_destroy(name: str, service: str) -> Command:
    # Without -f the plugin prompts for the name on stdin; the panel asks for it on its own page.
    return _service_command(name, "destroy", service_name(service), "-f")


def hides_output(command: Command) -> bool:
    """create ends with the full info and link echoes `config:set`: both print the DSN."""
    plugin_name, _, sub = command.kind.partition(":")
    # backup-auth and set-encryption carry credentials: whatever they print is not kept either.
    return plugin_name in PLUGINS and (sub in ("create", "link", "unlink", "backup-auth", "backup-set-encryption")
                                       or "--dsn" in command.argv)


# --- reading output --------------------------------------------------------------------


def _lines(stdout: str) -> list[str]:
    return [line for line in (stdout or "").splitlines() if line.strip() and not line.startswith(_HEADER_PREFIXES)]


def parse_list(stdout: str) -> list[str]:
    """`<plugin>:list`: an optional `=====> Postgres services` header, then one name a line."""
    return [line.strip() for line in _lines(stdout)]


def parse_info_value(stdout: str) -> str:
    """A single-flag `<plugin>:info`: the value alone (trailing spaces of the full form dropped)."""
    lines = _lines(stdout)
    return lines[-1].strip() if lines else ""


def parse_links(value: str) -> list[str]:
    """`--links`: `-` when none, else app names separated by spaces (one trailing)."""
    return [] if value.strip() in ("", "-") else value.split()

