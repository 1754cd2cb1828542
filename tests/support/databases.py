"""Per-test databases copied from a template migrated once per run (SQLite file copy, PostgreSQL TEMPLATE)."""
from __future__ import annotations

import itertools
import os
import queue
import re
import shutil
import threading
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

DEFAULT_POSTGRES = "postgresql+psycopg://root@127.0.0.1:5432/test"
_counter = itertools.count()


def postgres_admin_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_POSTGRES)


def _libpq(url) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def migrate(url: str, instance: Path) -> None:
    """Build the schema from the Alembic migrations, as `intercity db upgrade` does."""
    from flask_migrate import upgrade

    from intercity import create_app

    app = create_app(_test_config(url))
    with app.app_context():
        upgrade()
        from intercity.extensions import db

        db.engine.dispose()


def _test_config(url: str) -> dict:
    return {
        "SQLALCHEMY_DATABASE_URI": url,
        "SECRET_KEY": "test-secret-key",
        "INTERCITY_ENCRYPTION_KEY": "test-encryption-key-0123456789-abcdefghij",
        "TESTING": True,
        # Cheap argon2 parameters: hundreds of tests create and log in users.
        "FAST_PASSWORD_HASHING": True,
    }


class SqliteTemplate:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.template = workdir / "template.sqlite"
        migrate(f"sqlite:///{self.template}", workdir)

    def new(self) -> tuple[str, callable]:
        path = self.workdir / f"test-{next(_counter)}.sqlite"
        shutil.copyfile(self.template, path)
        return f"sqlite:///{path}", lambda: [p.unlink(missing_ok=True) for p in path.parent.glob(path.name + "*")]


class PostgresTemplate:
    def __init__(self, workdir: Path):
        self.admin = make_url(postgres_admin_url())
        self.prefix = f"ic_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.template = f"{self.prefix}_tpl"
        # Dropping a database takes longer than creating one: do it beside the tests, not between them.
        self.drops: queue.Queue[str | None] = queue.Queue()
        self.dropper = threading.Thread(target=self._drop_loop, name="drop-test-databases", daemon=True)
        try:
            self._drop_stale()
            self._execute(f'CREATE DATABASE "{self.template}"')
        except psycopg.OperationalError as error:
            raise RuntimeError(
                f"PostgreSQL is not reachable at {self.admin.render_as_string()}: {error}. Install and start it "
                "(apt-get install postgresql; pg_ctlcluster 15 main start) or set TEST_DATABASE_URL."
            ) from None
        migrate(self.admin.set(database=self.template).render_as_string(hide_password=False), workdir)
        self.dropper.start()

    def _drop_stale(self) -> None:
        """Databases left by an earlier run that was killed (its process is gone)."""
        with psycopg.connect(_libpq(self.admin), autocommit=True) as connection:
            names = [row[0] for row in connection.execute("SELECT datname FROM pg_database WHERE datname LIKE 'ic\\_%'")]
            for name in names:
                match = re.match(r"ic_(\d+)_", name)
                if match and not os.path.exists(f"/proc/{match.group(1)}"):
                    connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _drop_loop(self) -> None:
        while (name := self.drops.get()) is not None:
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _execute(self, sql: str) -> None:
        with psycopg.connect(_libpq(self.admin), autocommit=True) as connection:
            connection.execute(sql)

    def new(self) -> tuple[str, callable]:
        name = f"{self.prefix}_{next(_counter)}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        url = self.admin.set(database=name).render_as_string(hide_password=False)
        return url, lambda: self.drops.put(name)

    def close(self) -> None:
        self.drops.put(None)
        self.dropper.join()
        self._execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')


test_config = _test_config
