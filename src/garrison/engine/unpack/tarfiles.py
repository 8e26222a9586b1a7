"""POSIX tar archives (ustar, GNU, pax), read with the standard library's :mod:`tarfile`.

Only regular files are extracted. Links, devices, FIFOs and directories are reported as skipped members with
the reason, never followed: a hard link's target is already a member of its own. Compressed tarballs are
typed as gzip/bzip2/xz first, so this module only ever sees the uncompressed archive.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType
from garrison.engine.unpack.registry import Member, UnpackContext, read_bounded, register

_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, UnicodeError)

_KINDS = (
    (tarfile.TarInfo.issym, "symbolic link"),
    (tarfile.TarInfo.islnk, "hard link"),
    (tarfile.TarInfo.ischr, "character device"),
    (tarfile.TarInfo.isblk, "block device"),
    (tarfile.TarInfo.isfifo, "FIFO"),
)


def _label(name: str) -> str:
    # Undecodable bytes come back as lone surrogates, which cannot be encoded later on.
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace") or "(unnamed)"


def _special(info: tarfile.TarInfo) -> str | None:
    for test, kind in _KINDS:
        if test(info):
            return f"{kind} not extracted"
    return None if info.isreg() else "not a regular file"


@register(FileType.TAR)
def unpack_tar(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="replace")  # noqa: SIM115
    except _ERRORS as exc:
        raise UnpackError(f"corrupt tar archive: {exc}") from None
    with archive:
        while True:
            try:
                info = archive.next()
            except _ERRORS as exc:
                raise UnpackError(f"corrupt tar archive: {exc}") from None
            if info is None:
                return
            if info.isdir():
                continue
            name = _label(info.name)
            reason = _special(info)
            if reason is not None:
                yield Member(name, skipped=reason)
                continue
            refused = ctx.refuse(name, info.size)
            if refused is not None:
                yield refused
                continue
            try:
                stream = archive.extractfile(info)
                if stream is None:
                    yield Member(name, skipped="no data")
                    continue
                with stream:
                    member = read_bounded(stream, ctx, name)
            except _ERRORS as exc:
                yield Member(name, skipped=f"corrupt member: {exc}")
                continue
            yield member
