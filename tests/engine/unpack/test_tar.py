"""Tar archives: regular files extracted, links and devices skipped with a reason."""

from __future__ import annotations

import io
import tarfile

import pytest

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType, detect
from garrison.engine.unpack.tarfiles import unpack_tar

from .helpers import EICAR, HOSTILE_NAMES, by_name, make_ctx


def build(files: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in extra or []:
            archive.addfile(info)
    return out.getvalue()


def special(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def test_regular_files_and_specials() -> None:
    data = build(
        {"docs/eicar.com": EICAR, "empty": b""},
        [
            special("sym", tarfile.SYMTYPE, "/etc/shadow"),
            special("hard", tarfile.LNKTYPE, "docs/eicar.com"),
            special("dev", tarfile.CHRTYPE),
            special("fifo", tarfile.FIFOTYPE),
            special("dir", tarfile.DIRTYPE),
        ],
    )
    assert detect(data) is FileType.TAR
    members = by_name(unpack_tar(data, make_ctx()))
    assert members["docs/eicar.com"].data == EICAR
    assert members["empty"].data == b""
    assert "dir" not in members
    for name, word in [("sym", "symbolic link"), ("hard", "hard link"), ("dev", "device"), ("fifo", "FIFO")]:
        assert members[name].data is None
        assert word in (members[name].skipped or "")


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_labels(name: str) -> None:
    members = list(unpack_tar(build({name: EICAR}), make_ctx()))
    assert len(members) == 1
    assert members[0].data == EICAR
    assert members[0].name.startswith(name.split("\x00", maxsplit=1)[0])


def test_oversized_member_is_refused_without_reading() -> None:
    members = by_name(unpack_tar(build({"big": b"A" * 5000, "small": EICAR}), make_ctx(max_member_size=4096)))
    assert members["big"].data is None
    assert members["big"].limit == "max_file_size"
    assert members["small"].data == EICAR


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda d: d[:700], id="truncated-in-data"),
        pytest.param(lambda d: d[:100], id="truncated-in-header"),
        pytest.param(lambda d: d[:512] + b"\xff" * 512 + d[1024:], id="bad-checksum"),
        pytest.param(lambda d: b"\x00" * 10, id="garbage"),
    ],
)
def test_corrupt_archives_fail_cleanly(mangle: object) -> None:
    data = mangle(build({"a": EICAR * 20, "b": EICAR}))  # type: ignore[operator]
    try:
        members = list(unpack_tar(data, make_ctx()))
    except UnpackError:
        return
    assert all(m.data is None or isinstance(m.data, bytes) for m in members)


def test_non_utf8_names_become_printable() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as archive:
        info = tarfile.TarInfo("caf\xe9.txt")
        info.size = len(EICAR)
        archive.addfile(info, io.BytesIO(EICAR))
    (member,) = unpack_tar(out.getvalue(), make_ctx())
    member.name.encode("utf-8")
    assert member.data == EICAR
