"""Deploys: the app's build history read from Dokku, one audit entry per deploy, what runs, scaling, links."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, or_, select

from intercity.audit.actor import Actor
from intercity.audit.capture import record_event
from intercity.audit.rules import Scope
from intercity.dokku import commands, deploy_events
from intercity.dokku.builds import Build
from intercity.extensions import db
from intercity.models import App, AppBuild, AppDeployRead, Operation, Server
from intercity.models.base import utcnow
from intercity.models.operation import PENDING
from intercity.services.apps import ensure_usable
from intercity.services.operations import request_operation
from intercity.services.permissions import require
from intercity.services.tls import tls_enabled
from intercity.validation import ValidationError

# Kinds with which the panel itself deploys code (declared with deploying from the panel): a build
# of theirs is recorded by their own outcome entry, not imported as an `app.deployed` entry.
PANEL_DEPLOY_KINDS = ("app.deploy_from_repo", "app.deploy_image")
# Sources those kinds start builds with.
PANEL_DEPLOY_SOURCES = ("git:sync", "git:from-image")
PANEL_DEPLOY_SLACK = timedelta(seconds=60)
# A page opening reads the server again only when the last reading is older than this.
READ_AGAIN_AFTER = timedelta(minutes=1)
# A server found unreachable is not read on page opens for this long (drift checks and Retry still try).
UNREACHABLE_PAUSE = timedelta(minutes=5)
# How many builds the app page lists.
SHOWN_BUILDS = 20


# --- the history ---------------------------------------------------------------------------


def _panel_started(app: App, build: Build) -> bool:
    """Whether a panel operation that deploys code was running on the app when the build began."""
    if build.source not in PANEL_DEPLOY_SOURCES or build.started_at is None:
        return False
    ops = db.session.scalars(select(Operation).where(
        Operation.app_id == app.id, Operation.kind.in_(PANEL_DEPLOY_KINDS), Operation.started_at.is_not(None)))
    for op in ops:
        began = op.started_at - PANEL_DEPLOY_SLACK
        ended = (op.finished_at or utcnow()) + PANEL_DEPLOY_SLACK
        if began <= build.started_at <= ended:
            return True
    return False


def record_builds(app: App, server: Server, builds: list[Build], events_text: str | None, git_sha: str | None,
                  operation_id: int | None = None) -> list[AppBuild]:
    """Keep each build once; a finished deploy seen for the first time becomes one entry. The caller commits."""
    known = {row.build_id: row for row in db.session.scalars(
        select(AppBuild).where(AppBuild.server_id == server.id, AppBuild.app_name == app.name))}
    events = deploy_events.parse(events_text or "")
    newest_deploy = max((b for b in builds if b.deploy and b.status == "succeeded" and b.started_at),
                        key=lambda b: b.started_at, default=None)
    written = []
    for build in sorted(builds, key=lambda b: (b.started_at is None, b.started_at or utcnow(), b.id)):
        row = known.get(build.id)
        if row is None:
            row = AppBuild(server_id=server.id, app_id=app.id, app_name=app.name, build_id=build.id)
            db.session.add(row)
            known[build.id] = row
        elif row.status == build.status and row.finished_at == build.finished_at:
            continue
        row.kind, row.source, row.status = build.kind, build.source, build.status
        row.exit_code, row.started_at, row.finished_at = build.exit_code, build.started_at, build.finished_at
        row.seen_at = utcnow()
        if row.deployed_by is None:
            row.deployed_by = deploy_events.who_deployed(events, app.name, build.pid, build.started_at,
                                                         build.finished_at)
        if row.git_sha is None:
            row.git_sha = deploy_events.revision(events, app.name, build.pid, build.started_at, build.finished_at)
        if build is newest_deploy and git_sha and row.git_sha is None:
            row.git_sha = git_sha  # git:report knows only the current deploy's sha
        if row.recorded_as is None and build.finished and build.deploy and not _panel_started(app, build):
            row.recorded_as = "app.deployed" if build.status == "succeeded" else "app.deploy_failed"
            _entry(app, server, row, operation_id)
        written.append(row)
    return written


def _entry(app: App, server: Server, row: AppBuild, operation_id: int | None) -> None:
    by = f"deploy key {row.deployed_by}" if row.deployed_by else f"a push to {server.name}"
    if row.deployed_by is None and row.source not in ("git-hook",):
        by = f"{row.source} on {server.name}"
    diff = {"build_id": row.build_id, "source": row.source, "git_sha": row.git_sha, "status": row.status,
            "exit_code": row.exit_code, "duration_seconds": row.duration, "deployed_by": row.deployed_by,
            "by": by, "started_at": row.started_at.isoformat() if row.started_at else None}
    fields = dict(actor=Actor("dokku"), target_type="app", target_id=app.id, target_label=app.name,
                  scope=Scope(server_id=server.id, server_name=server.name, app_id=app.id, app_name=app.name),
                  operation_id=operation_id, diff={key: [None, value] for key, value in diff.items() if value is not None})
    if row.recorded_as == "app.deployed":
        record_event(db.session, "app.deployed", **fields)
    else:
        record_event(db.session, "app.deploy_failed", **fields)


def remember_read(app: App, info: dict) -> None:
    read = db.session.get(AppDeployRead, app.id)
    if read is None:
        read = AppDeployRead(app_id=app.id)
        db.session.add(read)
    read.checked_at = utcnow()
    read.info = info


def last_read(app: App) -> AppDeployRead | None:
    return db.session.get(AppDeployRead, app.id)


def recent_builds(app: App, limit: int = SHOWN_BUILDS) -> list[AppBuild]:
    return list(db.session.scalars(
        select(AppBuild).where(AppBuild.server_id == app.server_id, AppBuild.app_name == app.name)
        .order_by(AppBuild.started_at.desc().nulls_last(), AppBuild.id.desc()).limit(limit)))


def last_deploys(server_ids: list[int]) -> dict[tuple[int, str], AppBuild]:
    """The newest succeeded deploy per (server, app)."""
    newest = (select(AppBuild.server_id, AppBuild.app_name, func.max(AppBuild.started_at).label("at"))
              .where(AppBuild.server_id.in_(server_ids), AppBuild.status == "succeeded")
              .group_by(AppBuild.server_id, AppBuild.app_name).subquery())
    rows = db.session.scalars(select(AppBuild).join(newest, (AppBuild.server_id == newest.c.server_id)
                                                    & (AppBuild.app_name == newest.c.app_name)
                                                    & (AppBuild.started_at == newest.c.at)))
    return {(row.server_id, row.app_name): row for row in rows}


# --- reading when a page opens ---------------------------------------------------------------


def _recently_requested(app: App, kind: str) -> bool:
    since = utcnow() - READ_AGAIN_AFTER
    return db.session.scalar(select(Operation.id).where(
        Operation.app_id == app.id, Operation.kind == kind,
        or_(Operation.status.in_(PENDING), Operation.created_at >= since)).limit(1)) is not None


def list_builds_on_schedule(app: App) -> Operation | None:
    """A drift check asks for the app's builds too (its own read operation), unless one was asked within the minute."""
    if app.status != "active" or _recently_requested(app, "app.builds"):
        return None
    return request_operation("app.builds", server=app.server, app=app)


