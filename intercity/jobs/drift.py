"""The drift check: read what a server holds, compare it with what the panel last applied, record each difference.

One read operation per server (`server.drift_check`). It reads the apps, each app's config
(keyed fingerprints only, output never stored), domains and deploy keys, then Dokku's event log
and the server's clock, all before it writes anything. Each difference becomes one entry with
actor `server` (the row change itself, worded by `capture.explain`), and the panel's rows then
hold what the server has, as applied and as wanted; a row whose last change failed keeps its
wanted value and is shown as differing on the server. Apps with work of the panel's in flight
(or a lost command whose end is not certain) are skipped that round, so the panel's own change
is never reported as drift.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from intercity import crypto, validation
from intercity.audit.actor import Actor, acting_as
from intercity.audit.capture import explain, record_event
from intercity.audit.rules import Scope
from intercity.dokku import commands, drift_commands, events, parsers, ssh
from intercity.dokku.parsers import DokkuError
from intercity.extensions import db
from intercity.models import App, CommandRun, DeployKey, Domain, EnvVar, Operation, Server
from intercity.models.base import utcnow
from intercity.models.operation import PENDING
from intercity.services import row_state, value_history
from intercity.validation import ValidationError

log = logging.getLogger(__name__)

SERVER = Actor("server")
# How close to one of the panel's own command runs an event line must be to count as the panel's.
RUN_SLACK = timedelta(seconds=1)
KEY_NOTE = ("Dokku's event log records nothing for deploy keys (ssh-keys:add and ssh-keys:remove fire no "
            "trigger), so who did it cannot be told")

# Per-app readers every check calls for each app it looks at (skipped apps aside), before comparing:
# reader(ctx, app_name, None). Other features hook in here (a build listing, say) without a check of their own;
# a reader runs its own commands with ctx.run and keeps what it finds itself.
APP_READERS: list[Callable] = []


def add_app_reader(reader: Callable) -> Callable:
    """Have every drift check call `reader(ctx, app_name, seen)` for each app it reads (usable as a decorator)."""
    if reader not in APP_READERS:
        APP_READERS.append(reader)
    return reader


@dataclass
class AppSeen:
    env: dict[str, str]
    domains: list[str]


@dataclass
class EventLog:
    enabled: bool
    source: str | None = None
    clock: events.ServerClock | None = None
    groups: list[events.EventGroup] = field(default_factory=list)
    panel_runs: list[tuple[datetime, datetime]] = field(default_factory=list)
    problem: str | None = None


# --- which apps are left alone this round -------------------------------------------------


def skipped_apps(server_id: int, own_op_id: int | None = None) -> dict[str, str]:
    """Apps of the server with the panel's work in flight, or a lost command not certainly ended: name -> why."""
    from intercity.jobs import deadlines

    skipped: dict[str, str] = {}
    apps = db.session.execute(select(App.id, App.name).where(App.server_id == server_id)).all()
    for app_id, name in apps:
        scope = Operation.scope_for(server_id, app_id)
        pending = db.session.scalar(select(Operation).where(Operation.app_id == app_id, Operation.status.in_(PENDING),
                                                            Operation.id != (own_op_id or 0)).limit(1))
        if pending is not None:
            skipped[name] = f"the panel is still working on it ({pending.kind_info.title})"
            continue
        if deadlines.blocking(scope) is not None or db.session.scalar(
                select(Operation.id).where(Operation.scope == scope, Operation.commands_in_doubt.is_(True),
                                           Operation.doubt_resolved_by_id.is_(None)).limit(1)) is not None:
            skipped[name] = "the panel lost sight of a command there and has not read the app back since"
    return skipped


def _keys_busy(server_id: int, own_op_id: int | None) -> bool:
    return db.session.scalar(select(Operation.id).where(
        Operation.server_id == server_id, Operation.kind == "deploy_keys.apply",
        Operation.id != (own_op_id or 0),
        (Operation.status.in_(PENDING)) | ((Operation.commands_in_doubt.is_(True))
                                           & Operation.doubt_resolved_by_id.is_(None))).limit(1)) is not None


# --- reading ------------------------------------------------------------------------------


def _read_app(ctx, name: str) -> AppSeen:
    exported = ctx.run(commands.config_export_json(name), store_stdout=False)
    env = parsers.parse_config_export_json(exported.out)
    ctx.redactor.add(*env.values())
    json_domains = ctx.version.json_domains_report
    hosts = parsers.parse_domains(ctx.run(commands.domains_report(name, json_domains)).out, json_domains)
    return AppSeen(env=env, domains=list(dict.fromkeys(hosts)))


