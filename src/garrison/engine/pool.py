"""Scanning many files on several cores.

Processes, not threads: unpacking and typing run Python code that holds the GIL. The database is loaded once
in the parent and inherited by forked workers, whose memory-mapped hash tables and compiled rules are shared
pages, so adding a worker costs little memory. Where ``fork`` is unavailable (Windows, macOS by default), the
scan runs in one process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Iterator

from garrison.engine.results import ScanResult
from garrison.engine.scanner import Engine

_engine: Engine | None = None


def _scan(path: str) -> ScanResult:
    if _engine is None:
        raise RuntimeError("scan worker started without an engine")
    return _engine.scan_file(path)


def scan_files(engine: Engine, paths: Iterable[str], jobs: int | None = None) -> Iterator[ScanResult]:
    """Scan every path, yielding results as they finish (not in input order when ``jobs`` > 1)."""
    jobs = jobs or os.cpu_count() or 1
    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for path in paths:
            yield engine.scan_file(path)
        return
    global _engine  # noqa: PLW0603 - handed to forked workers through module state, by design
    _engine = engine
    context = multiprocessing.get_context("fork")
    with context.Pool(jobs) as pool:
        # Small chunks keep both cores busy when file sizes vary a lot; 1 would cost more in messaging.
        yield from pool.imap_unordered(_scan, paths, chunksize=4)
