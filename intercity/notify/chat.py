"""Chat and webhook targets through Apprise: checking a URL, naming its service, sending, and keeping tokens out of logs."""
from __future__ import annotations

import logging
import threading
from urllib.parse import parse_qsl, unquote, urlsplit

from intercity.notify.mailer import DeliveryError
from intercity.validation import ValidationError

# Parts of the target URLs being used right now; the log filter blanks them in Apprise's lines.
_in_use: dict[str, int] = {}
_in_use_lock = threading.Lock()
REDACTED = "[redacted]"


def _secret_parts(url: str) -> set[str]:
    """The URL and every piece of it that could be a token: user, password, host, path segments, query values."""
    parts = {url}
    try:
        split = urlsplit(url)
    except ValueError:
        return parts
    for piece in (split.username, split.password, split.hostname, split.netloc):
        if piece:
            parts.add(piece)
            parts.add(unquote(piece))
    for segment in split.path.split("/"):
        if segment:
            parts.add(segment)
            parts.add(unquote(segment))
    for _, value in parse_qsl(split.query):
        if value:
            parts.add(value)
    # Short pieces ("json", "hook", "1") are no secret and blanking them would garble every line.
    return {part for part in parts if len(part) >= 6}


class _RedactTargets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        with _in_use_lock:
            secrets = sorted(_in_use, key=len, reverse=True)
        if not secrets:
            return True
        message = record.getMessage()
        for secret in secrets:
            message = message.replace(secret, REDACTED)
        record.msg, record.args = message, ()
        if record.exc_info:
            record.exc_text = REDACTED  # a traceback may quote the request URL
            record.exc_info = None
        return True


_FILTER = _RedactTargets()


# Apprise logs request URLs at debug; urllib3, under it, logs each request line with its path.
LOGGERS = ("apprise", "urllib3.connectionpool")


def quiet_apprise_logging() -> None:
    """Blank target tokens in every line Apprise (and the HTTP library beneath it) logs while we send."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


class _Using:
    """While sending: the URL's parts are blanked in log lines."""

    def __init__(self, url: str):
        self.parts = _secret_parts(url)

    def __enter__(self):
        with _in_use_lock:
            for part in self.parts:
                _in_use[part] = _in_use.get(part, 0) + 1
        return self

    def __exit__(self, *exc):
        with _in_use_lock:
            for part in self.parts:
                _in_use[part] -= 1
                if not _in_use[part]:
                    del _in_use[part]


def inspect_url(url: str) -> tuple[str, str]:
    """(service, hint) of an Apprise URL, or a ValidationError; the hint shows no token."""
    import apprise

    url = (url or "").strip()
    if not url:
        raise ValidationError("Enter an Apprise URL, such as slack://… or json://host/path.", "url")
    if "://" not in url:
        raise ValidationError("An Apprise URL starts with the service, such as slack:// or json://.", "url")
    with _Using(url):
        plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        service = url.split("://", 1)[0][:20]
        raise ValidationError(f"Apprise does not recognise this URL (service {service!r}, or its parts): "
                              "see the Apprise wiki for the service's URL format.", "url")
    service = url.split("://", 1)[0].lower()[:32]
    private = plugin.url(privacy=True)
    scheme, _, rest = private.partition("://")
    # Apprise's privacy form masks tokens and passwords; of it only scheme and host are kept (paths hold tokens).
    hint = f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0]}"[:120]
    return service, hint


def send(message) -> str:
    """Send an outbox message to its chat target; the answer, or DeliveryError (temporary: Apprise only says no)."""
    import apprise

    from intercity.extensions import db
    from intercity.models import NotificationTarget

    target = db.session.get(NotificationTarget, message.target_id) if message.target_id else None
    if target is None:
        raise DeliveryError("the chat target was removed", temporary=False)
    url = target.url
    with _Using(url):
        sender = apprise.Apprise()
        if not sender.add(url):
            raise DeliveryError(f"Apprise no longer accepts this {target.service} URL", temporary=False)
        try:
            ok = sender.notify(title=message.subject, body=message.text or "", body_format=apprise.NotifyFormat.TEXT)
        except Exception as error:  # its text may quote the URL: only the kind of error leaves this block
            raise DeliveryError(f"{target.service}: {error.__class__.__name__}", temporary=True) from None
    if not ok:
        raise DeliveryError(f"{target.service} did not accept the message (the worker's log has Apprise's reason)",
                            temporary=True)
    return f"accepted by {target.service}"