def _digests(ctx, names: list[str]) -> dict[str, str]:
    """Per app, a keyed fingerprint of the SHA-256 of its config and domains as Dokku prints them (or nothing)."""
    if not names or not ctx.config.get("DRIFT_DIGESTS", True):
        return {}
    try:
        result = ctx.run(drift_commands.config_digests(names, ctx.version.json_domains_report), store_stdout=False)
    except DokkuError as error:
        ctx.warn(f"The per-app digests could not be read ({error.message}); every app was read in full.")
        return {}
    # Keyed: a bare SHA-256 of a small config could be guessed, a fingerprint under the panel's key cannot.
    return {name: crypto.fingerprint(digest) for name, digest in drift_commands.parse_digests(result.out).items()}


def _read_events(ctx, server_id: int, server_name: str) -> EventLog:
    """Whether the event log is on; if so its last lines, grouped, and the panel's own command runs beside them."""
    listed = ctx.run(drift_commands.events_list())
    if "Events logger disabled" in f"{listed.out}\n{listed.err}":
        return EventLog(enabled=False)
    path = ctx.config.get("DOKKU_EVENTS_LOG") or drift_commands.EVENTS_LOG
    before = utcnow()
    result = ctx.run(drift_commands.read_events(path), store_stdout=False)
    after = utcnow()
    lines = result.out.splitlines()
    try:
        clock = events.parse_clock(lines[:3], before, after)
    except (ValueError, IndexError):
        return EventLog(enabled=True, problem=f"the clock of {server_name} could not be read")
    source = lines[3].partition("=")[2] if len(lines) > 3 else "none"
    groups = events.parse(lines[4:], clock)
    log_ = EventLog(enabled=True, source=source, clock=clock, groups=groups)
    if source == "none":
        log_.problem = f"neither {path} nor the journal could be read on {server_name}"
    if groups:
        earliest = groups[0].first - clock.offset - RUN_SLACK
        runs = db.session.execute(
            select(CommandRun.started_at, CommandRun.finished_at).join(Operation, CommandRun.operation_id == Operation.id)
            .where(Operation.server_id == server_id, CommandRun.started_at >= earliest - timedelta(minutes=30))).all()
        log_.panel_runs = [(start, end or start) for start, end in runs if start is not None]
    return log_


# --- who did it ---------------------------------------------------------------------------


def _panels(group: events.EventGroup, log_: EventLog) -> bool:
    """A root (empty NAME) command whose lines fall inside one of the panel's own command runs is the panel's."""
    if group.name:
        return False
    first, last = group.panel_time(log_.clock)
    return any(start - RUN_SLACK <= last and first <= end + RUN_SLACK for start, end in log_.panel_runs)


def attribution(log_: EventLog | None, server_name: str, what: str, app: str, item: str | None = None) -> dict:
    """What Dokku's event log says about a change: by which key, by root, by the panel itself, or why nobody can be named."""
    if what == "deploy_key":
        return {"note": KEY_NOTE}
    if log_ is None:
        return {"note": f"Dokku's event log of {server_name} was not read"}
    if not log_.enabled:
        return {"note": f"Dokku's event log is off on {server_name}, so who did it is not known"}
    if log_.problem:
        return {"note": f"who did it is not known: {log_.problem}"}
    matching = [g for g in log_.groups if events.touches(g, what, app, item)]
    outside = [g for g in matching if not _panels(g, log_)]
    if not outside:
        if matching:
            return {"note": "no line in Dokku's event log names this change, other than the panel's own commands"}
        return {"note": "no line in Dokku's event log names this change"}
    group = outside[-1]
    found = {"at": group.first.isoformat(), "dokku_pid": group.pid,
             "triggers": [f"{trigger}( {' '.join(args)} )" for trigger, args in group.triggers][:10]}
    if group.name:
        return {"by": "key", "name": group.name, "fingerprint": group.fingerprint or None, **found}
    return {"by": "root", **found}


# --- the executor ------------------------------------------------------------------------


