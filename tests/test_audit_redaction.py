"""Redaction: secrets never reach any column of the audit log, in clear or encoded."""
from __future__ import annotations

import base64
import hashlib
import json

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, text

from intercity import crypto
from intercity.extensions import db
from intercity.models import EnvVar, Server
from tests.support.audit import entries, make_deploy_key, public_key
from tests.support.builders import make_app as build_app
from tests.support.builders import make_server, make_user

ENV_SECRETS = ["s3cr3t-ENV-VALUE-7f3a9c", "rot4ted-ENV-VALUE-b81e02",
               "multi\nline-ENV-VALUE-with 'quotes' and $(shell)"]
PASSWORDS = ["Tr0ub4dor&3-PASSWORD-x9q", "second-PASSWORD-after-change-55"]


def encoded_forms(secret: str | bytes) -> set[str]:
    """The secret as it might leak: clear, hex, and base64 at every alignment (so substrings match too)."""
    data = secret.encode() if isinstance(secret, str) else bytes(secret)
    forms = {data.decode("latin-1"), data.hex()}
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * shift + data).decode()
            # drop the characters that depend on the shift prefix and on the padding
            core = encoded[4:-4]
            if len(core) >= 12:
                forms.add(core)
    return forms


def every_cell() -> list[str]:
    """Every column of every audit entry, read with raw SQL (select *) as text."""
    with db.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM audit_entries ORDER BY seq")).all()
    cells = []
    for row in rows:
        for value in row:
            if isinstance(value, (bytes, bytearray, memoryview)):
                cells.append(bytes(value).decode("latin-1"))
            elif value is not None:
                cells.append(str(value))
    return cells


def assert_nowhere(secret, cells, what: str) -> None:
    for form in encoded_forms(secret):
        leaked = [cell for cell in cells if form in cell]
        assert not leaked, f"{what} leaked into the audit log as {form!r}: {leaked[:3]}"


def test_secrets_reach_no_audit_column_in_clear_or_encoded(app, client):
    # a person with a password, which they change; a failed login types the new one wrongly
    user = make_user("admin", email="dev@example.com", password=PASSWORDS[0])
    user.set_password(PASSWORDS[1])
    db.session.commit()
    client.post("/login", data={"email": "dev@example.com", "password": PASSWORDS[0]})
    password_hashes = [user.password_hash]

    # a server with a generated private key, regenerated once
    server = make_server(name="web-1")
    private_keys = [server.private_key, ]
    encrypted = [bytes(server.private_key_encrypted)]
    server.generate_key_pair()
    db.session.commit()
    private_keys.append(server.private_key)
    encrypted.append(bytes(server.private_key_encrypted))

    # env values created, changed, removed, and one that stays
    api = build_app(server, name="api")
    var = EnvVar(app=api, key="STRIPE_KEY")
    var.value = ENV_SECRETS[0]
    db.session.add(var)
    db.session.commit()
    encrypted.append(bytes(var.value_encrypted))
    var.value = ENV_SECRETS[1]
    db.session.commit()
    encrypted.append(bytes(var.value_encrypted))
    other = EnvVar(app=api, key="BANNER")
    other.value = ENV_SECRETS[2]
    db.session.add(other)
    db.session.commit()
    encrypted.append(bytes(other.value_encrypted))
    db.session.delete(var)
    db.session.commit()

    key = make_deploy_key(server, 3, name="ci")
    db.session.commit()
    db.session.delete(db.session.get(Server, server.id))  # everything goes, each with an entry
    db.session.commit()

    # the changes were all recorded, so the search below has something to search
    recorded = {e.action for e in entries()}
    assert {"user.created", "user.password_changed", "user.login_failed", "server.created", "server.key_regenerated",
            "env_var.created", "env_var.updated", "env_var.deleted", "deploy_key.created",
            "deploy_key.deleted", "server.deleted"} <= recorded
    cells = every_cell()
    # positive control: the search reads every column (names, fingerprints and ids are there)
    assert any("STRIPE_KEY" in cell for cell in cells)
    assert any(crypto.fingerprint(ENV_SECRETS[1]) in cell for cell in cells)

    for value in ENV_SECRETS:
        assert_nowhere(value, cells, "an env value")
    for password in PASSWORDS:
        assert_nowhere(password, cells, "a password")
    for digest in password_hashes:
        assert_nowhere(digest, cells, "a password hash")
        assert_nowhere(digest.split("$")[-1], cells, "a password hash")
    for pem in private_keys:
        assert_nowhere(pem, cells, "a private key")
        body = "".join(line for line in pem.splitlines() if "PRIVATE KEY" not in line)
        assert_nowhere(body, cells, "a private key")
        # the secret itself: the ed25519 seed (the rest of the file repeats the public key)
        seed = serialization.load_ssh_private_key(pem.encode(), None).private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        assert_nowhere(seed, cells, "a private key's seed")
    for token in encrypted:
        assert_nowhere(token, cells, "an encrypted secret")
    # deploy keys are named and fingerprinted, never quoted
    line, _, fingerprint = public_key(3)
    assert_nowhere(line.split()[1], cells, "a deploy key body")
    assert any(fingerprint in cell for cell in cells)


def test_env_fingerprints_tell_equal_values_apart_without_revealing_them(app, make_app):
    server = make_server(name="web-1")
    api, web = build_app(server, name="api"), build_app(server, name="web")
    for app_, key, value in ((api, "A", "same-value"), (web, "B", "same-value"), (api, "C", "other-value"),
                             (api, "D", "same-value ")):
        var = EnvVar(app=app_, key=key)
        var.value = value
        db.session.add(var)
    db.session.commit()
    seen = {e.target_label: json.loads(e.diff)["value_fingerprint"][1] for e in entries(action="env_var.created")}
    assert seen["A"] == seen["B"]  # equal values are recognisable across keys and apps
    assert len({seen["A"], seen["C"], seen["D"]}) == 3  # different values differ, even by a space
    assert seen["A"] == crypto.fingerprint("same-value")
    # keyed: not a plain hash anyone could compute (and brute-force) from a guessed value
    assert seen["A"] not in hashlib.sha256(b"same-value").hexdigest()
    other_key = make_app(INTERCITY_ENCRYPTION_KEY="another-encryption-key-0123456789-abcdef")
    with other_key.app_context():
        assert crypto.fingerprint("same-value") != seen["A"]


def test_setting_the_same_env_value_again_records_nothing(app):
    server = make_server(name="web-1")
    api = build_app(server, name="api")
    var = EnvVar(app=api, key="TOKEN")
    var.value = "unchanged"
    db.session.add(var)
    db.session.commit()
    before = len(entries())
    var = db.session.scalar(select(EnvVar))
    var.value = "unchanged"
    db.session.commit()
    assert len(entries()) == before
