"""Dokku output parsers and failure detection, on outputs as Dokku prints them (reference §0-§2)."""
import json

import pytest

from intercity.dokku import commands as c
from intercity.dokku import parsers as p
from intercity.dokku.commands import DokkuVersion

APPS_REPORT = """\
=====> api app information
       App created at:                  1718000000
       App deploy source:               git
       App deploy source metadata:      
       App dir:                         /home/dokku/api
       App global disable autocreation: false
       App locked:                      false
"""

PS_REPORT = """\
=====> api ps information
       Computed stop timeout seconds: 30
       Deployed:                      true
       Global stop timeout seconds:   30
       Processes:                     2
       Ps can scale:                  true
       Ps computed procfile path:     Procfile
       Ps global procfile path:       Procfile
       Ps procfile path:              
       Ps restart policy:             on-failure:10
       Restore:                       true
       Running:                       mixed
       Status web 1:                  running (CID: 0123456789a)
       Status worker 1:               exited (CID: 9876543210f)
       Stop timeout seconds:          30
"""

DOMAINS_REPORT_GO = """\
=====> api domains information
       Domains app enabled:           true
       Domains app vhosts:            api.example.com www.example.com
       Domains global enabled:        true
       Domains global vhosts:         dokku.me
"""

# Before 0.38.22 the domains report was bash: printf "%-30s %-25s" leaves trailing spaces.
DOMAINS_REPORT_BASH = (
    "=====> api domains information\n"
    "       Domains app enabled:           true                     \n"
    "       Domains app vhosts:            api.example.com www.example.com\n"
    "       Domains global enabled:        true                     \n"
    "       Domains global vhosts:         dokku.me                 \n"
)

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g alice@laptop"
ALLOWED = "no-agent-forwarding,no-user-rc,no-X11-forwarding,no-port-forwarding"
KEYS_TEXT = (
    f'SHA256:y/lCsvs2fCWjcYc0whZFYQ3UX/OO2qv+n6wE7D9dCeI NAME="admin" SSHCOMMAND_ALLOWED_KEYS="{ALLOWED}"\n'
    f'2a:f7:39:1c:63:80:c4:9e:a8:92:ec:e6:94:91:fa:c0 NAME="md5" SSHCOMMAND_ALLOWED_KEYS="{ALLOWED}"\n'
)
KEYS_JSON = (
    '[{ "fingerprint": "SHA256:y/lCsvs2fCWjcYc0whZFYQ3UX/OO2qv+n6wE7D9dCeI", "name": "admin", '
    f'"SSHCOMMAND_ALLOWED_KEYS": "{ALLOWED}", "public-key": "ssh-ed25519 AAAAC3Nza alice@laptop" }},'
    '{ "fingerprint": "2a:f7:39:1c:63:80:c4:9e:a8:92:ec:e6:94:91:fa:c0", "name": "md5", '
    f'"SSHCOMMAND_ALLOWED_KEYS": "{ALLOWED}", "public-key": "ssh-rsa AAAAB3Nza" }}]\n'
)


def run(command, code=0, stdout="", stderr=""):
    return p.check(command, code, stdout, stderr)


# --- check: success and warnings --------------------------------------------------------


def test_clean_success_has_no_warnings():
    assert run(c.apps_create("api"), 0, "-----> Creating api...\n") == []


def test_empty_app_list_is_not_a_warning():
    assert run(c.apps_list(False), 0, "=====> My Apps\n", " !     You haven't deployed any applications yet\n") == []


def test_bang_lines_on_success_become_warnings():
    stdout = "-----> Added api.example.com to api\n"
    stderr = " !     Please run dokku letsencrypt:enable to add https support to the new domain\n"
    assert run(c.domains_add("api", ["api.example.com"]), 0, stdout, stderr) == [
        "Please run dokku letsencrypt:enable to add https support to the new domain"
    ]


