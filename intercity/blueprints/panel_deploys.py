"""An app's deploys started from the panel (repository, image, rebuild) with their live output, and its logs."""
from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import IntegerField, StringField
from wtforms.validators import Optional

from intercity.blueprints.panel_support import attempt, back
from intercity.blueprints.panel_support import signed_in_user as _user, app_or_404 as _app
from intercity.dokku import deploys as deploy_rules
from intercity.extensions import db
from intercity.jobs import expiring
from intercity.jobs.panel_deploy_executors import build_key
from intercity.jobs.kinds import BUILD_KINDS
from intercity.models import App, Operation
from intercity.services import panel_deploys as deploy_service
from intercity.services import logs as log_service
from intercity.services.operations import region_operations
from intercity.web import require_role

bp = Blueprint("panel_deploys", __name__, url_prefix="/servers/<int:server_id>/apps/<name>")

# Forms on this part of the app page refresh the head, the status and the activity too.
DEPLOY_OOB = "#flashes,#app-head,#app-status,#recent-activity"


class SourceForm(FlaskForm):
    repo_url = StringField("Repository URL", id="deploy-repo-url")
    repo_ref = StringField("Branch, tag or commit", id="deploy-repo-ref")


class ImageForm(FlaskForm):
    image = StringField("Image", id="deploy-image")


class LogsForm(FlaskForm):
    lines = IntegerField("Lines", default=log_service.DEFAULT_LINES, validators=[Optional()], id="logs-lines")
    process_type = StringField("Process type", id="logs-process")


def _page(app: App, **anchor) -> str:
    return url_for("apps.show", server_id=app.server_id, name=app.name, **anchor)


def page_context(app: App, forms: dict) -> dict:
    """What the app page's deploy and logs parts need (apps.show and the error pages of these forms)."""
    source_form = forms.get("source_form") or SourceForm(formdata=None, repo_url=app.deploy_repo_url,
                                                         repo_ref=app.deploy_repo_ref)
    token = request.args.get("logs", "")
    record = None
    if token and current_user.is_authenticated and current_user.can("member"):
        record = log_service.find(app, _user(), token)
    return dict(
        source_form=source_form,
        image_form=forms.get("image_form") or ImageForm(formdata=None, image=app.deploy_image),
        logs_form=forms.get("logs_form") or LogsForm(formdata=None),
        deploy_source_operations=region_operations("deploy-source", app_id=app.id),
        building=deploy_service.building(app),
        build_kinds=BUILD_KINDS,
        private_hint=deploy_rules.PRIVATE_HINT,
        log_token=token if record is not None else None,
        log_record=record,
        log_settings=log_service.settings(),
        deploy_oob=DEPLOY_OOB,
    )


def _invalid(app: App, **forms):
    from intercity.blueprints.apps import _context

    return render_template("apps/show.html", **_context(app, **forms)), 422


# --- the source and the builds --------------------------------------------------------------


@bp.post("/deploy-source")
@require_role("member")
def save_source(server_id: int, name: str):
    app = _app(server_id, name)
    form = SourceForm()
    deploy_now = request.form.get("action") == "deploy"

    def save():
        deploy_service.save_source(app, _user(), url=form.repo_url.data, ref=form.repo_ref.data)
        return deploy_service.deploy_from_repo(app, _user()) if deploy_now else None

    op, error = attempt(save, form, "repo_url")
    if error is not None:
        if deploy_rules.CREDENTIALS == error.message:
            form.repo_url.data = ""  # never sent back into the page: it holds a credential
        return _invalid(_app(server_id, name), source_form=form)
    if op is not None:
        return back(_page(app), f"Deploying {app.name} from {app.deploy_repo_url}…", "info", operation=op)
    return back(_page(app), f"Saved where {app.name} deploys from.", "success")


@bp.post("/deploy-image")
@require_role("member")
def deploy_image(server_id: int, name: str):
    app = _app(server_id, name)
    form = ImageForm()
    op, error = attempt(lambda: deploy_service.deploy_image(app, _user(), image=form.image.data), form, "image")
    if error is not None:
        return _invalid(_app(server_id, name), image_form=form)
    return back(_page(app), f"Deploying {op.data.get('image')} to {app.name}…", "info", operation=op)


@bp.get("/deploys/<int:operation_id>/output")
@login_required
def build_output(server_id: int, name: str, operation_id: int):
    """A running build's output as far as it came (the page polls this every 2 s until the build ends)."""
    app = _app(server_id, name)
    op = db.session.get(Operation, operation_id)
    if op is None or op.app_id != app.id:
        abort(404)
    # Only builds write live output; any other operation of the app answers as an ended one.
    text = expiring.buffer().get(build_key(op.id)) if op.pending and op.kind in BUILD_KINDS else None
    return render_template("apps/_build_output.html", app=app, server=app.server, op=op, text=text,
                           build_kinds=BUILD_KINDS)


# --- logs -------------------------------------------------------------------------------


@bp.post("/logs")
@require_role("member")
def logs_start(server_id: int, name: str):
    app = _app(server_id, name)
    form = LogsForm()
    follow = request.form.get("action") == "follow"
    token, error = attempt(lambda: log_service.start(app, _user(), lines=request.form.get("lines"),
                                                      process=form.process_type.data, follow=follow), form, "lines")
    if error is not None:
        if request.headers.get("HX-Request") == "true":
            return render_template("apps/_log_read.html", app=app, server=app.server, record=None, token=None,
                                   error=error.message, log_settings=log_service.settings()), 422
        return _invalid(_app(server_id, name), logs_form=form)
    if request.headers.get("HX-Request") != "true":
        return redirect(_page(app, logs=token, _anchor="logs"), code=303)
    return _read_fragment(app, token, log_service.find(app, _user(), token), first=True)


@bp.get("/logs/<token>")
@require_role("member")
def logs_read(server_id: int, name: str, token: str):
    app = _app(server_id, name)
    return _read_fragment(app, token, log_service.find(app, _user(), token))


@bp.post("/logs/<token>/next")
@require_role("member")
def logs_next(server_id: int, name: str, token: str):
    """The next read of a follow (the page asks every few seconds while it follows)."""
    app = _app(server_id, name)
    return _read_fragment(app, token, log_service.next_round(app, _user(), token))


def _read_fragment(app: App, token: str, record: dict | None, first: bool = False):
    return render_template("apps/_log_read.html", app=app, server=app.server, record=record, token=token,
                           first=first, error=None, log_settings=log_service.settings(),
                           follow_state=log_service.follow_state(record) if record else None)
