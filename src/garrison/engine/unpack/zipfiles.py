"""Zip archives (and everything built on zip: OOXML documents, JAR, APK, ODF)."""

from __future__ import annotations

import io
import itertools
import zipfile
import zlib
from collections.abc import Iterator

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType
from garrison.engine.unpack.registry import Member, UnpackContext, read_bounded, register

OVERLAP_DETECTION = "Heuristics.Zip.OverlappingFiles"


def _check_overlaps(infos: list[zipfile.ZipInfo]) -> None:
    """Refuse archives whose entries share bytes: the overlapping-entry kind of zip bomb.

    Each entry occupies at least its local header (30 bytes + name) and its compressed data; in an honest
    archive those ranges are disjoint.
    """
    spans = sorted((i.header_offset, i.header_offset + 30 + len(i.orig_filename) + i.compress_size) for i in infos)
    for (_, end), (next_start, _) in itertools.pairwise(spans):
        if next_start < end:
            raise UnpackError("entries overlap each other (a zip bomb)", detection=OVERLAP_DETECTION)


@register(FileType.ZIP)
def unpack_zip(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise UnpackError(f"corrupt zip archive: {exc}") from None
    _check_overlaps(infos)
    with archive:
        for info in infos:
            if info.is_dir():
                continue
            name = info.filename
            if info.flag_bits & 0x1:
                yield Member(name, encrypted=True, skipped="encrypted member")
                continue
            refused = ctx.refuse(name, info.file_size, info.compress_size)
            if refused is not None:
                yield refused
                continue
            try:
                with archive.open(info) as stream:
                    yield read_bounded(stream, ctx, name, compressed=info.compress_size)
            except NotImplementedError as exc:
                yield Member(name, skipped=f"unsupported compression: {exc}")
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
                yield Member(name, skipped=f"corrupt member: {exc}")
