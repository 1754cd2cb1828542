"""The database-service requests, without a server: who may ask, what input is refused, what is queued."""
from __future__ import annotations

import pytest

from intercity.extensions import db
from intercity.models import EnvVar
from intercity.services import databases, env
from intercity.services.permissions import NotAllowed
from intercity.validation import ValidationError
from tests.support.builders import make_app, make_server
from tests.support.panel import no_worker  # noqa: F401  (the fixture, used below)

pytestmark = pytest.mark.usefixtures("no_worker")

LISTED = {"postgres": {"installed": True, "services": [
    {"name": "shop-db", "version": "postgres:18.4", "status": "running", "links": ["shop"]},
    {"name": "spare", "version": "postgres:18.4", "status": "exited", "links": []}]}}


@pytest.fixture
def world(app):
    server = make_server(name="prod-1", services=LISTED)
    shop = make_app(server, name="shop")
    var = EnvVar(app=shop, key="DATABASE_URL", linked_service="postgres shop-db")
    var.value = "postgres://postgres:pw-not-real-0123@dokku-postgres-shop-db:5432/shop_db"
    db.session.add(var)
    db.session.commit()
    return server, shop


def test_roles(world, viewer, member, admin):
    server, _ = world
    with pytest.raises(NotAllowed):
        databases.create(server, viewer, plugin="postgres", name="new-db")
    with pytest.raises(NotAllowed):
        databases.destroy(server, member, plugin="postgres", name="spare", confirm="spare")
    with pytest.raises(NotAllowed):
        databases.reveal_dsn(server, viewer, plugin="postgres", name="spare")
    op = databases.destroy(server, admin, plugin="postgres", name="spare", confirm="spare")
    assert (op.kind, op.data) == ("service.destroy", {"plugin": "postgres", "service": "spare"})


def test_bad_input_is_refused_next_to_its_field(world, member, admin):
    server, _ = world
    cases = [
        (lambda: databases.create(server, member, plugin="postgres", name="no spaces"), "name"),
        (lambda: databases.create(server, member, plugin="postgres", name="shop-db"), "name"),
        (lambda: databases.create(server, member, plugin="postgres", name="x", version="1 2"), "version"),
        (lambda: databases.link(server, member, plugin="postgres", name="spare", app_name="ghost",
                                restart=True), "app"),
        (lambda: databases.link(server, member, plugin="postgres", name="shop-db", app_name="shop",
                                restart=True), "app"),
        (lambda: databases.link(server, member, plugin="postgres", name="gone", app_name="shop",
                                restart=True), "name"),
        (lambda: databases.destroy(server, admin, plugin="postgres", name="spare", confirm="spar"), "confirm"),
        (lambda: databases.destroy(server, admin, plugin="postgres", name="shop-db", confirm="shop-db"), "confirm"),
    ]
    for call, field in cases:
        with pytest.raises(ValidationError) as found:
            call()
        assert found.value.field == field, found.value.message
    db.session.rollback()
    with pytest.raises(ValidationError, match="Cannot delete linked service"):
        databases.destroy(server, admin, plugin="postgres", name="shop-db", confirm="shop-db")


def test_link_queues_the_app_scoped_operation_with_the_restart_choice(world, member):
    server, shop = world
    op = databases.link(server, member, plugin="postgres", name="spare", app_name="shop", restart=False)
    db.session.commit()
    assert (op.kind, op.app_id, op.data) == ("service.link", shop.id,
                                             {"plugin": "postgres", "service": "spare", "restart": False})
    assert op in databases.region_operations(server)


def test_a_linked_variable_is_changed_only_by_unlinking(world, member):
    _, shop = world
    for change in (lambda: env.set_var(shop, member, key="DATABASE_URL", value="postgres://elsewhere/x"),
                   lambda: env.remove_var(shop, member, key="DATABASE_URL"),
                   lambda: env.paste_block(shop, member, text="DATABASE_URL=x\nOTHER=y")):
        with pytest.raises(ValidationError, match="set by linking postgres service shop-db"):
            change()
        db.session.rollback()


def test_the_services_region_for_viewers(world, client, logged_in, viewer):
    server, _ = world
    logged_in(viewer)
    fragment = client.get(f"/servers/{server.id}?region=services", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith("<div") and 'id="services"' in fragment
    assert "shop-db" in fragment and "postgres:18.4" in fragment and "exited" in fragment
    assert "Link to" not in fragment and "Destroy" not in fragment and "Create service" not in fragment


def test_the_services_region_for_admins(world, client, logged_in, admin):
    server, _ = world
    logged_in(admin)
    page = client.get(f"/servers/{server.id}").get_data(as_text=True)
    assert "Create service" in page and "Type spare to destroy it" in page
    assert 'aria-label="Unlink shop-db from shop"' in page
    assert 'id="link-spare"' in page and 'id="link-shop-db"' not in page  # shop is already linked to shop-db
