"""Service plugin commands and output: argv the panel sends, the text it reads, the failures it explains.

The examples are the reference's (dokku-postgres 1.48.0's bash output), with and without the
`=====>` headers Dokku drops when there is no TTY.
"""
from __future__ import annotations

import pytest

from intercity.dokku import parsers, service_plugins
from intercity.dokku.transcript import stores_output
from intercity.validation import ValidationError


def test_list_with_and_without_header():
    assert service_plugins.parse_list("=====> Postgres services\nshop-db\naudit_db\n") == ["shop-db", "audit_db"]
    assert service_plugins.parse_list("shop-db\naudit_db\n") == ["shop-db", "audit_db"]
    assert service_plugins.parse_list("") == []
    empty = service_plugins.service_list("postgres")
    # The plugin warns on stderr when there are none: that is no failure and no warning to show.
    assert parsers.check(empty, 0, "", " !     There are no Postgres services\n") == []


def test_single_flag_info_values():
    assert service_plugins.parse_info_value("postgres:18.4\n") == "postgres:18.4"
    assert service_plugins.parse_info_value("running\n") == "running"
    assert service_plugins.parse_info_value("missing\n") == "missing"
    assert service_plugins.parse_links(service_plugins.parse_info_value("-\n")) == []
    # service_linked_apps: `tr '\n' ' '` leaves a trailing space.
    assert service_plugins.parse_links(service_plugins.parse_info_value("shop web-2 \n")) == ["shop", "web-2"]
    # A TTY adds the header even for a single flag's command line: it is skipped.
    assert service_plugins.parse_info_value("=====> shop-db postgres service information\nexited\n") == "exited"


def test_info_reads_one_safe_flag_and_dsn_only_on_purpose():
    assert service_plugins.service_info("postgres", "shop-db", "--status").argv == (
        "dokku", "postgres:info", "shop-db", "--status")
    with pytest.raises(ValueError):
        service_plugins.service_info("postgres", "shop-db", "--dsn")
    with pytest.raises(ValueError):
        service_plugins.service_info("postgres", "shop-db", "")  # the full info prints the DSN
    assert not stores_output(service_plugins.service_dsn("postgres", "shop-db"))
    assert stores_output(service_plugins.service_info("postgres", "shop-db", "--links"))


def test_create_link_unlink_destroy_argv():
    assert service_plugins.service_create("postgres", "shop-db").argv == ("dokku", "postgres:create", "shop-db")
    assert service_plugins.service_create("postgres", "shop-db", "17.2").argv == (
        "dokku", "postgres:create", "shop-db", "--image-version", "17.2")
    assert service_plugins.service_link("postgres", "shop-db", "shop", restart=True).argv == (
        "dokku", "postgres:link", "shop-db", "shop")
    # The argv that keeps the app running: a bare --no-restart (getopts reads `n` without a value;
    # the README's `--no-restart "false"` reads as if it meant "restart", but also skips it).
    assert service_plugins.service_link("postgres", "shop-db", "shop", restart=False).argv == (
        "dokku", "postgres:link", "shop-db", "shop", "--no-restart")
    assert service_plugins.service_unlink("postgres", "shop-db", "shop", restart=False).argv[-1] == "--no-restart"
    assert service_plugins.service_destroy("postgres", "shop-db").argv == (
        "dokku", "postgres:destroy", "shop-db", "-f")
    for command in (service_plugins.service_create("postgres", "shop-db"),
                    service_plugins.service_link("postgres", "shop-db", "shop", restart=True)):
        assert not stores_output(command)  # create ends with the full info, link echoes config:set


@pytest.mark.parametrize("name", ["", "shop.db", "a b", "x" * 65, "shop;rm"])
def test_bad_service_names_are_refused_before_anything_runs(name):
    with pytest.raises(ValidationError) as found:
        service_plugins.service_create("postgres", name)
    assert found.value.field == "name"


def test_bad_image_version_and_unknown_plugin():
    with pytest.raises(ValidationError) as found:
        service_plugins.service_create("postgres", "shop-db", "17; reboot")
    assert found.value.field == "version"
    with pytest.raises(ValidationError):
        service_plugins.service_list("mongo")


def _fail(command, stderr, code=1):
    with pytest.raises(parsers.DokkuError) as found:
        parsers.check(command, code, "", stderr)
    return found.value


def test_plugin_failures_are_explained():
    listing = service_plugins.service_list("postgres")
    missing = _fail(listing, " !     `postgres:list` is not a dokku command.\n"
                             " !     See `dokku help` for a list of available commands.\n")
    assert isinstance(missing, parsers.PluginMissing) and "plugin:install" in missing.message
    info = service_plugins.service_info("postgres", "ghost", "--status")
    assert isinstance(_fail(info, " !     Postgres service ghost does not exist\n"), parsers.ServiceMissing)
    link = service_plugins.service_link("postgres", "shop-db", "shop", restart=True)
    already = _fail(link, " !     Already linked as DATABASE_URL\n")
    assert isinstance(already, parsers.AlreadyLinked) and already.variable == "DATABASE_URL"
    unlink = service_plugins.service_unlink("postgres", "shop-db", "shop", restart=True)
    assert isinstance(_fail(unlink, " !     Not linked to app shop\n"), parsers.NotLinked)
    destroy = service_plugins.service_destroy("postgres", "shop-db")
    linked = _fail(destroy, " !     Cannot delete linked service\n")
    assert isinstance(linked, parsers.ServiceLinked)
    assert "Cannot delete linked service" in linked.message and "Unlink it from every app first" in linked.message
    create = service_plugins.service_create("postgres", "shop-db", "99.0")
    assert "postgres:99.0" in _fail(create, " !     Postgres image postgres:99.0 pull failed\n").message
    assert isinstance(_fail(create, " !     Postgres service shop-db already exists\n"), parsers.ServiceExists)
    assert isinstance(_fail(link, " !     App shop does not exist\n", code=20), parsers.AppMissing)
