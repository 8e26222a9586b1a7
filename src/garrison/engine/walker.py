"""Walks paths for scanning: files to scan, and what was skipped and why.

Symbolic links met inside directories are not followed unless asked (a link given by name is followed, as in
clamscan); FIFOs, sockets and devices are never opened, because reading them can block forever or change
state. Directory loops are detected when links are followed.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Found:
    """A regular file to scan."""

    path: str
    size: int


@dataclass(frozen=True, slots=True)
class Skipped:
    """A path not scanned; ``error`` is True when it is a problem (unreadable), False when by design."""

    path: str
    reason: str
    error: bool = False


def walk(
    paths: Iterable[str], *, follow_symlinks: bool = False, exclude: Iterable[str] = (), max_depth: int = 64
) -> Iterator[Found | Skipped]:
    """Regular files under ``paths`` in a stable order, and every path skipped with its reason."""
    patterns = tuple(exclude)
    seen_dirs: set[tuple[int, int]] = set()

    def excluded(path: str) -> bool:
        name = os.path.basename(path.rstrip(os.sep)) or path
        return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in patterns)

    def visit(path: str, depth: int, named: bool) -> Iterator[Found | Skipped]:
        if patterns and excluded(path):
            yield Skipped(path, "excluded")
            return
        try:
            info = os.stat(path, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                if not (follow_symlinks or named):
                    yield Skipped(path, "symbolic link not followed")
                    return
                info = os.stat(path)
        except FileNotFoundError:
            yield Skipped(path, "no such file or directory (or a broken link)", error=True)
            return
        except OSError as exc:
            yield Skipped(path, f"cannot access: {exc.strerror}", error=True)
            return
        if stat.S_ISREG(info.st_mode):
            yield Found(path, info.st_size)
        elif stat.S_ISDIR(info.st_mode):
            key = (info.st_dev, info.st_ino)
            if key in seen_dirs:
                yield Skipped(path, "directory already visited (link loop)")
                return
            if depth >= max_depth:
                yield Skipped(path, "directory nested deeper than the limit", error=True)
                return
            seen_dirs.add(key)
            try:
                with os.scandir(path) as entries:
                    names = sorted(entry.name for entry in entries)
            except OSError as exc:
                yield Skipped(path, f"cannot list the directory: {exc.strerror}", error=True)
                return
            for name in names:
                yield from visit(os.path.join(path, name), depth + 1, named=False)
        else:
            kind = "FIFO" if stat.S_ISFIFO(info.st_mode) else "socket" if stat.S_ISSOCK(info.st_mode) else "device"
            yield Skipped(path, f"{kind} skipped")

    for path in paths:
        yield from visit(path, 0, named=True)
