from __future__ import annotations

import bz2
import gzip
import lzma

import pytest

from garrison.engine import Engine, ScanLimits, Status
from garrison.engine.eicar import EICAR


@pytest.mark.parametrize(
    ("data", "name", "member"),
    [
        (gzip.compress(EICAR, mtime=0), "eicar.com.gz", "eicar.com"),
        (gzip.compress(EICAR, mtime=0), "backup.TGZ", "backup.tar"),
        (gzip.compress(EICAR, mtime=0), "noext", "gzip-content"),
        (bz2.compress(EICAR), "dir/eicar.bz2", "eicar"),
        (bz2.compress(EICAR), "a.tbz2", "a.tar"),
        (lzma.compress(EICAR), "x.txz", "x.tar"),
        (lzma.compress(EICAR), ".xz", "xz-content"),
    ],
    ids=lambda value: value if isinstance(value, str) else "data",
)
def test_member_named_like_the_tools_name_it(data: bytes, name: str, member: str) -> None:
    result = Engine().scan_bytes(data, name)
    assert result.status is Status.INFECTED
    assert result.detections[0][0].chain == (name, member)


def test_gzip_original_name_wins() -> None:
    import io

    buffer = io.BytesIO()
    with gzip.GzipFile("original.exe", "wb", fileobj=buffer) as stream:
        stream.write(EICAR)
    result = Engine().scan_bytes(buffer.getvalue(), "renamed.gz")
    assert result.detections[0][0].chain == ("renamed.gz", "original.exe")


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress], ids=["gzip", "bzip2", "xz"])
def test_bombs_stop_at_the_size_limit(compress: object) -> None:
    data = compress(b"\0" * (8 * 1024 * 1024))  # type: ignore[operator]
    result = Engine(limits=ScanLimits(max_file_size=1024 * 1024, max_ratio=0)).scan_bytes(data, "bomb")
    assert result.status is Status.INCOMPLETE
    assert "size limit" in (result.reason or "")


@pytest.mark.parametrize(
    "data",
    [gzip.compress(b"x" * 1000, mtime=0)[:20], bz2.compress(b"x" * 1000)[:-5], b"\xfd7zXZ\x00junk"],
    ids=["gzip", "bzip2", "xz"],
)
def test_corrupt_streams(data: bytes) -> None:
    result = Engine().scan_bytes(data, "corrupt")
    assert result.status is Status.INCOMPLETE
    assert "corrupt" in (result.reason or "")
