"""Dokku command builders: exact argv, redaction, quoting, base64 and splitting, validation."""
import base64
import shlex

import pytest

from intercity.dokku import commands as c
from intercity.dokku.commands import MAX_COMMAND_LINE, Command, DokkuVersion
from intercity.validation import ValidationError, dokku_storage_problem

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g alice@laptop"
NASTY = [
    "",
    "plain",
    "it's",
    '"double" quoted',
    "$(rm -rf /)",
    "`id`",
    "a b\tc",
    "line1\nline2\r\n",
    "back\\slash",
    "semi;colon|pipe&amp",
    "*?[glob]",
    "--flag",
    "ünïcødé ✓ 🚀",
    "=leading=equals=",
]


def decoded_pairs(command: Command) -> dict[str, str]:
    pairs = {}
    for arg in command.argv[command.argv.index(command.app) + 1 :]:
        key, _, encoded = arg.partition("=")
        pairs[key] = base64.b64decode(encoded, validate=True).decode("utf-8")
    return pairs


# --- Command ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", NASTY)
def test_remote_line_round_trips_through_a_shell_parser(value):
    command = Command(argv=("dokku", "x", value, "--", value), display=("dokku",), kind="x")
    assert shlex.split(command.remote_line(sudo=False)) == list(command.argv)
    assert shlex.split(command.remote_line(sudo=True)) == ["sudo", "-n", *command.argv]


def test_remote_line_sudo_prefix():
    command = c.ps_restart("api")
    assert command.remote_line(sudo=False) == "dokku ps:restart api"
    assert command.remote_line(sudo=True) == "sudo -n dokku ps:restart api"


def test_command_is_frozen():
    with pytest.raises(AttributeError):
        c.version().kind = "other"


# --- simple builders ------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, argv, kind, app",
    [
        (c.version(), ("dokku", "version"), "version", None),
        (c.apps_list(False), ("dokku", "apps:list"), "apps:list", None),
        (c.apps_list(True), ("dokku", "apps:list", "--format", "json"), "apps:list", None),
        (c.apps_create("api"), ("dokku", "apps:create", "api"), "apps:create", "api"),
        (c.apps_destroy("old_app"), ("dokku", "--force", "apps:destroy", "old_app"), "apps:destroy", "old_app"),
        (
            c.config_unset("api", ["B", "A", "B"], restart=True),
            ("dokku", "--quiet", "config:unset", "api", "A", "B"),
            "config:unset",
            "api",
        ),
        (
            c.config_unset("api", ["A"], restart=False),
            ("dokku", "--quiet", "config:unset", "--no-restart", "api", "A"),
            "config:unset",
            "api",
        ),
        (
            c.config_export_json("api"),
            ("dokku", "config:export", "api", "--format", "json"),
            "config:export",
            "api",
        ),
        (
            c.domains_add("api", ["API.Example.com", "www.example.com", "api.example.com"]),
            ("dokku", "domains:add", "api", "api.example.com", "www.example.com"),
            "domains:add",
            "api",
        ),
        (
            c.domains_set("api", ["*.example.com"]),
            ("dokku", "domains:set", "api", "*.example.com"),
            "domains:set",
            "api",
        ),
        (c.domains_clear("api"), ("dokku", "domains:clear", "api"), "domains:clear", "api"),
        (c.domains_report("api", False), ("dokku", "domains:report", "api"), "domains:report", "api"),
        (
            c.domains_report("api", True),
            ("dokku", "domains:report", "api", "--format", "json"),
            "domains:report",
            "api",
        ),
        (c.ssh_keys_remove("alice-laptop"), ("dokku", "ssh-keys:remove", "alice-laptop"), "ssh-keys:remove", None),
        (
            c.ssh_keys_remove_fingerprint("SHA256:y/lCsvs2fCWjcYc0whZFYQ3UX/OO2qv+n6wE7D9dCeI"),
            ("dokku", "ssh-keys:remove", "--fingerprint", "SHA256:y/lCsvs2fCWjcYc0whZFYQ3UX/OO2qv+n6wE7D9dCeI"),
            "ssh-keys:remove",
            None,
        ),
        (c.ssh_keys_list(False), ("dokku", "ssh-keys:list"), "ssh-keys:list", None),
        (c.ssh_keys_list(True), ("dokku", "ssh-keys:list", "--format", "json"), "ssh-keys:list", None),
        (c.ps_restart("api"), ("dokku", "ps:restart", "api"), "ps:restart", "api"),
        (c.ps_report("api", True), ("dokku", "ps:report", "api", "--format", "json"), "ps:report", "api"),
        (c.ps_report("api", False), ("dokku", "ps:report", "api"), "ps:report", "api"),
    ],
)
def test_builder_argv(command, argv, kind, app):
    assert command.argv == argv
    assert command.display == argv  # nothing secret in these
    assert command.kind == kind
    assert command.app == app
    assert command.stdin is None
    assert command.secrets == ()


