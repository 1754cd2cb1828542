"""The panel's services: what each action changes, which operation it registers, which entries it leaves.

Operations are enqueued on a real Redis queue nobody consumes, so every test sees exactly what an
action registered (the end-to-end tests in test_panel_e2e.py run them against sshd and the double).
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from intercity import crypto
from intercity.extensions import db
from intercity.models import App, DeployKey, Domain, EnvVar, Server
from intercity.services import apps as app_service
from intercity.services import deploy_keys as key_service
from intercity.services import domains as domain_service
from intercity.services import env as env_service
from intercity.services import operations as operation_service
from intercity.services import servers as server_service
from intercity.services.env import EnvBlockError, parse_block
from intercity.services.permissions import NotAllowed
from intercity.validation import ValidationError
from tests.support.builders import make_app, make_server
from tests.support.panel import ED25519, ED25519_OTHER, acting, entries, finish_operation, operations
from tests.support.panel import no_worker  # noqa: F401  (the fixture, used below)

pytestmark = pytest.mark.usefixtures("no_worker")


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


# --- servers -----------------------------------------------------------------------------


def test_add_server_generates_a_key_pair_and_is_audited(admin):
    with acting(admin):
        server = server_service.add_server(admin, name="prod-1", host="Prod-1.Example.com", port="2222",
                                           ssh_user="intercity-ops", expected_fingerprint="abc" * 14 + "d")
        db.session.commit()
    assert (server.host, server.port, server.ssh_user, server.status) == ("prod-1.example.com", 2222, "intercity-ops", "new")
    assert server.expected_host_key_fingerprint == "SHA256:" + "abc" * 14 + "d"
    assert server.public_key.startswith("ssh-ed25519 ") and server.public_key.endswith(" intercity@prod-1")
    # the private key is stored encrypted and only readable with the panel's key
    assert b"PRIVATE KEY" not in server.private_key_encrypted
    assert server.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    created = entries("server.created")
    assert len(created) == 1 and created[0].actor_email == admin.email
    assert "private" not in created[0].diff.lower()
    assert operations() == []  # nothing reaches the server before a connection test


@pytest.mark.parametrize("fields, field, message", [
    ({"name": ""}, "name", "Enter a name"),
    ({"name": "-bad"}, "name", "Server names start"),
    ({"host": "not a host"}, "host", "is not a hostname"),
    ({"port": "ssh"}, "port", "must be a number"),
    ({"port": "70000"}, "port", "between 1 and 65535"),
    ({"ssh_user": "dokku"}, "ssh_user", "dokku user cannot be used"),
    ({"ssh_user": "Bad User"}, "ssh_user", "not a valid Unix user"),
    ({"expected_fingerprint": "MD5:aa:bb"}, "host_key_fingerprint", "SHA256 fingerprint"),
])
def test_add_server_refuses_bad_fields_and_keeps_nothing(admin, fields, field, message):
    values = {"name": "prod-1", "host": "10.0.0.5", "port": "22", "ssh_user": "root", **fields}
    with pytest.raises(ValidationError) as raised:
        server_service.add_server(admin, **values)
    db.session.rollback()
    assert raised.value.field == field and message in raised.value.message
    assert count(Server) == 0 and entries("server.created") == []


def test_server_names_are_unique_whatever_their_case(admin):
    make_server(name="prod-1")
    with pytest.raises(ValidationError, match="already in the panel") as raised:
        server_service.add_server(admin, name="PROD-1", host="10.0.0.5")
    assert raised.value.field == "name"


def test_only_admins_manage_servers(member):
    with pytest.raises(NotAllowed):
        server_service.add_server(member, name="prod-1", host="10.0.0.5")
    server = make_server()
    for call in (lambda: server_service.request_connection_test(server, member),
                 lambda: server_service.accept_host_key(server, member),
                 lambda: server_service.remove_server(server, member, confirm=server.name)):
        with pytest.raises(NotAllowed):
            call()
    db.session.rollback()
    assert db.session.get(Server, server.id) is not None and operations() == []


def test_setup_lines_for_root_and_for_a_sudo_user(app):
    root = make_server(ssh_user="root")
    ops = make_server(ssh_user="intercity-ops")
    assert server_service.authorized_keys_line(root) == "restrict " + root.public_key
    assert server_service.sudoers_line(root) is None
    assert server_service.sudoers_line(ops) == "intercity-ops ALL=(root) NOPASSWD: /usr/bin/dokku"


def test_connection_test_registers_a_server_check(admin):
    server = make_server()
    with acting(admin):
        op = server_service.request_connection_test(server, admin)
        db.session.commit()
    assert (op.kind, op.scope, op.app_id, op.status, op.requested_by_email) == (
        "server.check", f"server:{server.id}", None, "queued", admin.email)
    [entry] = entries("server.connection_test_requested")
    assert entry.operation_id == op.id and entry.server_name == server.name


def test_accepting_a_changed_host_key_moves_the_seen_key_and_tests_again(admin):
    server = make_server(host_key_type="ssh-ed25519", host_key_fingerprint="SHA256:" + "o" * 43,
                         seen_host_key_type="ssh-ed25519", seen_host_key_fingerprint="SHA256:" + "n" * 43,
                         status="host_key_mismatch")
    with acting(admin):
        op = server_service.accept_host_key(server, admin)
        db.session.commit()
    assert server.host_key_fingerprint == "SHA256:" + "n" * 43
    assert server.seen_host_key_fingerprint is None and server.status == "new"
    assert op.kind == "server.check"
    [entry] = entries("server.host_key_accepted")
    assert entry.category == "security" and entry.actor_email == admin.email
    assert json.loads(entry.diff)["host_key_fingerprint"] == ["SHA256:" + "o" * 43, "SHA256:" + "n" * 43]


def test_only_the_key_the_admin_was_shown_is_accepted(admin):
    server = make_server(host_key_type="ssh-ed25519", host_key_fingerprint="SHA256:" + "o" * 43,
                         seen_host_key_type="ssh-ed25519", seen_host_key_fingerprint="SHA256:" + "n" * 43,
                         status="host_key_mismatch")
    with pytest.raises(ValidationError, match="presented another key since"):
        server_service.accept_host_key(server, admin, fingerprint="SHA256:" + "x" * 43)
    db.session.rollback()
    assert server.host_key_fingerprint == "SHA256:" + "o" * 43 and operations() == []
    server_service.accept_host_key(server, admin, fingerprint="SHA256:" + "n" * 43)
    assert server.host_key_fingerprint == "SHA256:" + "n" * 43


def test_there_is_nothing_to_accept_without_a_mismatch(admin):
    server = make_server(host_key_type="ssh-ed25519", host_key_fingerprint="SHA256:" + "o" * 43)
    with pytest.raises(ValidationError, match="nothing to accept"):
        server_service.accept_host_key(server, admin)


def test_removing_a_server_needs_its_name_and_forgets_everything_without_running_anything(admin):
    server = make_server(name="prod-1")
    app = make_app(server, name="api")
    var = EnvVar(app=app, key="A")
    var.value = "1"
    db.session.add_all([var, Domain(app=app, hostname="api.example.com"),
                        DeployKey(server=server, name="alice", public_key=ED25519, key_type="ssh-ed25519",
                                  fingerprint="SHA256:x", adopted=False)])
    db.session.commit()
    before = operations()
    with pytest.raises(ValidationError) as raised:
        server_service.remove_server(server, admin, confirm="prod")
    assert raised.value.field == "confirm"
    db.session.rollback()
    assert db.session.get(Server, server.id) is not None
    with acting(admin):
        server_service.remove_server(server, admin, confirm="prod-1")
        db.session.commit()
    assert (count(Server), count(App), count(EnvVar), count(Domain), count(DeployKey)) == (0, 0, 0, 0, 0)
    assert operations() == before  # the server itself is untouched
    [deleted] = entries("server.deleted")
    assert deleted.actor_email == admin.email
    caused = {e.action for e in entries() if e.caused_by}
    assert {"app.deleted", "env_var.deleted", "domain.deleted", "deploy_key.deleted"} <= caused


# --- apps --------------------------------------------------------------------------------


def test_create_app_adds_the_row_and_an_app_create_operation(member):
    server = make_server()
    with acting(member):
        app = app_service.create_app(server, member, name="api")
        db.session.commit()
    [op] = operations()
    assert (op.kind, op.app_id, op.app_name, op.scope) == ("app.create", app.id, "api", f"app:{app.id}")
    [entry] = entries("app.created")
    assert entry.actor_email == member.email and entry.operation_id == op.id


@pytest.mark.parametrize("name, message", [("", "Enter an app name"), ("Api", "must begin"),
                                           ("my_app", "must begin"), ("-x", "must begin")])
def test_create_app_validates_names_like_dokku(member, name, message):
    server = make_server()
    with pytest.raises(ValidationError, match=message) as raised:
        app_service.create_app(server, member, name=name)
    db.session.rollback()
    assert raised.value.field == "name" and count(App) == 0 and operations() == []


def test_create_app_explains_duplicates_and_apps_being_destroyed(member):
    server = make_server()
    make_app(server, name="api")
    make_app(server, name="old", status="destroying")
    with pytest.raises(ValidationError, match="already has an app named api"):
        app_service.create_app(server, member, name="api")
    with pytest.raises(ValidationError, match="still being destroyed"):
        app_service.create_app(server, member, name="old")
    # the same name on another server is fine
    other = make_server()
    app_service.create_app(other, member, name="api")


def test_viewers_change_nothing(viewer):
    server = make_server()
    app = make_app(server)
    calls = [
        lambda: app_service.create_app(server, viewer, name="x"),
        lambda: app_service.import_apps(server, viewer),
        lambda: app_service.restart_app(app, viewer),
        lambda: app_service.refresh_app(app, viewer),
        lambda: app_service.destroy_app(app, viewer, confirm=app.name),
        lambda: env_service.set_var(app, viewer, key="A", value="1"),
        lambda: env_service.paste_block(app, viewer, text="A=1"),
        lambda: env_service.reveal(app, viewer, key="A"),
        lambda: domain_service.add_domain(app, viewer, hostname="x.example.com"),
    ]
    for call in calls:
        with pytest.raises(NotAllowed):
            call()
    db.session.rollback()
    assert operations() == [] and count(EnvVar) == 0 and count(Domain) == 0


def test_import_registers_one_server_import(member):
    server = make_server()
    with acting(member):
        op = app_service.import_apps(server, member)
        db.session.commit()
    assert (op.kind, op.data, op.app_id) == ("server.import", {"apps": None}, None)
    assert [e.operation_id for e in entries("server.import_requested")] == [op.id]


def test_destroy_needs_the_typed_name_then_marks_the_app_until_dokku_confirms(member):
    app = make_app(make_server(), name="api")
    with pytest.raises(ValidationError) as raised:
        app_service.destroy_app(app, member, confirm="API")
    assert raised.value.field == "confirm"
    db.session.rollback()
    assert app.status == "active" and operations() == []
    with acting(member):
        op = app_service.destroy_app(app, member, confirm="api")
        db.session.commit()
    assert app.status == "destroying" and op.kind == "app.destroy"
    assert db.session.get(App, app.id) is not None  # the row goes when the worker has destroyed it
    assert [e.operation_id for e in entries("app.destroy_requested")] == [op.id]
    with pytest.raises(ValidationError, match="already being destroyed"):
        app_service.destroy_app(app, member, confirm="api")
    with pytest.raises(ValidationError, match="being destroyed"):
        app_service.restart_app(app, member)
    with pytest.raises(ValidationError, match="being destroyed"):
        env_service.set_var(app, member, key="A", value="1")


def test_restart_and_refresh(member):
    app = make_app(make_server())
    with acting(member):
        restart = app_service.restart_app(app, member)
        refresh = app_service.refresh_app(app, member)
        db.session.commit()
    assert (restart.kind, refresh.kind) == ("app.restart", "app.refresh")
    assert [e.operation_id for e in entries("app.restart_requested")] == [restart.id]
    assert app_service.ps_status(app) is None
    app.ps_status = ({"deployed": True, "running": True, "processes": 2})
    assert app_service.ps_status(app) == {"deployed": True, "running": True, "processes": 2}


# --- env vars ----------------------------------------------------------------------------


def test_set_var_stores_the_value_encrypted_and_names_only_the_key_in_the_operation(member):
    app = make_app(make_server())
    secret = "postgres://u:p4ss@db/x"
    with acting(member):
        result = env_service.set_var(app, member, key="DATABASE_URL", value=secret, restart=False)
        db.session.commit()
    var = db.session.scalar(select(EnvVar))
    assert var.value == secret and secret.encode() not in var.value_encrypted
    assert result.operation.data == {"set": ["DATABASE_URL"], "unset": [], "restart": False}
    [entry] = entries("env_var.created")
    assert entry.category == "security" and secret not in entry.diff
    assert crypto.fingerprint(secret) in entry.diff


def test_setting_the_same_value_again_changes_nothing(member):
    app = make_app(make_server())
    env_service.set_var(app, member, key="A", value="1")
    db.session.commit()
    result = env_service.set_var(app, member, key="A", value="1")
    db.session.commit()
    assert result.operation is None and result.unchanged == ["A"]
    assert len(operations("env.apply")) == 1 and len(entries("env_var.updated")) == 0


def test_browser_line_breaks_become_lf(member):
    app = make_app(make_server())
    env_service.set_var(app, member, key="PEM", value="line one\r\nline two\r\n")
    env_service.paste_block(app, member, text='A="x\r\ny"\r\nB=plain\r\n')
    db.session.commit()
    values = {v.key: v.value for v in db.session.scalars(select(EnvVar))}
    assert values == {"PEM": "line one\nline two\n", "A": "x\ny", "B": "plain"}


@pytest.mark.parametrize("key", ["1A", "A-B", "A B", ""])
def test_env_keys_are_validated_like_dokku_does(member, key):
    app = make_app(make_server())
    with pytest.raises(ValidationError) as raised:
        env_service.set_var(app, member, key=key, value="x")
    assert raised.value.field == "key"


def test_values_over_64_kib_are_refused(member):
    app = make_app(make_server())
    with pytest.raises(ValidationError, match="64 KiB") as raised:
        env_service.set_var(app, member, key="BIG", value="x" * (64 * 1024 + 1))
    assert raised.value.field == "value"
    env_service.set_var(app, member, key="BIG", value="x" * (64 * 1024))


def test_paste_sets_several_keys_in_one_operation_with_one_entry_each(member):
    app = make_app(make_server())
    make_var = EnvVar(app=app, key="KEEP")
    make_var.value = "same"
    db.session.add(make_var)
    db.session.commit()
    with acting(member):
        result = env_service.paste_block(app, member, text="A=1\nB=2\nC=3\nKEEP=same\n", restart=True)
        db.session.commit()
    assert result.set == ["A", "B", "C"] and result.unchanged == ["KEEP"]
    [op] = operations("env.apply")
    assert op.data == {"set": ["A", "B", "C"], "unset": [], "restart": True}
    created = entries("env_var.created")
    assert sorted(e.target_label for e in created if e.actor_email == member.email) == ["A", "B", "C"]
    assert all(e.operation_id == op.id for e in created if e.actor_email == member.email)


def test_a_bad_line_in_a_paste_changes_nothing_and_every_bad_line_is_named(member):
    app = make_app(make_server())
    text = "GOOD=1\n1BAD=2\nno equals here\nALSO_GOOD='x'\nQ=\"unterminated\n"
    with pytest.raises(EnvBlockError) as raised:
        env_service.paste_block(app, member, text=text)
    db.session.rollback()
    numbers = [number for number, _ in raised.value.lines]
    assert numbers == [2, 3, 5]
    assert raised.value.field == "block"
    # a stray line may be part of a secret: it is not echoed back
    assert "no equals here" not in raised.value.message
    assert count(EnvVar) == 0 and operations() == [] and entries("env_var.created") == []


def test_edit_and_remove(member):
    app = make_app(make_server())
    env_service.set_var(app, member, key="A", value="1")
    db.session.commit()
    with acting(member):
        edited = env_service.edit_var(app, member, key="A", value="2", restart=False)
        db.session.commit()
        removed = env_service.remove_var(app, member, key="A")
        db.session.commit()
    assert edited.operation.data == {"set": ["A"], "unset": [], "restart": False}
    assert removed.operation.data == {"set": [], "unset": ["A"], "restart": True}
    assert count(EnvVar) == 0
    assert [e.action for e in entries() if e.target_type == "env_var"] == [
        "env_var.created", "env_var.updated", "env_var.deleted"]
    with pytest.raises(ValidationError):
        env_service.edit_var(app, member, key="A", value="3")
    with pytest.raises(ValidationError):
        env_service.remove_var(app, member, key="A")


def test_reveal_returns_the_value_and_records_a_security_entry(member):
    app = make_app(make_server(name="prod-1"), name="api")
    env_service.set_var(app, member, key="TOKEN", value="tok-secret")
    db.session.commit()
    with acting(member):
        assert env_service.reveal(app, member, key="TOKEN") == "tok-secret"
        db.session.commit()
    [entry] = entries("env_var.revealed")
    assert (entry.category, entry.target_label, entry.app_name, entry.server_name, entry.actor_email) == (
        "security", "TOKEN", "api", "prod-1", member.email)
    assert "tok-secret" not in entry.diff


# --- .env parsing ------------------------------------------------------------------------


def test_parse_block_understands_the_usual_env_file():
    text = (
        "# a comment\n"
        "\n"
        "export DATABASE_URL=postgres://u:p@h/db?sslmode=require\n"
        "PLAIN = spaced value  \n"
        "HASH=abc#def # a comment, as dotenv, Compose and Dokku read it\n"
        "INLINE=value # comment\n"
        "TAB_COMMENT=value\t# comment\n"
        "ONLY_COMMENT= # nothing before it\n"
        "URL=https://example.com/#top\n"
        "FRAGMENT=#not-a-comment\n"
        "SINGLE='$HOME \\n literal'\n"
        "DOUBLE=\"tab\\there \\\"quoted\\\" \\\\ end\"\n"
        "MULTI=\"-----BEGIN-----\n"
        "abc\n"
        "-----END-----\"\n"
        "EMPTY=\n"
        "QUOTED_EMPTY=\"\"  # trailing comment after quotes\n"
    )
    assert parse_block(text) == {
        "DATABASE_URL": "postgres://u:p@h/db?sslmode=require",
        "PLAIN": "spaced value",
        "HASH": "abc#def",
        "INLINE": "value",
        "TAB_COMMENT": "value",
        "ONLY_COMMENT": "",
        "URL": "https://example.com/#top",
        "FRAGMENT": "#not-a-comment",
        "SINGLE": "$HOME \\n literal",
        "DOUBLE": 'tab\there "quoted" \\ end',
        "MULTI": "-----BEGIN-----\nabc\n-----END-----",
        "EMPTY": "",
        "QUOTED_EMPTY": "",
    }


def test_parse_block_values():
    assert parse_block("A='x y'\nB=\"a\\nb\"\nC= c \n") == {"A": "x y", "B": "a\nb", "C": "c"}
    assert parse_block("export A=1") == {"A": "1"}
    assert parse_block('M="one\ntwo"\nN=3') == {"M": "one\ntwo", "N": "3"}
    assert parse_block("A=x\r\nB=y\r\n") == {"A": "x", "B": "y"}
    assert parse_block("U=ünïcødé ✓") == {"U": "ünïcødé ✓"}


@pytest.mark.parametrize("text, line, fragment", [
    ("A=1\nB", 2, "no “=”"),
    ("A=1\n\n9X=1", 3, "not a valid variable name"),
    ("A='open", 1, "not closed"),
    ('A="open\nstill open', 1, "never closed"),
    ("A='x' trailing", 1, "unexpected text"),
    ("A=1\nA=2", 2, "already set on line 1"),
    ("=value", 1, "not a valid variable name"),
])
def test_parse_block_names_the_bad_line(text, line, fragment):
    with pytest.raises(EnvBlockError) as raised:
        parse_block(text)
    [(number, message)] = raised.value.lines
    assert number == line and fragment in message


def test_paste_of_nothing_is_an_error(member):
    app = make_app(make_server())
    with pytest.raises(ValidationError, match="at least one line") as raised:
        env_service.paste_block(app, member, text="# only a comment\n\n")
    assert raised.value.field == "block"


# --- domains -----------------------------------------------------------------------------


def test_domains_add_and_remove(member):
    app = make_app(make_server(), name="api")
    with acting(member):
        domain, added = domain_service.add_domain(app, member, hostname="  API.Example.com ")
        db.session.commit()
    assert domain.hostname == "api.example.com"
    assert added.data == {"add": ["api.example.com"], "remove": []}
    with acting(member):
        removed = domain_service.remove_domain(app, member, domain=domain)
        db.session.commit()
    assert removed.data == {"add": [], "remove": ["api.example.com"]}
    assert [e.action for e in entries() if e.target_type == "domain"] == ["domain.created", "domain.deleted"]


@pytest.mark.parametrize("hostname, message", [("", "Enter a domain"), ("http://x.com", "not a valid domain"),
                                               ("x.com/path", "not a valid domain"), ("a b.com", "not a valid")])
def test_domains_are_validated_like_dokku(member, hostname, message):
    app = make_app(make_server())
    with pytest.raises(ValidationError, match=message) as raised:
        domain_service.add_domain(app, member, hostname=hostname)
    assert raised.value.field == "domain"


def test_a_domain_is_added_once_and_to_one_app_of_a_server(member):
    server = make_server()
    api, web = make_app(server, name="api"), make_app(server, name="web")
    domain_service.add_domain(api, member, hostname="example.com")
    db.session.commit()
    with pytest.raises(ValidationError, match="already a domain of api"):
        domain_service.add_domain(api, member, hostname="example.com")
    with pytest.raises(ValidationError, match="already belongs to api"):
        domain_service.add_domain(web, member, hostname="EXAMPLE.com")
    domain_service.add_domain(make_app(make_server()), member, hostname="example.com")


# --- deploy keys -------------------------------------------------------------------------


def test_add_deploy_key_with_its_fingerprint(admin):
    server = make_server()
    with acting(admin):
        key, op = key_service.add_key(server, admin, name="alice-laptop", public_key="  " + ED25519 + "\n")
        db.session.commit()
    assert (key.key_type, key.fingerprint, key.added_by_email, key.adopted) == (
        "ssh-ed25519", "SHA256:mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4", admin.email, False)
    assert key.public_key == ED25519
    assert (op.kind, op.data) == ("deploy_keys.apply", {"add": ["alice-laptop"], "remove": []})
    [entry] = entries("deploy_key.created")
    assert entry.category == "security" and entry.operation_id == op.id


@pytest.mark.parametrize("name, public_key, field, message", [
    ("", ED25519, "name", "Enter a name"),
    ("alice laptop", ED25519, "name", "only contain"),
    ("alice", "", "public_key", "Paste a public key"),
    ("alice", "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----", "public_key", "private key"),
    ("alice", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYX", "public_key", "truncated"),
    ("alice", ED25519 + "\n" + ED25519_OTHER, "public_key", "exactly one"),
])
def test_deploy_keys_are_validated(admin, name, public_key, field, message):
    server = make_server()
    with pytest.raises(ValidationError, match=message) as raised:
        key_service.add_key(server, admin, name=name, public_key=public_key)
    db.session.rollback()
    assert raised.value.field == field and count(DeployKey) == 0 and operations() == []


def test_duplicate_deploy_keys_are_explained(admin):
    server = make_server(name="prod-1", remote_keys=([
        {"name": "default", "fingerprint": "SHA256:4y+KUxx+DLaitQJrLhVGbh6a18qIjaS0bHnpKiFqYRI", "public_key": ED25519_OTHER},
        {"name": "ci", "fingerprint": "SHA256:" + "c" * 43, "public_key": None},
    ]))
    key_service.add_key(server, admin, name="alice", public_key=ED25519)
    db.session.commit()
    cases = [
        ("alice", ED25519_OTHER, "name", "already has a deploy key named alice"),
        ("alice2", ED25519, "public_key", "already a deploy key on prod-1, named alice"),
        ("bob", ED25519_OTHER, "public_key", "already has this key, named default"),
        ("ci", ED25519_OTHER, "public_key", "already has this key"),
    ]
    for name, line, field, message in cases:
        with pytest.raises(ValidationError, match=message) as raised:
            key_service.add_key(server, admin, name=name, public_key=line)
        assert raised.value.field == field
    server.remote_keys = ([{"name": "ci", "fingerprint": "SHA256:" + "c" * 43, "public_key": None}])
    with pytest.raises(ValidationError, match="Dokku refuses a second key with the same name") as raised:
        key_service.add_key(server, admin, name="ci", public_key=ED25519_OTHER)
    assert raised.value.field == "name"


def test_remove_deploy_key_names_what_to_remove(admin):
    server = make_server()
    key, _ = key_service.add_key(server, admin, name="alice", public_key=ED25519)
    db.session.commit()
    with acting(admin):
        op = key_service.remove_key(server, admin, deploy_key=key)
        db.session.commit()
    assert op.data == {"add": [], "remove": [{"name": "alice", "fingerprint": key.fingerprint, "adopted": False}]}
    assert count(DeployKey) == 0 and entries("deploy_key.deleted")


def test_adopting_a_key_found_on_the_server_keeps_dokkus_name_and_runs_nothing(admin):
    weird = 'laptop "old" (2019)'
    server = make_server(remote_keys=([
        {"name": weird, "fingerprint": "SHA256:mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4", "public_key": ED25519},
        {"name": "ci", "fingerprint": "SHA256:" + "c" * 43, "public_key": None},
    ]))
    assert [k["name"] for k in key_service.unmanaged_keys(server)] == [weird, "ci"]
    with acting(admin):
        key = key_service.adopt_key(server, admin, fingerprint="SHA256:mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4")
        text_only = key_service.adopt_key(server, admin, fingerprint="SHA256:" + "c" * 43)
        db.session.commit()
    assert (key.name, key.adopted, key.key_type, key.public_key) == (weird, True, "ssh-ed25519", ED25519)
    assert (text_only.name, text_only.key_type) == ("ci", "unknown")
    assert key_service.unmanaged_keys(server) == [] and operations() == []
    assert len(entries("deploy_key.created")) == 2
    with pytest.raises(ValidationError, match="not among the server's unmanaged keys"):
        key_service.adopt_key(server, admin, fingerprint="SHA256:" + "c" * 43)
    # removing an adopted key asks Dokku by fingerprint (its name was never validated)
    op = key_service.remove_key(server, admin, deploy_key=key)
    assert op.data["remove"][0]["adopted"] is True


def test_refresh_keys_is_admin_work(admin, member):
    server = make_server()
    assert key_service.refresh_keys(server, admin).kind == "server.refresh_keys"
    with pytest.raises(NotAllowed):
        key_service.refresh_keys(server, member)


# --- retry -------------------------------------------------------------------------------


def test_retry_asks_again_with_the_same_kind_and_payload(member):
    app = make_app(make_server())
    env_service.paste_block(app, member, text="A=1\nB=2")
    db.session.commit()
    [failed] = operations()
    finish_operation(failed, "failed")
    with acting(member):
        retry = operation_service.retry(failed, member)
        db.session.commit()
    assert (retry.kind, retry.data, retry.retry_of_id, retry.status, retry.scope) == (
        failed.kind, failed.data, failed.id, "queued", failed.scope)
    [entry] = entries("operation.retry_requested")
    assert entry.actor_email == member.email and entry.operation_id == retry.id
    with pytest.raises(ValidationError, match="already on its way"):
        operation_service.retry(failed, member)
    with pytest.raises(ValidationError, match="Only a failed operation"):
        operation_service.retry(retry, member)


def test_retry_of_a_destroy_marks_the_app_again(member):
    app = make_app(make_server(), name="api")
    op = app_service.destroy_app(app, member, confirm="api")
    db.session.commit()
    finish_operation(op, "failed")
    app.status = "active"
    db.session.commit()
    operation_service.retry(op, member)
    assert app.status == "destroying"


def test_retry_refuses_when_the_app_or_server_is_gone(admin):
    server = make_server()
    app = make_app(server)
    op = finish_operation(app_service.restart_app(app, admin), "failed")
    db.session.delete(app)
    db.session.commit()
    with pytest.raises(ValidationError, match="no longer in the panel"):
        operation_service.retry(op, admin)
    check = finish_operation(server_service.request_connection_test(server, admin), "failed")
    db.session.delete(server)
    db.session.commit()
    with pytest.raises(ValidationError, match="no longer in the panel"):
        operation_service.retry(check, admin)


def test_retrying_server_work_needs_an_admin(admin, member):
    server = make_server()
    check = finish_operation(server_service.request_connection_test(server, admin), "failed")
    with pytest.raises(NotAllowed):
        operation_service.retry(check, member)
    assert operation_service.retry(check, admin).kind == "server.check"
    assert operation_service.role_for("server.import") == "member"
    assert operation_service.role_for("deploy_keys.apply") == "admin"
