"""Fixtures for the notification tests: the test SMTP server set up for the app, a local webhook, a secret probe."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.panel import needles


def settle(app) -> None:
    """Wait until the in-process runner has sent what was committed, then read fresh rows."""
    from intercity.extensions import db

    app.extensions["intercity_jobs"].wait_idle()
    db.session.rollback()
    db.session.expire_all()


def wait_until(check, timeout: float = 15, message: str = "condition"):
    """Poll `check()` until it returns something true (a job commits a moment after the server accepted)."""
    from intercity.extensions import db

    deadline = time.monotonic() + timeout
    while True:
        db.session.rollback()
        db.session.expire_all()
        found = check()
        if found or time.monotonic() > deadline:
            assert found, f"timed out waiting for {message}"
            return found
        time.sleep(0.05)


@pytest.fixture
def smtp(smtp_server, app_config):
    """The app under test sends to the scripted SMTP server; retries wait an hour unless a test says otherwise.

    Every message the server received during the test is probed for secrets afterwards.
    """
    smtp_server.reset()
    app_config.update({"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port, "MAIL_USE_TLS": False,
                       "MAIL_DEFAULT_SENDER": "intercity@example.com", "INTERCITY_BASE_URL": "https://panel.example.com",
                       "NOTIFY_RETRY_BACKOFF": 3600})
    yield smtp_server
    for message in list(smtp_server.all_received):
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
