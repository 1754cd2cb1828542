"""Fixtures in the flaskr style (app, client, runner, auth) over SQLite and PostgreSQL, plus real services."""
from __future__ import annotations

import socket
import threading

import pytest

from tests.support import databases, url_builders
from tests.support.builders import PASSWORD, make_user

url_builders.install()

pytest_plugins = ["tests.support.services", "tests.support.ssh_fixtures", "tests.support.notify", "tests.support.clock"]


def pytest_configure(config):
    config.addinivalue_line("markers", "postgresql_only: end-to-end test that runs on PostgreSQL only")
    config.addinivalue_line("markers", "sqlite_only: a check of the web layer alone, which no database changes")


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        only_pg = metafunc.definition.get_closest_marker("postgresql_only") is not None
        only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
        backends = ["postgresql"] if only_pg else ["sqlite"] if only_sqlite else ["sqlite", "postgresql"]
        metafunc.parametrize("backend", backends, scope="function")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    return databases.SqliteTemplate(tmp_path_factory.mktemp("sqlite"))


@pytest.fixture(scope="session")
def postgresql_template(tmp_path_factory):
    template = databases.PostgresTemplate(tmp_path_factory.mktemp("postgres"))
    yield template
    template.close()


@pytest.fixture
def database_url(backend, request):
    template = request.getfixturevalue(f"{backend}_template")
    url, drop = template.new()
    yield url
    drop()


@pytest.fixture
def app_config(database_url, tmp_path, monkeypatch):
    """Overrides handed to create_app; a test may change them before asking for `app`."""
    monkeypatch.setenv("INTERCITY_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("REDIS_URL", raising=False)
    config = databases.test_config(database_url)
    config.update({"WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False, "SSH_CONNECT_TIMEOUT": 5,
                   "SSH_COMMAND_TIMEOUT": 30, "MAIL_SUPPRESS_SEND": False,
                   "SSH_RETRY_BACKOFF": 0.05, "NOTIFY_TICK_SECONDS": 0})
    return config


@pytest.fixture
def app(app_config):
    from intercity import create_app
    from intercity.extensions import db

    app = create_app(app_config)
    ctx = app.app_context()
    ctx.push()
    yield app
    runner = app.extensions.get("intercity_jobs")
    if runner is not None:
        runner.wait_idle()
        runner.close()
    db.session.remove()
    for engine in db.engines.values():
        engine.dispose()
    ctx.pop()


@pytest.fixture
def make_app(app_config):
    """Another app on the test's database with some settings changed; its engines are disposed after."""
    from intercity import create_app

    made = []

    def build(**overrides):
        made.append(create_app({**app_config, **overrides}))
        return made[-1]

    yield build
    from intercity.extensions import db

    for other in made:
        runner = other.extensions.get("intercity_jobs")
        if runner is not None:
            runner.close()
        with other.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class AuthActions:
    def __init__(self, client):
        self._client = client

    def login(self, email: str, password: str = PASSWORD):
        return self._client.post("/login", data={"email": email, "password": password})

    def logout(self):
        return self._client.post("/logout")


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def admin(app):
    return make_user("admin", email="admin@example.com")


@pytest.fixture
def member(app):
    return make_user("member", email="dev@example.com")


@pytest.fixture
def viewer(app):
    return make_user("viewer", email="viewer@example.com")


@pytest.fixture
def logged_in(auth):
    """Log a user of the given role in: `logged_in(admin)`."""

    def login(user):
        response = auth.login(user.email)
        assert response.status_code == 302, response.get_data(as_text=True)
        return user

    return login


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_server(app):
    """The panel served over HTTP from this process, for the browser (its database is the test's)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_port}"
    yield server
    server.shutdown()
    thread.join(5)
