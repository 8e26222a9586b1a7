"""cpio, ar, ISO 9660 (written with libarchive), CAB and RAR 4 (written by the helpers), read with libarchive."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import libarchive
import pytest

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType, detect
from garrison.engine.unpack import libarchive_formats as la
from garrison.engine.unpack.registry import Member, UnpackContext

from .helpers import EICAR, HOSTILE_NAMES, build_cab, build_rar4, by_name, make_ctx

Unpacker = Callable[[bytes, UnpackContext], Iterator[Member]]


def written(fmt: str, files: dict[str, bytes], symlink: bool = False) -> bytes:
    chunks: list[bytes] = []

    def sink(block: bytes) -> int:
        chunks.append(bytes(block))
        return len(block)

    with libarchive.custom_writer(sink, fmt) as archive:
        for name, data in files.items():
            archive.add_file_from_memory(name, len(data), data)
        if symlink:
            archive.add_file_from_memory("link", 0, b"", filetype=0o120000, linkpath="/etc/shadow")
    return b"".join(chunks)


# (id, builder, unpacker, expected type, whether names keep their directories)
FORMATS: list[tuple[str, Callable[[dict[str, bytes]], bytes], Unpacker, FileType]] = [
    ("cpio-newc", lambda f: written("cpio_newc", f), la.unpack_cpio, FileType.CPIO),
    ("cpio-odc", lambda f: written("cpio", f), la.unpack_cpio, FileType.CPIO),
    ("ar", lambda f: written("ar_svr4", f), la.unpack_ar, FileType.AR),
    ("iso9660", lambda f: written("iso9660", f), la.unpack_iso, FileType.ISO),
    ("cab", build_cab, la.unpack_cab, FileType.CAB),
    ("rar4", build_rar4, la.unpack_rar, FileType.RAR),
]
IDS = [f[0] for f in FORMATS]


@pytest.mark.parametrize(("build", "unpack", "file_type"), [f[1:] for f in FORMATS], ids=IDS)
def test_good_archive(build: Callable[[dict[str, bytes]], bytes], unpack: Unpacker, file_type: FileType) -> None:
    data = build({"eicar.com": EICAR, "notes.txt": b"hello"})
    assert detect(data) is file_type
    members = by_name(unpack(data, make_ctx()))
    assert members["eicar.com"].data == EICAR
    assert members["notes.txt"].data == b"hello"


@pytest.mark.parametrize("fmt", ["cpio_newc", "iso9660"])
def test_symlinks_are_skipped(fmt: str) -> None:
    data = written(fmt, {"eicar.com": EICAR}, symlink=True)
    members = by_name(la.unpack_cpio(data, make_ctx()) if fmt.startswith("cpio") else la.unpack_iso(data, make_ctx()))
    assert members["link"].data is None
    assert "link" in (members["link"].skipped or "")
    assert members["eicar.com"].data == EICAR


@pytest.mark.parametrize(("build", "unpack", "file_type"), [f[1:] for f in FORMATS], ids=IDS)
def test_oversized_member(build: Callable[[dict[str, bytes]], bytes], unpack: Unpacker, file_type: FileType) -> None:
    members = by_name(unpack(build({"big.bin": b"B" * 6000, "eicar.com": EICAR}), make_ctx(max_member_size=4096)))
    assert members["big.bin"].data is None
    assert members["big.bin"].limit == "max_file_size"
    assert members["eicar.com"].data == EICAR


@pytest.mark.parametrize(("build", "unpack", "file_type"), [f[1:] for f in FORMATS], ids=IDS)
@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_archive(
    build: Callable[[dict[str, bytes]], bytes], unpack: Unpacker, file_type: FileType, cut: float
) -> None:
    data = build({"first.bin": b"F" * 3000, "eicar.com": EICAR, "last.bin": b"L" * 3000})
    try:
        members = list(unpack(data[: int(len(data) * cut)], make_ctx()))
    except UnpackError:
        return
    for member in members:
        assert member.data is None or member.data in (b"F" * 3000, EICAR, b"L" * 3000)


@pytest.mark.parametrize("unpack", [la.unpack_cpio, la.unpack_cab, la.unpack_rar, la.unpack_iso, la.unpack_ar])
@pytest.mark.parametrize("data", [b"", b"\x00" * 100, b"MSCF\x00\x00\x00\x00" + b"\xff" * 200, b"Rar!\x1a\x07\x00"])
def test_garbage_raises_unpack_error(unpack: Unpacker, data: bytes) -> None:
    with pytest.raises(UnpackError):
        list(unpack(data, make_ctx()))


@pytest.mark.parametrize(
    ("build", "unpack"),
    [(lambda f: written("cpio_newc", f), la.unpack_cpio), (build_cab, la.unpack_cab), (build_rar4, la.unpack_rar)],
    ids=["cpio", "cab", "rar4"],
)
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_labels(build: Callable[[dict[str, bytes]], bytes], unpack: Unpacker, name: str) -> None:
    members = list(unpack(build({name: EICAR}), make_ctx()))
    assert [m.data for m in members] == [EICAR]
    members[0].name.encode("utf-8")


def test_encrypted_rar_member_is_reported() -> None:
    data = build_rar4({"eicar.com": EICAR, "secret.com": EICAR}, encrypted=["secret.com"])
    members = by_name(la.unpack_rar(data, make_ctx()))
    assert members["eicar.com"].data == EICAR
    assert members["secret.com"].encrypted
    assert members["secret.com"].data is None