def test_sudo_host_resolution_notice_is_a_warning():
    warnings = run(c.version(), 0, "dokku version 0.38.27\n", "sudo: unable to resolve host box: Name or service not known\n")
    assert warnings == ["sudo: unable to resolve host box: Name or service not known"]


# --- check: failures reported with exit 0 ----------------------------------------------


@pytest.mark.parametrize("build", [lambda: c.config_set("api", {"K": "v"}, True)[0], lambda: c.config_unset("api", ["K"], True)])
def test_failed_restart_after_config_change_is_a_failure(build):
    stdout = "-----> Restarting app api\n"
    stderr = " !     Failure while restarting app: exit status 1\n"
    with pytest.raises(p.RestartFailed) as info:
        run(build(), 0, stdout, stderr)
    assert info.value.exit_code == 0
    assert "saved" in info.value.message and "api" in info.value.message
    assert " !" not in info.value.message
    assert "exit status 1" in info.value.message


@pytest.mark.parametrize("merged", [True, False])
def test_restart_of_undeployed_app_is_a_failure_in_either_stream(merged):
    line = " !     App api has not been deployed\n"
    stdout, stderr = (line, "") if merged else ("", line)
    with pytest.raises(p.AppNotDeployed) as info:
        run(c.ps_restart("api"), 0, stdout, stderr)
    assert info.value.message.startswith("App api has not been deployed yet")
    assert info.value.transient is False


# --- check: failures with an exit code -------------------------------------------------


def test_exit_20_means_the_app_is_missing():
    with pytest.raises(p.AppMissing) as info:
        run(c.ps_restart("api"), 20, "", " !     App api does not exist\n")
    assert info.value.message == "App api does not exist on the server."
    assert info.value.exit_code == 20
    assert isinstance(info.value, p.DokkuError)


def test_exit_20_names_the_app_from_output_when_the_command_has_none():
    command = c.Command(argv=("dokku", "x"), display=("dokku", "x"), kind="x")
    with pytest.raises(p.AppMissing, match="App web does not exist on the server."):
        run(command, 20, "", " !     App web does not exist\n")


def test_name_already_taken():
    with pytest.raises(p.AppAlreadyExists) as info:
        run(c.apps_create("api"), 1, "", " !     Name is already taken\n")
    assert info.value.message == "An app named api already exists on the server."


@pytest.mark.parametrize(
    "stderr",
    [
        "bash: line 1: dokku: command not found\n",
        "sh: 1: dokku: not found\n",
        "sudo: dokku: command not found\n",
    ],
)
def test_missing_dokku(stderr):
    with pytest.raises(p.NotDokku, match="not installed"):
        run(c.version(), 127 if "sudo" not in stderr else 1, "", stderr)


def test_missing_timeout_is_named_as_such():
    # Every command runs under coreutils `timeout`: a host without it is not a host without Dokku.
    with pytest.raises(p.NotDokku, match=r"no `timeout` command \(coreutils\)"):
        run(c.version(), 127, "", "sh: 1: timeout: not found\n")


def test_apps_locked_exit_1_means_not_locked():
    assert run(c.apps_locked("api"), 1, "", " !     Deploy lock does not exist\n") == []
    assert run(c.apps_locked("api"), 0, "Deploy lock exists\n", "") == []


@pytest.mark.parametrize(
    "stderr",
    [
        "sudo: a password is required\n",
        "sudo: a terminal is required to read the password; either use the -S option or configure an askpass helper\n",
        "deploy is not in the sudoers file.  This incident will be reported.\n",
        "Sorry, user deploy is not allowed to execute '/usr/bin/dokku version' as root on box.\n",
    ],
)
def test_sudo_wants_a_password(stderr):
    with pytest.raises(p.SudoPasswordRequired) as info:
        run(c.version(), 1, "", stderr)
    assert "NOPASSWD" in info.value.message


def test_duplicate_key_name():
    stderr = "Duplicate ssh key name\n !     sshcommand returned an error: 1\n"
    with pytest.raises(p.DuplicateKeyName) as info:
        run(c.ssh_keys_add("alice", ED25519), 1, "", stderr)
    assert "named alice is already on the server" in info.value.message
    assert "sshcommand" not in info.value.message


