"""The child's Ed25519 key and the signature of every push.

The child signs the exact bytes it sends (the JSON body, which names the child, a sequence number and the child's
clock); the parent verifies them with the public key the child gave when it joined, before it parses anything.
Keys travel and are stored as base64 of the raw 32 bytes; the private key stays in the child's data directory as
PKCS#8 PEM, mode 0600.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from garrison.atomicfile import write_atomic

CHILD_HEADER = "X-Garrison-Child"
SIGNATURE_HEADER = "X-Garrison-Signature"


def new_key(path: Path) -> Ed25519PrivateKey:
    """A new private key, written to ``path`` (mode 0600) before it is used."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_atomic(path, pem, 0o600)
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    """The private key in ``path``; ValueError when it is not an Ed25519 key."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 key")
    return key


def public_text(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def parse_public(text: str) -> Ed25519PublicKey:
    """The public key written by :func:`public_text`; ValueError for anything else."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("the public key is not base64") from exc
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign(key: Ed25519PrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body)).decode("ascii")


def verify(public_key: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64) is the signature of exactly ``body`` by ``public_key``."""
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
        parse_public(public_key).verify(raw, body)
    except (binascii.Error, UnicodeEncodeError, ValueError, InvalidSignature):
        return False
    return True
