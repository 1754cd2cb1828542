"""Session fixtures for the real services: Redis, OpenSSH with the Dokku double, SMTP, Chromium."""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """The local Redis, or one this fixture starts; fails saying what to install when neither works."""
    if _port_open("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("Redis is needed: apt-get install redis-server (or run `make test`, which installs it)")
    from tests.conftest import free_port

    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if _port_open("127.0.0.1", port):
            break
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(5)


@pytest.fixture
def redis_queue(redis_url, app_config):
    """Configure the app under test to use real Redis and RQ, with a queue of its own."""
    app_config.update({"REDIS_URL": redis_url, "JOBS_IN_PROCESS": False, "JOBS_QUEUE": f"test-{uuid.uuid4().hex[:8]}"})
    return app_config["JOBS_QUEUE"]


class Mailbox:
    """Messages received by the test SMTP server; `answers` scripts refusals ("451 ...", "550 ...") of the next ones."""

    def __init__(self):
        self.messages = []
        self.all_received = []  # since the last reset(), even what a test cleared from `messages`
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
        return "250 Message accepted for delivery"

    def clear(self):
        with self.lock:
            self.messages.clear()
            self.answers.clear()

    def reset(self):
        self.clear()
        self.all_received.clear()

    def wait_for(self, count: int, timeout: float = 15) -> list:
        """The messages received, once there are at least `count` (mail is sent by jobs, a moment later)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} message(s), got {len(self.messages)}")


@pytest.fixture(scope="session")
def smtp_server():
    from aiosmtpd.controller import Controller

    from tests.conftest import free_port

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    mailbox.port = controller.port
    yield mailbox
    controller.stop()


@pytest.fixture
def mailbox(smtp_server, app_config):
    smtp_server.clear()
    app_config.update({"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port, "MAIL_USE_TLS": False})
    return smtp_server


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Headless Chromium is needed: apt-get install chromium (or run `make test`, which installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(10000)
    yield page
    context.close()