def test_duplicate_key():
    stderr = "Duplicate ssh public key specified\n !     sshcommand returned an error: 1\n"
    with pytest.raises(p.DuplicateKey) as info:
        run(c.ssh_keys_add("alice", ED25519), 1, "", stderr)
    assert "already on the server under another name" in info.value.message


def test_key_management_needs_root():
    with pytest.raises(p.DokkuError, match="needs root"):
        run(c.ssh_keys_add("alice", ED25519), 1, "", " !     This command must be run as root\n")


def test_broken_authorized_keys_line():
    stderr = " !     /home/dokku/.ssh/authorized_keys line 3 failed ssh-keygen check.\n"
    with pytest.raises(p.DokkuError, match="Line 3 of the dokku user's authorized_keys"):
        run(c.ssh_keys_add("alice", ED25519), 1, "", stderr)


def test_empty_authorized_keys_lists_no_keys():
    assert run(c.ssh_keys_list(False), 1, "", "authorized_keys is empty for dokku\n") == []
    assert p.parse_ssh_keys_list("", json_format=True) == []


def test_removing_from_an_empty_key_file_is_done():
    warnings = run(c.ssh_keys_remove("alice"), 1, "", " !     No public keys found.\n")
    assert warnings == ["There were no deploy keys on the server, so there was nothing to remove."]


def test_unknown_command():
    stderr = " !     `domains:set api x.example.com` is not a dokku command.\n !     See `dokku help` for a list of available commands.\n"
    with pytest.raises(p.DokkuError, match="does not know the command domains:set"):
        run(c.domains_set("api", ["x.example.com"]), 1, "", stderr)


def test_invalid_domain():
    with pytest.raises(p.DokkuError, match="rejected the domain x_y.com"):
        run(c.domains_add("api", ["x.example.com"]), 1, "", " !     x_y.com is invalid. exiting...\n")


def test_version_missing():
    with pytest.raises(p.DokkuError, match="cannot tell its version"):
        run(c.version(), 1, "", " !     Unable to determine dokku's version\n")


def test_unknown_failure_strips_prefixes():
    with pytest.raises(p.DokkuError) as info:
        run(c.ps_report("api", True), 1, "", " !     --format flag cannot be specified when specifying an info flag\n")
    assert info.value.message == (
        "dokku ps:report failed (exit code 1): --format flag cannot be specified when specifying an info flag"
    )
    assert type(info.value) is p.DokkuError


def test_failed_deploy_reports_its_last_lines_and_ignores_app_log_noise():
    stdout = "".join(f"       log line {i}: Name is already taken\n" for i in range(200))
    stdout += " !     one\n !     two\n !     three\n !     Deploy failed\n"
    with pytest.raises(p.DokkuError) as info:
        run(c.ps_restart("api"), 1, stdout, "")
    assert type(info.value) is p.DokkuError
    assert info.value.message == "dokku ps:restart failed (exit code 1): two three Deploy failed"


def test_unknown_failure_without_output():
    with pytest.raises(p.DokkuError, match="failed with exit code 2 and gave no reason"):
        run(c.apps_list(True), 2)


def test_failure_messages_never_contain_env_values():
    [command] = c.config_set("api", {"TOKEN": "s3cr3t-value"}, restart=True)
    encoded = command.argv[-1].partition("=")[2]
    stderr = f" !     Invalid env pair: TOKEN={encoded}\n !     also s3cr3t-value\n"
    with pytest.raises(p.DokkuError) as info:
        run(command, 1, "", stderr)
    assert "s3cr3t-value" not in info.value.message and encoded not in info.value.message
    assert "s3cr3t-value" not in str(info.value)
    assert "[redacted]" in info.value.message

    with pytest.raises(p.RestartFailed) as info:
        run(command, 0, "", " !     Failure while restarting app: s3cr3t-value\n")
    assert "s3cr3t-value" not in info.value.message


