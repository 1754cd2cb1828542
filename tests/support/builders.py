"""Builders for test data that take **overrides (CTFd's gen_user, CKAN's factories)."""
from __future__ import annotations

import itertools

from intercity.extensions import db

_n = itertools.count(1)
PASSWORD = "correct horse battery"


def make_user(role: str = "member", **overrides):
    from intercity.services.users import create_user

    email = overrides.pop("email", f"{role}{next(_n)}@example.com")
    user = create_user(email, overrides.pop("password", PASSWORD), role)
    for key, value in overrides.items():
        setattr(user, key, value)
    db.session.commit()
    return user


def make_server(**overrides):
    from intercity.models import Server

    server = Server(name=overrides.pop("name", f"srv-{next(_n)}"), host=overrides.pop("host", "127.0.0.1"),
                    port=overrides.pop("port", 22), ssh_user=overrides.pop("ssh_user", "root"))
    server.generate_key_pair()
    for key, value in overrides.items():
        setattr(server, key, value)
    db.session.add(server)
    db.session.commit()
    return server


def make_app(server, **overrides):
    from intercity.models import App

    app = App(server=server, name=overrides.pop("name", f"app-{next(_n)}"), **overrides)
    db.session.add(app)
    db.session.commit()
    return app
