from __future__ import annotations

import pytest

from garrison.engine import Engine, Status
from garrison.engine.eicar import EICAR, EICAR_NAME, is_eicar

# The cases ClamAV's exact-rule signature was checked against (clamav-formats.md, section 4).
CASES = [
    ("exact 68 bytes", EICAR, True),
    ("CRLF appended", EICAR + b"\r\n", True),
    ("padded with spaces to 128 bytes", EICAR + b" " * 60, True),
    ("every allowed whitespace", EICAR + b" \t\n\r\x1a", True),
    ("129 bytes", EICAR + b" " * 61, False),
    ("trailing text", EICAR + b"hello", False),
    ("prefixed", b"A" + EICAR, False),
    ("truncated", EICAR[:-1], False),
    ("empty", b"", False),
    ("zero instead of capital O", EICAR.replace(b"X5O", b"X50"), False),
]


@pytest.mark.parametrize(("label", "data", "expected"), CASES, ids=[c[0] for c in CASES])
def test_eicar_definition(label: str, data: bytes, expected: bool) -> None:
    assert is_eicar(data) is expected


@pytest.mark.parametrize(("label", "data", "expected"), CASES, ids=[c[0] for c in CASES])
def test_engine_detects_eicar_without_a_database(label: str, data: bytes, expected: bool) -> None:
    result = Engine().scan_bytes(data, "sample")
    assert (result.status is Status.INFECTED) is expected
    if expected:
        assert [d.name for _, d in result.detections] == [EICAR_NAME]
