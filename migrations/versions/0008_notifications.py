"""Notifications: preferences with the digest watermark, chat targets, the outbox, alert cursor and throttles.

New tables only: nothing here recreates audit_entries, so its triggers stay.

Revision ID: 0008
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


def upgrade():
    op.create_table(
        'notification_preferences',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('user_email', sa.String(length=254), nullable=True),
        sa.Column('digest_frequency', sa.String(length=8), nullable=False),
        sa.Column('security_alerts', sa.Boolean(), nullable=False),
        sa.Column('digest_seq', SEQ, nullable=False),
        sa.Column('last_digest_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notification_preferences_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_preferences')),
        sa.UniqueConstraint('user_id', name=op.f('uq_notification_preferences_user_id')),
        **NEVER_REUSE_IDS,
    )
    op.create_table(
        'notification_targets',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('service', sa.String(length=32), nullable=False),
        sa.Column('url_encrypted', sa.LargeBinary(), nullable=False),
        sa.Column('url_hint', sa.String(length=120), nullable=False),
        sa.Column('alerts', sa.Boolean(), nullable=False),
        sa.Column('digest', sa.Boolean(), nullable=False),
        sa.Column('failures', sa.Boolean(), nullable=False),
        sa.Column('digest_seq', SEQ, nullable=False),
        sa.Column('last_digest_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_targets')),
        **NEVER_REUSE_IDS,
    )
    op.create_table(
        'outbox_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('channel', sa.String(length=8), nullable=False),
        sa.Column('recipient', sa.String(length=254), nullable=True),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('target_id', sa.Integer(), nullable=True),
        sa.Column('subject', sa.String(length=255), nullable=False),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('html', sa.Text(), nullable=True),
        sa.Column('status', sa.String(length=8), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_response', sa.String(length=500), nullable=True),
        sa.Column('covered_seq', SEQ, nullable=True),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_outbox_messages_user_id_users'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['target_id'], ['notification_targets.id'],
                                name=op.f('fk_outbox_messages_target_id_notification_targets'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_messages')),
        **NEVER_REUSE_IDS,
    )
    op.create_index('ix_outbox_messages_status_next', 'outbox_messages', ['status', 'next_attempt_at'])
    op.create_index('ix_outbox_messages_user_kind', 'outbox_messages', ['user_id', 'kind', 'status'])
    op.create_table(
        'notify_cursors',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('seq', SEQ, nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_notify_cursors')),
    )
    # Alerts start from now: an existing log's history is not mailed out as new alerts.
    op.execute("INSERT INTO notify_cursors (name, seq, updated_at) "
               "SELECT 'alerts', COALESCE(MAX(seq), 0), CURRENT_TIMESTAMP FROM audit_entries")
    op.create_table(
        'notify_throttles',
        sa.Column('key', sa.String(length=128), nullable=False),
        sa.Column('until', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_notify_throttles')),
    )


def downgrade():
    op.drop_table('notify_throttles')
    op.drop_table('notify_cursors')
    op.drop_index('ix_outbox_messages_user_kind', table_name='outbox_messages')
    op.drop_index('ix_outbox_messages_status_next', table_name='outbox_messages')
    op.drop_table('outbox_messages')
    op.drop_table('notification_targets')
    op.drop_table('notification_preferences')
