"""Blueprints, one per area of the panel."""


def register_blueprints(app) -> None:
    from intercity.blueprints import apps, audit, auth, health, home, operations, servers, setup

    for module in (auth, health, home, setup, servers, apps, operations, audit):
        app.register_blueprint(module.bp)
