"""The panel end to end: forms -> services -> operations -> real SSH -> the Dokku double, state checked there.

Every test drives the panel through HTTP as a person would, lets the in-process runner apply the
operations over SSH to the loopback sshd, then checks what the double holds, what the page says,
and that no transcript or page shows a secret value.
"""
from __future__ import annotations

import base64
import re

from sqlalchemy import select

from intercity.extensions import db
from intercity.models import App, CommandRun, DeployKey, EnvVar, Operation, Server
from tests.support.builders import make_app
from tests.support.panel import ED25519, actions, finish, install_panel_key, operations, sshd_server
from tests.support.ssh_fixtures import SUDO_USER, SUDO_USER_WITH_PASSWORD, make_dokku_server

HTMX = {"HX-Request": "true"}


def text(response) -> str:
    return response.get_data(as_text=True)


def last(kind: str) -> Operation:
    return operations(kind)[-1]


def ready_server(sshd, **overrides) -> Server:
    """A server as a connection test leaves it (pinned, ready), the panel's exact line installed."""
    server = make_dokku_server(sshd, authorize=False, **overrides)
    install_panel_key(sshd, server)
    return server


def assert_no_secret_in_transcripts(*values: str) -> None:
    runs = db.session.scalars(select(CommandRun)).all()
    assert runs
    for run in runs:
        stored = " ".join([run.argv, run.stdout or "", run.stderr or "", run.error or ""])
        for value in values:
            for needle in (value, base64.b64encode(value.encode()).decode()):
                assert needle not in stored, f"a secret is in the transcript of {run.argv}"


# --- servers -----------------------------------------------------------------------------


def test_add_a_server_install_the_line_and_test_the_connection(app, client, logged_in, admin, sshd, dokku):
    logged_in(admin)
    response = client.post("/servers/new", data={"name": "loopback", "host": sshd.host, "port": str(sshd.port),
                                                 "ssh_user": "root", "host_key_fingerprint": ""})
    server_url = response.headers["Location"]
    page = text(client.get(server_url))
    # the person copies the line the page shows into root's authorized_keys
    line = re.search(r'<pre id="authorized-keys-line">(.*?)</pre>', page).group(1)
    keys_file = sshd.keys_dir / "root"
    keys_file.write_text(line + "\n")
    keys_file.chmod(0o644)
    assert client.post(server_url + "/check").status_code == 303
    finish(app)
    server = db.session.scalar(select(Server))
    assert server.status == "ready"
    assert (server.host_key_type, server.host_key_fingerprint) == (sshd.host_key_type, sshd.host_key_fingerprint)
    assert server.dokku_version and server.remote_keys == []
    op = last("server.check")
    assert op.status == "succeeded" and [r.argv_list[-1] for r in op.command_runs][:1] == ["version"]
    page = text(client.get(server_url))
    assert "Connected as root" in page and sshd.host_key_fingerprint in page and server.dokku_version in page
    assert {"server.created", "server.connection_test_requested", "server.host_key_pinned",
            "operation.succeeded"} <= set(actions())


def test_a_non_root_user_with_the_sudoers_line(app, client, logged_in, admin, sshd, dokku):
    logged_in(admin)
    server = sshd_server(sshd, ssh_user=SUDO_USER)
    assert f"{SUDO_USER} ALL=(root) NOPASSWD: /usr/bin/dokku" in text(client.get(f"/servers/{server.id}"))
    client.post(f"/servers/{server.id}/check")
    finish(app)
    assert db.session.get(Server, server.id).status == "ready"
    assert [call["sudo_user"] for call in dokku.calls()][:1] == [SUDO_USER]


def test_connection_test_errors_say_what_to_fix(app, client, logged_in, admin, sshd, dokku):
    logged_in(admin)
    not_installed = sshd_server(sshd, install_key=False, name="no-key")
    needs_password = sshd_server(sshd, ssh_user=SUDO_USER_WITH_PASSWORD, passwordless_sudo=False, name="sudo-pw")
    for server in (not_installed, needs_password):
        client.post(f"/servers/{server.id}/check")
    finish(app)
    first, second = db.session.get(Server, not_installed.id), db.session.get(Server, needs_password.id)
    assert "not in authorized_keys" in first.status_message and first.status != "ready"
    assert "password" in second.status_message.lower() and second.status != "ready"
    page = text(client.get(f"/servers/{not_installed.id}"))
    assert "not in authorized_keys" in page and ">Retry<" in page