def test_ssh_keys_add_sends_key_on_stdin_with_newline():
    command = c.ssh_keys_add("alice-laptop", "  " + ED25519 + "\n")
    assert command.argv == ("dokku", "ssh-keys:add", "alice-laptop")
    assert command.stdin == (ED25519 + "\n").encode()
    assert command.kind == "ssh-keys:add"


@pytest.mark.parametrize(
    "build",
    [
        lambda: c.apps_create("Api"),
        lambda: c.apps_create("old_app"),  # underscores only for existing apps
        lambda: c.apps_create("-api"),
        lambda: c.apps_create(""),
        lambda: c.apps_destroy("api; rm -rf /"),
        lambda: c.ps_restart("api app"),
        lambda: c.config_set("api", {}, restart=True),
        lambda: c.config_set("api", {"1BAD": "x"}, restart=True),
        lambda: c.config_set("api", {"BAD-KEY": "x"}, restart=True),
        lambda: c.config_set("api", {"K": "nul\x00byte"}, restart=True),
        lambda: c.config_unset("api", [], restart=True),
        lambda: c.config_unset("api", ["A B"], restart=True),
        lambda: c.domains_add("api", []),
        lambda: c.domains_add("api", ["http://example.com"]),
        lambda: c.domains_set("api", ["exa mple.com"]),
        lambda: c.ssh_keys_add("alice laptop", ED25519),
        lambda: c.ssh_keys_add("a.b", ED25519),
        lambda: c.ssh_keys_add("alice", "-----BEGIN OPENSSH PRIVATE KEY-----"),
        lambda: c.ssh_keys_add("alice", "ssh-ed25519 notbase64!"),
        lambda: c.ssh_keys_remove(".*"),
        lambda: c.ssh_keys_remove_fingerprint("SHA256:short"),
        lambda: c.ssh_keys_remove_fingerprint("2a:f7:39:1c:63:80:c4:9e:a8:92:ec:e6:94:91:fa:c0"),
    ],
)
def test_builders_reject_bad_input(build):
    with pytest.raises(ValidationError):
        build()


def test_existing_apps_may_have_legacy_names():
    assert c.ps_restart("old_app").app == "old_app"
    assert c.config_set("old_app", {"A": "1"}, restart=False)[0].app == "old_app"


# --- config:set -----------------------------------------------------------------------


def test_config_set_argv_display_and_secrets():
    [command] = c.config_set("api", {"SECRET": "hunter2", "DEBUG": "1", "EMPTY": ""}, restart=True)
    assert command.argv == (
        "dokku", "--quiet", "config:set", "--encoded", "api",
        "DEBUG=MQ==", "EMPTY=", "SECRET=aHVudGVyMg==",
    )  # fmt: skip
    assert command.display == (
        "dokku", "--quiet", "config:set", "--encoded", "api",
        "DEBUG=[redacted]", "EMPTY=[redacted]", "SECRET=[redacted]",
    )  # fmt: skip
    assert set(command.secrets) == {"hunter2", "1"}
    assert command.kind == "config:set" and command.app == "api" and command.stdin is None
    assert "hunter2" not in " ".join(command.display)


@pytest.mark.parametrize("value", ['ends with "', "ends with \\"])
def test_config_set_never_sends_a_value_dokku_cannot_store(value):
    # One stored before the form refused such values must not break the app's config on the server.
    with pytest.raises(ValidationError, match="Dokku"):
        c.config_set("api", {"K": value}, restart=False)


def test_config_set_without_restart():
    [command] = c.config_set("api", {"A": "x"}, restart=False)
    assert command.argv[:6] == ("dokku", "--quiet", "config:set", "--encoded", "--no-restart", "api")


@pytest.mark.parametrize("value", [v for v in NASTY if dokku_storage_problem(v) is None]
                         + ["x" * 64 * 1024, "é" * 30000])
