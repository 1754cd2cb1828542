"""Executors for deploys: read the build history, scale, rebuild, stop and start an app."""
from __future__ import annotations

from sqlalchemy import select

from intercity.dokku import builds as build_parsers
from intercity.dokku import commands, deploy_events, parsers
from intercity.dokku.commands import BUILDS_SINCE
from intercity.dokku.parsers import DokkuError
from intercity.extensions import db
from intercity.jobs import drift
from intercity.models import App
from intercity.jobs import readings
from intercity.models.base import utcnow


def _ps_json(ctx) -> bool:
    return ctx.version >= BUILDS_SINCE


def read_processes(ctx) -> None:
    """ps:report once: deployed/running/count as before, plus processes per type with their states."""
    name = ctx.app().name
    json_format = _ps_json(ctx)
    try:
        out = ctx.run(commands.ps_report(name, json_format)).out
    except parsers.AppMissing:
        readings.app_seen(ctx.app_id, False)
        raise
    readings.app_seen(ctx.app_id, True)
    report = parsers.parse_ps_report(out, json_format)
    app = ctx.app()
    app.ps_status = {"deployed": report.deployed, "running": report.running, "processes": report.processes,
                     "types": build_parsers.parse_processes(out, json_format)}
    app.ps_checked_at = utcnow()
    db.session.commit()


def read_builds(ctx) -> None:
    """The app's builds (0.38+): each kept once; new finished deploys become entries, with who pushed."""
    from intercity.services import deploys

    app = ctx.app()
    name = app.name
    if ctx.version < BUILDS_SINCE:
        _read_without_history(ctx, name)
        return
    found = build_parsers.parse_builds(ctx.run(commands.builds_list(name)).out)
    known = {row.build_id: row.status for row in deploys.recent_builds(app, limit=1000)}
    fresh = [b for b in found if known.get(b.id) != b.status]
    events_text = git_sha = None
    new_deploys = [b for b in fresh if b.deploy and b.finished]
    if new_deploys:
        # Only when there is something new to attribute: a command or two more, not on every reading.
        events_text = ctx.run(commands.events()).out
        events = deploy_events.parse(events_text)
        if any(deploy_events.revision(events, name, b.pid, b.started_at, b.finished_at) is None
               for b in new_deploys):
            git_sha = build_parsers.parse_git_report(ctx.run(commands.git_report(name, True)).out, True)["git_sha"]
    app, server = ctx.app(), ctx.server()
    deploys.record_builds(app, server, fresh, events_text, git_sha, operation_id=ctx.op_id)
    deploys.remember_read(app, {"history": True, "version": str(ctx.version), "listed": len(found)})
    db.session.commit()


def _read_without_history(ctx, name: str) -> None:
    """Before 0.38 Dokku keeps no build list: the current deploy's sha and source are all there is."""
    from intercity.services import deploys

    git = build_parsers.parse_git_report(ctx.run(commands.git_report(name, False)).out, False)
    source = build_parsers.parse_deploy_source(ctx.run(commands.apps_report(name, False)).out, False)
    deploys.remember_read(ctx.app(), {"history": False, "version": str(ctx.version), **git, **source})
    db.session.commit()


def app_builds(ctx) -> None:
    read_builds(ctx)


@drift.add_app_reader
def builds_on_the_drift_schedule(ctx, app_name: str, _seen) -> None:
    """Every drift check has each app's builds listed (0.38+), so a push shows up without a page being opened."""
    from intercity.services import deploys

    if ctx.version < BUILDS_SINCE:
        return
    app = db.session.scalar(select(App).where(App.server_id == ctx.server_id, App.name == app_name))
    if app is not None:
        deploys.list_builds_on_schedule(app)


def _then_read(ctx) -> None:
    """After the panel's own deploy-like work: what runs now and the build it left (failures are warnings)."""
    for reader in (read_processes, read_builds):
        try:
            reader(ctx)
        except DokkuError as error:
            ctx.warn(f"The change was made, but reading the app back failed: {error.message}")


def app_scale(ctx) -> None:
    counts = {str(k): int(v) for k, v in (ctx.payload.get("scale") or {}).items()}
    ctx.run(commands.ps_scale(ctx.app().name, counts))
    _then_read(ctx)


def app_rebuild(ctx) -> None:
    """`ps:rebuild`, its output live like the panel's other builds; then what runs and the build it left."""
    from intercity.jobs.panel_deploy_executors import stream_build

    stream_build(ctx, commands.ps_rebuild(ctx.app().name))
    _then_read(ctx)


def app_stop(ctx) -> None:
    ctx.run(commands.ps_stop(ctx.app().name))
    read_processes(ctx)


def app_start(ctx) -> None:
    ctx.run(commands.ps_start(ctx.app().name))
    _then_read(ctx)


def app_restart_then_read(ctx) -> None:
    """A restart, then what runs and the build it left (the restart itself is no deploy entry)."""
    ctx.run(commands.ps_restart(ctx.app().name))
    _then_read(ctx)


def app_build_output(ctx) -> None:
    """builds:output of one build: the command's transcript (redacted, truncated like every one) is the log."""
    ctx.run(commands.builds_output(ctx.app().name, str(ctx.payload.get("build", ""))))
