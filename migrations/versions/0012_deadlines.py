"""Server-side deadlines: when an operation's commands have certainly ended, and whether the panel lost sight of one.

Plain ADD COLUMN (nullable, or with a server default) on both databases: no batch operation,
so no table is recreated and no trigger is lost.

Revision ID: 0012
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("operations", sa.Column("commands_deadline_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("operations", sa.Column("commands_in_doubt", sa.Boolean(), nullable=False,
                                          server_default=sa.false()))
    op.add_column("operations", sa.Column("doubt_resolved_by_id", sa.Integer(), nullable=True))
    # The drain asks, per scope, whether an earlier command may still be running.
    op.create_index("ix_operations_scope_doubt", "operations", ["scope", "commands_in_doubt"])


def downgrade():
    op.drop_index("ix_operations_scope_doubt", table_name="operations")
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("doubt_resolved_by_id")
        batch.drop_column("commands_in_doubt")
        batch.drop_column("commands_deadline_at")
