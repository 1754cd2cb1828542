"""JSON columns for what the panel reads back as data: operation payloads and warnings, the keys seen
on a server, an app's process status.

PostgreSQL gets the `json` type (not jsonb: the text stays as written). On SQLite a JSON column is
text that SQLAlchemy encodes and decodes, which these columns already hold, so nothing changes
there (and no batch operation recreates a table or drops its triggers).

Revision ID: 0004
Revises: 0003
"""
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

COLUMNS = (("operations", "payload"), ("operations", "warnings"), ("servers", "remote_keys"),
           ("apps", "ps_status"))


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" TYPE json USING "{column}"::json')


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" TYPE text USING "{column}"::text')
