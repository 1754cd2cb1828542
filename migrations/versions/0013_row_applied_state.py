"""What the server was last seen to have, per row, and the values it had (encrypted) after the rows are gone.

env_vars.applied_fingerprint: the keyed fingerprint of the value the server was last seen to
hold for the key (NULL: not seen on the server). domains, deploy_keys and apps: `on_server`
(NULL: never looked). Each has `applied_seen_at`, the time of that reading.

applied_values: the value history. One row per value a server was seen to hold (an env value,
or a deploy key's public key), encrypted with the panel key, kept after the env var or key row
is deleted, so a failed change can be discarded and a change reverted. Never audited: the
audit log must not hold values, encrypted or not.

Plain ADD COLUMN and CREATE TABLE: no batch operation, so no table is recreated and no trigger lost.

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

ROW_TABLES = ("domains", "deploy_keys", "apps")


def upgrade():
    op.add_column("env_vars", sa.Column("applied_fingerprint", sa.String(32), nullable=True))
    op.add_column("env_vars", sa.Column("applied_seen_at", sa.DateTime(timezone=True), nullable=True))
    for table in ROW_TABLES:
        op.add_column(table, sa.Column("on_server", sa.Boolean(), nullable=True))
        op.add_column(table, sa.Column("applied_seen_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "applied_values",
        sa.Column("id", sa.Integer(), primary_key=True),
        # "env" (name = the variable's key, app_id set) or "deploy_key" (name = the key's name, server-wide).
        sa.Column("kind", sa.String(16), nullable=False),
        # No foreign keys: the history outlives the app, and the server row only by a removal.
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("fingerprint", sa.String(80), nullable=False),
        sa.Column("operation_id", sa.Integer(), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_applied_values_lookup", "applied_values", ["kind", "server_id", "app_id", "name", "id"])


def downgrade():
    op.drop_index("ix_applied_values_lookup", table_name="applied_values")
    op.drop_table("applied_values")
    for table in ("env_vars", *ROW_TABLES):
        with op.batch_alter_table(table) as batch:
            if table == "env_vars":
                batch.drop_column("applied_fingerprint")
            else:
                batch.drop_column("on_server")
            batch.drop_column("applied_seen_at")
