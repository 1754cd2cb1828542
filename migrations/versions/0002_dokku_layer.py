"""An index for telling whether any worker is consuming the queue (the stalled-worker banner).

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_operations_updated_at", "operations", ["updated_at"])


def downgrade():
    op.drop_index("ix_operations_updated_at", table_name="operations")
