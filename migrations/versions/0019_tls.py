"""TLS readings per server and app, and certificates uploaded for apps (private key encrypted).

Plain CREATE TABLE, no foreign keys (readings and uploads are dropped by the panel's own code).

Revision ID: 0019
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op


revision = '0019'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "tls_readings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("scope", sa.String(32), nullable=False, unique=True),
        sa.Column("server_id", sa.Integer(), nullable=False, index=True),
        sa.Column("app_id", sa.Integer(), nullable=True, index=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cron_missing_since", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "tls_certificates",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("server_id", sa.Integer(), nullable=False, index=True),
        sa.Column("app_id", sa.Integer(), nullable=False, index=True),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("private_key_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sha256", sa.String(95), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade():
    op.drop_table("tls_certificates")
    op.drop_table("tls_readings")
