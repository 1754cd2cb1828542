"""Applied state beside the desired state, and the whole record append-only.

servers.unreachable_since: when an operation last found the server unreachable (plain ADD
COLUMN: no batch, so no table is recreated).

SQLite's REPLACE conflict resolution deletes the row it replaces without firing DELETE
triggers, so `INSERT OR REPLACE INTO command_runs ...` could rewrite a transcript with the
append-only triggers in place. A BEFORE INSERT trigger refuses any insert that would collide
with an existing row (upserts with ON CONFLICT DO UPDATE already hit the UPDATE triggers).
audit_checkpoints gets the same protection as audit entries on both databases. Plain
CREATE TRIGGER only: a batch operation on SQLite would drop the existing triggers.

Revision ID: 0005
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# The columns whose clash would make SQLite replace an existing row.
UNIQUE_KEYS = {
    "audit_entries": ("id", "seq"),
    "command_runs": ("id",),
    "audit_checkpoints": ("id",),
}


def upgrade():
    op.add_column("servers", sa.Column("unreachable_since", sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # intercity_append_only() comes from revision 0001.
        op.execute("CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints "
                   "FOR EACH ROW EXECUTE FUNCTION intercity_append_only()")
        op.execute("CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints "
                   "FOR EACH STATEMENT EXECUTE FUNCTION intercity_append_only()")
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER audit_checkpoints_no_{verb.lower()} BEFORE {verb} ON audit_checkpoints "
                   f"BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only: {verb} refused'); END")
    for table, columns in UNIQUE_KEYS.items():
        clash = " OR ".join(f"{column} = NEW.{column}" for column in columns)
        op.execute(f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
                   f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {clash}) "
                   f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: INSERT over an existing row refused'); END")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_checkpoints_append_only ON audit_checkpoints")
        op.execute("DROP TRIGGER IF EXISTS audit_checkpoints_no_truncate ON audit_checkpoints")
    else:
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS audit_checkpoints_no_{verb}")
        for table in UNIQUE_KEYS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_replace")
    with op.batch_alter_table("servers") as batch:
        batch.drop_column("unreachable_since")
