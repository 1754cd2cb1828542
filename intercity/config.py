"""Settings read from the environment, with keys generated into the instance folder on first start."""
from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path


class ConfigError(RuntimeError):
    """A setting is missing or wrong; the message names it and what to do."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
ENVIRONMENTS = {"development", "production", "test"}


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a yes/no value: use true or false.")


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number.") from None


def _instance_secret(instance_path: Path, filename: str) -> str:
    """Read a key kept in the instance folder, creating it (mode 0600) on first start."""
    path = instance_path / filename
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting at once must not write two different keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def load(instance_path: str, overrides: dict | None = None) -> dict:
    """Build the Flask config from the environment; `overrides` (tests) win over both."""
    overrides = dict(overrides or {})
    env = os.environ.get("INTERCITY_ENV", "development").strip().lower() or "development"
    if env not in ENVIRONMENTS:
        raise ConfigError(f"INTERCITY_ENV={env!r} is unknown: use one of {', '.join(sorted(ENVIRONMENTS))}.")
    instance = Path(instance_path)

    secret_key = overrides.pop("SECRET_KEY", None) or os.environ.get("SECRET_KEY")
    encryption_key = overrides.pop("INTERCITY_ENCRYPTION_KEY", None) or os.environ.get("INTERCITY_ENCRYPTION_KEY")
    if env == "production":
        missing = [name for name, value in (("SECRET_KEY", secret_key), ("INTERCITY_ENCRYPTION_KEY", encryption_key)) if not value]
        if missing:
            raise ConfigError(
                "INTERCITY_ENV=production needs " + " and ".join(missing) + " set in the environment "
                "(generate each with: python -c 'import secrets; print(secrets.token_urlsafe(48))'), "
                "and kept safe: without the encryption key, server keys and env values cannot be read."
            )
    secret_key = secret_key or _instance_secret(instance, "secret_key")
    encryption_key = encryption_key or _instance_secret(instance, "encryption_key")
    if len(encryption_key) < 32:
        raise ConfigError("INTERCITY_ENCRYPTION_KEY must be at least 32 characters long.")

    redis_url = os.environ.get("REDIS_URL") or None
    base_url = os.environ.get("INTERCITY_BASE_URL", "http://127.0.0.1:5000")
    # Cookies only travel encrypted once the panel is served over HTTPS (and always in production).
    secure_cookies = env == "production" or base_url.lower().startswith("https://")
    config = {
        "INTERCITY_ENV": env,
        "SECRET_KEY": secret_key,
        "INTERCITY_ENCRYPTION_KEY": encryption_key,
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL") or f"sqlite:///{instance / 'intercity.sqlite'}",
        "REDIS_URL": redis_url,
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI") or redis_url or "memory://",
        "RATELIMIT_HEADERS_ENABLED": True,
        "MAIL_SERVER": os.environ.get("MAIL_SERVER", "localhost"),
        "MAIL_PORT": _int("MAIL_PORT", 25),
        "MAIL_USERNAME": os.environ.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": os.environ.get("MAIL_PASSWORD") or None,
        "MAIL_USE_TLS": _flag("MAIL_USE_TLS", False),
        "MAIL_DEFAULT_SENDER": os.environ.get("MAIL_DEFAULT_SENDER", "intercity@localhost"),
        "INTERCITY_BASE_URL": base_url,
        # How many proxies in front of the panel may set X-Forwarded-For (the client address that
        # login throttling and the audit log see); 0 trusts none.
        "INTERCITY_TRUSTED_PROXIES": _int("INTERCITY_TRUSTED_PROXIES", 0),
        # Failed logins allowed before further attempts are refused for a while.
        "LOGIN_LIMIT_PER_ACCOUNT": os.environ.get("INTERCITY_LOGIN_LIMIT_PER_ACCOUNT", "10 per 15 minutes"),
        "LOGIN_LIMIT_PER_ADDRESS": os.environ.get("INTERCITY_LOGIN_LIMIT_PER_ADDRESS", "30 per 5 minutes"),
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=_int("INTERCITY_SESSION_HOURS", 12)),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": secure_cookies,
        "REMEMBER_COOKIE_DURATION": timedelta(days=14),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": secure_cookies,
        "WTF_CSRF_TIME_LIMIT": None,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        # Dokku layer: how long to wait for a server, and how often to retry a flaky network.
        "SSH_CONNECT_TIMEOUT": _int("INTERCITY_SSH_CONNECT_TIMEOUT", 10),
        # host[:port] of the DNS server TLS pre-checks ask; unset: the system's resolver.
        "DNS_RESOLVER": os.environ.get("INTERCITY_DNS_RESOLVER") or None,
        "SSH_COMMAND_TIMEOUT": _int("INTERCITY_SSH_COMMAND_TIMEOUT", 600),
        "SSH_RETRIES": _int("INTERCITY_SSH_RETRIES", 2),
        # A worker (worker.py, or the single process's job thread) keeps its connection to a server
        # open this many seconds after an operation, for the next one (0: a connection per drain).
        "SSH_KEEP_IDLE": _int("INTERCITY_SSH_KEEP_IDLE", 60),
        # Rendered timeline pages each web process keeps (at most 4 MB), until an entry is appended or a
        # relative time on them changes; 0 renders every request.
        "TIMELINE_CACHE": _int("INTERCITY_TIMELINE_CACHE", 64),
        # Where drift checks read Dokku's event log on each server (Dokku's rsyslog rule writes it there).
        "DOKKU_EVENTS_LOG": os.environ.get("INTERCITY_DOKKU_EVENTS_LOG", "/var/log/dokku/events.log"),
        # Every dokku command runs under `timeout` on the server (its kind's deadline, kept below
        # SSH_COMMAND_TIMEOUT); what still runs this many seconds after the deadline gets SIGKILL.
        "COMMAND_KILL_GRACE": _int("INTERCITY_COMMAND_KILL_GRACE", 10),
        # A database export streamed to a browser: its server-side `timeout` (Redis exports can hang).
        "SERVICE_EXPORT_DEADLINE": _int("INTERCITY_SERVICE_EXPORT_DEADLINE", 3600),
        # Per kind name, seconds that replace the declared deadline as given (tests).
        "COMMAND_DEADLINES": {},
        # Seconds before the first retry of a flaky network; each further retry waits twice as long.
        "SSH_RETRY_BACKOFF": float(_int("INTERCITY_SSH_RETRY_BACKOFF_MS", 2000)) / 1000,
        # A worker holds a scope's lock this long unless its heartbeat renews it; a dead worker's
        # operation is failed by the sweeper once the lock has run out.
        "JOBS_LOCK_TTL": _int("INTERCITY_JOBS_LOCK_TTL", 60),
        "JOBS_SWEEP_INTERVAL": _int("INTERCITY_JOBS_SWEEP_INTERVAL", 30),
        # Without Redis, one supervised thread of this process runs the jobs.
        "JOBS_IN_PROCESS": redis_url is None,
        "JOBS_QUEUE": os.environ.get("INTERCITY_QUEUE", "intercity"),
        # Notifications: the periodic tick (due digests, alert catch-up, retries) and the first retry's delay.
        "NOTIFY_TICK_SECONDS": _int("INTERCITY_NOTIFY_TICK_SECONDS", 300),
        "NOTIFY_RETRY_BACKOFF": float(_int("INTERCITY_NOTIFY_RETRY_BACKOFF", 30)),
        # Logs read on demand: how long the lines are kept for the page, and how "Follow" asks again.
        "LOGS_TTL": _int("INTERCITY_LOGS_TTL", 60),
        "LOGS_FOLLOW_INTERVAL": _int("INTERCITY_LOGS_FOLLOW_INTERVAL", 3),
        "LOGS_FOLLOW_LIMIT": _int("INTERCITY_LOGS_FOLLOW_LIMIT", 300),
    }
    config.update(overrides)
    return config