def read_when_opened(app: App, user) -> list[Operation]:
    """An app page opened: read builds and processes again when the last reading is over a minute old.

    Any signed-in person may cause these reads (they change nothing); at most one of each per
    minute and app, whoever opens the page. The caller commits.
    """
    server = app.server
    if app.status != "active" or server.status == "host_key_mismatch" or not server.host_key_fingerprint:
        return []
    if server.unreachable_since is not None and server.unreachable_since > utcnow() - UNREACHABLE_PAUSE:
        return []  # the page says since when; opening it again should not add a failed reading each minute
    if db.session.scalar(select(Operation.id).where(Operation.app_id == app.id, Operation.kind == "app.create",
                                                    Operation.status.in_(PENDING)).limit(1)) is not None:
        return []  # not on the server yet: read once it is (the next opening)
    stale = utcnow() - READ_AGAIN_AFTER
    requested = []
    read = last_read(app)
    if (read is None or read.checked_at is None or read.checked_at < stale) \
            and not _recently_requested(app, "app.builds"):
        requested.append(request_operation("app.builds", server=app.server, app=app, requested_by=user))
    if (app.ps_checked_at is None or app.ps_checked_at < stale) and not _recently_requested(app, "app.refresh"):
        requested.append(request_operation("app.refresh", server=app.server, app=app, requested_by=user))
    return requested