# --- parsers ---------------------------------------------------------------------------


def test_parse_version():
    assert p.parse_version("dokku version 0.38.27\n") == DokkuVersion(0, 38, 27)
    assert p.parse_version("dokku version 0.30.0\n").supported


def test_parse_version_too_old():
    with pytest.raises(p.UnsupportedVersion) as info:
        p.parse_version("dokku version 0.29.4\n")
    assert info.value.version == DokkuVersion(0, 29, 4)
    assert "0.29.4" in info.value.message and "0.30.0" in info.value.message


def test_parse_version_garbage():
    with pytest.raises(p.UnparseableOutput):
        p.parse_version("Welcome to Ubuntu\n")


def test_parse_apps_list_text():
    assert p.parse_apps_list("=====> My Apps\napi\nold_app\nweb.example\n", json_format=False) == [
        "api",
        "old_app",
        "web.example",
    ]
    assert p.parse_apps_list("=====> My Apps\n", json_format=False) == []


def test_parse_apps_list_json():
    assert p.parse_apps_list('["api","web"]\n', json_format=True) == ["api", "web"]
    assert p.parse_apps_list("[]\n", json_format=True) == []
    with pytest.raises(p.UnparseableOutput):
        p.parse_apps_list("=====> My Apps\napi\n", json_format=True)
    with pytest.raises(p.UnparseableOutput):
        p.parse_apps_list('{"api": 1}', json_format=True)


def test_parse_report_text():
    report = p.parse_report(APPS_REPORT)
    assert report["App dir"] == "/home/dokku/api"
    assert report["App deploy source metadata"] == ""
    assert report["App created at"] == "1718000000"
    assert len(report) == 6


def test_parse_report_keeps_colons_in_values():
    report = p.parse_report(PS_REPORT)
    assert report["Ps restart policy"] == "on-failure:10"
    assert report["Status web 1"] == "running (CID: 0123456789a)"


def test_parse_report_bash_era_trailing_spaces():
    report = p.parse_report(DOMAINS_REPORT_BASH)
    assert report == {
        "Domains app enabled": "true",
        "Domains app vhosts": "api.example.com www.example.com",
        "Domains global enabled": "true",
        "Domains global vhosts": "dokku.me",
    }


def test_parse_report_json():
    text = '{"created-at":"1718000000","dir":"/home/dokku/api","app-dir":"/home/dokku/api","locked":"false"}\n'
    assert p.parse_report_json(text)["dir"] == "/home/dokku/api"
    with pytest.raises(p.UnparseableOutput):
        p.parse_report_json(APPS_REPORT)
    with pytest.raises(p.UnparseableOutput):
        p.parse_report_json("[]")


@pytest.mark.parametrize("text", [DOMAINS_REPORT_GO, DOMAINS_REPORT_BASH])
def test_parse_domains_text(text):
    assert p.parse_domains(text, json_format=False) == ["api.example.com", "www.example.com"]


def test_parse_domains_json_and_empty():
    text = '{"app-enabled":"true","app-vhosts":"api.example.com www.example.com","global-enabled":"true","global-vhosts":""}'
    assert p.parse_domains(text, json_format=True) == ["api.example.com", "www.example.com"]
    assert p.parse_domains('{"app-enabled":"true","app-vhosts":""}', json_format=True) == []
    empty_bash = "=====> api domains information\n       Domains app vhosts:            " + " " * 25 + "\n"
    assert p.parse_domains(empty_bash, json_format=False) == []


def test_parse_domains_missing_field():
    with pytest.raises(p.UnparseableOutput):
        p.parse_domains(APPS_REPORT, json_format=False)


def test_parse_ps_report_text():
    assert p.parse_ps_report(PS_REPORT, json_format=False) == p.PsReport(deployed=True, running=None, processes=2)


def test_parse_ps_report_undeployed():
    text = PS_REPORT.replace("true\n       Global", "false\n       Global").replace("mixed", "false")
    text = text.replace("Processes:                     2", "Processes:                     0")
    assert p.parse_ps_report(text, json_format=False) == p.PsReport(deployed=False, running=False, processes=0)


