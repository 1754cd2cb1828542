"""Handing one message to the SMTP server of the MAIL_* settings, with its answer and whether a failure is temporary."""
from __future__ import annotations

import smtplib
import socket
import ssl

from flask import current_app
from flask_mail import Message

from intercity.extensions import mail

TIMEOUT = 30  # seconds; a hanging server must not hold a worker forever


class DeliveryError(Exception):
    """The message was not accepted; `temporary` says whether trying again later can help."""

    def __init__(self, answer: str, temporary: bool):
        super().__init__(answer)
        self.answer = answer
        self.temporary = temporary


def _answer(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()[:500]


def _refused(code: int, text) -> DeliveryError:
    # 4xx: try again later (greylisting, a full queue); 5xx: the server will never take it.
    return DeliveryError(_answer(code, text), temporary=not (500 <= code < 600))


def settings_in_effect() -> dict:
    """What the settings page shows: the MAIL_* settings Flask-Mail uses, the password only as set or not."""
    state = current_app.extensions["mail"]
    return {
        "MAIL_SERVER": state.server,
        "MAIL_PORT": state.port,
        "MAIL_USE_TLS": state.use_tls,
        "MAIL_USE_SSL": state.use_ssl,
        "MAIL_USERNAME": state.username or "",
        "MAIL_PASSWORD": "set" if state.password else "not set",
        "MAIL_DEFAULT_SENDER": state.default_sender,
        "INTERCITY_BASE_URL": current_app.config["INTERCITY_BASE_URL"],
    }


def _connect(state) -> smtplib.SMTP:
    if state.use_ssl:
        host = smtplib.SMTP_SSL(state.server, state.port, timeout=TIMEOUT)
    else:
        host = smtplib.SMTP(state.server, state.port, timeout=TIMEOUT)
    if state.use_tls:
        host.starttls(context=ssl.create_default_context())
    if state.username and state.password:
        host.login(state.username, state.password)
    return host


def send(message: Message) -> str:
    """Send through the configured server; return its answer to the message ("250 OK ..."), or raise DeliveryError."""
    state = current_app.extensions["mail"]
    if state.suppress:  # MAIL_SUPPRESS_SEND (TESTING): Flask-Mail records it instead of sending
        mail.send(message)
        return "250 suppressed (MAIL_SUPPRESS_SEND)"
    sender = message.sender or state.default_sender
    try:
        host = _connect(state)
    except smtplib.SMTPResponseException as error:
        raise _refused(error.smtp_code, error.smtp_error) from None
    except (OSError, smtplib.SMTPException) as error:  # refused, unreachable, timed out, TLS failed
        raise DeliveryError(f"no connection to {state.server}:{state.port}: {error.__class__.__name__}: {error}"[:500],
                            temporary=True) from None
    try:
        host.ehlo_or_helo_if_needed()
        code, text = host.mail(sender)
        if code != 250:
            raise _refused(code, text)
        for recipient in message.send_to:
            code, text = host.rcpt(recipient)
            if code not in (250, 251):
                raise _refused(code, text)
        code, text = host.data(message.as_bytes())
        if code != 250:
            raise _refused(code, text)
        return _answer(code, text)
    except smtplib.SMTPResponseException as error:
        raise _refused(error.smtp_code, error.smtp_error) from None
    except (OSError, smtplib.SMTPServerDisconnected) as error:
        raise DeliveryError(f"connection lost: {error.__class__.__name__}: {error}"[:500], temporary=True) from None
    finally:
        try:
            host.quit()
        except (OSError, smtplib.SMTPException, socket.error):
            host.close()
