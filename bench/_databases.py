"""A fresh PostgreSQL database for a benchmark (BENCH_DATABASE_URL names the server), dropped afterwards."""
from __future__ import annotations

import os

PG_DEFAULT = "postgresql+psycopg://root@127.0.0.1:5432/test"


def fresh_postgres(name: str):
    """(URL of a new empty database `name`, a function that drops it)."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(os.environ.get("BENCH_DATABASE_URL", PG_DEFAULT))
    libpq = admin.set(drivername="postgresql").render_as_string(hide_password=False)

    def execute(sql: str):
        with psycopg.connect(libpq, autocommit=True) as connection:
            connection.execute(sql)

    execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    execute(f'CREATE DATABASE "{name}"')
    return admin.set(database=name).render_as_string(hide_password=False), \
        lambda: execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
