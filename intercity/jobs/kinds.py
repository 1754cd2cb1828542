"""The registry of operation kinds: each kind of work on a server is declared here once.

A declaration says everything the panel knows about a kind: its audit category, the role needed
to request or retry it, where its card shows and which page regions reload when it ends, the
executor that does the work, its wording, the server-side deadline of its commands, whether
its commands' output may be stored, and whether it is a read. Models, services, views, the
runner and the timeline all ask this module; adding a kind is one `declare(...)` plus its
executor (see docs/DEVELOPING.md).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from intercity.jobs import deploy_executors, executors, service_executors

# Where an operation's card shows: a page of the panel, and the region on it that lists the card.
PAGES = ("app", "server", "deploy_keys")


@dataclass(frozen=True, kw_only=True)
class OperationKind:
    """One kind of operation, as declared below."""

    name: str
    category: str
    title: str
    executor: Callable
    # "member" or "admin": who may request it, and retry it when it failed.
    role: str = "member"
    # Scoped to an app (queued behind the app's other work) or to the server's own work.
    app_level: bool = True
    page: str = "app"
    # The region whose list shows this kind's cards, and the regions that reload when one ends.
    region: str = "app-status"
    refreshes: tuple[str, ...] = ()
    # What the card says once it is applied (the time follows); {app} and {server} are filled in.
    done: str = "Applied on {server}"
    # The audit action when the request is no row change of its own (restart, destroy, import).
    request_action: str | None = None
    # Seconds a command of this kind may run on the server (`timeout`) before the server stops it.
    deadline: int = 600
    # Its work goes on in Docker after the CLI is stopped (a restart's deploy): after losing sight
    # of one, the scope's next operation first checks the app's deploy lock.
    hands_to_docker: bool = False
    # False: none of its commands' output is stored (a command may also refuse on its own).
    store_output: bool = True
    # A read (refresh, drift check, build listing) writes its outcome entry only when it fails.
    read: bool = False
    # Ending it applied removes the app (the card links back to the server).
    removes_app: bool = False
    # Its connection may pin an unknown host key and runs even while the key is in doubt.
    checks_host_key: bool = False

    def __post_init__(self):
        if self.role not in ("member", "admin"):
            raise ValueError(f"{self.name}: role must be member or admin")
        if self.page not in PAGES:
            raise ValueError(f"{self.name}: page must be one of {', '.join(PAGES)}")

    def done_sentence(self, app_name: str | None, server_name: str | None) -> str:
        return self.done.format(app=app_name or "", server=server_name or "the server")


KINDS: dict[str, OperationKind] = {}


def declare(name: str, **fields) -> OperationKind:
    """Add a kind to the registry (once: a second declaration of a name is a mistake)."""
    if name in KINDS:
        raise ValueError(f"operation kind {name!r} is declared twice")
    kind = KINDS[name] = OperationKind(name=name, **fields)
    return kind


class UnknownKind(ValueError):
    pass


def get(name: str) -> OperationKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKind(f"unknown operation kind {name!r}") from None


def in_region(region: str) -> tuple[str, ...]:
    """The kinds whose cards a region lists."""
    return tuple(name for name, kind in KINDS.items() if kind.region == region)


# --- server-level work ---------------------------------------------------------------------

declare("server.check", category="server", title="test the connection", executor=executors.server_check,
        role="admin", app_level=False, page="server", region="server-status",
        refreshes=("server-status", "remote-keys"), request_action="server.connection_test_requested",
        deadline=60, checks_host_key=True)
declare("server.import", category="app", title="import apps", executor=executors.server_import,
        app_level=False, page="server", region="apps-list", refreshes=("apps-list",),
        request_action="server.import_requested", deadline=300)
declare("deploy_keys.apply", category="security", title="apply deploy keys", executor=executors.deploy_keys_apply,
        role="admin", app_level=False, page="deploy_keys", region="deploy-keys-region",
        refreshes=("remote-keys",), deadline=60)
declare("server.refresh_keys", category="security", title="read the deploy keys on the server",
        executor=executors.server_refresh_keys, role="admin", app_level=False, page="deploy_keys",
        region="deploy-keys-region", refreshes=("remote-keys",), deadline=60, read=True)

# --- app-level work ------------------------------------------------------------------------

declare("app.create", category="app", title="create the app", executor=executors.app_create,
        refreshes=("app-status",), deadline=120)
declare("app.destroy", category="app", title="destroy the app", executor=executors.app_destroy,
        refreshes=("app-status",), request_action="app.destroy_requested", deadline=600,
        done="{app} was destroyed on {server}", removes_app=True)
declare("app.restart", category="app", title="restart the app", executor=deploy_executors.app_restart_then_read,
        refreshes=("app-status", "processes", "deploys"), request_action="app.restart_requested", deadline=900,
        hands_to_docker=True)
declare("app.refresh", category="app", title="refresh the app's status", executor=deploy_executors.read_processes,
        refreshes=("app-status", "processes"), deadline=60, read=True)
declare("env.apply", category="security", title="apply environment variables", executor=executors.env_apply,
        region="env", refreshes=("app-status",), deadline=900)
declare("domains.apply", category="app", title="apply domains", executor=executors.domains_apply,
        region="domains", refreshes=("app-status",), deadline=300)

# --- database services (dokku-postgres): listed and created per server, linked per app -------

declare("services.refresh", category="app", title="read the database services", executor=service_executors.services_refresh,
        app_level=False, page="server", region="services", refreshes=("services",), deadline=120, read=True)
declare("service.create", category="app", title="create a database service", executor=service_executors.service_create,
        app_level=False, page="server", region="services", refreshes=("services",),
        request_action="service.create_requested", deadline=900)
declare("service.destroy", category="app", title="destroy a database service",
        executor=service_executors.service_destroy, role="admin", app_level=False, page="server", region="services",
        refreshes=("services",), request_action="service.destroy_requested", deadline=300)
# Linking sets the app's connection URL (a secret env var), so it files under Security like env changes.
declare("service.link", category="security", title="link a database service", executor=service_executors.service_link,
        page="server", region="services", refreshes=("services",), request_action="service.link_requested",
        deadline=900)
declare("service.unlink", category="security", title="unlink a database service",
        executor=service_executors.service_unlink, page="server", region="services", refreshes=("services",),
        request_action="service.unlink_requested", deadline=900)

# --- deploys: the build history, what runs, scaling (their cards show in the app's processes region) ---

declare("app.builds", category="app", title="read the deploy history", executor=deploy_executors.app_builds,
        region="deploys", refreshes=("deploys",), deadline=60, read=True)
declare("app.scale", category="app", title="scale the app", executor=deploy_executors.app_scale,
        region="processes", refreshes=("processes", "app-status", "deploys"), request_action="app.scale_requested",
        deadline=900, hands_to_docker=True)
declare("app.rebuild", category="app", title="rebuild the app", executor=deploy_executors.app_rebuild,
        region="processes", refreshes=("processes", "app-status", "deploys"),
        request_action="app.rebuild_requested", deadline=1800, hands_to_docker=True)
declare("app.stop", category="app", title="stop the app", executor=deploy_executors.app_stop,
        region="processes", refreshes=("processes", "app-status"), request_action="app.stop_requested",
        deadline=300)
declare("app.start", category="app", title="start the app", executor=deploy_executors.app_start,
        region="processes", refreshes=("processes", "app-status", "deploys"), request_action="app.start_requested",
        deadline=900, hands_to_docker=True)
# A finished build's log as the server keeps it (builds:output): its transcript, redacted and truncated, is the log.
declare("app.build_output", category="app", title="read a build's log", executor=deploy_executors.app_build_output,
        region="deploys", refreshes=("deploys",), deadline=60, read=True)