# --- what runs: scaling, rebuild, stop, start ---------------------------------------------------


def parse_scale_form(form: dict[str, str]) -> dict[str, int]:
    """`scale-<type>` fields (and a new `new_type`/`new_count` pair) as counts; ValidationError names the field."""
    counts: dict[str, int] = {}
    pairs = [(key[len("scale-"):], key, value) for key, value in form.items() if key.startswith("scale-")]
    if (form.get("new_type") or "").strip():
        pairs.append((form["new_type"].strip(), "new_count", form.get("new_count", "")))
    for proc, field, value in pairs:
        if not commands.PROCESS_TYPE.match(proc):
            raise ValidationError(f"{proc[:40]!r} is not a process type: use lowercase letters, digits, - and _ "
                                  "(as in the Procfile).", "new_type" if field == "new_count" else field)
        text = (value or "").strip()
        if not text.isdigit() or int(text) > commands.MAX_SCALE:
            raise ValidationError(f"Enter a whole number from 0 to {commands.MAX_SCALE} for {proc}.", field)
        counts[proc] = int(text)
    if not counts:
        raise ValidationError("Give at least one process type a count.", "new_type")
    return counts


def scale_app(app: App, user, counts: dict[str, int]) -> Operation:
    require(user, "member")
    ensure_usable(app)
    commands.ps_scale(app.name, counts)  # validates
    return request_operation("app.scale", server=app.server, app=app, requested_by=user,
                             payload={"scale": dict(sorted(counts.items()))})


def _simple(kind: str):
    def request(app: App, user) -> Operation:
        require(user, "member")
        ensure_usable(app)
        return request_operation(kind, server=app.server, app=app, requested_by=user)
    return request


def build_output(app: App, user, build_id: str) -> Operation:
    """Read a build's log from the server (members: a deploy log can print what the app prints)."""
    require(user, "member")
    row = db.session.scalar(select(AppBuild).where(AppBuild.server_id == app.server_id,
                                                   AppBuild.app_name == app.name, AppBuild.build_id == build_id))
    if row is None:
        raise ValidationError("The panel has not seen that build of this app.", None)
    return request_operation("app.build_output", server=app.server, app=app, requested_by=user,
                             payload={"build": row.build_id})


def rebuild_app(app: App, user) -> Operation:
    """`ps:rebuild`: builds and deploys the app's last source again (refused while a build from the panel runs)."""
    from intercity.services.panel_deploys import refuse_while_building  # it imports the kinds, which import us

    require(user, "member")
    ensure_usable(app)
    refuse_while_building(app)
    return request_operation("app.rebuild", server=app.server, app=app, requested_by=user)
stop_app = _simple("app.stop")
start_app = _simple("app.start")


# --- around the app -------------------------------------------------------------------------------


def app_urls(app: App) -> list[str]:
    """Where the app answers, from its domains: https where the app was last seen serving HTTPS, else http."""
    scheme = "https" if tls_enabled(app) else "http"
    # Punycode is what a browser sends anyway; a wildcard domain names no single address.
    return [f"{scheme}://{domain.hostname}" for domain in app.domains if not domain.hostname.startswith("*.")]


def all_apps(name_filter: str = "") -> list[App]:
    """Every app on every server, by name then server; `name_filter` matches part of the name."""
    query = select(App).join(Server, App.server_id == Server.id)
    needle = (name_filter or "").strip().lower()[:255]
    if needle:
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(func.lower(App.name).like(f"%{escaped}%", escape="\\"))
    return list(db.session.scalars(query.order_by(App.name, Server.name)))


def states_for(apps: list[App]) -> dict[int, tuple[str, str]]:
    """The apps list's short state per app (as each server's page shows it)."""
    from intercity.services.apps import app_states

    states: dict[int, tuple[str, str]] = {}
    for server in {app.server for app in apps}:
        states.update(app_states(server))
    return states
