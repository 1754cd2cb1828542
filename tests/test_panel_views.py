"""The panel's pages and forms: every action, errors next to fields, nothing half-applied, live status.

Operations stay queued (a real Redis queue nobody consumes); a test that needs a final state writes
it as a worker would. test_panel_e2e.py and test_panel_browser.py run the real thing.
"""
from __future__ import annotations

import html
import json
import re

import pytest
from sqlalchemy import func, select

from intercity.extensions import db
from intercity.jobs import readings
from intercity.models import App, DeployKey, Domain, EnvVar, Operation, Server
from tests.support.sessions import log_in
from tests.support.builders import make_app, make_server
from tests.support.panel import ED25519, actions, entries, finish_operation, operations
from tests.support.panel import no_worker  # noqa: F401  (the fixture, used below)

pytestmark = pytest.mark.usefixtures("no_worker")
HTMX = {"HX-Request": "true"}


def text(response) -> str:
    return response.get_data(as_text=True)


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def field_error(body: str, field_id: str) -> str:
    """The error paragraph rendered next to a field (the forms macro gives it the field's id)."""
    match = re.search(rf'<p class="error" id="{re.escape(field_id)}-error">(.*?)</p>', body, re.S)
    assert match, f"no error next to #{field_id}"
    return match.group(1)


def paste(client, url: str, data: dict):
    """Paste a block as a person does: the preview first, then the same block confirmed."""
    preview = client.post(url, data=data)
    assert preview.status_code == 200, text(preview)
    token = re.search(r'name="confirmed" value="([0-9a-f]+)"', text(preview)).group(1)
    return client.post(url, data={**data, "confirmed": token})


def set_env(app, **values):
    for key, value in values.items():
        var = EnvVar(app=app, key=key)
        var.value = value
        db.session.add(var)
    db.session.commit()


# --- servers -----------------------------------------------------------------------------


def test_server_list_empty_states_say_what_to_do(client, logged_in, admin, viewer):
    logged_in(admin)
    body = text(client.get("/servers"))
    assert "No servers yet." in body and 'href="/servers/new"' in body and "<title>Servers · Intercity</title>" in body
    client.post("/logout")
    logged_in(viewer)
    body = text(client.get("/servers"))
    assert "Ask one to add yours" in body and "/servers/new" not in body


def test_the_header_links_every_app_for_everyone(client, logged_in, admin, viewer):
    for person in (admin, viewer):
        logged_in(person)
        assert '<a href="/apps" aria-current="page">Apps</a>' in text(client.get("/apps"))
        assert re.search(r'<a href="/apps"\s*>Apps</a>', text(client.get("/servers")))  # there, not current
        client.post("/logout")


def test_add_server_errors_sit_next_to_their_fields_and_keep_input(client, logged_in, admin):
    logged_in(admin)
    response = client.post("/servers/new", data={"name": "prod 1", "host": "bad host", "port": "x",
                                                 "ssh_user": "dokku", "host_key_fingerprint": ""})
    body = text(response)
    assert response.status_code == 422
    assert "Server names start" in field_error(body, "server-name")
    assert "is not a hostname" in field_error(body, "server-host")
    assert "must be a number" in field_error(body, "server-port")
    assert "dokku user cannot be used" in field_error(body, "server-ssh-user")
    assert 'value="bad host"' in body
    assert count(Server) == 0


def test_add_server_then_its_page_shows_how_to_let_the_panel_in(client, logged_in, admin):
    logged_in(admin)
    response = client.post("/servers/new", data={"name": "prod-1", "host": "prod-1.example.com", "port": "22",
                                                 "ssh_user": "intercity-ops", "host_key_fingerprint": ""})
    server = db.session.scalar(select(Server))
    assert response.status_code == 303 and response.headers["Location"] == f"/servers/{server.id}"
    body = text(client.get(f"/servers/{server.id}"))
    assert "Install the panel&#39;s key on it, then test the connection." in body
    assert f"restrict {server.public_key}" in body
    assert 'data-copy="authorized-keys-line"' in body
    assert "intercity-ops ALL=(root) NOPASSWD: /usr/bin/dokku" in body
    assert "not connected yet" in body and "Test connection" in body
    assert "<title>prod-1 · Intercity</title>" in body


def test_a_root_server_needs_no_sudoers_line(client, logged_in, admin):
    logged_in(admin)
    server = make_server(ssh_user="root")
    body = text(client.get(f"/servers/{server.id}"))
    assert f"~root/.ssh/authorized_keys" in body and "NOPASSWD" not in body


def test_test_connection_shows_the_operation_inline_polling(client, logged_in, admin):
    logged_in(admin)
    server = make_server()
    response = client.post(f"/servers/{server.id}/check")
    assert response.status_code == 303
    [op] = operations("server.check")
    body = text(client.get(response.headers["Location"]))
    assert f'id="op-{op.id}"' in body
    fragment = re.search(rf'<div id="op-{op.id}".*?>', body, re.S).group(0)
    assert 'hx-trigger="every 1s"' in fragment and f'hx-get="/operations/{op.id}"' in fragment
    assert "Testing the connection" in body
    assert "server.connection_test_requested" in actions()


def test_server_page_after_a_successful_check(client, logged_in, viewer):
    logged_in(viewer)
    server = make_server(status="ready", dokku_version="0.38.27", host_key_type="ssh-ed25519",
                         host_key_fingerprint="SHA256:" + "k" * 43, status_message="Connected as root; Dokku 0.38.27.")
    body = text(client.get(f"/servers/{server.id}"))
    assert "0.38.27" in body and "SHA256:" + "k" * 43 in body and "Connected as root" in body
    assert "Test connection" not in body  # viewers get no buttons


