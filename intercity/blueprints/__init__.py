"""Blueprints, one per area of the panel."""


def register_blueprints(app) -> None:
    from intercity.blueprints import (account, apps, audit, auth, databases, health, home, operations, servers,
                                      settings, setup, team, tls)

    for module in (auth, health, home, setup, servers, databases, apps, operations, audit, team, account, settings, tls):
        app.register_blueprint(module.bp)
