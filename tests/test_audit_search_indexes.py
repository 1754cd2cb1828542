"""The indexes timeline search relies on exist at the head revision, and the planner can use them."""
from __future__ import annotations

import pytest
from sqlalchemy import func, inspect, select, text

from intercity.audit import query
from intercity.extensions import db
from intercity.models import AuditEntry


def _plan(condition_text: str) -> str:
    statement = select(func.count()).select_from(AuditEntry).where(*query.conditions(condition_text))
    sql = statement.compile(db.engine, compile_kwargs={"literal_binds": True})
    db.session.execute(text("SET LOCAL enable_seqscan = off"))
    # literal_binds doubles % for the driver's paramstyle; EXPLAIN runs without parameters.
    return "\n".join(db.session.scalars(text(f"EXPLAIN {sql}".replace("%%", "%"))))


def test_search_indexes_exist_at_head(app, backend):
    names = {index["name"] for index in inspect(db.engine).get_indexes("audit_entries")}
    assert "ix_audit_entries_target_label_seq" in names
    if backend == "postgresql":
        assert "ix_audit_entries_sentence_trgm" in names


@pytest.mark.postgresql_only
@pytest.mark.parametrize("condition_text, index", [
    # The free-text expression in query.py is the one migration 0007 indexed.
    ("legacy_secret", "ix_audit_entries_sentence_trgm"),
    ('"on call"', "ix_audit_entries_sentence_trgm"),
    ("actor:ops", "ix_audit_entries_actor_seq"),
    ("key:DATABASE_URL", "ix_audit_entries_target_label_seq"),
    ("target:ci-bot", "ix_audit_entries_target_label_seq"),
])
def test_postgresql_can_answer_each_search_from_its_index(app, condition_text, index):
    plan = _plan(condition_text)
    assert index in plan, plan
