"""Deploy keys: the SSH keys Dokku accepts `git push` from, per server; add, remove, adopt."""
from __future__ import annotations

from sqlalchemy import select

from intercity import validation
from intercity.extensions import db
from intercity.models import DeployKey, Operation, Server
from intercity.services.operations import request_operation
from intercity.services.permissions import require
from intercity.services.servers import remote_keys
from intercity.validation import PublicKey, ValidationError


def preview(*, name: str, public_key: str) -> tuple[str, PublicKey]:
    """Validate a name and key and return them parsed, so the fingerprint can be shown before saving."""
    return validation.deploy_key_name(name), validation.public_key(public_key)


def check_new(server: Server, *, name: str, public_key: str) -> tuple[str, PublicKey]:
    """Everything add_key checks, without changing anything; duplicates are explained."""
    name, key = preview(name=name, public_key=public_key)
    by_name = db.session.scalar(select(DeployKey).where(DeployKey.server_id == server.id, DeployKey.name == name))
    if by_name is not None:
        who = f" by {by_name.added_by_email}" if by_name.added_by_email else ""
        raise ValidationError(f"{server.name} already has a deploy key named {name} (added{who}). "
                              "Choose another name, or remove that key first.", "name")
    by_fp = db.session.scalar(select(DeployKey).where(DeployKey.server_id == server.id,
                                                      DeployKey.fingerprint == key.fingerprint))
    if by_fp is not None:
        raise ValidationError(f"This key is already a deploy key on {server.name}, named {by_fp.name}.",
                              "public_key")
    for remote in remote_keys(server):
        if remote.get("fingerprint") == key.fingerprint:
            raise ValidationError(
                f"Dokku on {server.name} already has this key, named {remote.get('name')}. "
                "Adopt it from the list of keys found on the server instead of adding it again.", "public_key")
        if remote.get("name") == name:
            raise ValidationError(
                f"Dokku on {server.name} already has a different key named {name} that the panel does not "
                "manage. Dokku refuses a second key with the same name: choose another name, or adopt that "
                "key from the list of keys found on the server.", "name")
    return name, key


def add_key(server: Server, user, *, name: str, public_key: str) -> tuple[DeployKey, Operation]:
    require(user, "admin")
    name, key = check_new(server, name=name, public_key=public_key)
    deploy_key = DeployKey(server=server, name=name, public_key=key.line, key_type=key.key_type,
                           fingerprint=key.fingerprint, adopted=False, added_by_email=user.email)
    db.session.add(deploy_key)
    db.session.flush()
    operation = request_operation("deploy_keys.apply", server=server, requested_by=user,
                                  payload={"add": [name], "remove": []}, applies=[deploy_key])
    return deploy_key, operation


def remove_key(server: Server, user, *, deploy_key: DeployKey) -> Operation:
    require(user, "admin")
    if deploy_key.server_id != server.id:
        raise ValidationError(f"{deploy_key.name} is not a deploy key of {server.name}.", "key")
    removed = {"name": deploy_key.name, "fingerprint": deploy_key.fingerprint, "adopted": bool(deploy_key.adopted)}
    db.session.delete(deploy_key)
    db.session.flush()
    return request_operation("deploy_keys.apply", server=server, requested_by=user,
                             payload={"add": [], "remove": [removed]}, applies=[deploy_key])


def unmanaged_keys(server: Server) -> list[dict]:
    """Keys Dokku listed at the last check that the panel does not manage yet."""
    managed = set(db.session.scalars(select(DeployKey.fingerprint).where(DeployKey.server_id == server.id)))
    return [k for k in remote_keys(server) if k["fingerprint"] not in managed]


def adopt_key(server: Server, user, *, fingerprint: str) -> DeployKey:
    """Manage a key that is already on the server, under the name Dokku lists (nothing runs on the server)."""
    require(user, "admin")
    found = next((k for k in unmanaged_keys(server) if k["fingerprint"] == (fingerprint or "").strip()), None)
    if found is None:
        raise ValidationError("That key is not among the server's unmanaged keys any more. "
                              "Refresh the list of keys on the server.", "fingerprint")
    name = str(found.get("name") or "")[:255] or found["fingerprint"]
    if db.session.scalar(select(DeployKey.id).where(DeployKey.server_id == server.id, DeployKey.name == name)):
        raise ValidationError(f"The panel already manages a different key named {name} on {server.name}.",
                              "fingerprint")
    key_type, line = validation.listed_key_material(found)
    deploy_key = DeployKey(server=server, name=name, public_key=line, key_type=key_type,
                           fingerprint=found["fingerprint"], adopted=True, added_by_email=user.email)
    db.session.add(deploy_key)
    db.session.flush()
    return deploy_key


def refresh_keys(server: Server, user) -> Operation:
    """List the keys on the server again (`ssh-keys:list`)."""
    require(user, "admin")
    return request_operation("server.refresh_keys", server=server, requested_by=user)