def test_config_set_values_are_base64_of_utf8_byte_for_byte(value):
    [command] = c.config_set("api", {"K": value}, restart=False)
    encoded = command.argv[-1].removeprefix("K=")
    assert encoded == base64.b64encode(value.encode("utf-8")).decode("ascii")
    assert base64.b64decode(encoded) == value.encode("utf-8")
    assert shlex.split(command.remote_line(sudo=True))[-1] == command.argv[-1]
    assert value not in command.display[-1] or value == ""


def test_config_set_keeps_crlf_as_given():
    [command] = c.config_set("api", {"K": "a\r\nb"}, restart=False)
    assert decoded_pairs(command) == {"K": "a\r\nb"}


def test_config_set_splits_long_command_lines():
    values = {f"KEY_{i:02d}": chr(65 + i % 26) * 30000 for i in range(12)}
    commands = c.config_set("api", values, restart=True)

    assert len(commands) > 1
    for command in commands:
        assert len(command.remote_line(sudo=True).encode()) <= MAX_COMMAND_LINE
    assert all("--no-restart" in cmd.argv for cmd in commands[:-1])
    assert "--no-restart" not in commands[-1].argv
    merged = {}
    for command in commands:
        merged.update(decoded_pairs(command))
        assert set(command.secrets) == {values[k] for k in decoded_pairs(command)}
    assert merged == values
    keys = [arg.partition("=")[0] for cmd in commands for arg in cmd.argv[cmd.argv.index("api") + 1 :]]
    assert keys == sorted(values)


def test_config_set_split_without_restart_marks_every_call():
    values = {f"K{i}": "v" * 40000 for i in range(4)}
    commands = c.config_set("api", values, restart=False)
    assert len(commands) == 4
    assert all("--no-restart" in cmd.argv for cmd in commands)


def test_config_set_refuses_a_single_value_too_large_for_one_command():
    with pytest.raises(ValidationError) as info:
        c.config_set("api", {"HUGE": "x" * 80 * 1024}, restart=True)
    assert "HUGE" in info.value.message
    assert info.value.field == "value"


def test_config_set_is_deterministic():
    one = c.config_set("api", {"B": "2", "A": "1"}, restart=True)
    two = c.config_set("api", {"A": "1", "B": "2"}, restart=True)
    assert one == two


# --- domains:remove replacement --------------------------------------------------------


def test_domains_remove_safely_sets_the_rest():
    command = c.domains_remove_safely("api", ["a.example.com", "b.example.com", "c.example.com"], "B.example.com")
    assert command.argv == ("dokku", "domains:set", "api", "a.example.com", "c.example.com")


def test_domains_remove_safely_does_not_treat_the_domain_as_a_pattern():
    command = c.domains_remove_safely("api", ["a.example.com", "axexample.com"], "a.example.com")
    assert command.argv == ("dokku", "domains:set", "api", "axexample.com")


def test_domains_remove_safely_clears_when_none_remain():
    command = c.domains_remove_safely("api", ["a.example.com"], "a.example.com")
    assert command.argv == ("dokku", "domains:clear", "api")


def test_no_domains_remove_builder():
    assert not hasattr(c, "domains_remove")


# --- versions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("dokku version 0.38.27\n", (0, 38, 27)),
        ("v0.30.1", (0, 30, 1)),
        ("0.30.0-rc1", (0, 30, 0)),
        ("dokku version 0.34.9-12-gabcdef0", (0, 34, 9)),
        ("dokku version 1.2", (1, 2, 0)),
    ],
)
def test_version_parse(text, expected):
    assert DokkuVersion.parse(text) == DokkuVersion(*expected)


@pytest.mark.parametrize("text", ["", "dokku version master", "garbage"])
def test_version_parse_rejects_non_versions(text):
    with pytest.raises(ValueError):
        DokkuVersion.parse(text)


def test_version_gates():
    assert c.MINIMUM == DokkuVersion(0, 30, 0)
    assert not DokkuVersion(0, 29, 9).supported
    assert DokkuVersion(0, 30, 0).supported
    assert not DokkuVersion(0, 38, 20).json_apps_list
    assert DokkuVersion(0, 38, 21).json_apps_list
    assert not DokkuVersion(0, 37, 9).json_domains_report
    assert DokkuVersion(0, 38, 0).json_domains_report
    assert DokkuVersion(0, 9, 0) < DokkuVersion(0, 10, 0) < DokkuVersion(1, 0, 0)
    assert str(DokkuVersion(0, 38, 27)) == "0.38.27"
