"""Where the panel deploys an app from: a repository URL and ref, or a Docker image.

apps.deploy_repo_url, apps.deploy_repo_ref: what "Deploy now" syncs and builds (`git:sync
--build`); never a URL with credentials in it (the panel refuses those: private repositories
use the server's own git set-up). apps.deploy_image: the image last deployed with
`git:from-image`. All three are audited as app.updated like the app's other columns.

Plain ADD COLUMN: no batch operation, so no table is recreated and no trigger lost.

Revision ID: 0018
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op


revision = '0018'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("apps", sa.Column("deploy_repo_url", sa.String(2048), nullable=True))
    op.add_column("apps", sa.Column("deploy_repo_ref", sa.String(255), nullable=True))
    op.add_column("apps", sa.Column("deploy_image", sa.String(512), nullable=True))


def downgrade():
    op.drop_column("apps", "deploy_image")
    op.drop_column("apps", "deploy_repo_ref")
    op.drop_column("apps", "deploy_repo_url")