def test_parse_ps_report_json():
    text = json.dumps(
        {"deployed": "true", "processes": "1", "running": "true", "ps-can-scale": "true", "restore": "true"}
    )
    assert p.parse_ps_report(text, json_format=True) == p.PsReport(deployed=True, running=True, processes=1)
    text = json.dumps({"deployed": "false", "processes": "-1", "running": "false"})
    assert p.parse_ps_report(text, json_format=True) == p.PsReport(deployed=False, running=False, processes=None)


def test_parse_ps_report_unreadable():
    with pytest.raises(p.UnparseableOutput):
        p.parse_ps_report(APPS_REPORT, json_format=False)


def test_parse_config_export_json():
    text = '{"A":"line1\\nline2","B":"\\u00fcnic\\u00f8de","EMPTY":""}\n'
    assert p.parse_config_export_json(text) == {"A": "line1\nline2", "B": "ünicøde", "EMPTY": ""}


def test_parse_config_export_json_tolerates_non_strings():
    assert p.parse_config_export_json('{"N":7,"F":1.5,"T":true}') == {"N": "7", "F": "1.5", "T": "true"}
    assert p.parse_config_export_json("{}") == {}
    assert p.parse_config_export_json("null") == {}
    with pytest.raises(p.UnparseableOutput) as info:
        p.parse_config_export_json("export SECRET='hunter2'\n")
    assert "hunter2" not in info.value.message


def test_parse_ssh_keys_list_text():
    assert p.parse_ssh_keys_list(KEYS_TEXT, json_format=False) == [
        {"name": "admin", "fingerprint": "SHA256:y/lCsvs2fCWjcYc0whZFYQ3UX/OO2qv+n6wE7D9dCeI", "public_key": None},
        {"name": "md5", "fingerprint": "2a:f7:39:1c:63:80:c4:9e:a8:92:ec:e6:94:91:fa:c0", "public_key": None},
    ]


def test_parse_ssh_keys_list_text_odd_names():
    line = f'SHA256:abc NAME="we ird"name" SSHCOMMAND_ALLOWED_KEYS="{ALLOWED}"\nSHA256:def NAME="bare"\n'
    keys = p.parse_ssh_keys_list(line, json_format=False)
    assert [k["name"] for k in keys] == ['we ird"name', "bare"]
    with pytest.raises(p.UnparseableOutput):
        p.parse_ssh_keys_list("something unexpected\n", json_format=False)


def test_parse_ssh_keys_list_json():
    keys = p.parse_ssh_keys_list(KEYS_JSON, json_format=True)
    assert keys[0] == {
        "name": "admin",
        "fingerprint": "SHA256:y/lCsvs2fCWjcYc0whZFYQ3UX/OO2qv+n6wE7D9dCeI",
        "public_key": "ssh-ed25519 AAAAC3Nza alice@laptop",
    }
    assert keys[1]["name"] == "md5"
    assert p.parse_ssh_keys_list("[]\n", json_format=True) == []


def test_parse_ssh_keys_list_unescaped_json_asks_for_text_format():
    broken = KEYS_JSON.replace("alice@laptop", 'alice "the admin" c:\\keys')
    with pytest.raises(p.UnparseableOutput):
        p.parse_ssh_keys_list(broken, json_format=True)
    # The caller then re-runs in text format, which does not carry the comment.
    assert [k["name"] for k in p.parse_ssh_keys_list(KEYS_TEXT, json_format=False)] == ["admin", "md5"]


def test_readback_mismatches():
    expected = {"PORT": "007", "NAME": "api", "GONE": "x", "EMPTY": ""}
    stored = {"PORT": "7", "NAME": "api", "EMPTY": "", "OTHER": "y"}
    assert p.readback_mismatches(expected, stored) == ["GONE", "PORT"]
    assert p.readback_mismatches({"A": "1"}, {"A": "1"}) == []