def drift_check(ctx) -> None:
    server = ctx.server()
    server_id, server_name = server.id, server.name
    try:
        ctx.connect()
    except ssh.Unreachable as error:
        _outage(ctx, error.message)
        return
    _outage(ctx, None)
    skipped = skipped_apps(server_id, ctx.op_id)
    json_list = ctx.version.json_apps_list
    names = parsers.parse_apps_list(ctx.run(commands.apps_list(json_list)).out, json_list)
    seen: dict[str, AppSeen] = {}
    state = ctx.server().drift_state or {}
    in_panel = set(db.session.scalars(select(App.name).where(App.server_id == server_id)))
    baseline = state.get("apps_seen")
    candidates = []
    for name in names:
        if name in skipped or (name not in in_panel and baseline is not None and name in baseline):
            continue  # skipped, or an app the panel was never asked to manage
        try:
            validation.app_name(name, legacy=True)
            validation.operand(name, "name")
        except ValidationError:
            skipped[name] = "the panel cannot manage an app with that name"
            continue
        candidates.append(name)
    # One exec prints a digest per app; only apps whose digest moved since the last check are read in full.
    digests = _digests(ctx, candidates)
    before = state.get("digests") or {}
    unchanged = {name for name in candidates if name in in_panel and digests.get(name)
                 and before.get(name) == digests[name]}
    for name in candidates:
        for reader in APP_READERS:
            reader(ctx, name, None)
        if name in unchanged:
            continue
        try:
            seen[name] = _read_app(ctx, name)
        except parsers.AppMissing:
            names = [n for n in names if n != name]  # destroyed while the check ran: the next check sees it
        except DokkuError as error:
            skipped[name] = f"its config could not be read ({error.message})"
    keys = ctx.list_keys()
    try:
        event_log = _read_events(ctx, server_id, server_name)
    except (DokkuError, parsers.UnparseableOutput) as error:
        event_log = EventLog(enabled=True, problem=getattr(error, "message", str(error)))
    with acting_as(SERVER):
        found = _record(ctx, names, seen, skipped, keys, event_log,
                        {name: digest for name, digest in digests.items() if name in seen or name in unchanged})
    if found:
        ctx.warn(f"{found} change{'s' if found != 1 else ''} made outside the panel found on {server_name}.")


def _outage(ctx, problem: str | None) -> None:
    """One entry when a server stops answering the checks, one when it answers again; nothing in between."""
    server = ctx.server()
    state = dict(server.drift_state or {})
    scope = Scope(server_id=server.id, server_name=server.name)
    with acting_as(SERVER):
        if problem is not None and not state.get("down_since"):
            state["down_since"] = utcnow().isoformat()
            record_event(db.session, "server.unreachable", scope=scope, target_type="server", target_id=server.id,
                         target_label=server.name, operation_id=ctx.op_id, diff={"reason": [None, problem]})
        elif problem is None and state.get("down_since"):
            record_event(db.session, "server.reachable", scope=scope, target_type="server", target_id=server.id,
                         target_label=server.name, operation_id=ctx.op_id,
                         diff={"down_since": [state.pop("down_since"), None]})
    if problem is not None:
        server.drift_checked_at = utcnow()
        ctx.warn(f"{server.name} could not be reached ({problem}); the check tries again at its next time.")
    server.drift_state = state
    db.session.commit()


def _record(ctx, names: list[str], seen: dict[str, AppSeen], skipped: dict[str, str], keys: list[dict],
            event_log: EventLog, digests: dict[str, str]) -> int:
    """Compare and write, in one transaction: the rows take what the server has; each difference is one entry."""
    server = ctx.server()
    now = utcnow()
    # Work the panel asked for while the check was reading is in flight too.
    skipped.update({name: why for name, why in skipped_apps(server.id, ctx.op_id).items() if name not in skipped})
    state = dict(server.drift_state or {})
    recorder = _Recorder(ctx, server, event_log, now)
    panel_apps = {app.name: app for app in db.session.scalars(select(App).where(App.server_id == server.id))}
    baseline = state.get("apps_seen")
    for name, app in panel_apps.items():
        if name in skipped:
            continue
        if name in seen:
            recorder.app(app, seen[name])
        elif name not in names and _expected_on_server(app):
            recorder.app_destroyed(app)
    for name in names:
        if name not in panel_apps and name in seen and baseline is not None and name not in baseline:
            recorder.app_created(name, seen[name])
    if not _keys_busy(server.id, ctx.op_id):
        recorder.deploy_keys(keys)
    server.remote_keys = keys
    server.remote_keys_checked_at = now
    state.update({
        "apps_seen": sorted(names),
        "skipped": skipped,
        "events": {"enabled": event_log.enabled, "source": event_log.source, "problem": event_log.problem},
        "clock_offset_seconds": (round(event_log.clock.offset.total_seconds(), 3)
                                 if event_log.clock is not None else state.get("clock_offset_seconds")),
        "differences": recorder.count,
        # Apps skipped this round keep no digest, so the next check reads them in full.
        "digests": {name: digest for name, digest in digests.items() if name not in skipped},
    })
    server.drift_state = state
    server.drift_checked_at = now
    db.session.commit()
    return recorder.count


