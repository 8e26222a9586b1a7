"""Shared test helpers: samples are built at run time, never stored (no live malware in the repository)."""

from __future__ import annotations

import io
import socket
import zipfile

import pytest

from garrison.engine.eicar import EICAR


def zip_bytes(members: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def eicar() -> bytes:
    return EICAR


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on now (for the servers the tests start)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
