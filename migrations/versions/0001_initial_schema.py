"""Initial schema, with the triggers that make audit_entries and command_runs append-only.

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 14:17:27.633792

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('audit_checkpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('entries', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_checkpoints'))
    )
    op.create_table('audit_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_kind', sa.String(length=16), nullable=False),
    sa.Column('actor_user_id', sa.Integer(), nullable=True),
    sa.Column('actor_email', sa.String(length=254), nullable=True),
    sa.Column('actor_role', sa.String(length=16), nullable=True),
    sa.Column('actor_os_user', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('server_id', sa.Integer(), nullable=True),
    sa.Column('server_name', sa.String(length=63), nullable=True),
    sa.Column('app_id', sa.Integer(), nullable=True),
    sa.Column('app_name', sa.String(length=255), nullable=True),
    sa.Column('target_type', sa.String(length=32), nullable=True),
    sa.Column('target_id', sa.String(length=64), nullable=True),
    sa.Column('target_label', sa.String(length=255), nullable=True),
    sa.Column('diff', sa.Text(), nullable=False),
    sa.Column('request_ip', sa.String(length=64), nullable=True),
    sa.Column('request_user_agent', sa.String(length=512), nullable=True),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('caused_by', sa.String(length=64), nullable=True),
    sa.Column('operation_id', sa.Integer(), nullable=True),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entries')),
    sa.UniqueConstraint('seq', name=op.f('uq_audit_entries_seq'))
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entries_action_seq', ['action', 'seq'], unique=False)
        batch_op.create_index('ix_audit_entries_actor_seq', ['actor_email', 'seq'], unique=False)
        batch_op.create_index('ix_audit_entries_app_id_seq', ['app_id', 'seq'], unique=False)
        batch_op.create_index('ix_audit_entries_app_seq', ['server_name', 'app_name', 'seq'], unique=False)
        batch_op.create_index('ix_audit_entries_category_seq', ['category', 'seq'], unique=False)
        batch_op.create_index('ix_audit_entries_created', ['created_at'], unique=False)
        batch_op.create_index('ix_audit_entries_operation', ['operation_id'], unique=False)
        batch_op.create_index('ix_audit_entries_server_id_seq', ['server_id', 'seq'], unique=False)
        batch_op.create_index('ix_audit_entries_server_seq', ['server_name', 'seq'], unique=False)

    op.create_table('operations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('server_id', sa.Integer(), nullable=True),
    sa.Column('server_name', sa.String(length=63), nullable=True),
    sa.Column('app_id', sa.Integer(), nullable=True),
    sa.Column('app_name', sa.String(length=255), nullable=True),
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('requested_by_email', sa.String(length=254), nullable=True),
    sa.Column('requested_by_role', sa.String(length=16), nullable=True),
    sa.Column('retry_of_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('warnings', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_operations')),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('operations', schema=None) as batch_op:
        batch_op.create_index('ix_operations_scope_status', ['scope', 'status', 'id'], unique=False)
        batch_op.create_index('ix_operations_status_created', ['status', 'created_at'], unique=False)

    op.create_table('servers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('ssh_user', sa.String(length=32), nullable=False),
    sa.Column('private_key_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('public_key', sa.Text(), nullable=False),
    sa.Column('expected_host_key_fingerprint', sa.String(length=80), nullable=True),
    sa.Column('host_key_type', sa.String(length=64), nullable=True),
    sa.Column('host_key_fingerprint', sa.String(length=80), nullable=True),
    sa.Column('seen_host_key_type', sa.String(length=64), nullable=True),
    sa.Column('seen_host_key_fingerprint', sa.String(length=80), nullable=True),
    sa.Column('dokku_version', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('status_message', sa.Text(), nullable=True),
    sa.Column('last_checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('remote_keys', sa.Text(), nullable=True),
    sa.Column('remote_keys_checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_servers')),
    sa.UniqueConstraint('name', name=op.f('uq_servers_name')),
    sqlite_autoincrement=True,
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email')),
    sqlite_autoincrement=True,
    )
    op.create_table('apps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('server_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('imported', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('ps_status', sa.Text(), nullable=True),
    sa.Column('ps_checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['server_id'], ['servers.id'], name=op.f('fk_apps_server_id_servers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_apps')),
    sa.UniqueConstraint('server_id', 'name', name=op.f('uq_apps_server_id')),
    sqlite_autoincrement=True,
    )
    op.create_table('command_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('operation_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('server_name', sa.String(length=63), nullable=True),
    sa.Column('argv', sa.Text(), nullable=False),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('stdout', sa.Text(), nullable=False),
    sa.Column('stderr', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['operation_id'], ['operations.id'], name=op.f('fk_command_runs_operation_id_operations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_command_runs'))
    )
    with op.batch_alter_table('command_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_command_runs_operation_id'), ['operation_id'], unique=False)

    op.create_table('deploy_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('server_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('public_key', sa.Text(), nullable=False),
    sa.Column('key_type', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=80), nullable=False),
    sa.Column('adopted', sa.Boolean(), nullable=False),
    sa.Column('added_by_email', sa.String(length=254), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['server_id'], ['servers.id'], name=op.f('fk_deploy_keys_server_id_servers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deploy_keys')),
    sa.UniqueConstraint('server_id', 'name', name=op.f('uq_deploy_keys_server_id')),
    sqlite_autoincrement=True,
    )
    op.create_table('domains',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('app_id', sa.Integer(), nullable=False),
    sa.Column('hostname', sa.String(length=253), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_domains_app_id_apps')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_domains')),
    sa.UniqueConstraint('app_id', 'hostname', name=op.f('uq_domains_app_id')),
    sqlite_autoincrement=True,
    )
    op.create_table('env_vars',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('app_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('value_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('value_fingerprint', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_env_vars_app_id_apps')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_env_vars')),
    sa.UniqueConstraint('app_id', 'key', name=op.f('uq_env_vars_app_id')),
    sqlite_autoincrement=True,
    )
    # ### end Alembic commands ###
    create_append_only_triggers()


def downgrade():
    drop_append_only_triggers()
    op.drop_table('env_vars')
    op.drop_table('domains')
    op.drop_table('deploy_keys')
    with op.batch_alter_table('command_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_command_runs_operation_id'))

    op.drop_table('command_runs')
    op.drop_table('apps')
    op.drop_table('users')
    op.drop_table('servers')
    with op.batch_alter_table('operations', schema=None) as batch_op:
        batch_op.drop_index('ix_operations_status_created')
        batch_op.drop_index('ix_operations_scope_status')

    op.drop_table('operations')
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_server_seq')
        batch_op.drop_index('ix_audit_entries_server_id_seq')
        batch_op.drop_index('ix_audit_entries_operation')
        batch_op.drop_index('ix_audit_entries_created')
        batch_op.drop_index('ix_audit_entries_category_seq')
        batch_op.drop_index('ix_audit_entries_app_seq')
        batch_op.drop_index('ix_audit_entries_app_id_seq')
        batch_op.drop_index('ix_audit_entries_actor_seq')
        batch_op.drop_index('ix_audit_entries_action_seq')

    op.drop_table('audit_entries')
    op.drop_table('audit_checkpoints')


APPEND_ONLY = ("audit_entries", "command_runs")


def create_append_only_triggers():
    """The database itself refuses to change or remove audit entries and command transcripts."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION intercity_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP; END $$"
        )
        for table in APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION intercity_append_only()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION intercity_append_only()")
    else:
        for table in APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END")


def drop_append_only_triggers():
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS intercity_append_only()")
    else:
        for table in APPEND_ONLY:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
