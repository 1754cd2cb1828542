"""Every action the audit log can write, with its category and whether it is alerted at once."""
from __future__ import annotations

CATEGORIES = ("security", "app", "server", "team")
# How the timeline's chips, notifications and docs name each category.
LABELS = {"security": "Security", "app": "Apps", "server": "Servers", "team": "Team"}
# An operation's request and outcome entries take the category of the operation's kind
# (intercity.jobs.kinds.KINDS), so an env var's failed apply files under Security with it.
BY_KIND = "by kind"

# action -> (category, alerted). The one table: capture files entries by it, the notification code
# asks `is_alerted`, docs/DEVELOPING.md publishes it (a test keeps the two the same).
ACTIONS: dict[str, tuple[str, bool]] = {
    # Accounts and sign-in
    "user.created": ("team", False),
    "user.updated": ("security", True),
    "user.deleted": ("security", True),
    "user.invited": ("security", True),
    "invitation.accepted": ("team", False),
    "invitation.revoked": ("security", True),
    "user.role_changed": ("security", True),
    "user.deactivated": ("security", True),
    "user.reactivated": ("security", True),
    "user.email_changed": ("team", False),
    "user.password_changed": ("security", False),
    "user.login": ("team", False),
    "user.logout": ("team", False),
    "user.login_failed": ("security", False),
    "user.login_failures_repeated": ("security", True),
    "user.2fa_enabled": ("security", False),
    "user.2fa_disabled": ("security", True),
    "user.2fa_reset": ("security", True),
    "user.2fa_failed": ("security", False),
    "user.recovery_code_used": ("security", False),
    "user.recovery_codes_regenerated": ("security", False),
    "user.password_reset_requested": ("security", False),
    "user.password_reset": ("security", True),
    "user.session_ended": ("security", False),
    "digest.unsubscribed": ("team", False),
    # Panel settings and where alerts go
    "settings.changed": ("security", True),
    "notification_target.added": ("security", True),
    "notification_target.removed": ("security", True),
    "notification_preference.updated": ("team", False),
    "notification.test_sent": ("team", False),
    "notification.retried": ("team", False),
    # The audit log itself
    "audit.verified": ("security", False),
    "audit.exported": ("security", False),
    "audit.verify_failed": ("security", True),
    # Servers, their keys and deploy keys
    "server.created": ("server", False),
    "server.updated": ("server", False),
    "server.deleted": ("server", False),
    "server.connection_test_requested": ("server", False),
    "server.import_requested": ("app", False),
    "server.host_key_pinned": ("security", False),
    "server.host_key_accepted": ("security", True),
    "server.host_key_mismatch": ("security", True),
    "server.key_regenerated": ("security", True),
    "deploy_key.created": ("security", True),
    "deploy_key.updated": ("security", True),
    "deploy_key.deleted": ("security", True),
    # Apps, their env vars and domains
    # Database services (dokku-postgres) and their links to apps
    "service.create_requested": ("app", False),
    "service.destroy_requested": ("app", True),
    "service.link_requested": ("security", False),
    "service.unlink_requested": ("security", False),
    "service.dsn_revealed": ("security", True),
    # Service plugins installed, backups (credentials and passphrase sent as arguments), exports downloaded
    "service.plugin_install_requested": ("server", True),
    "service.backup_auth_requested": ("security", True),
    "service.backup_encryption_requested": ("security", True),
    "service.backup_requested": ("app", False),
    "service.backup_schedule_requested": ("app", False),
    "service.exported": ("security", True),
    "service.export_failed": ("security", True),
    "app.created": ("app", False),
    "app.updated": ("app", False),
    "app.deleted": ("app", False),
    "app.destroy_requested": ("app", False),
    "app.restart_requested": ("app", False),
    "app.deploy_from_repo_requested": ("app", False),
    "app.deploy_image_requested": ("app", False),
    # Deploys read from the server's build history, and the panel's scaling, rebuild, stop and start
    "app.deployed": ("app", False),
    "app.deploy_failed": ("app", False),
    "app.scale_requested": ("app", False),
    "app.rebuild_requested": ("app", False),
    "app.stop_requested": ("app", False),
    "app.start_requested": ("app", False),
    "env_var.created": ("security", True),
    "env_var.updated": ("security", True),
    "env_var.deleted": ("security", True),
    "env_var.revealed": ("security", True),
    "domain.created": ("app", False),
    "domain.updated": ("app", False),
    "domain.deleted": ("app", False),
    # Found on the server by a drift check (actor `server`), and the check's own events
    "app.imported": ("app", False),
    "env_var.changed_outside": ("security", True),
    "env_var.added_outside": ("security", True),
    "env_var.removed_outside": ("security", True),
    "app.created_outside": ("app", False),
    "app.destroyed_outside": ("app", False),
    "domain.added_outside": ("app", False),
    "domain.removed_outside": ("app", False),
    "deploy_key.added_outside": ("security", True),
    "deploy_key.removed_outside": ("security", True),
    "server.unreachable": ("server", False),
    "server.reachable": ("server", False),
    "server.events_on_requested": ("server", False),
    "env_var.server_value_kept": ("security", True),
    # HTTPS: Let's Encrypt and uploaded certificates; a missing renewal job alerts once per outage
    "tls.enabled": ("security", False),
    "tls.disabled": ("security", True),
    "tls.revoked": ("security", True),
    "certificate.added": ("security", True),
    "certificate.removed": ("security", True),
    "tls.cron_missing": ("security", True),
    "tls.renewed": ("app", False),
    "tls.enabled_outside": ("security", True),
    "tls.disabled_outside": ("security", True),
    # Operations
    "operation.retry_requested": (BY_KIND, False),
    "operation.discarded": (BY_KIND, False),
    "operation.succeeded": (BY_KIND, False),
    "operation.failed": (BY_KIND, False),
}


def _row(action: str) -> tuple[str, bool]:
    try:
        return ACTIONS[action]
    except KeyError:
        raise ValueError(f"audit action {action!r} has no row in the category table: add it to "
                         "intercity.audit.categories.ACTIONS and docs/DEVELOPING.md") from None


def category_of(action: str, kind_category: str | None = None) -> str:
    """The category an entry with this action is filed under.

    For the operation actions whose category follows the operation's kind, pass that kind's
    category; for every other action a category passed must agree with the table.
    """
    category, _ = _row(action)
    if category == BY_KIND:
        if kind_category is None:
            raise ValueError(f"{action} takes its operation kind's category: pass it")
        category = kind_category
    elif kind_category is not None and kind_category != category:
        raise ValueError(f"{action} is {category} in the category table, not {kind_category}")
    if category not in CATEGORIES:
        raise ValueError(f"unknown audit category {category!r} for {action}: use one of {', '.join(CATEGORIES)}")
    return category


def is_alerted(action: str) -> bool:
    """Whether an entry with this action is sent at once (otherwise it waits for the digest)."""
    return _row(action)[1]
