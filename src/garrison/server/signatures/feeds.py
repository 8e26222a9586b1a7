"""New versions of signature sources arriving by themselves: files dropped in the watched directory (networks
without internet) and upstream URLs fetched on a schedule."""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from garrison.server.audit.service import SYSTEM, Actor, record
from garrison.server.errors import BadRequest, Conflict
from garrison.server.signatures import importers, service
from garrison.server.signatures.importers import ContainerKeys, ImportLimits, Refused
from garrison.server.signatures.models import (
    SignatureSource,
    SourceFormat,
    SourceKind,
)
from garrison.server.signatures.store import SourceStore

logger = logging.getLogger(__name__)

#: Where the watched directory's files go once read.
IMPORTED, REFUSED = "imported", "refused"


def _source_for_file(session: Session, filename: str) -> SignatureSource | None:
    if importers.is_cdiff(filename):
        database = importers.cdiff_database(filename)
        for source in service.list_sources(session):
            if source.format == SourceFormat.CLAMAV_CVD.value and (
                f"{database}.info" in source.files or source.name == database
            ):
                return source
        return None
    by_origin = session.scalar(
        select(SignatureSource)
        .where(SignatureSource.origin == filename, SignatureSource.kind == SourceKind.WATCHED)
        .order_by(SignatureSource.id)
    )
    return by_origin or service.by_name(session, _stem_name(filename))


def _stem_name(filename: str) -> str:
    stem = filename
    suffix = importers.suffix_of(filename)
    if suffix and stem.lower().endswith(suffix):
        stem = stem[: -len(suffix)]
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).lstrip("._-")[:64]
    return cleaned or "watched"


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(mode=0o750, exist_ok=True)
    target = folder / path.name
    if target.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        target = folder / f"{stamp}-{path.name}"
    shutil.move(path, target)
    return target


def import_watched(
    session: Session,
    store: SourceStore,
    directory: Path,
    actor: Actor | None = None,
    *,
    keys: ContainerKeys | None = None,
    limits: ImportLimits | None = None,
    settle_seconds: float = service.SETTLE_SECONDS,
) -> list[service.WatchedResult]:
    """Import every file dropped in ``directory`` (for networks without internet access).

    The source is the one the file came from before (same file name), or the one named after the file's stem,
    created as a *watched* source when new; a ``.cdiff`` applies to the source of its database. An imported (or
    unchanged) file moves to ``directory/imported/``; a refused one to ``directory/refused/`` with
    ``<file>.reason.txt`` beside it. A file younger than ``settle_seconds`` or whose size or time changes while it
    is read is still being written: it stays for the next pass. Each file is imported in a savepoint of its own.
    """
    actor = actor or SYSTEM
    directory = Path(directory)
    if not directory.is_dir():
        return []
    results: list[service.WatchedResult] = []
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or not path.is_file() or path.is_symlink():
            continue
        before = path.stat()
        if time.time() - before.st_mtime < settle_seconds:
            results.append(service.WatchedResult(path.name, "waiting"))
            continue
        data = path.read_bytes()
        after = path.stat()
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(data) != after.st_size:
            results.append(service.WatchedResult(path.name, "waiting"))
            continue
        results.append(_import_dropped(session, store, actor, directory, path, data, keys, limits))
    return results


def _import_dropped(
    session: Session,
    store: SourceStore,
    actor: Actor,
    directory: Path,
    path: Path,
    data: bytes,
    keys: ContainerKeys | None,
    limits: ImportLimits | None,
) -> service.WatchedResult:
    filename = path.name
    source = _source_for_file(session, filename)
    name = source.name if source else None
    try:
        with session.begin_nested():
            if source is None:
                if importers.is_cdiff(filename):
                    raise Refused(f"{filename}: no ClamAV database source for this cdiff; drop the whole .cvd first")
                name = service.check_name(_stem_name(filename))
                source, result = service.create_source(
                    session,
                    store,
                    actor,
                    name=name,
                    kind=SourceKind.WATCHED,
                    origin=filename,
                    upload=(filename, data),
                    keys=keys,
                    limits=limits,
                )
                assert result is not None  # noqa: S101 - an service.upload always gives a result
            else:
                result = service.import_file(session, store, actor, source, filename, data, keys=keys, limits=limits)
    except (Refused, BadRequest, Conflict) as refused:
        if source is not None and session.get(SignatureSource, source.id) is not None:
            service.refuse(session, actor, source, Refused(refused.message), filename)
        else:
            record(
                session, actor, "signature_source.refused", "signature_source", None, name=name, file=filename,
                reason=refused.message[:2000],
            )  # fmt: skip
        moved = _move(path, directory / REFUSED)
        (moved.parent / f"{moved.name}.reason.txt").write_text(refused.message + "\n", encoding="utf-8")
        logger.info("refused the dropped signature file %s: %s", filename, refused.message)
        return service.WatchedResult(filename, "refused", name, refused.message)
    _move(path, directory / IMPORTED)
    return service.WatchedResult(
        filename, "imported" if result.changed else "unchanged", source.name, "", result.warnings
    )


# -- upstream URLs --------------------------------------------------------------------------------------------

MAX_DOWNLOAD = 512 * 1024 * 1024


def default_get(url: str, *, timeout: float = 60.0, max_bytes: int = MAX_DOWNLOAD) -> bytes:
    """Download ``url`` (redirects followed, ``timeout`` seconds per step, at most ``max_bytes``)."""
    import httpx2  # noqa: PLC0415 - only fetching needs it, and the [server] extra does not install it

    with (
        httpx2.Client(timeout=timeout, follow_redirects=True) as client,
        client.stream("GET", url) as answer,
    ):
        if answer.status_code != 200:
            raise OSError(f"the server answered {answer.status_code}")
        declared = answer.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise OSError(f"the file is larger than {max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        for chunk in answer.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise OSError(f"the file is larger than {max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def fetch_upstream(
    session: Session,
    store: SourceStore,
    source: SignatureSource,
    get: Callable[[str], bytes] = default_get,
    *,
    actor: Actor | None = None,
    keys: ContainerKeys | None = None,
    limits: ImportLimits | None = None,
) -> service.ImportResult:
    """Fetch an upstream source's URL with ``get`` and import it like an service.upload (an unchanged download changes
    nothing). A failed download is recorded like a refused file and raises :class:`Refused`."""
    actor = actor or SYSTEM
    if source.kind is not SourceKind.UPSTREAM:
        raise BadRequest(f"the source {source.name!r} is not fetched from a URL")
    url = source.origin
    filename = PurePosixPath(urlsplit(url).path).name or source.name
    try:
        data = get(url)
    except Exception as exc:  # any failure of the injected getter is a failed download
        refused = Refused(f"the download from {service.safe_url(url)} failed: {str(exc)[:500] or type(exc).__name__}")
        service.refuse(session, actor, source, refused, filename)
        raise refused from None
    return service.import_file(session, store, actor, source, filename, data, keys=keys, limits=limits)
