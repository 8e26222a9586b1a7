"""Shared test helpers: samples are built at run time, never stored (no live malware in the repository)."""

from __future__ import annotations

import io
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
