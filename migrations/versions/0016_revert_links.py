"""An index on audit_entries.caused_by, so an entry finds the entries that revert it ("revert:<seq>").

A revert's entries carry `caused_by = "revert:N"` (chained like every field); the permalink of
entry N looks them up by that value. CREATE INDEX only: no table is recreated, no trigger lost.

Revision ID: 0016
Revises: 0019
"""
from alembic import op


revision = '0016'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_audit_entries_caused_by", "audit_entries", ["caused_by"])


def downgrade():
    op.drop_index("ix_audit_entries_caused_by", table_name="audit_entries")