def test_a_changed_host_key_stops_work_until_an_admin_accepts_it(app, client, logged_in, admin, tmp_path):
    from tests.support.sshd import SshServer

    with SshServer(tmp_path / "sshd") as own:
        logged_in(admin)
        server = sshd_server(own)
        client.post(f"/servers/{server.id}/check")
        finish(app)
        old = own.host_key_fingerprint
        assert db.session.get(Server, server.id).host_key_fingerprint == old
        new = own.restart_with_new_host_key()
        install_panel_key(own, server)  # restart keeps the key files; nothing else changes
        client.post(f"/servers/{server.id}/check")
        finish(app)
        server = db.session.get(Server, server.id)
        assert server.status == "host_key_mismatch" and server.host_key_fingerprint == old
        page = text(client.get(f"/servers/{server.id}"))
        assert old in page and new in page and "Accept the new host key" in page
        assert "server.host_key_mismatch" in actions()
        # work on the server is refused meanwhile
        app_row = make_app(server, name="api")
        client.post(f"/servers/{server.id}/apps/api/restart")
        finish(app)
        assert last("app.restart").status == "failed" and "stopped" in last("app.restart").reason
        client.post(f"/servers/{server.id}/host-key/accept")
        finish(app)
        server = db.session.get(Server, server.id)
        assert (server.status, server.host_key_fingerprint) == ("ready", new)
        assert "server.host_key_accepted" in actions()
        assert app_row.id


# --- apps --------------------------------------------------------------------------------


def test_create_restart_refresh_and_destroy_an_app(app, client, logged_in, member, sshd, dokku):
    server = ready_server(sshd)
    logged_in(member)
    client.post(f"/servers/{server.id}/apps", data={"name": "api"})
    finish(app)
    assert dokku.apps() == ["api"] and last("app.create").status == "succeeded"
    dokku.mark_deployed("api")
    client.post(f"/servers/{server.id}/apps/api/restart")
    client.post(f"/servers/{server.id}/apps/api/refresh")
    finish(app)
    assert [op.status for op in operations()] == ["succeeded"] * 3
    assert any(call["command"] == "ps:restart" for call in dokku.calls())
    page = text(client.get(f"/servers/{server.id}/apps/api"))
    assert "running" in page and "checked" in page
    response = client.post(f"/servers/{server.id}/apps/api/destroy", data={"confirm": "api"})
    assert response.status_code == 303
    finish(app)
    assert dokku.apps() == [] and db.session.scalar(select(App)) is None
    gone = client.get(f"/servers/{server.id}/apps/api")
    assert gone.status_code == 404 and "api is gone from" in text(gone)
    polled = client.get(f"/operations/{last('app.destroy').id}", headers=HTMX)
    assert polled.headers["HX-Redirect"] == f"/servers/{server.id}/apps/api"
    fragment = text(polled)
    assert "applied" in fragment and "apps:destroy" in fragment


def test_import_apps_with_their_env_and_domains(app, client, logged_in, member, sshd, dokku):
    server = ready_server(sshd)
    make_app(server, name="known")
    dokku.create_app("known")
    dokku.create_app("legacy_app")
    dokku.set_env("legacy_app", {"DATABASE_URL": "postgres://imported-secret@db/x", "WORKERS": "4"})
    dokku.set_domains("legacy_app", ["legacy.example.com"])
    logged_in(member)
    client.post(f"/servers/{server.id}/apps/import")
    finish(app)
    assert last("server.import").status == "succeeded"
    imported = db.session.scalar(select(App).where(App.name == "legacy_app"))
    assert imported.imported
    assert {v.key: v.value for v in imported.env_vars} == {"DATABASE_URL": "postgres://imported-secret@db/x", "WORKERS": "4"}
    assert [d.hostname for d in imported.domains] == ["legacy.example.com"]
    page = text(client.get(f"/servers/{server.id}"))
    assert "legacy_app" in page and "imported" in page and "postgres://imported-secret" not in page
    assert_no_secret_in_transcripts("postgres://imported-secret@db/x")


# --- env vars ----------------------------------------------------------------------------

TRICKY = {
    # Not at the very end: Dokku cannot store a value ending in a quote (the form refuses it).
    "QUOTES": "it's \"quoted\" here",
    "SHELL": "$(touch /tmp/pwned) `id` ; rm -rf / | cat",
    "SPACES": "  leading and trailing  ",
    "EQUALS": "a=b=c",
    "UNICODE": "ünïcødé ✓ 🚀",
}


