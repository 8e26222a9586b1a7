"""7z archives through py7zr's worker: names never become paths, encrypted folders are reported."""

from __future__ import annotations

import io

import py7zr
import pytest

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType, detect
from garrison.engine.unpack.sevenzip import unpack_7z

from .helpers import EICAR, HOSTILE_NAMES, by_name, make_ctx

PASSWORD = "infected"


def build(files: dict[str, bytes], **options: object) -> bytes:
    out = io.BytesIO()
    with py7zr.SevenZipFile(out, "w", **options) as archive:  # type: ignore[arg-type]
        for name, data in files.items():
            archive.writestr(data, name)
    return out.getvalue()


def test_members_are_extracted() -> None:
    data = build({"a/eicar.com": EICAR, "b.txt": b"hello", "empty": b""})
    assert detect(data) is FileType.SEVENZIP
    members = by_name(unpack_7z(data, make_ctx()))
    assert members["a/eicar.com"].data == EICAR
    assert members["b.txt"].data == b"hello"
    assert members["empty"].data == b""


def test_encrypted_members_are_reported() -> None:
    members = list(unpack_7z(build({"secret.com": EICAR}, password=PASSWORD), make_ctx()))
    assert [(m.name, m.encrypted, m.data) for m in members] == [("secret.com", True, None)]


def test_encrypted_header_is_reported() -> None:
    data = build({"secret.com": EICAR}, password=PASSWORD, header_encryption=True)
    (member,) = unpack_7z(data, make_ctx())
    assert member.encrypted
    assert member.data is None


@pytest.mark.parametrize("name", [*HOSTILE_NAMES, "/abs/path", "C:\\windows\\evil.exe"])
def test_hostile_names_are_labels(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # py7zr refuses to *write* such names; real attackers use other tools.
    monkeypatch.setattr(py7zr.py7zr, "check_archive_path", lambda _name: True)
    data = build({name: EICAR, "ok.txt": b"ok"})
    members = list(unpack_7z(data, make_ctx()))
    assert [m.data for m in members] == [EICAR, b"ok"]


def test_oversized_member_is_refused() -> None:
    data = build({"big": b"A" * 50_000, "small": EICAR})
    members = by_name(unpack_7z(data, make_ctx(max_member_size=10_000)))
    assert members["big"].limit == "max_file_size"
    assert members["big"].data is None
    assert members["small"].data == EICAR


def test_bomb_is_refused_for_its_ratio() -> None:
    data = build({"zeros": b"\x00" * (3 * 1024 * 1024)})
    (member,) = unpack_7z(data, make_ctx(max_member_size=100 * 1024 * 1024, max_ratio=100))
    assert member.limit == "max_ratio"


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda d: d[: len(d) // 2], id="truncated"),
        pytest.param(lambda d: d[:40] + bytes(b ^ 0x55 for b in d[40:-60]) + d[-60:], id="flipped-data"),
        pytest.param(lambda d: d[:32], id="header-only"),
        pytest.param(lambda d: b"7z\xbc\xaf\x27\x1c" + b"\x00" * 50, id="garbage"),
    ],
)
def test_corrupt_archives_fail_cleanly(mangle: object) -> None:
    data = mangle(build({"a": EICAR * 50, "b": b"B" * 1000}))  # type: ignore[operator]
    try:
        members = list(unpack_7z(data, make_ctx()))
    except UnpackError:
        return
    for member in members:
        assert member.data is None or member.data in (EICAR * 50, b"B" * 1000)
