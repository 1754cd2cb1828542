"""Indexes for the timeline's filters: app by name alone, and folding operation outcomes.

Plain CREATE INDEX on both databases: a batch operation on SQLite would recreate
audit_entries and drop its append-only triggers.

Revision ID: 0003
Revises: 0002
"""
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

INDEXES = (
    # app:api without server: (the app_seq index starts with server_name)
    ("ix_audit_entries_app_name_seq", ["app_name", "seq"]),
    # Folding an outcome entry into its request: "another entry with this operation_id and another action".
    ("ix_audit_entries_operation_action", ["operation_id", "action"]),
    # actor:worker / actor:cli without an email
    ("ix_audit_entries_actor_kind_seq", ["actor_kind", "seq"]),
)


def upgrade():
    for name, columns in INDEXES:
        op.create_index(name, "audit_entries", columns, unique=False)


def downgrade():
    for name, _ in reversed(INDEXES):
        op.drop_index(name, table_name="audit_entries")
