"""Backup, schedule, encryption, export and install commands: the argv sent, what people see, what is read back."""
from __future__ import annotations

import subprocess

import pytest

from intercity.dokku import service_backups, service_plugins
from intercity.dokku.commands import Deadline
from intercity.dokku.transcript import Redactor, display_argv, stores_output
from intercity.validation import ValidationError


def test_one_description_per_plugin_with_its_alias_and_export_format():
    assert set(service_plugins.PLUGINS) == {"postgres", "redis", "mysql"}
    assert service_plugins.PLUGINS["redis"]["default_alias"] == "REDIS"
    assert service_plugins.PLUGINS["mysql"]["default_alias"] == "DATABASE"
    assert "pg_dump" in service_plugins.PLUGINS["postgres"]["export"]
    assert "RDB" in service_plugins.PLUGINS["redis"]["export"]
    # Every command builder serves all three: the same argv with the plugin's prefix.
    for plugin in service_plugins.PLUGINS:
        assert service_backups.backup(plugin, "svc", "bucket-1").argv == ("dokku", f"{plugin}:backup", "svc",
                                                                           "bucket-1")


def test_credentials_travel_as_arguments_and_show_as_redacted():
    command = service_backups.backup_auth("postgres", "db", "AKIAEXAMPLE1234", "secret/KEY+abc123", None, None,
                                          "https://s3.example.test")
    assert command.argv == ("dokku", "postgres:backup-auth", "db", "AKIAEXAMPLE1234", "secret/KEY+abc123",
                            "us-east-1", "s3v4", "https://s3.example.test")
    assert "secret/KEY+abc123" not in display_argv(command)
    assert display_argv(command).count("[redacted]") == 2
    assert set(command.secrets) == {"AKIAEXAMPLE1234", "secret/KEY+abc123"}
    assert not stores_output(command)
    assert Redactor(command.secrets).redact("x secret/KEY+abc123 y") == "x [redacted] y"
    plain = service_backups.backup_auth("redis", "cache", "AKIAEXAMPLE1234", "secret/KEY+abc123", None, None, None)
    assert plain.argv[3:] == ("AKIAEXAMPLE1234", "secret/KEY+abc123")
    passphrase = service_backups.backup_set_encryption("mysql", "db", "long-passphrase")
    assert display_argv(passphrase).endswith('"[redacted]"]') and not stores_output(passphrase)


@pytest.mark.parametrize("value", ["short", "has space here", "quo'ted-value", "smart\u2019quote", "x" * 257])
def test_bad_secrets_are_refused(value):
    with pytest.raises(ValidationError, match="no spaces or quotes"):
        service_backups.secret(value, "secret_key", "secret access key")


@pytest.mark.parametrize("expression, kept", [
    ("0 3 * * *", "0 3 * * *"), ("  */15  *  * * 1-5 ", "*/15 * * * 1-5"), ("@daily", "@daily"),
    ("0 0,12 1 JAN MON", "0 0,12 1 JAN MON")])
def test_schedules_are_kept_as_one_argument(expression, kept):
    assert service_backups.schedule(expression) == kept
    command = service_backups.backup_schedule("postgres", "db", expression, "bucket-1")
    assert command.argv[3] == kept and command.argv[4] == "bucket-1"


@pytest.mark.parametrize("expression", ["0 3 * *", "0 3 * * * *", "\u201c0 3 * * *\u201d", "'0 3 * * *'",
                                        "0 3 * * $(reboot)", "0 3 * * *;ls", "", "@reboot"])
def test_schedules_a_shell_or_cron_could_change_are_refused(expression):
    with pytest.raises(ValidationError):
        service_backups.schedule(expression)


def test_the_schedule_survives_the_remote_shell():
    """The line sshd hands to the login shell: the expression arrives as one word, `*` unexpanded."""
    command = service_backups.backup_schedule("postgres", "db", "0 3 * * *", "bucket-1")
    line = command.remote_line(sudo=False).replace("dokku", "printf '<%s>\\n'", 1)
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=True, cwd="/").stdout
    assert out.splitlines() == ["<postgres:backup-schedule>", "<db>", "<0 3 * * *>", "<bucket-1>"]


def test_schedule_in_words_and_read_back():
    assert service_backups.describe("0 3 * * *") == "At 03:00 AM"
    line = "0 3 * * * dokku /usr/bin/dokku postgres:backup db bucket-1\n"
    assert service_backups.parse_schedule_line(line, "postgres", "db") == ("0 3 * * *", "bucket-1")
    assert service_backups.parse_schedule_line(line, "postgres", "other") is None
    # Issue #95's mangled line is read as it stands: not the schedule sent, so the operation fails.
    assert service_backups.parse_schedule_line("0 dokku /usr/bin/dokku postgres:backup db 4", "postgres", "db") \
        == ("0", "4")


def test_the_backup_counts_only_with_its_success_line():
    ok = "2026-12-02-01-00-00: The backup for postgres-db finished successfully.\n"
    assert service_backups.backup_succeeded(ok, "", "postgres", "db")
    assert not service_backups.backup_succeeded(ok, "", "postgres", "other")
    assert not service_backups.backup_succeeded("Backup of backup/ has failed. Please investigate the issue.", "",
                                                "postgres", "db")


@pytest.mark.parametrize("exit_code", [0, 3])
def test_the_counted_export_keeps_the_exports_exit_status(exit_code):
    command = service_backups.counted_export("postgres", "db")
    assert command.display[-3:] == ("|", "wc", "-c")
    line = command.remote_line(sudo=False, deadline=Deadline(30, 5)).replace(
        "dokku postgres:export db", f"sh -c 'printf PGDMP12345; exit {exit_code}'")
    done = subprocess.run(["sh", "-c", line], capture_output=True, text=True)
    assert done.returncode == exit_code and service_backups.parse_size(done.stdout) == 10


def test_plugin_install_uses_the_official_url_and_name():
    assert service_backups.plugin_install("mysql").argv == (
        "dokku", "plugin:install", "https://github.com/dokku/dokku-mysql.git", "--name", "mysql")


def test_a_plugin_install_without_root_is_read_as_such():
    from intercity.dokku import parsers

    with pytest.raises(parsers.RootNeeded, match="needs root on the server"):
        parsers.check(service_backups.plugin_install("postgres"), 1, "", " !     This command must be run as root\n")
