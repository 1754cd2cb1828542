"""Blueprints, one per area of the panel."""


def register_blueprints(app) -> None:
    from intercity.blueprints import apps, audit, auth, health, home, servers, setup

    for module in (auth, health, home, setup, servers, apps, audit):
        app.register_blueprint(module.bp)
