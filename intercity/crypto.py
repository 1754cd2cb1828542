"""Encryption at rest, keyed fingerprints of secrets, and the panel's SSH key pairs."""
from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
import base64


def _derive(master: str, purpose: bytes) -> bytes:
    # One configured secret, separate keys per purpose: a fingerprint never reveals the encryption key.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"intercity", info=purpose).derive(master.encode())


@lru_cache(maxsize=8)
def _fernet(master: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derive(master, b"encryption at rest")))


@lru_cache(maxsize=8)
def _fingerprint_key(master: str) -> bytes:
    return _derive(master, b"audit fingerprint")


@lru_cache(maxsize=8)
def _code_key(master: str) -> bytes:
    return _derive(master, b"one-time codes")


def _master() -> str:
    return current_app.config["INTERCITY_ENCRYPTION_KEY"]


def encrypt(plaintext: str) -> bytes:
    return _fernet(_master()).encrypt(plaintext.encode("utf-8"))


def decrypt(token: bytes) -> str:
    try:
        return _fernet(_master()).decrypt(bytes(token)).decode("utf-8")
    except InvalidToken:
        raise RuntimeError(
            "Stored secrets cannot be decrypted: INTERCITY_ENCRYPTION_KEY is not the key they were written with."
        ) from None


def fingerprint(value: str | bytes) -> str:
    """A short keyed fingerprint that tells equal secret values apart without revealing them."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    return hmac.new(_fingerprint_key(_master()), data, hashlib.sha256).hexdigest()[:16]


def code_hash(code: str) -> str:
    """A keyed hash of a one-time code (recovery codes): a copy of the database alone cannot test guesses."""
    return hmac.new(_code_key(_master()), code.encode("utf-8"), hashlib.sha256).hexdigest()


def generate_ssh_key(comment: str) -> tuple[str, str]:
    """A new ed25519 key pair: (OpenSSH private key PEM, public key line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, f"{public} {comment}"
