"""Blueprints, one per area of the panel."""


def register_blueprints(app) -> None:
    from intercity.blueprints import (account, apps, audit, auth, databases, deploys, discard, drift, health, history,
                                      home, operations, panel_deploys, servers, service_backups, settings, setup, team,
                                      tls)

    for module in (auth, health, home, setup, servers, databases, service_backups, drift, apps, deploys,
                   panel_deploys, operations, discard, audit, history, team, account, settings, tls):
        app.register_blueprint(module.bp)
