"""Fixtures for the notification tests: an SMTP server told how to answer, a local webhook, and a secret probe."""
from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.panel import SECRETS


class ScriptedMailbox:
    """aiosmtpd handler: answers DATA with the next scripted reply ("451 ...", "550 ..."), else accepts."""

    def __init__(self):
        self.messages = []
        self.all_received = []  # since the last clear(), even what a test cleared from `messages`
        self.answers: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes
        from email.policy import default

        with self.lock:
            if self.answers:
                return self.answers.pop(0)
            message = message_from_bytes(envelope.content, policy=default)
            self.messages.append(message)
            self.all_received.append(message)
        return "250 2.0.0 Message accepted for delivery"

    def clear(self):
        with self.lock:
            self.messages.clear()
            self.answers.clear()

    def reset(self):
        with self.lock:
            self.messages.clear()
            self.answers.clear()
            self.all_received.clear()

    def wait_for(self, count: int, timeout: float = 15) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} message(s), got {len(self.messages)}")


@pytest.fixture(scope="session")
def scripted_smtp():
    from aiosmtpd.controller import Controller

    from tests.conftest import free_port

    mailbox = ScriptedMailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    mailbox.port = controller.port
    yield mailbox
    controller.stop()


@pytest.fixture
def smtp(scripted_smtp, app_config):
    """The app under test sends to the scripted SMTP server; retries wait an hour unless a test says otherwise.

    Every message the server received during the test is probed for secrets afterwards.
    """
    scripted_smtp.reset()
    app_config.update({"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": scripted_smtp.port, "MAIL_USE_TLS": False,
                       "MAIL_DEFAULT_SENDER": "intercity@example.com", "INTERCITY_BASE_URL": "https://panel.example.com",
                       "NOTIFY_RETRY_BACKOFF": 3600})
    yield scripted_smtp
    for message in list(scripted_smtp.all_received):
        assert_no_secrets(mail_texts(message))


class Webhook:
    """A local HTTP server standing in for a chat service's webhook; keeps every request body."""

    def __init__(self):
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                hook.bodies.append(self.rfile.read(length))
                hook.paths.append(self.path)
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def payloads(self) -> list[dict]:
        return [json.loads(body) for body in self.bodies]

    def wait_for(self, count: int, timeout: float = 15) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.bodies) < count:
            time.sleep(0.05)
        assert len(self.bodies) >= count, f"expected {count} webhook call(s), got {len(self.bodies)}"
        return self.payloads()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    """A local webhook; every body it received is probed for secrets afterwards."""
    hook = Webhook()
    yield hook
    hook.close()
    assert_no_secrets(hook.bodies)


def needles(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Every distinctive secret of the audit tests, raw, base64 and URL-safe base64, plus each long line."""
    found = {}
    for key, value in {**SECRETS, **(extra or {})}.items():
        raw = value.encode()
        found[f"{key} value"] = value
        found[f"{key} base64"] = base64.b64encode(raw).decode()
        found[f"{key} urlsafe base64"] = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        for number, line in enumerate(value.splitlines()):
            if len(line) >= 12 and not line.startswith("-----"):
                found[f"{key} line {number + 1}"] = line
    return found


def mail_texts(message) -> list[str]:
    """The decoded parts of a received mail, and its raw form (so encoded leaks are found too)."""
    parts = [message.as_string()]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            parts.append(part.get_content())
    return parts


def assert_no_secrets(texts, extra: dict[str, str] | None = None) -> None:
    probes = needles(extra)
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        for name, needle in probes.items():
            assert needle not in text, f"{name} appears in a sent message"
