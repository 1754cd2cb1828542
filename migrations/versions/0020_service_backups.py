"""Backups of database services: encrypted S3 credentials and passphrase, bucket, schedule, last run.

Plain CREATE TABLE: no batch operation, so no table is recreated and no trigger lost.

Revision ID: 0020
Revises: 0018
"""
import sqlalchemy as sa
from alembic import op


revision = '0020'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "service_backups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("server_id", sa.Integer(), sa.ForeignKey("servers.id", ondelete="CASCADE",
                                                           name="fk_service_backups_server_id_servers"),
                  nullable=False),
        sa.Column("plugin", sa.String(16), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("credentials_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("region", sa.String(32), nullable=True),
        sa.Column("signature", sa.String(8), nullable=True),
        sa.Column("endpoint", sa.String(255), nullable=True),
        sa.Column("credentials_set_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("credentials_applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("passphrase_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("passphrase_applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bucket", sa.String(63), nullable=True),
        sa.Column("check_size", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("schedule", sa.String(100), nullable=True),
        sa.Column("schedule_bucket", sa.String(63), nullable=True),
        sa.Column("schedule_seen", sa.String(100), nullable=True),
        sa.Column("schedule_seen_bucket", sa.String(63), nullable=True),
        sa.Column("schedule_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_backup_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_backup_status", sa.String(16), nullable=True),
        sa.Column("last_backup_bytes", sa.Integer(), nullable=True),
        sa.Column("last_backup_message", sa.Text(), nullable=True),
        sa.Column("last_backup_operation_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("server_id", "plugin", "service", name="uq_service_backups_server_id"),
        sqlite_autoincrement=True,
    )


def downgrade():
    op.drop_table("service_backups")
