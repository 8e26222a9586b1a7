"""Webhook URLs are secrets (many services put the credential in the path or the query): they are kept encrypted
with AES-256-GCM under ``data_dir/alerts.key`` (made on first use, mode 0600), shown only masked, never logged.

Server processes on several machines must share the key file, like the TLS certificate.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_NAME = "alerts.key"
NONCE = 12
CONTEXT = b"garrison alert webhook"


def _key(data_dir: Path) -> bytes:
    path = data_dir / KEY_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: two processes starting on the same data directory agree on one key.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(AESGCM.generate_key(bit_length=256))
                out.flush()
                os.fsync(out.fileno())
    key = path.read_bytes()
    if len(key) != 32:
        raise RuntimeError(f"{path} is not an alert key (32 bytes)")
    return key


def seal(data_dir: Path, url: str) -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(_key(data_dir)).encrypt(nonce, url.encode(), CONTEXT)


def unseal(data_dir: Path, sealed: bytes) -> str:
    return AESGCM(_key(data_dir)).decrypt(sealed[:NONCE], sealed[NONCE:], CONTEXT).decode()


def mask(url: str) -> str:
    """What may be shown of a webhook URL: its scheme and host, never its path or query."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}/…"


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) without the URL or any part of its path and query."""
    parts = urlsplit(url)
    for secret in sorted({url, parts.path, parts.query, parts.path.rstrip("/")} - {"", "/"}, key=len, reverse=True):
        text = text.replace(secret, "/…")
    return text
