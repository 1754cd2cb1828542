"""Blueprints, one per area of the panel."""


def register_blueprints(app) -> None:
    from intercity.blueprints import (account, apps, audit, auth, databases, deploys, health, home, operations,
                                      servers, settings, setup, team)

    for module in (auth, health, home, setup, servers, databases, apps, deploys, operations, audit, team, account, settings):
        app.register_blueprint(module.bp)
