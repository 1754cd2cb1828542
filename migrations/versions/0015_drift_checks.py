"""Drift checks per server: how often, when last, and what the last check found.

servers.drift_interval_minutes: minutes between scheduled checks (default 15; 0 switches them off).
servers.drift_checked_at: when the last check ended. servers.drift_state: what the last check saw
that is not a row (apps it skipped and why, whether Dokku's event log is on, the server's clock
offset, the outage the checks are in, the event lines read last). Observed state, never audited;
the interval is an admin's setting and is audited as a server change.

Plain ADD COLUMN: no batch operation, so no table is recreated and no trigger lost.

Revision ID: 0015
Revises: 0020
"""
import sqlalchemy as sa
from alembic import op


revision = '0015'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("servers", sa.Column("drift_interval_minutes", sa.Integer(), nullable=False,
                                       server_default="15"))
    op.add_column("servers", sa.Column("drift_checked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("servers", sa.Column("drift_state", sa.JSON(), nullable=True))


def downgrade():
    op.drop_column("servers", "drift_state")
    op.drop_column("servers", "drift_checked_at")
    op.drop_column("servers", "drift_interval_minutes")
