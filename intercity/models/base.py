"""Column helpers shared by the models."""
from __future__ import annotations

from datetime import datetime, timezone
from functools import partial

from sqlalchemy import DateTime
from sqlalchemy.orm import mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given; use intercity.models.base.utcnow()")
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None:
            value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value


# Audit entries name rows by id long after they are gone: SQLite must not hand a deleted
# row's id to a new one (its default reuses the highest id once that row is deleted).
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}

# Audited columns keep their old value even when it was not loaded, so every diff has both sides.
audited = partial(mapped_column, active_history=True)
