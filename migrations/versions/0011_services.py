"""Database services: what the service plugins last listed per server, and env vars a link set.

Plain ADD COLUMN (nullable) on both databases: no batch operation, so no table is recreated
and no trigger is lost.

Revision ID: 0011
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('servers', sa.Column('services', sa.JSON(none_as_null=True), nullable=True))
    op.add_column('servers', sa.Column('services_checked_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('env_vars', sa.Column('linked_service', sa.String(length=80), nullable=True))


def downgrade():
    op.drop_column('env_vars', 'linked_service')
    op.drop_column('servers', 'services_checked_at')
    op.drop_column('servers', 'services')
