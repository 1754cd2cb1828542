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

from intercity.jobs import (backup_executors, deploy_executors, drift, drift_executors, executors,
                           panel_deploy_executors, service_executors, tls_executors)

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
    # A build: the panel waits for its commands as long as the declared deadline (beyond
    # SSH_COMMAND_TIMEOUT), and a live view shows their output while they run.
    long_wait: bool = False

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

# --- deploys the panel starts: built on the server, output shown live (jobs/panel_deploy_executors.py) ---

BUILD_KINDS = ("app.deploy_from_repo", "app.deploy_image", "app.rebuild")
declare("app.deploy_from_repo", category="app", title="deploy from the repository",
        executor=panel_deploy_executors.deploy_from_repo, region="deploy-source", refreshes=("app-status", "deploy-source"),
        request_action="app.deploy_from_repo_requested", deadline=1800, hands_to_docker=True, long_wait=True,
        done="Deployed on {server}")
declare("app.deploy_image", category="app", title="deploy an image", executor=panel_deploy_executors.deploy_image,
        region="deploy-source", refreshes=("app-status", "deploy-source"), request_action="app.deploy_image_requested",
        deadline=1800, hands_to_docker=True, long_wait=True, done="Deployed on {server}")
# --- service plugins and backups: installing a plugin (root only), S3 credentials, checked backups --------

declare("service.plugin_install", category="server", title="install a service plugin",
        executor=backup_executors.plugin_install, role="admin", app_level=False, page="server", region="services",
        refreshes=("services",), request_action="service.plugin_install_requested", deadline=600)
# Credentials and passphrases reach the server only as arguments: filed under Security.
declare("service.backup_auth", category="security", title="set a service's backup credentials",
        executor=backup_executors.backup_auth, role="admin", app_level=False, page="server", region="services",
        refreshes=("services",), request_action="service.backup_auth_requested", deadline=60,
        store_output=False)
declare("service.backup_encryption", category="security", title="set a service's backup encryption",
        executor=backup_executors.backup_encryption, role="admin", app_level=False, page="server",
        region="services", refreshes=("services",), request_action="service.backup_encryption_requested",
        deadline=60, store_output=False)
declare("service.backup", category="app", title="back up a database service", executor=backup_executors.backup_now,
        app_level=False, page="server", region="services", refreshes=("services",),
        request_action="service.backup_requested", deadline=1800)
declare("service.backup_schedule", category="app", title="schedule a service's backups",
        executor=backup_executors.backup_schedule, role="admin", app_level=False, page="server", region="services",
        refreshes=("services",), request_action="service.backup_schedule_requested", deadline=60)
# --- drift checks: what changed on the server outside the panel (intercity/jobs/drift.py) ------

declare("server.drift_check", category="server", title="check for changes made outside the panel",
        executor=drift.drift_check, app_level=False, page="server", region="drift",
        refreshes=("drift", "apps-list"), done="Checked {server} for changes made outside the panel",
        deadline=600, read=True)
declare("server.events_on", category="server", title="turn on Dokku's event log",
        executor=drift_executors.events_on, role="admin", app_level=False, page="server", region="drift",
        refreshes=("drift",), request_action="server.events_on_requested", deadline=60)
# --- HTTPS (dokku-letsencrypt and certs:*): the plugin and renewal job per server, certificates per app --------

declare("tls.refresh", category="server", title="read HTTPS on the server", executor=tls_executors.tls_refresh,
        app_level=False, page="server", region="server-tls", refreshes=("server-tls",), deadline=120, read=True)
declare("tls.install", category="server", title="install the letsencrypt plugin", executor=tls_executors.tls_install,
        role="admin", app_level=False, page="server", region="server-tls", refreshes=("server-tls",), deadline=900)
declare("tls.set_email", category="server", title="set the Let's Encrypt email",
        executor=tls_executors.tls_set_email, role="admin", app_level=False, page="server", region="server-tls",
        refreshes=("server-tls",), deadline=60)
declare("tls.cron_add", category="security", title="add the certificate renewal job",
        executor=tls_executors.tls_cron_add, role="admin", app_level=False, page="server", region="server-tls",
        refreshes=("server-tls",), deadline=60)
declare("tls.app_refresh", category="app", title="read the app's HTTPS", executor=tls_executors.tls_app_refresh,
        region="app-tls", refreshes=("app-tls",), deadline=60, read=True)
declare("tls.enable", category="security", title="enable HTTPS with Let's Encrypt", executor=tls_executors.tls_enable,
        region="app-tls", refreshes=("app-tls",), request_action="tls.enabled", deadline=600)
declare("tls.renew", category="app", title="renew the Let's Encrypt certificate", executor=tls_executors.tls_renew,
        region="app-tls", refreshes=("app-tls",), request_action="tls.renewed", deadline=600)
declare("tls.disable", category="security", title="disable Let's Encrypt", executor=tls_executors.tls_disable,
        region="app-tls", refreshes=("app-tls",), request_action="tls.disabled", deadline=120)
declare("tls.revoke", category="security", title="revoke the Let's Encrypt certificate",
        executor=tls_executors.tls_revoke, region="app-tls", refreshes=("app-tls",), request_action="tls.revoked",
        deadline=600)
declare("certificate.add", category="security", title="install the uploaded certificate",
        executor=tls_executors.certificate_add, region="app-tls", refreshes=("app-tls",),
        request_action="certificate.added", deadline=120)
declare("certificate.remove", category="security", title="remove the certificate",
        executor=tls_executors.certificate_remove, region="app-tls", refreshes=("app-tls",),
        request_action="certificate.removed", deadline=120)
# --- deploys: the build history, what runs, scaling (their cards show in the app's processes region) ---

declare("app.builds", category="app", title="read the deploy history", executor=deploy_executors.app_builds,
        region="deploys", refreshes=("deploys",), deadline=60, read=True)
declare("app.scale", category="app", title="scale the app", executor=deploy_executors.app_scale,
        region="processes", refreshes=("processes", "app-status", "deploys"), request_action="app.scale_requested",
        deadline=900, hands_to_docker=True)
declare("app.rebuild", category="app", title="rebuild the app", executor=deploy_executors.app_rebuild,
        region="processes", refreshes=("processes", "app-status", "deploys", "deploy-source"),
        request_action="app.rebuild_requested", deadline=1800, hands_to_docker=True, long_wait=True,
        done="Rebuilt on {server}")
declare("app.stop", category="app", title="stop the app", executor=deploy_executors.app_stop,
        region="processes", refreshes=("processes", "app-status"), request_action="app.stop_requested",
        deadline=300)
declare("app.start", category="app", title="start the app", executor=deploy_executors.app_start,
        region="processes", refreshes=("processes", "app-status", "deploys"), request_action="app.start_requested",
        deadline=900, hands_to_docker=True)
# A finished build's log as the server keeps it (builds:output): its transcript, redacted and truncated, is the log.
declare("app.build_output", category="app", title="read a build's log", executor=deploy_executors.app_build_output,
        region="deploys", refreshes=("deploys",), deadline=60, read=True)