def test_paste_three_variables_and_they_reach_dokku_byte_for_byte(app, client, logged_in, member, sshd, dokku):
    server = ready_server(sshd)
    make_app(server, name="api")
    dokku.create_app("api")
    logged_in(member)
    block = ("DATABASE_URL=postgres://u:s3cret-pw@db/app\r\n"
             "PEM=\"-----BEGIN-----\r\nsecret-body\r\n-----END-----\"\r\n"
             "export GREETING='hello $USER'\r\n")
    url = f"/servers/{server.id}/apps/api/env/paste"
    token = re.search(r'name="confirmed" value="([0-9a-f]+)"', text(client.post(url, data={"block": block}))).group(1)
    response = client.post(url, data={"block": block, "restart": "y", "confirmed": token})
    assert response.status_code == 303
    finish(app)
    op = last("env.apply")
    assert op.status == "succeeded" and len(operations("env.apply")) == 1
    assert dokku.env("api") == {"DATABASE_URL": b"postgres://u:s3cret-pw@db/app",
                                "PEM": b"-----BEGIN-----\nsecret-body\n-----END-----", "GREETING": b"hello $USER"}
    assert len([e for e in actions() if e == "env_var.created"]) == 3
    page = text(client.get(f"/servers/{server.id}/apps/api"))
    for secret in ("s3cret-pw", "secret-body", "hello $USER"):
        assert secret not in page
    assert_no_secret_in_transcripts("postgres://u:s3cret-pw@db/app", "secret-body", "hello $USER")


def test_tricky_values_one_by_one_and_restart_off(app, client, logged_in, member, sshd, dokku):
    server = ready_server(sshd)
    make_app(server, name="api")
    dokku.create_app("api")
    logged_in(member)
    for key, value in TRICKY.items():
        client.post(f"/servers/{server.id}/apps/api/env", data={"key": key, "value": value})
    finish(app)
    assert all(op.status == "succeeded" for op in operations("env.apply"))
    assert dokku.env("api") == {key: value.encode() for key, value in TRICKY.items()}
    config_sets = [call["argv"] for call in dokku.calls() if call["command"] == "config:set"]
    assert config_sets and all("--no-restart" in argv for argv in config_sets)
    assert_no_secret_in_transcripts(*[v for v in TRICKY.values() if len(v) > 5])


def test_edit_and_remove_a_variable(app, client, logged_in, member, sshd, dokku):
    server = ready_server(sshd)
    make_app(server, name="api")
    dokku.create_app("api")
    logged_in(member)
    client.post(f"/servers/{server.id}/apps/api/env", data={"key": "TOKEN", "value": "one", "restart": "y"})
    client.post(f"/servers/{server.id}/apps/api/env/TOKEN/edit", data={"value": "two", "restart": "y"})
    client.post(f"/servers/{server.id}/apps/api/env", data={"key": "GONE", "value": "x", "restart": "y"})
    finish(app)
    assert dokku.env("api") == {"TOKEN": b"two", "GONE": b"x"}
    client.post(f"/servers/{server.id}/apps/api/env/GONE/remove", data={"restart": "on", "confirmed": "1"})
    finish(app)
    assert dokku.env("api") == {"TOKEN": b"two"}


def test_an_integer_looking_value_is_applied_with_a_warning(app, client, logged_in, member, sshd, dokku):
    server = ready_server(sshd)
    make_app(server, name="api")
    dokku.create_app("api")
    logged_in(member)
    client.post(f"/servers/{server.id}/apps/api/env", data={"key": "PIN", "value": "007", "restart": "y"})
    finish(app)
    op = last("env.apply")
    assert op.status == "succeeded" and op.warning_list
    page = text(client.get(f"/servers/{server.id}/apps/api"))
    assert "Warning: Dokku stored a different value for PIN" in page


def test_reveal_shows_the_value_the_panel_holds(app, client, logged_in, member, sshd, dokku):
    server = ready_server(sshd)
    make_app(server, name="api")
    dokku.create_app("api")
    logged_in(member)
    client.post(f"/servers/{server.id}/apps/api/env", data={"key": "TOKEN", "value": "tok-e2e", "restart": "y"})
    finish(app)
    response = client.post(f"/servers/{server.id}/apps/api/env/TOKEN/reveal", headers=HTMX)
    assert "tok-e2e" in text(response) and "env_var.revealed" in actions()


# --- domains -----------------------------------------------------------------------------


