"""Intercity: a panel for Dokku servers whose every change leaves a tamper-evident audit entry."""
from __future__ import annotations

import os

from flask import Flask

from intercity import config as settings
from intercity.extensions import csrf, db, limiter, login_manager, mail, migrate


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("INTERCITY_INSTANCE_PATH") or None)
    app.config.update(settings.load(app.instance_path, config))

    from intercity import database

    database.validate_url(app.config["SQLALCHEMY_DATABASE_URI"])
    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            database.configure_engine(engine)
    database.register_session_hooks()
    migrate.init_app(app, db, directory=str(database.MIGRATIONS), render_as_batch=True, compare_type=True)
    csrf.init_app(app)
    mail.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Log in to continue."
    login_manager.login_message_category = "info"

    from intercity import models  # noqa: F401  (mappers must exist before the hooks fire)
    from intercity.audit import capture

    capture.register()

    from intercity import jobs

    jobs.init_app(app)

    from intercity import input_guard

    input_guard.init_app(app)  # before the blueprints: their `<int:...>` rules use its converter

    from intercity import notify

    notify.init_app(app)

    from intercity.blueprints import register_blueprints

    register_blueprints(app)

    from intercity import cli

    cli.register(app)

    from intercity import web

    web.init_app(app)

    from intercity.audit import page_cache

    page_cache.init_app(app)
    return app
