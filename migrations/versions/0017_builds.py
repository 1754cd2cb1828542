"""Builds the panel has seen on a server, once each, and when an app's deploy history was last read.

app_builds: one row per Dokku build record (builds:list, Dokku 0.38+) of an app, keyed by
(server_id, app_name, build_id), so a build seen on many readings gives one `app.deployed`
entry at most (`recorded_as` names the entry's action, NULL: history only). Never audited: the
entries it leads to are the record.

app_deploy_reads: per app, when its builds were last read and what older Dokku versions report
instead of a history (git:report sha, apps:report deploy-source), as JSON.

Plain CREATE TABLE only.

Revision ID: 0017
Revises: 0016
"""
import sqlalchemy as sa
from alembic import op


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "app_builds",
        sa.Column("id", sa.Integer(), primary_key=True),
        # No foreign keys: the history outlives the app row (as the audit log does).
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=True),
        sa.Column("app_name", sa.String(255), nullable=False),
        sa.Column("build_id", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("source", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("git_sha", sa.String(64), nullable=True),
        sa.Column("deployed_by", sa.String(255), nullable=True),
        sa.Column("recorded_as", sa.String(32), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("server_id", "app_name", "build_id", name="uq_app_builds_build"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_app_builds_app", "app_builds", ["server_id", "app_name", "started_at"])
    op.create_table(
        "app_deploy_reads",
        sa.Column("app_id", sa.Integer(), primary_key=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("info", sa.JSON(), nullable=True),
    )


def downgrade():
    op.drop_table("app_deploy_reads")
    op.drop_index("ix_app_builds_app", table_name="app_builds")
    op.drop_table("app_builds")