def test_host_key_mismatch_panel_shows_both_fingerprints_and_accept_for_admins(client, logged_in, admin, member):
    old, new = "SHA256:" + "o" * 43, "SHA256:" + "n" * 43
    server = make_server(status="host_key_mismatch", host_key_type="ssh-ed25519", host_key_fingerprint=old,
                         seen_host_key_type="ssh-ed25519", seen_host_key_fingerprint=new)
    logged_in(member)
    body = text(client.get(f"/servers/{server.id}"))
    assert "presented a different host key" in body and old in body and new in body
    assert "Accept the new host key" not in body and "An admin can accept" in body
    assert client.post(f"/servers/{server.id}/host-key/accept").status_code == 403
    client.post("/logout")
    logged_in(admin)
    body = text(client.get(f"/servers/{server.id}"))
    assert "Accept the new host key" in body
    response = client.post(f"/servers/{server.id}/host-key/accept")
    assert response.status_code == 303
    db.session.expire_all()
    assert server.host_key_fingerprint == new and server.seen_host_key_fingerprint is None
    assert "server.host_key_accepted" in actions() and operations("server.check")
    # accepting again: nothing to accept, said as a flash
    body = text(client.post(f"/servers/{server.id}/host-key/accept", follow_redirects=True))
    assert "nothing to accept" in body


def test_remove_server_needs_its_typed_name_and_leaves_the_server_alone(client, logged_in, admin):
    logged_in(admin)
    server = make_server(name="prod-1")
    make_app(server, name="api")
    page = text(client.get(f"/servers/{server.id}/remove"))
    assert f"restrict {server.public_key}" in page and "Nothing changes on the server itself" in page
    response = client.post(f"/servers/{server.id}/remove", data={"confirm": "prod"})
    assert response.status_code == 422
    assert "Type the server&#39;s name, prod-1, to confirm." in field_error(text(response), "confirm-name")
    assert count(Server) == 1 and count(App) == 1
    response = client.post(f"/servers/{server.id}/remove", data={"confirm": "prod-1"}, follow_redirects=True)
    body = text(response)
    assert "prod-1 was removed from the panel. Nothing was changed on the server itself" in body
    assert count(Server) == 0 and count(App) == 0 and operations() == []
    assert "server.deleted" in actions()


# --- apps --------------------------------------------------------------------------------


def test_create_app_goes_to_its_page_with_the_operation(client, logged_in, member):
    logged_in(member)
    server = make_server()
    response = client.post(f"/servers/{server.id}/apps", data={"name": "api"})
    assert response.status_code == 303 and response.headers["Location"] == f"/servers/{server.id}/apps/api"
    body = text(client.get(response.headers["Location"]))
    [op] = operations("app.create")
    assert f'id="op-{op.id}"' in body and "Create the app" in body
    assert "1 operation pending on api" in body
    assert "<title>api on " in body


def test_create_app_error_sits_next_to_the_name(client, logged_in, member):
    logged_in(member)
    server = make_server()
    make_app(server, name="api")
    response = client.post(f"/servers/{server.id}/apps", data={"name": "api"})
    assert response.status_code == 422
    assert "already has an app named api" in field_error(text(response), "app-name")
    response = client.post(f"/servers/{server.id}/apps", data={"name": "My_App"})
    assert "must begin with a lowercase letter" in field_error(text(response), "app-name")
    assert count(App) == 1 and operations() == []


def test_server_page_lists_apps_with_their_state(client, logged_in, viewer):
    logged_in(viewer)
    server = make_server()
    make_app(server, name="running", ps_status=({"deployed": True, "running": True, "processes": 2}))
    make_app(server, name="fresh", ps_status=({"deployed": False, "running": False, "processes": 0}))
    make_app(server, name="going", status="destroying")
    failed = make_app(server, name="broken")
    op = Operation(kind="app.create", category="app", server_id=server.id, server_name=server.name,
                   app_id=failed.id, app_name="broken", scope=f"app:{failed.id}", payload="{}")
    db.session.add(op)
    db.session.commit()
    finish_operation(op, "failed")
    body = text(client.get(f"/servers/{server.id}"))
    for name, state in (("running", "running"), ("fresh", "not deployed"), ("going", "being destroyed"),
                        ("broken", "creation failed")):
        row = re.search(rf'>{name}</strong>.*?</tr>', body, re.S).group(0)
        assert state in row, (name, row)
    assert "Create app" not in body and "Import apps" not in body


def test_empty_apps_list_says_what_to_do(client, logged_in, member):
    logged_in(member)
    server = make_server()
    assert "Create one below, or import the apps that already run on the server." in text(client.get(f"/servers/{server.id}"))


def test_import_apps(client, logged_in, member):
    logged_in(member)
    server = make_server()
    response = client.post(f"/servers/{server.id}/apps/import", headers=HTMX)
    assert response.status_code == 303
    [op] = operations("server.import")
    body = text(client.get(response.headers["Location"]))
    assert f'id="op-{op.id}"' in body and "Import apps" in body


def test_app_page_shows_status_and_how_to_deploy(client, logged_in, viewer):
    logged_in(viewer)
    server = make_server(host="prod-1.example.com")
    make_app(server, name="api", ps_status=({"deployed": True, "running": True, "processes": 3}))
    body = text(client.get(f"/servers/{server.id}/apps/api"))
    assert "git remote add dokku dokku@prod-1.example.com:api" in body
    assert "git push dokku main" in body
    assert "running" in body and "3 processes" in body
    other = make_server(host="10.0.0.9", port=2222)
    make_app(other, name="web")
    body = text(client.get(f"/servers/{other.id}/apps/web"))
    assert "git remote add dokku ssh://dokku@10.0.0.9:2222/web" in body
    assert client.get(f"/servers/{server.id}/apps/nope").status_code == 404