def _expected_on_server(app: App) -> bool:
    """An app the panel expects Dokku to have: seen there, or never looked and not a failed creation."""
    if app.on_server is not None:
        return app.on_server
    if app.status != "active":
        return False
    create = db.session.scalar(select(Operation).where(Operation.app_id == app.id, Operation.kind == "app.create")
                               .order_by(Operation.id.desc()).limit(1))
    return create is None or create.outcome == "applied"


class _Recorder:
    """Turns differences into row changes worded as drift entries, and counts them."""

    def __init__(self, ctx, server: Server, event_log: EventLog, now: datetime):
        self.ctx, self.server, self.event_log, self.now = ctx, server, event_log, now
        self.count = 0

    def _outside(self, what: str, app: str | None, item: str | None = None, **more) -> dict:
        self.count += 1
        return {"outside": {**attribution(self.event_log, self.server.name, what, app or "", item), **more}}

    # -- apps --

    def app_created(self, name: str, seen: AppSeen) -> None:
        app = App(server=self.server, name=name, imported=True, status="active", on_server=True,
                  applied_seen_at=self.now)
        db.session.add(app)
        explain(app, "app.created_outside", {
            **self._outside("app_created", name, note_added="now in the panel, with what the server holds"),
            "env_keys": sorted(seen.env), "domains": seen.domains})
        db.session.flush()
        for key in sorted(seen.env):
            if _valid_key(key):
                self._new_var(app, key, seen.env[key], None)  # the app's entry names its variables
        for host in seen.domains:
            hostname = _valid_host(host)
            if hostname:
                domain = Domain(app=app, hostname=hostname, on_server=True, applied_seen_at=self.now)
                db.session.add(domain)
                explain(domain, None)

    def app_destroyed(self, app: App) -> None:
        explain(app, "app.destroyed_outside", {**self._outside("app_destroyed", app.name),
                                               "env_keys": sorted(v.key for v in app.env_vars),
                                               "domains": [d.hostname for d in app.domains]})
        for row in [*app.env_vars, *app.domains]:
            explain(row, None)  # they go with the app, which its entry says
        db.session.delete(app)

    def app(self, app: App, seen: AppSeen) -> None:
        app.on_server, app.applied_seen_at = True, self.now
        self.env(app, seen.env)
        self.domains(app, seen.domains)

    # -- env vars --

    def _new_var(self, app: App, key: str, value: str, action: str | None, extra: dict | None = None) -> EnvVar:
        var = EnvVar(app=app, key=key)
        var.value = value
        var.applied_fingerprint, var.applied_seen_at = var.value_fingerprint, self.now
        explain(var, action, extra)  # before the flush that writes its entry
        db.session.add(var)
        db.session.flush()
        value_history.remember_env(app, key, value, operation_id=self.ctx.op_id)
        return var

    def env(self, app: App, env: dict[str, str]) -> None:
        states = row_state.latest_states("env.apply", app_id=app.id)
        wanted = {var.key: var for var in app.env_vars}
        for key, var in wanted.items():
            latest = states.get(key)
            failed = latest is not None and latest.state == "failed" and not latest.removal
            expected = var.applied_fingerprint or var.value_fingerprint
            if key in env:
                value = env[key]
                fingerprint = crypto.fingerprint(value)
                value_history.remember_env(app, key, value, operation_id=self.ctx.op_id)
                if fingerprint != expected:
                    if failed:
                        # The failed change keeps its wanted value; the page offers Retry or keeping the server's.
                        record_event(db.session, "env_var.changed_outside", **self._kept(
                            app, var, {"value_fingerprint": [expected, fingerprint]}))
                    else:
                        var.value = value
                        explain(var, "env_var.changed_outside", self._outside("env", app.name, key))
                var.applied_fingerprint, var.applied_seen_at = fingerprint, self.now
            elif var.applied_fingerprint is not None or not failed:
                if failed:
                    record_event(db.session, "env_var.removed_outside", **self._kept(
                        app, var, {"value_fingerprint": [expected, None]}))
                    var.applied_fingerprint, var.applied_seen_at = None, self.now
                else:
                    explain(var, "env_var.removed_outside", self._outside("env", app.name, key))
                    db.session.delete(var)
        for key in sorted(set(env) - set(wanted)):
            latest = states.get(key)
            if latest is not None and latest.removal and latest.state != "applied":
                continue  # its removal failed: the page already says it is still on the server
            if not _valid_key(key):
                self.ctx.warn(f"{app.name}: {key!r} was set outside the panel; its name is not valid in the panel.")
                continue
            self._new_var(app, key, env[key], "env_var.added_outside", self._outside("env", app.name, key))

    def _kept(self, app: App, var: EnvVar, diff: dict) -> dict:
        """An entry's fields for a row that keeps its wanted value (its own change failed): no row change to word."""
        scope = Scope(server_id=app.server_id, server_name=self.server.name, app_id=app.id, app_name=app.name)
        return dict(scope=scope, target_type="env_var", target_id=var.id, target_label=var.key,
                    diff={**diff, "kept_wanted": True, **self._outside("env", app.name, var.key)})

    # -- domains --

    def domains(self, app: App, hosts: list[str]) -> None:
        states = row_state.latest_states("domains.apply", app_id=app.id)
        present = set(hosts)
        rows = {domain.hostname: domain for domain in app.domains}
        for hostname, domain in rows.items():
            latest = states.get(hostname)
            failed_add = latest is not None and latest.state == "failed" and not latest.removal
            if hostname in present:
                domain.on_server, domain.applied_seen_at = True, self.now
            elif domain.on_server is False or failed_add:
                domain.on_server, domain.applied_seen_at = False, self.now  # never got there: its failure says so
            else:
                explain(domain, "domain.removed_outside", self._outside("domain", app.name, hostname))
                db.session.delete(domain)
        for host in hosts:
            if host in rows:
                continue
            latest = states.get(host)
            if latest is not None and latest.removal and latest.state != "applied":
                continue  # its removal failed: still on the server, as the page says
            hostname = _valid_host(host)
            if hostname is None or hostname in rows:
                continue
            domain = Domain(app=app, hostname=hostname, on_server=True, applied_seen_at=self.now)
            db.session.add(domain)
            explain(domain, "domain.added_outside", self._outside("domain", app.name, hostname))
            rows[hostname] = domain

    # -- deploy keys --

    def deploy_keys(self, listed: list[dict]) -> None:
        server = self.server
        states = row_state.latest_states("deploy_keys.apply", server_id=server.id)
        listed_by_fp = {key["fingerprint"]: key for key in listed if key.get("fingerprint")}
        rows = list(db.session.scalars(select(DeployKey).where(DeployKey.server_id == server.id)))
        managed = {row.fingerprint for row in rows}
        for row in rows:
            latest = states.get(row.name)
            if row.fingerprint in listed_by_fp:
                row.on_server, row.applied_seen_at = True, self.now
            elif row.on_server is False or (latest is not None and latest.state != "applied" and not latest.removal):
                row.on_server, row.applied_seen_at = False, self.now
            else:
                explain(row, "deploy_key.removed_outside", self._outside("deploy_key", None, row.name))
                db.session.delete(row)
        # Keys Dokku listed before that the panel does not manage stay unmanaged; a new one is taken in.
        before = server.remote_keys
        known = {key.get("fingerprint") for key in (before or [])}
        for fingerprint, key in listed_by_fp.items():
            if before is None or fingerprint in known or fingerprint in managed:
                continue
            row = _key_row(server, key)
            row.on_server, row.applied_seen_at = True, self.now
            db.session.add(row)
            explain(row, "deploy_key.added_outside", self._outside("deploy_key", None, row.name))


def _key_row(server: Server, key: dict) -> DeployKey:
    # As adopting does: the name Dokku lists, and the public key where the listing had it (JSON only).
    name = str(key.get("name") or "")[:255] or key["fingerprint"]
    taken = db.session.scalar(select(DeployKey.id).where(DeployKey.server_id == server.id, DeployKey.name == name))
    key_type, line = validation.listed_key_material(key)
    return DeployKey(server=server, name=name if taken is None else key["fingerprint"], public_key=line,
                     key_type=key_type, fingerprint=key["fingerprint"], adopted=True, added_by_email=None)


def _valid_key(key: str) -> bool:
    try:
        validation.env_key(key)
        return True
    except ValidationError:
        return False


def _valid_host(host: str) -> str | None:
    try:
        return validation.operand(validation.domain(host, legacy=True), "domain")
    except ValidationError:
        return None
