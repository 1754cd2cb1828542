"""Helpers for the audit tests: reading entries, deploy-key material, and switching the append-only triggers off."""
from __future__ import annotations

from functools import lru_cache

from sqlalchemy import select, text

from intercity.extensions import db
from intercity.models import AuditEntry


def entries(**where) -> list[AuditEntry]:
    """Audit entries in chain order, optionally filtered by column values (`action="app.created"`)."""
    query = select(AuditEntry).order_by(AuditEntry.seq)
    for name, value in where.items():
        query = query.where(getattr(AuditEntry, name) == value)
    db.session.expire_all()  # read what is committed now, not what this session saw earlier
    return list(db.session.scalars(query))


def actions() -> list[str]:
    return [entry.action for entry in entries()]


def count_entries(connection=None) -> int:
    sql = text("SELECT count(*) FROM audit_entries")
    if connection is not None:
        return connection.execute(sql).scalar_one()
    with db.engine.connect() as own:
        return own.execute(sql).scalar_one()


def only(action: str) -> AuditEntry:
    found = entries(action=action)
    assert len(found) == 1, f"expected one {action} entry, got {[e.action for e in entries()]}"
    return found[0]


@lru_cache(maxsize=None)
def public_key(n: int) -> tuple[str, str, str]:
    """The n-th test deploy key: (public key line, key type, SHA256 fingerprint), stable within a run."""
    from intercity import crypto, validation

    _, line = crypto.generate_ssh_key(f"dev{n}@example.com")
    parsed = validation.public_key(line)
    return line, parsed.key_type, parsed.fingerprint


def make_deploy_key(server, n: int = 0, **overrides):
    from intercity.models import DeployKey

    line, key_type, fingerprint = public_key(n)
    key = DeployKey(server=server, name=overrides.pop("name", f"key-{n}"), public_key=line, key_type=key_type,
                    fingerprint=fingerprint, **overrides)
    db.session.add(key)
    return key


APPEND_ONLY_TRIGGERS = {
    "sqlite": ("audit_entries_no_update", "audit_entries_no_delete"),
    "postgresql": ("audit_entries_append_only", "audit_entries_no_truncate"),
}


def drop_append_only_triggers() -> None:
    """What an attacker with database access can do: switch the append-only protection off."""
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            for name in APPEND_ONLY_TRIGGERS["postgresql"]:
                connection.execute(text(f"DROP TRIGGER {name} ON audit_entries"))
        else:
            for name in APPEND_ONLY_TRIGGERS["sqlite"]:
                connection.execute(text(f"DROP TRIGGER {name}"))


def raw(sql: str, **params) -> None:
    with db.engine.begin() as connection:
        connection.execute(text(sql), params)


def committed_entries(**where) -> list[AuditEntry]:
    """`entries` from a new transaction: what another app (the test's web client) has committed by now."""
    db.session.rollback()
    return entries(**where)