def test_restart_and_refresh(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    assert client.post(f"/servers/{app.server_id}/apps/api/restart", headers=HTMX).status_code == 303
    assert client.post(f"/servers/{app.server_id}/apps/api/refresh").status_code == 303
    assert [op.kind for op in operations()] == ["app.restart", "app.refresh"]
    body = text(client.get(f"/servers/{app.server_id}/apps/api"))
    assert "2 operations pending on api" in body and "restart the app (queued)" in body


def test_destroy_needs_the_typed_name(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    response = client.post(f"/servers/{app.server_id}/apps/api/destroy", data={"confirm": "ap"})
    assert response.status_code == 422
    assert "Type the app&#39;s name, api, to confirm." in field_error(text(response), "confirm-name")
    db.session.expire_all()
    assert app.status == "active" and operations() == []
    response = client.post(f"/servers/{app.server_id}/apps/api/destroy", data={"confirm": "api"}, follow_redirects=True)
    body = text(response)
    assert "api is being destroyed" in body and "It stays listed until Dokku confirms" in body
    assert [op.kind for op in operations()] == ["app.destroy"]
    assert "Restart" not in re.search(r'id="app-status".*?</section>', body, re.S).group(0)


# --- env vars ----------------------------------------------------------------------------


def test_env_values_are_hidden_and_revealed_by_post_only(client, logged_in, member, viewer):
    app = make_app(make_server(), name="api")
    set_env(app, TOKEN="tok-distinctive-value")
    logged_in(viewer)
    body = text(client.get(f"/servers/{app.server_id}/apps/api"))
    assert "TOKEN" in body and "tok-distinctive-value" not in body and "Reveal" not in body
    assert client.post(f"/servers/{app.server_id}/apps/api/env/TOKEN/reveal").status_code == 403
    client.post("/logout")
    logged_in(member)
    assert client.get(f"/servers/{app.server_id}/apps/api/env/TOKEN/reveal").status_code == 405
    response = client.post(f"/servers/{app.server_id}/apps/api/env/TOKEN/reveal", headers=HTMX)
    assert response.status_code == 200 and "tok-distinctive-value" in text(response)
    assert "<html" not in text(response)  # htmx gets the cell only
    assert response.headers["Cache-Control"] == "no-store"
    full = text(client.post(f"/servers/{app.server_id}/apps/api/env/TOKEN/reveal"))
    assert "<title>TOKEN · api · Intercity</title>" in full and "tok-distinctive-value" in full
    assert [e.target_label for e in entries("env_var.revealed")] == ["TOKEN", "TOKEN"]
    assert client.post(f"/servers/{app.server_id}/apps/api/env/NOPE/reveal").status_code == 404


def test_set_one_variable(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    response = client.post(f"/servers/{app.server_id}/apps/api/env",
                           data={"key": "DATABASE_URL", "value": "postgres://x", "restart": "y"}, headers=HTMX)
    assert response.status_code == 303 and response.headers["Location"].endswith("/apps/api#env")
    [op] = operations("env.apply")
    assert op.data == {"set": ["DATABASE_URL"], "unset": [], "restart": True}
    body = text(client.get(response.headers["Location"]))
    assert "Setting DATABASE_URL on api" in body and f'id="op-{op.id}"' in body


def test_unchecked_restart_maps_to_no_restart(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    client.post(f"/servers/{app.server_id}/apps/api/env", data={"key": "A", "value": "1"})
    paste(client, f"/servers/{app.server_id}/apps/api/env/paste", {"block": "B=2"})
    assert [op.data["restart"] for op in operations()] == [False, False]
    body = text(client.get(f"/servers/{app.server_id}/apps/api"))
    assert re.search(r'<input checked id="env-restart"|id="env-restart"[^>]*checked', body), "restart is on by default"


def test_env_form_errors_sit_next_to_the_field(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    response = client.post(f"/servers/{app.server_id}/apps/api/env", data={"key": "1BAD", "value": "x"})
    assert response.status_code == 422
    assert "Invalid key name" in field_error(text(response), "env-key")
    response = client.post(f"/servers/{app.server_id}/apps/api/env", data={"key": "BIG", "value": "x" * 70000})
    assert "64 KiB" in field_error(text(response), "env-value")
    assert count(EnvVar) == 0 and operations() == []


def test_a_value_dokku_cannot_store_is_refused_next_to_the_field_and_per_line(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    url = f"/servers/{app.server_id}/apps/api/env"
    response = client.post(url, data={"key": "Q", "value": 'it\'s "quoted"'})
    assert response.status_code == 422
    assert "ends with a double quote" in field_error(text(response), "env-value")
    response = client.post(url, data={"key": "BS", "value": "C:\\"})
    assert "ends with a backslash" in field_error(text(response), "env-value")
    response = client.post(url + "/paste", data={"block": "GOOD=1\r\nBS=dir\\\r\n"})
    lines = re.search(r'<ul class="line-errors" id="env-block-lines">(.*?)</ul>', text(response), re.S).group(1)
    assert re.findall(r"<strong>Line (\d+):</strong>", lines) == ["2"] and "ends with a backslash" in lines
    assert count(EnvVar) == 0 and operations() == []


def test_paste_three_variables_in_one_operation(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    block = "DATABASE_URL=postgres://u:p@db/app\r\nexport SECRET_KEY='s3cr3t'\r\n# comment\r\nPEM=\"a\r\nb\"\r\n"
    response = paste(client, f"/servers/{app.server_id}/apps/api/env/paste", {"block": block, "restart": "y"})
    assert response.status_code == 303
    [op] = operations("env.apply")
    assert op.data == {"set": ["DATABASE_URL", "SECRET_KEY", "PEM"], "unset": [], "restart": True}
    values = {v.key: v.value for v in db.session.scalars(select(EnvVar))}
    assert values == {"DATABASE_URL": "postgres://u:p@db/app", "SECRET_KEY": "s3cr3t", "PEM": "a\nb"}
    assert len([e for e in entries("env_var.created")]) == 3


def test_paste_errors_are_listed_per_line_and_nothing_is_applied(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    block = "GOOD=1\r\n2BAD=x\r\nGOOD=2\r\nstray-secret-line\r\n"
    response = client.post(f"/servers/{app.server_id}/apps/api/env/paste", data={"block": block, "restart": "y"})
    body = text(response)
    assert response.status_code == 422
    assert "Nothing was changed" in field_error(body, "env-block")
    lines = re.search(r'<ul class="line-errors" id="env-block-lines">(.*?)</ul>', body, re.S).group(1)
    assert re.findall(r"<strong>Line (\d+):</strong>", lines) == ["2", "3", "4"]
    assert "already set on line 1" in lines
    assert "stray-secret-line" not in lines  # the message does not echo the line
    assert "stray-secret-line" in body  # ...but the textarea keeps what was pasted, to fix it
    assert count(EnvVar) == 0 and operations() == [] and entries("env_var.created") == []


def test_a_paste_shows_what_it_will_do_before_it_does_it(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    set_env(app, SAME="1", OLD="x", UNTOUCHED="keep")
    url = f"/servers/{app.server_id}/apps/api/env/paste"
    block = "SAME=1\nOLD=y # now y\nNEW=z\n"
    body = text(client.post(url, data={"block": block}))
    preview = re.search(r'<div class="preview" role="status" id="env-paste-preview">(.*?)</div>', body, re.S).group(1)
    words = re.sub(r"<[^>]+>", "", preview)
    assert "add 1: NEW" in words and "change 1: OLD" in words and "leave 1 unchanged: SAME" in words
    assert "remove none" in words and "UNTOUCHED" not in words
    assert operations() == [] and count(EnvVar) == 3
    token = re.search(r'name="confirmed" value="([0-9a-f]+)"', body).group(1)
    # A block changed after its preview is previewed again, not applied.
    assert client.post(url, data={"block": block + "MORE=1\n", "confirmed": token}).status_code == 200
    assert operations() == []
    assert client.post(url, data={"block": block, "confirmed": token}).status_code == 303
    values = {v.key: v.value for v in db.session.scalars(select(EnvVar))}
    assert values == {"SAME": "1", "OLD": "y", "NEW": "z", "UNTOUCHED": "keep"}
    [op] = operations("env.apply")
    assert sorted(op.data["set"]) == ["NEW", "OLD"]


def test_edit_starts_from_the_current_value_which_is_an_audited_reveal(client, logged_in, member, viewer):
    logged_in(member)
    app = make_app(make_server(), name="api")
    set_env(app, TOKEN="old-distinctive\nsecond line", BLANK="")
    url = f"/servers/{app.server_id}/apps/api/env/TOKEN/edit"
    page = client.get(url)
    # A GET never shows it (links, prefetching): the page offers the audited POST.
    assert page.status_code == 200 and "old-distinctive" not in text(page) and "Change <code>TOKEN</code>" in text(page)
    assert entries("env_var.revealed") == []
    body = text(client.get(f"/servers/{app.server_id}/apps/api"))
    assert f'action="{url}"' in body and 'name="load" value="1"' in body
    assert '<span class="muted" id="env-value-BLANK">(empty)</span>' in body
    opened = client.post(url, data={"load": "1"})
    textarea = re.search(r'<textarea[^>]*id="env-edit-value"[^>]*>(.*?)</textarea>', text(opened), re.S).group(1)
    assert opened.status_code == 200 and textarea.strip("\r\n") == "old-distinctive\nsecond line"
    [revealed] = entries("env_var.revealed")
    assert revealed.target_label == "TOKEN" and revealed.actor_email == member.email
    blank = text(client.post(f"/servers/{app.server_id}/apps/api/env/BLANK/edit", data={"load": "1"}))
    assert "The current value is empty." in blank
    assert re.search(r'<textarea[^>]*id="env-edit-value"[^>]*>\s*</textarea>', blank)
    response = client.post(url, data={"value": "new\r\nvalue", "restart": "y"})
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.scalar(select(EnvVar).where(EnvVar.key == "TOKEN")).value == "new\nvalue"
    assert operations("env.apply")[0].data == {"set": ["TOKEN"], "unset": [], "restart": True}
    assert client.get(f"/servers/{app.server_id}/apps/api/env/NOPE/edit").status_code == 404


def test_remove_a_variable(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    set_env(app, A="1")
    response = client.post(f"/servers/{app.server_id}/apps/api/env/A/remove", data={"confirmed": "1"}, headers=HTMX)
    assert response.status_code == 303
    assert count(EnvVar) == 0 and operations("env.apply")[0].data == {"set": [], "unset": ["A"], "restart": True}
    body = text(client.post(f"/servers/{app.server_id}/apps/api/env/A/remove", data={"confirmed": "1"},
                            follow_redirects=True))
    assert "api has no variable A" in body


# --- domains -----------------------------------------------------------------------------


def test_add_and_remove_a_domain(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    response = client.post(f"/servers/{app.server_id}/apps/api/domains", data={"domain": "API.example.com"})
    assert response.status_code == 303
    domain = db.session.scalar(select(Domain))
    assert domain.hostname == "api.example.com"
    body = text(client.get(f"/servers/{app.server_id}/apps/api"))
    assert "api.example.com" in body and "Adding api.example.com to api" in body
    response = client.post(f"/servers/{app.server_id}/apps/api/domains/{domain.id}/remove", data={"confirmed": "1"})
    assert response.status_code == 303 and count(Domain) == 0
    assert [op.data for op in operations("domains.apply")] == [
        {"add": ["api.example.com"], "remove": []}, {"add": [], "remove": ["api.example.com"]}]


def test_domain_errors_sit_next_to_the_field(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    response = client.post(f"/servers/{app.server_id}/apps/api/domains", data={"domain": "https://x.com/"})
    assert response.status_code == 422
    assert "not a valid domain" in field_error(text(response), "domain-name")
    assert count(Domain) == 0 and operations() == []


def test_a_domain_of_another_app_cannot_be_removed_here(client, logged_in, member):
    logged_in(member)
    server = make_server()
    api, web = make_app(server, name="api"), make_app(server, name="web")
    db.session.add(Domain(app=web, hostname="web.example.com"))
    db.session.commit()
    domain = db.session.scalar(select(Domain))
    assert client.post(f"/servers/{server.id}/apps/api/domains/{domain.id}/remove").status_code == 404
    assert count(Domain) == 1


# --- deploy keys -------------------------------------------------------------------------


def test_deploy_key_fingerprint_is_shown_before_saving(client, logged_in, admin):
    logged_in(admin)
    server = make_server()
    url = f"/servers/{server.id}/deploy-keys"
    response = client.post(url, data={"name": "alice", "public_key": ED25519})
    body = text(response)
    assert response.status_code == 200
    assert "SHA256:mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4" in body and "Add key alice" in body
    assert count(DeployKey) == 0 and operations() == []
    response = client.post(url, data={"name": "alice", "public_key": ED25519,
                                      "confirmed": "SHA256:mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4"})
    assert response.status_code == 303
    [key] = db.session.scalars(select(DeployKey)).all()
    assert (key.name, key.added_by_email) == ("alice", admin.email)
    [op] = operations("deploy_keys.apply")
    body = text(client.get(url))
    assert f'id="op-{op.id}"' in body and "alice" in body and "ssh-ed25519" in body and admin.email in body


def test_a_key_changed_after_its_preview_is_previewed_again(client, logged_in, admin):
    logged_in(admin)
    server = make_server()
    from tests.support.panel import ED25519_OTHER

    response = client.post(f"/servers/{server.id}/deploy-keys", data={
        "name": "alice", "public_key": ED25519_OTHER, "confirmed": "SHA256:mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4"})
    assert response.status_code == 200 and count(DeployKey) == 0
    assert "SHA256:4y+KUxx+DLaitQJrLhVGbh6a18qIjaS0bHnpKiFqYRI" in text(response)


def test_deploy_key_errors_and_duplicates_are_explained(client, logged_in, admin):
    logged_in(admin)
    server = make_server(remote_keys=([{"name": "ci", "fingerprint": "SHA256:" + "c" * 43, "public_key": None}]))
    url = f"/servers/{server.id}/deploy-keys"
    body = text(client.post(url, data={"name": "bad name", "public_key": "ssh-rsa AAAA"}))
    assert "only contain letters" in field_error(body, "deploy-key-name")
    assert "public_key" in body and field_error(body, "deploy-key-public-key")
    response = client.post(url, data={"name": "ci", "public_key": ED25519})
    assert response.status_code == 422
    assert "Dokku refuses a second key with the same name" in field_error(text(response), "deploy-key-name")
    assert count(DeployKey) == 0


def test_keys_found_on_the_server_can_be_adopted(client, logged_in, admin, viewer):
    server = make_server(remote_keys=([{"name": "default", "fingerprint": "SHA256:" + "d" * 43,
                                                  "public_key": None}]))
    logged_in(viewer)
    body = text(client.get(f"/servers/{server.id}/deploy-keys"))
    assert "default" in body and ">Adopt</button>" not in body and "Add a deploy key" not in body
    client.post("/logout")
    logged_in(admin)
    assert ">Adopt</button>" in text(client.get(f"/servers/{server.id}/deploy-keys"))
    response = client.post(f"/servers/{server.id}/deploy-keys/adopt", data={"fingerprint": "SHA256:" + "d" * 43},
                           follow_redirects=True)
    assert "The panel now manages deploy key default. Nothing changed on the server." in text(response)
    assert db.session.scalar(select(DeployKey)).adopted is True and operations() == []


def test_remove_and_refresh_deploy_keys(client, logged_in, admin):
    logged_in(admin)
    server = make_server()
    key = DeployKey(server=server, name="alice", public_key=ED25519, key_type="ssh-ed25519",
                    fingerprint="SHA256:mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4", added_by_email=admin.email)
    db.session.add(key)
    db.session.commit()
    assert client.post(f"/servers/{server.id}/deploy-keys/{key.id}/remove", data={"confirmed": "1"}).status_code == 303
    assert client.post(f"/servers/{server.id}/deploy-keys/refresh").status_code == 303
    assert [op.kind for op in operations()] == ["deploy_keys.apply", "server.refresh_keys"]
    assert count(DeployKey) == 0


def _removable(kind, member, admin, logged_in):
    """A server with one env var, one domain and one deploy key; the removal's URL, row and question."""
    server = make_server()
    app = make_app(server, name="api")
    set_env(app, A="1")
    db.session.add(Domain(app=app, hostname="api.example.com"))
    db.session.add(DeployKey(server=server, name="alice", public_key=ED25519, key_type="ssh-ed25519",
                             fingerprint="SHA256:mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4",
                             added_by_email=admin.email))
    db.session.commit()
    base = f"/servers/{server.id}"
    if kind == "env":
        logged_in(member)
        return f"{base}/apps/api/env/A/remove", EnvVar, "Remove A from api? The app restarts.", {"restart": "on"}
    if kind == "domain":
        logged_in(member)
        domain = db.session.scalar(select(Domain))
        return f"{base}/apps/api/domains/{domain.id}/remove", Domain, "Remove api.example.com from api?", {}
    logged_in(admin)
    key = db.session.scalar(select(DeployKey))
    return (f"{base}/deploy-keys/{key.id}/remove", DeployKey,
            f"Remove deploy key alice from {server.name}? Pushes with it stop working.", {})


@pytest.mark.parametrize("kind", ["env", "domain", "deploy_key"])
def test_a_removal_without_javascript_asks_first(client, logged_in, member, admin, kind):
    url, model, question, data = _removable(kind, member, admin, logged_in)
    response = client.post(url, data=data)
    assert response.status_code == 200
    body = text(response)
    assert question in body
    assert f'action="{url}"' in body and 'name="confirmed" value="1"' in body and ">Remove</button>" in body
    assert all(f'name="{name}" value="{value}"' in body for name, value in data.items())
    assert count(model) == 1 and operations() == []
    response = client.post(url, data={**data, "confirmed": "1"})
    assert response.status_code == 303
    assert count(model) == 0 and len(operations()) == 1


def test_server_page_lists_deploy_keys(client, logged_in, viewer):
    logged_in(viewer)
    server = make_server()
    db.session.add(DeployKey(server=server, name="alice", public_key=ED25519, key_type="ssh-ed25519",
                             fingerprint="SHA256:abc", added_by_email="admin@example.com"))
    db.session.commit()
    body = text(client.get(f"/servers/{server.id}"))
    section = re.search(r'id="deploy-keys".*?</section>', body, re.S).group(0)
    assert "alice" in section and "SHA256:abc" in section and "admin@example.com" in section


# --- live operation status -----------------------------------------------------------------


def test_a_pending_operation_polls_and_a_final_one_does_not(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    client.post(f"/servers/{app.server_id}/apps/api/restart")
    [op] = operations()
    response = client.get(f"/operations/{op.id}", headers=HTMX)
    body = text(response)
    assert body.lstrip().startswith("<div") and 'hx-trigger="every 1s"' in body and "pending" in body
    assert "HX-Trigger-After-Settle" not in response.headers
    finish_operation(op, "succeeded", runs=[(["dokku", "ps:restart", "api"], 0, "-----> Restarting app api", "")])
    response = client.get(f"/operations/{op.id}", headers=HTMX)
    body = text(response)
    assert "hx-trigger" not in body and "applied" in body and "Retry" not in body
    # the regions a restart refreshes reload, and the activity list with them
    assert response.headers["HX-Trigger-After-Settle"] == ("refresh-app-status, refresh-processes, refresh-deploys, "
                                                           "refresh-recent-region")
    # without htmx it is a page of its own
    page = text(client.get(f"/operations/{op.id}"))
    assert "<title>Operation #" in page and "dokku ps:restart api" in page


def test_a_poll_answers_with_the_card_alone(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    client.post(f"/servers/{app.server_id}/apps/api/restart")
    [op] = operations()
    page = client.get(f"/servers/{app.server_id}/apps/api")
    poll = client.get(f"/operations/{op.id}", headers=HTMX)
    assert poll.status_code == page.status_code == 200
    body = text(poll)
    assert body.lstrip().startswith(f'<div id="op-{op.id}"') and "<html" not in body
    assert len(poll.data) * 5 < len(page.data)  # a card, not a page
    assert "HX-Request" in poll.headers["Vary"]


def test_a_region_reload_answers_with_its_fragments_alone(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    page_url = f"/servers/{app.server_id}/apps/api"
    page = client.get(page_url)
    for region, also in (("app-status", ["app-head"]), ("env", []), ("domains", []),
                         ("recent-region", ["recent-activity"]), ("deploy-source", []), ("app-tls", []),
                         ("processes", ["app-head"]), ("deploys", [])):
        response = client.get(page_url, query_string={"region": region}, headers=HTMX)
        body = text(response)
        ids = re.findall(r'<(?:div|section)[^>]* id="([^"]+)"', body)
        assert ids[0] == region and set(also) <= set(ids), (region, ids)
        assert "<html" not in body and len(response.data) * 2 < len(page.data)
    # every region of the page reloads only on the events of the kinds that refresh it
    triggers = dict(re.findall(r'id="([^"]+)" hx-get="[^"]*" hx-select="[^"]*" hx-target="this" hx-swap="outerHTML"'
                               r'\s+hx-vals=\'[^\']*\' hx-trigger="([^"]+)"', text(page)))
    assert triggers == {region: f"refresh-{region} from:body"
                        for region in ("app-status", "recent-region", "deploy-source", "app-tls", "processes", "deploys")}
    # without htmx, or for a region the page does not have, the whole page
    assert "<html" in text(client.get(page_url, query_string={"region": "app-status"}))
    assert "<html" in text(client.get(page_url, query_string={"region": "nope"}, headers=HTMX))


def test_server_and_key_pages_reload_their_regions_as_fragments(client, logged_in, admin):
    logged_in(admin)
    server = make_server()
    for url, region, also in ((f"/servers/{server.id}", "server-status", ["server-head"]),
                              (f"/servers/{server.id}", "apps-list", []),
                              (f"/servers/{server.id}", "recent-region", ["recent-activity"]),
                              (f"/servers/{server.id}", "server-tls", []),
                              (f"/servers/{server.id}/deploy-keys", "remote-keys", [])):
        body = text(client.get(url, query_string={"region": region}, headers=HTMX))
        ids = re.findall(r'<(?:div|section)[^>]* id="([^"]+)"', body)
        assert "<html" not in body and ids[0] == region and set(also) <= set(ids), (region, ids)


def test_each_env_row_says_whether_its_change_reached_the_server(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    url = f"/servers/{app.server_id}/apps/api"
    client.post(url + "/env", data={"key": "OFFLINE_VAR", "value": "x1"})
    client.post(url + "/env", data={"key": "GOOD", "value": "x2"})
    client.post(url + "/env", data={"key": "GONE", "value": "x3"})
    offline, good, gone = operations("env.apply")
    row = lambda body, key: re.search(rf"<code>{key}</code>.*?</tr>", body, re.S).group(0)  # noqa: E731
    assert ">pending<" in row(text(client.get(url)), "OFFLINE_VAR")
    finish_operation(offline, "failed", reason="prod-1 is unreachable (connection refused).")
    finish_operation(good, "succeeded")
    finish_operation(gone, "succeeded")
    readings.env_seen(app.id, {"GOOD": "x2", "GONE": "x3"})  # the read-back of a change that succeeded
    client.post(url + "/env/GONE/remove", data={"confirmed": "1"})
    [removal] = [op for op in operations("env.apply") if op.data["unset"] == ["GONE"]]
    finish_operation(removal, "failed", reason="Dokku said no.")
    body = text(client.get(url))  # a reload still says it: the failed value never reached the server
    assert ">failed<" in row(body, "OFFLINE_VAR") and "not on the server: prod-1 is unreachable" in row(body, "OFFLINE_VAR")
    assert f'href="/operations/{offline.id}"' in row(body, "OFFLINE_VAR")
    assert ">applied<" in row(body, "GOOD") and ">failed<" not in row(body, "GOOD")
    assert re.search(r"Removing <code>GONE</code>: .*still on the server: Dokku said no\.", body)


def test_a_domain_whose_change_failed_says_so_after_a_reload(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    url = f"/servers/{app.server_id}/apps/api"
    client.post(url + "/domains", data={"domain": "api.example.com"})
    [op] = operations("domains.apply")
    finish_operation(op, "failed", reason="prod-1 is unreachable.")
    item = re.search(r'<li><span class="mono">api.example.com</span>.*?</li>', text(client.get(url)), re.S).group(0)
    assert ">failed<" in item and "not on the server: prod-1 is unreachable." in item


def test_the_flash_of_started_work_gives_way_to_its_outcome(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    page = text(client.post(f"/servers/{app.server_id}/apps/api/restart", follow_redirects=True))
    [op] = operations()
    assert re.search(rf'<div class="flash info" id="flash-op-{op.id}">Restarting api…</div>', page)
    finish_operation(op, "failed", reason="App api has not been deployed yet.")
    body = text(client.get(f"/operations/{op.id}", headers=HTMX))
    oob = re.search(rf'<div id="flash-op-{op.id}" hx-swap-oob="true" class="flash error">(.*?)</div>', body, re.S)
    assert oob and "failed: App api has not been deployed yet." in oob.group(1)
    assert "Restarting api…" not in body


def test_after_a_destroy_the_app_page_says_it_is_gone(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    server_id = app.server_id
    client.post(f"/servers/{server_id}/apps/api/destroy", data={"confirm": "api"})
    [op] = operations()
    db.session.delete(app)  # what the worker does once Dokku confirms
    finish_operation(op, "succeeded")
    response = client.get(f"/operations/{op.id}", headers=HTMX)
    # The poll ends the page: the browser goes to the app's address, which says it is gone.
    assert response.headers["HX-Redirect"] == f"/servers/{server_id}/apps/api"
    assert "HX-Trigger-After-Settle" not in response.headers
    gone = client.get(f"/servers/{server_id}/apps/api")
    body = text(gone)
    assert gone.status_code == 404 and "api is gone from" in body and "destroyed" in body
    assert f'href="/servers/{server_id}/apps/api/audit"' in body and "hx-get" not in body
    assert client.get(f"/servers/{server_id}/apps/never-existed").status_code == 404


def test_a_failed_operation_shows_its_reason_output_and_retry(client, logged_in, member, viewer):
    app = make_app(make_server(), name="api")
    set_env(app, A="1")
    from intercity.services import env as env_service

    op = env_service.set_var(app, member, key="A", value="2").operation
    db.session.commit()
    finish_operation(op, "failed", reason="Dokku could not restart api: container failed to start",
                     runs=[(["dokku", "--quiet", "config:set", "--encoded", "api", "A=[redacted]"], 0, "",
                            " !     Failure while restarting app: container failed to start")])
    logged_in(viewer)
    body = text(client.get(f"/servers/{app.server_id}/apps/api"))
    assert "Dokku could not restart api" in body and "Failure while restarting app" in body
    assert "A=[redacted]" in body and "Retry" not in body
    client.post("/logout")
    logged_in(member)
    body = text(client.get(f"/servers/{app.server_id}/apps/api"))
    assert f'action="/operations/{op.id}/retry"' in body
    response = client.post(f"/operations/{op.id}/retry", headers=HTMX)
    assert response.status_code == 200
    retry = operations()[-1]
    assert retry.retry_of_id == op.id and retry.data == op.data
    assert f'id="op-{retry.id}"' in text(response) and 'hx-trigger="every 1s"' in text(response)
    # the failed one now points at its retry instead of offering another
    body = text(client.get(f"/operations/{op.id}"))
    assert f"Retried as" in body and f'action="/operations/{op.id}/retry"' not in body
    response = client.post(f"/operations/{op.id}/retry", data={"next": f"/servers/{app.server_id}/apps/api"},
                           follow_redirects=True)
    assert "already on its way" in text(response)
    assert "operation.retry_requested" in actions()


def test_retry_without_javascript_goes_back_to_the_page(client, logged_in, admin):
    logged_in(admin)
    server = make_server()
    client.post(f"/servers/{server.id}/check")
    op = finish_operation(operations()[0], "failed", reason="Connection refused by 127.0.0.1:22.")
    response = client.post(f"/operations/{op.id}/retry", data={"next": f"/servers/{server.id}"})
    assert response.status_code == 303 and response.headers["Location"] == f"/servers/{server.id}"
    assert "Retrying" in text(client.get(f"/servers/{server.id}"))
    # a `next` that leaves the site is ignored
    op2 = finish_operation(operations()[-1], "failed")
    response = client.post(f"/operations/{op2.id}/retry", data={"next": "//evil.example/"})
    assert response.headers["Location"] == f"/servers/{server.id}"


def test_members_cannot_retry_server_work(client, logged_in, admin, member):
    server = make_server()
    logged_in(admin)
    client.post(f"/servers/{server.id}/check")
    op = finish_operation(operations()[0], "failed")
    client.post("/logout")
    logged_in(member)
    assert "Retry" not in text(client.get(f"/servers/{server.id}"))
    assert client.post(f"/operations/{op.id}/retry").status_code == 403
    assert len(operations()) == 1


def test_an_app_with_pending_operations_says_so(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    body = text(client.get(f"/servers/{app.server_id}/apps/api"))
    assert "pending on api" not in body
    client.post(f"/servers/{app.server_id}/apps/api/env", data={"key": "A", "value": "1"})
    client.post(f"/servers/{app.server_id}/apps/api/domains", data={"domain": "a.example.com"})
    body = text(client.get(f"/servers/{app.server_id}/apps/api"))
    assert "2 operations pending on api" in body and "2 pending" in body
    for op in operations():
        finish_operation(op, "succeeded")
    assert "pending on api" not in text(client.get(f"/servers/{app.server_id}/apps/api"))


# --- htmx and no-JS ----------------------------------------------------------------------


def test_forms_work_without_javascript_and_htmx_enhances_them(client, logged_in, admin):
    logged_in(admin)
    server = make_server()
    app = make_app(server, name="api")
    set_env(app, A="1")
    pages = [f"/servers/{server.id}", f"/servers/{server.id}/apps/api", f"/servers/{server.id}/deploy-keys"]
    for url in pages:
        body = text(client.get(url))
        forms = re.findall(r"<form\b[^>]*>", body)
        assert forms
        for form in forms:
            assert 'method="post"' in form, form
            action = re.search(r'action="([^"]*)"', form)
            if "hx-post" in form:
                assert action and f'hx-post="{action.group(1)}"' in form, form  # the same URL with and without JS
        assert 'csrf_token' in body
    # regions a form swaps exist on the page it redirects to
    body = text(client.get(f"/servers/{server.id}/apps/api"))
    for region in re.findall(r'hx-select="#([\w-]+)"', body):
        assert f'id="{region}"' in body, region


def test_csrf_is_required_for_panel_forms(make_app, member):
    from tests.support.builders import make_app as build_app

    csrf_app = make_app(WTF_CSRF_ENABLED=True)
    with csrf_app.app_context():
        server = make_server()
        build_app(server, name="api")
        client = csrf_app.test_client()
        log_in(client, member)
        assert client.post(f"/servers/{server.id}/apps/api/restart").status_code == 400
        assert operations() == []


def test_regions_reload_from_the_page_even_when_it_answered_a_post(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    body = text(client.post(f"/servers/{app.server_id}/apps/api/domains", data={"domain": "not a domain"}))
    reloads = re.findall(r'hx-get="([^"]+)" hx-select="#[\w-]+" hx-target="this"', body)
    assert reloads and set(reloads) == {f"/servers/{app.server_id}/apps/api"}
    for url in reloads:
        assert client.get(url, headers=HTMX).status_code == 200


# --- htmx answers ---------------------------------------------------------------------------


def test_error_answers_to_htmx_are_a_message_shown_in_place(client, logged_in, viewer):
    logged_in(viewer)
    server = make_server()
    page = text(client.get(f"/servers/{server.id}"))
    config = json.loads(html.unescape(re.search(r'<meta name="htmx-config" content=\'([^\']+)\'>', page).group(1)))
    handled = {rule["code"]: rule for rule in config["responseHandling"]}
    assert handled["422"] == {"code": "422", "swap": True}
    errors = handled["(403|404|409|429|500)"]
    assert (errors["target"], errors["select"], errors["swap"]) == ("#flashes", "#htmx-error", True)
    for url, method, code in ((f"/servers/{server.id + 1}", "get", 404), (f"/servers/{server.id}/check", "post", 403)):
        response = getattr(client, method)(url, headers=HTMX)
        body = text(response)
        assert response.status_code == code and body.startswith('<div id="htmx-error"') and "<html" not in body
        # without htmx the same answer is a page
        assert "<html" in text(getattr(client, method)(url))
    # one way for CSRF to reach htmx: the body's hx-headers, no script reading a meta tag
    assert page.count("X-CSRFToken") == 1 and 'name="csrf-token"' not in page
    with client.get("/static/app.js") as response:
        script = response.get_data(as_text=True)
    assert "422" not in script and "X-CSRFToken" not in script
