"""Deploying from the panel: keep an app's repository and ref, deploy from it, deploy an image."""
from __future__ import annotations

from sqlalchemy import select

from intercity.dokku import deploys
from intercity.extensions import db
from intercity.jobs.kinds import BUILD_KINDS
from intercity.models import App, Operation
from intercity.models.operation import PENDING
from intercity.services.apps import ensure_usable
from intercity.services.operations import request_operation
from intercity.services.permissions import require
from intercity.validation import ValidationError


def save_source(app: App, user, *, url: str | None, ref: str | None) -> App:
    """Keep the repository (no credentials in it) and ref that "Deploy now" builds; audited as app.updated."""
    require(user, "member")
    ensure_usable(app)
    url, ref = deploys.repo_url(url), deploys.git_ref(ref)
    app.deploy_repo_url, app.deploy_repo_ref = url, ref
    return app


def deploy_from_repo(app: App, user) -> Operation:
    """`git:sync --build` with the repository and ref the panel holds when it runs."""
    require(user, "member")
    ensure_usable(app)
    if not app.deploy_repo_url:
        raise ValidationError("Save the repository's URL first.", "repo_url")
    refuse_while_building(app, "repo_url")
    return request_operation("app.deploy_from_repo", server=app.server, app=app, requested_by=user)


def deploy_image(app: App, user, *, image: str | None) -> Operation:
    """`git:from-image APP IMAGE`; the image is kept on the app too (what was deployed last)."""
    require(user, "member")
    ensure_usable(app)
    image = deploys.image(image)
    refuse_while_building(app, "image")
    app.deploy_image = image
    return request_operation("app.deploy_image", server=app.server, app=app, payload={"image": image},
                             requested_by=user, applies=[app])


def building(app: App) -> list[Operation]:
    """The app's builds started from the panel that have not ended (the page shows their output live)."""
    return list(db.session.scalars(select(Operation).where(
        Operation.app_id == app.id, Operation.kind.in_(BUILD_KINDS), Operation.status.in_(PENDING))
        .order_by(Operation.id)))


def refuse_while_building(app: App, field: str | None = None) -> None:
    # A second build would only queue behind the first and deploy the same thing again.
    if building(app):
        raise ValidationError(f"A build of {app.name} is already under way: wait until it ends.", field)
