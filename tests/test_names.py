"""Names as DNS and Dokku need them, and no user-supplied argument that Dokku would read as an option."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from intercity import validation
from intercity.dokku import commands as c
from intercity.extensions import db
from intercity.models import App, DeployKey, Domain
from intercity.validation import ValidationError
from tests.support.builders import make_app, make_server
from tests.support.panel import ED25519, finish, install_panel_key, operations
from tests.support.panel import no_worker  # noqa: F401  (the fixture, used below)
from tests.support.ssh_fixtures import make_dokku_server

OPTIONS = ["-x", "--help", "--force", "-", "--fingerprint"]


def field_error(body: str, field_id: str) -> str:
    match = re.search(rf'<p class="error" id="{re.escape(field_id)}-error">(.*?)</p>', body, re.S)
    assert match, f"no error next to #{field_id}"
    return match.group(1)


# --- the rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", OPTIONS)
def test_no_name_may_start_with_a_dash(value):
    for rule in (validation.domain, validation.deploy_key_name, validation.app_name, validation.env_key):
        with pytest.raises(ValidationError):
            rule(value)
    with pytest.raises(ValidationError):
        validation.domain(value, legacy=True)


@pytest.mark.parametrize("value", [
    "a..b.com", ".example.com", "example.com.", "-a.example.com", "a-.example.com", "a.-b.com",
    "a" * 64 + ".com", ("a" * 63 + ".") * 4 + "com", "a.*.com", "*", "**.example.com", "*a.example.com",
    "under_score.com", "http://example.com", "example.com/path", "exa mple.com",
])
def test_domains_follow_dns(value):
    with pytest.raises(ValidationError) as error:
        validation.domain(value)
    assert error.value.field == "domain"


@pytest.mark.parametrize("value, stored", [
    ("API.Example.com", "api.example.com"),
    ("*.example.com", "*.example.com"),
    ("a" * 63 + ".com", "a" * 63 + ".com"),
    ("x-y.example.com", "x-y.example.com"),
    ("_", "_"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("*.Bücher.example", "*.xn--bcher-kva.example"),
])
def test_valid_domains_are_stored_as_dokku_and_dns_have_them(value, stored):
    assert validation.domain(value) == stored


def test_an_internationalised_domain_shows_both_forms():
    assert validation.domain_display("xn--bcher-kva.example") == "bücher.example (xn--bcher-kva.example)"
    assert validation.domain_display("api.example.com") == "api.example.com"


def test_names_already_held_pass_dokkus_own_rule():
    assert validation.domain("a..b.com", legacy=True) == "a..b.com"
    with pytest.raises(ValidationError):
        validation.domain("a..b.com")


def test_app_names_fit_in_one_dns_label():
    assert validation.app_name("a" * 63) == "a" * 63
    with pytest.raises(ValidationError, match="at most 63"):
        validation.app_name("a" * 70)
    # An app already on a server keeps working whatever its length.
    assert validation.app_name("a" * 70, legacy=True) == "a" * 70


@pytest.mark.parametrize("value", OPTIONS)
def test_every_builder_refuses_an_option_as_a_name(value):
    builders = [
        lambda: c.apps_create(value), lambda: c.apps_destroy(value), lambda: c.ps_report(value, True),
        lambda: c.ps_restart(value), lambda: c.ps_report(value, False), lambda: c.domains_clear(value),
        lambda: c.config_set("api", {value: "x"}, restart=True), lambda: c.config_unset("api", [value], restart=True),
        lambda: c.config_export_json(value),
        lambda: c.domains_add("api", [value]), lambda: c.domains_add("api", ["ok.example.com", value]),
        lambda: c.domains_set("api", [value]), lambda: c.domains_remove_safely("api", ["a.example.com"], value),
        lambda: c.ssh_keys_add(value, ED25519), lambda: c.ssh_keys_remove(value),
    ]
    for build in builders:
        with pytest.raises(ValidationError):
            build()


def test_builders_accept_rows_that_predate_the_dns_rule():
    assert c.domains_set("api", ["a..b.com", "ok.example.com"]).argv[-2:] == ("a..b.com", "ok.example.com")


# --- the forms ---------------------------------------------------------------------------


@pytest.mark.usefixtures("no_worker")
def test_forms_refuse_options_and_bad_names_next_to_the_field(client, logged_in, admin):
    logged_in(admin)
    server = make_server()
    make_app(server, name="api")
    for value in ["-x", "--help", "--force", "-", "a..b.com"]:
        response = client.post(f"/servers/{server.id}/apps/api/domains", data={"domain": value})
        assert response.status_code == 422
        assert "not a valid domain" in field_error(response.get_data(as_text=True), "domain-name")
    for value in ["-x", "--help", "--fingerprint"]:
        response = client.post(f"/servers/{server.id}/deploy-keys", data={"name": value, "public_key": ED25519})
        assert response.status_code == 422
        assert "cannot start with a hyphen" in field_error(response.get_data(as_text=True), "deploy-key-name")
    response = client.post(f"/servers/{server.id}/apps", data={"name": "a" * 70})
    assert response.status_code == 422
    assert "at most 63 characters" in field_error(response.get_data(as_text=True), "app-name")
    assert db.session.scalar(select(func.count()).select_from(Domain)) == 0
    assert db.session.scalar(select(func.count()).select_from(DeployKey)) == 0
    assert db.session.scalar(select(func.count()).select_from(App)) == 1
    assert operations() == []


@pytest.mark.usefixtures("no_worker")
def test_an_internationalised_domain_is_stored_in_punycode_and_shown_in_both(client, logged_in, member):
    logged_in(member)
    app = make_app(make_server(), name="api")
    response = client.post(f"/servers/{app.server_id}/apps/api/domains", data={"domain": "Bücher.example"})
    assert response.status_code == 303
    assert db.session.scalar(select(Domain.hostname)) == "xn--bcher-kva.example"
    assert [op.data for op in operations("domains.apply")] == [{"add": ["xn--bcher-kva.example"], "remove": []}]
    body = client.get(f"/servers/{app.server_id}/apps/api").get_data(as_text=True)
    assert "bücher.example (xn--bcher-kva.example)" in body


# --- rows that predate the rules, on a real server ----------------------------------------


@pytest.mark.postgresql_only
def test_old_rows_never_block_work_on_the_server(app, client, logged_in, admin, sshd, dokku):
    server = make_dokku_server(sshd, authorize=False)
    install_panel_key(sshd, server)
    api = make_app(server, name="api")
    dokku.create_app("api")
    dokku.set_domains("api", ["a..b.com", "keep.example.com", "gone.example.com"])
    db.session.add_all([Domain(app=api, hostname="a..b.com"), Domain(app=api, hostname="keep.example.com"),
                        Domain(app=api, hostname="gone.example.com")])
    # A key saved under a name Dokku reads as an option, before names were checked.
    fingerprint = dokku.add_key("--fingerprint", ED25519)
    db.session.add(DeployKey(server=server, name="--fingerprint", public_key=ED25519, key_type="ssh-ed25519",
                             fingerprint=fingerprint,
                             added_by_email=admin.email))
    db.session.commit()
    logged_in(admin)
    gone = db.session.scalar(select(Domain).where(Domain.hostname == "gone.example.com"))
    client.post(f"/servers/{server.id}/apps/api/domains/{gone.id}/remove", data={"confirmed": "1"})
    key = db.session.scalar(select(DeployKey))
    client.post(f"/servers/{server.id}/deploy-keys/{key.id}/remove", data={"confirmed": "1"})
    finish(app)
    assert dokku.domains("api") == ["a..b.com", "keep.example.com"]
    assert dokku.keys() == []
    assert [op.status for op in operations()] == ["succeeded", "succeeded"]