def test_add_and_remove_a_domain(app, client, logged_in, member, sshd, dokku):
    server = ready_server(sshd)
    make_app(server, name="api")
    dokku.create_app("api")
    logged_in(member)
    client.post(f"/servers/{server.id}/apps/api/domains", data={"domain": "api.example.com"})
    client.post(f"/servers/{server.id}/apps/api/domains", data={"domain": "www.example.com"})
    finish(app)
    assert sorted(dokku.domains("api")) == ["api.example.com", "www.example.com"]
    domain = db.session.scalar(select(App).where(App.name == "api")).domains[0]
    client.post(f"/servers/{server.id}/apps/api/domains/{domain.id}/remove", data={"confirmed": "1"})
    finish(app)
    assert dokku.domains("api") == ["www.example.com"]
    assert all(op.status == "succeeded" for op in operations("domains.apply"))


# --- deploy keys -------------------------------------------------------------------------


def test_add_remove_and_adopt_deploy_keys(app, client, logged_in, admin, sshd, dokku):
    server = ready_server(sshd)
    from tests.support.panel import ED25519_OTHER

    dokku.add_key('old laptop "2019"', ED25519_OTHER)
    logged_in(admin)
    url = f"/servers/{server.id}/deploy-keys"
    preview = text(client.post(url, data={"name": "alice", "public_key": ED25519}))
    fingerprint = re.search(r'<code id="preview-fingerprint">(.*?)</code>', preview).group(1)
    client.post(url, data={"name": "alice", "public_key": ED25519, "confirmed": fingerprint})
    finish(app)
    assert {k["name"]: k["fingerprint"] for k in dokku.keys()}["alice"] == fingerprint
    # the key Dokku already had shows up to be adopted, under the name Dokku lists
    page = text(client.get(url))
    assert "old laptop &#34;2019&#34;" in page and ">Adopt</button>" in page
    other = next(k for k in dokku.keys() if k["name"] != "alice")
    client.post(url + "/adopt", data={"fingerprint": other["fingerprint"]})
    adopted = db.session.scalar(select(DeployKey).where(DeployKey.adopted.is_(True)))
    assert adopted.name == 'old laptop "2019"'
    for key in db.session.scalars(select(DeployKey)).all():
        client.post(f"{url}/{key.id}/remove", data={"confirmed": "1"})
    finish(app)
    assert dokku.keys() == []
    assert all(op.status == "succeeded" for op in operations("deploy_keys.apply"))
    removes = [call["argv"] for call in dokku.calls() if call["command"] == "ssh-keys:remove"]
    assert ["ssh-keys:remove", "alice"] in [argv[-2:] for argv in removes]
    assert any("--fingerprint" in argv for argv in removes)


def test_a_name_dokku_already_has_is_explained(app, client, logged_in, admin, sshd, dokku):
    from tests.support.panel import ED25519_OTHER

    server = ready_server(sshd)
    dokku.add_key("ci", ED25519_OTHER)
    logged_in(admin)
    client.post(f"/servers/{server.id}/deploy-keys/refresh")
    finish(app)
    response = client.post(f"/servers/{server.id}/deploy-keys", data={"name": "ci", "public_key": ED25519})
    assert response.status_code == 422
    assert "Dokku refuses a second key with the same name" in text(response)


# --- failure and retry -------------------------------------------------------------------


def test_a_failing_operation_shows_its_error_and_a_retry_applies_the_current_value(
        app, client, logged_in, member, sshd, dokku):
    server = ready_server(sshd)
    make_app(server, name="api")
    dokku.create_app("api")
    dokku.fail("config:set", exit_code=1, stderr=" !     Something broke on the server\n")
    logged_in(member)
    client.post(f"/servers/{server.id}/apps/api/env", data={"key": "TOKEN", "value": "first", "restart": "y"})
    finish(app)
    failed = last("env.apply")
    assert failed.status == "failed" and "Something broke on the server" in failed.reason
    page = text(client.get(f"/servers/{server.id}/apps/api"))
    assert "Something broke on the server" in page and f'action="/operations/{failed.id}/retry"' in page
    assert dokku.env("api") == {}
    # the desired state moves on; the retry applies it, not the failed attempt's value
    var = db.session.scalar(select(EnvVar))
    var.value = "second"
    db.session.commit()
    dokku.clear_faults()
    response = client.post(f"/operations/{failed.id}/retry", headers=HTMX)
    assert response.status_code == 200
    finish(app)
    retry = last("env.apply")
    assert (retry.retry_of_id, retry.status) == (failed.id, "succeeded")
    assert dokku.env("api") == {"TOKEN": b"second"}
    fragment = text(client.get(f"/operations/{retry.id}", headers=HTMX))
    assert "applied" in fragment and "hx-trigger" not in fragment
    assert "operation.retry_requested" in actions() and "operation.failed" in actions()
