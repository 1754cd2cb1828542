"""Servers: add one, test its connection, accept a changed host key, remove it from the panel."""
from __future__ import annotations


from sqlalchemy import func, select

from intercity import validation
from intercity.extensions import db
from intercity.models import Operation, Server
from intercity.models.operation import PENDING
from intercity.services.operations import request_operation
from intercity.services.permissions import require
from intercity.validation import ValidationError

SUDOERS_TEMPLATE = "{user} ALL=(root) NOPASSWD: /usr/bin/dokku"


def add_server(user, *, name: str, host: str, port=22, ssh_user: str = "root",
               expected_fingerprint: str | None = None) -> Server:
    """Register a server with a fresh ed25519 key pair; nothing reaches it until a connection test."""
    require(user, "admin")
    name = validation.server_name(name)
    host = validation.host(host)
    port = validation.port(port if port not in (None, "") else 22)
    ssh_user = validation.ssh_user(ssh_user)
    expected = validation.host_key_fingerprint(expected_fingerprint)
    if db.session.scalar(select(Server.id).where(func.lower(Server.name) == name.lower())) is not None:
        raise ValidationError(f"A server named {name} is already in the panel. Choose another name.", "name")
    server = Server(name=name, host=host, port=port, ssh_user=ssh_user, expected_host_key_fingerprint=expected,
                    status="new")
    server.generate_key_pair()
    db.session.add(server)
    db.session.flush()
    return server


def authorized_keys_line(server: Server) -> str:
    """The line to append to the SSH user's ~/.ssh/authorized_keys.

    `restrict` turns off forwarding and PTYs: the panel only runs commands, so a leaked
    panel key cannot be used to tunnel into the server's network.
    """
    return f"restrict {server.public_key}"


def sudoers_line(server: Server) -> str | None:
    """For a non-root SSH user: the sudoers rule that lets it run dokku without a password."""
    return SUDOERS_TEMPLATE.format(user=server.ssh_user) if server.uses_sudo else None


def request_connection_test(server: Server, user) -> Operation:
    """Connect, pin or verify the host key, read the Dokku version and the deploy keys."""
    require(user, "admin")
    return request_operation("server.check", server=server, requested_by=user)


def accept_host_key(server: Server, user, *, fingerprint: str | None = None) -> Operation:
    """Trust the host key the server presented last (after a mismatch), then test the connection again.

    `fingerprint` is the one the admin was shown: if the server has presented yet another key since,
    nothing is accepted.
    """
    require(user, "admin")
    if not server.seen_host_key_fingerprint:
        raise ValidationError("The server has not presented a different host key: there is nothing to accept.",
                              "host_key")
    if fingerprint and fingerprint != server.seen_host_key_fingerprint:
        raise ValidationError(
            f"{server.name} has presented another key since the page was shown "
            f"({server.seen_host_key_fingerprint}); nothing was accepted. Check it again.", "host_key")
    server.host_key_type = server.seen_host_key_type
    server.host_key_fingerprint = server.seen_host_key_fingerprint
    if server.expected_host_key_fingerprint and server.expected_host_key_fingerprint != server.host_key_fingerprint:
        # The fingerprint typed in advance has been superseded by the one an admin accepted.
        server.expected_host_key_fingerprint = None
    server.seen_host_key_type = None
    server.seen_host_key_fingerprint = None
    server.status = "new"
    server.status_message = "The new host key was accepted; testing the connection again."
    return request_operation("server.check", server=server, requested_by=user, applies=[server])


def remove_server(server: Server, user, *, confirm: str) -> str:
    """Forget a server, its apps, env vars, domains and deploy keys. Nothing runs on the server."""
    require(user, "admin")
    if (confirm or "").strip() != server.name:
        raise ValidationError(f"Type the server's name, {server.name}, to confirm.", "confirm")
    name = server.name
    db.session.delete(server)
    db.session.flush()
    return name


def remote_keys(server: Server) -> list[dict]:
    """Deploy keys as Dokku listed them at the last check: [{name, fingerprint, public_key}]."""
    keys = server.remote_keys if isinstance(server.remote_keys, list) else []
    return [k for k in keys if isinstance(k, dict) and k.get("fingerprint")]


def list_servers() -> list[Server]:
    return list(db.session.scalars(select(Server).order_by(Server.name)))


def pending_count(server: Server) -> int:
    """Operations of the server (and its apps) still queued or running."""
    return db.session.scalar(select(func.count(Operation.id)).where(
        Operation.server_id == server.id, Operation.status.in_(PENDING))) or 0
