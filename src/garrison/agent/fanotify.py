"""fanotify through :mod:`ctypes`: the privileged back end of real-time protection (Linux, CAP_SYS_ADMIN).

What it does:

- ``fanotify_init`` with a **notification** class (``FAN_CLASS_NOTIF``) and the events ``FAN_CLOSE_WRITE`` (a file
  written and closed: scan it) and ``FAN_OPEN`` (a file opened: scan it, unless that very content was already
  scanned clean, see :class:`CleanCache`).
- Marks are **mount marks** (``FAN_MARK_MOUNT``) on the mount holding each protected directory and on the mounts
  below it, and events are filtered to paths under the protected directories (see :meth:`FanotifyWatcher.add`).
- Each event carries an open file descriptor; it is resolved to a path through ``/proc/self/fd/N`` and always
  closed, whatever happens to the event.
- Events caused by the agent's own process are dropped: the scanner opens every file it scans, and each of those
  opens would otherwise be an event, a scan, an open, an event... forever.

**Not in scope: permission events** (``FAN_OPEN_PERM``, ``FAN_ACCESS_PERM``), which would hold every open until
the agent answers "allow" or "deny" and so block a malicious file *before* it is read. With them, every open on the
marked mounts waits on this process: a scanner that hangs or falls behind would hang the whole machine. Doing it
safely needs a response deadline, an allow-on-timeout policy and a scanner isolated from the answering thread;
left for later. Notification events see the file right after it was opened or written, like inotify but for reads
too and without per-directory watches.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import stat
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

# fanotify_init flags (linux/fanotify.h)
FAN_CLOEXEC = 0x00000001
FAN_NONBLOCK = 0x00000002
FAN_CLASS_NOTIF = 0x00000000
# fanotify_mark flags
FAN_MARK_ADD = 0x00000001
FAN_MARK_REMOVE = 0x00000002
FAN_MARK_MOUNT = 0x00000010
FAN_MARK_FILESYSTEM = 0x00000100
# events
FAN_CLOSE_WRITE = 0x00000008
FAN_OPEN = 0x00000020
FAN_Q_OVERFLOW = 0x00004000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_NOFD = -1
FANOTIFY_METADATA_VERSION = 3
AT_FDCWD = -100

EVENT_MASK = FAN_CLOSE_WRITE | FAN_OPEN
# struct fanotify_event_metadata: event_len, vers, reserved, metadata_len, mask, fd, pid
_METADATA = struct.Struct("=IBBHQii")
# Every event in one read() comes with its own descriptor: a small buffer keeps those well under RLIMIT_NOFILE.
READ_SIZE = 170 * _METADATA.size
# A read loop returns after this many reads even if more is waiting, so a busy machine cannot starve the caller.
MAX_READS = 64

# Mounts never worth scanning even when below a protected directory (kernel and virtual file systems).
PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "nsfs",
        "proc",
        "pstore",
        "securityfs",
        "selinuxfs",
        "sysfs",
        "tracefs",
    }
)


class FanotifyError(Exception):
    """fanotify cannot be used: ``errno`` says why (EPERM without CAP_SYS_ADMIN, ENOSYS/EINVAL in some sandboxes)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


FileId = tuple[int, int]  # st_dev, st_ino
Version = tuple[int, int]  # st_size, st_mtime_ns


def file_identity(info: os.stat_result) -> tuple[FileId, Version]:
    return (info.st_dev, info.st_ino), (info.st_size, info.st_mtime_ns)


class CleanCache:
    """Files already scanned clean, by (device, inode) and (size, mtime): an open of one of those is not rescanned.

    Bounded (least recently used out first) and thread-safe: the reader thread looks up, the worker records.
    A write (``FAN_CLOSE_WRITE``) forgets the file even if size and mtime did not change (mtime has the kernel
    tick's granularity, so a quick same-size rewrite could otherwise keep its clean verdict).
    """

    def __init__(self, size: int = 65_536) -> None:
        self.size = size
        self._items: OrderedDict[FileId, Version] = OrderedDict()
        self._lock = threading.Lock()

    def is_clean(self, file: FileId, version: Version) -> bool:
        with self._lock:
            if self._items.get(file) != version:
                return False
            self._items.move_to_end(file)
            return True

    def add(self, file: FileId, version: Version) -> None:
        with self._lock:
            self._items[file] = version
            self._items.move_to_end(file)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def forget(self, file: FileId) -> None:
        with self._lock:
            self._items.pop(file, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


@dataclass(frozen=True, slots=True)
class FanotifyEvent:
    """A file to scan (``path`` set) or a lost-events notice (``mask & FAN_Q_OVERFLOW``, no path)."""

    mask: int
    path: bytes | None = None
    pid: int = 0

    @property
    def overflow(self) -> bool:
        return bool(self.mask & FAN_Q_OVERFLOW)


@dataclass
class FanotifyStats:
    """What the watcher dropped before queueing, and why (the tests and debugging read it)."""

    own: int = 0  # caused by the agent itself
    cached: int = 0  # an open of a file already scanned clean, unchanged
    outside: int = 0  # not under a protected directory (mount marks see the whole mount)
    other: int = 0  # not a regular file, deleted, or its path could not be read


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def mounts_under(root: bytes) -> list[bytes]:
    """Mount points strictly below ``root`` (pseudo file systems left out), from ``/proc/self/mountinfo``."""
    prefix = root.rstrip(b"/") + b"/"
    found = []
    try:
        with open("/proc/self/mountinfo", "rb") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    for line in lines:
        fields, _, rest = line.partition(b" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        fstype = os.fsdecode(rest.split()[0])
        # mountinfo escapes space, tab, newline and backslash as octal (\040 ...)
        point = parts[4].decode("unicode_escape").encode("latin-1")
        if point.startswith(prefix) and fstype not in PSEUDO_FILESYSTEMS:
            found.append(point)
    return found


class FanotifyWatcher:
    """A fanotify group watching the protected directories; :meth:`read` gives the files to scan.

    Args:
        cache: the clean-file cache consulted on ``FAN_OPEN`` and invalidated on ``FAN_CLOSE_WRITE``.
        own_pid: events from this process are dropped (the agent's own scans).

    Raises:
        FanotifyError: when ``fanotify_init`` fails (no CAP_SYS_ADMIN: EPERM; no fanotify in the kernel or the
            sandbox: ENOSYS, EINVAL).
    """

    def __init__(self, cache: CleanCache | None = None, own_pid: int | None = None) -> None:
        try:
            libc = _libc()
            self._init = libc.fanotify_init
            self._mark = libc.fanotify_mark
        except (OSError, AttributeError) as exc:
            raise FanotifyError(f"fanotify is not available on this system: {exc}") from exc
        self._init.argtypes = [ctypes.c_uint, ctypes.c_uint]
        self._mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
        event_flags = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_LARGEFILE", 0)
        fd = self._init(FAN_CLOEXEC | FAN_NONBLOCK | FAN_CLASS_NOTIF, event_flags)
        if fd < 0:
            err = ctypes.get_errno()
            hint = " (needs CAP_SYS_ADMIN)" if err == errno.EPERM else ""
            raise FanotifyError(f"fanotify_init failed: {os.strerror(err)}{hint}", err)
        self.fd: int = fd
        self.cache = cache if cache is not None else CleanCache()
        self.own_pid = os.getpid() if own_pid is None else own_pid
        self.roots: list[bytes] = []
        self.marks: list[bytes] = []
        self.ignore: tuple[bytes, ...] = ()
        self.stats = FanotifyStats()

    def mark(self, path: bytes, flags: int = FAN_MARK_MOUNT, mask: int = EVENT_MASK) -> None:
        if self._mark(self.fd, FAN_MARK_ADD | flags, mask, AT_FDCWD, path) < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), os.fsdecode(path))

    def add(self, root: bytes) -> list[str]:
        """Protect the directory ``root`` (and everything below it); returns the problems with mounts below it.

        Why mount marks rather than one inode mark per directory (``FAN_MARK_ADD | FAN_EVENT_ON_CHILD``): an inode
        mark on a directory sees only its direct children, so a tree needs a mark on every directory, and a
        directory created later must be found and marked too. fanotify in the descriptor mode used here does not
        report directory creation (``FAN_CREATE`` needs the file-handle mode, ``FAN_REPORT_FID``, kernel 5.1+, and
        then events carry no descriptor to scan), so new directories would be invisible. A mount mark sees every
        open and close-write on the mount, new directories included, with no recursion and no mark limit; the cost
        is that events outside the protected directories arrive too and are dropped here (their descriptor is
        closed at once). ``FAN_MARK_FILESYSTEM`` (kernel 4.20+) would also cover other bind mounts of the same file
        system, including ones in other mount namespaces whose paths mean nothing here; a mount mark is enough and
        works on every kernel with fanotify. Mounts made below a protected directory after start are not covered.

        Raises:
            OSError: when the mount holding ``root`` cannot be marked.
        """
        real = os.path.realpath(root)  # /proc/self/fd/N gives the resolved path: compare like with like
        self.mark(real)
        self.roots.append(real.rstrip(b"/") + b"/")
        self.marks.append(real)
        problems = []
        for point in mounts_under(real):
            try:
                self.mark(point)
            except OSError as exc:
                problems.append(f"real-time protection cannot watch the mount {os.fsdecode(point)}: {exc.strerror}")
                continue
            self.marks.append(point)
        return problems

    def _protected(self, path: bytes) -> bool:
        if any(path.startswith(prefix) for prefix in self.ignore):
            return False
        return any(path.startswith(root) for root in self.roots)

    def read(self) -> list[FanotifyEvent]:
        """The files to scan among the events ready now (none when there are none: the descriptor is non-blocking)."""
        events: list[FanotifyEvent] = []
        for _ in range(MAX_READS):
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                break
            if not data:
                break
            self._decode(data, events)
        return events

    def _decode(self, data: bytes, events: list[FanotifyEvent]) -> None:
        offset = 0
        fds = []
        # Collect every descriptor first, so that none leaks even if handling one event fails.
        parsed = []
        while offset + _METADATA.size <= len(data):
            event_len, vers, _, _, mask, fd, pid = _METADATA.unpack_from(data, offset)
            if fd >= 0:
                fds.append(fd)
            parsed.append((vers, mask, fd, pid))
            if event_len < _METADATA.size:
                break
            offset += event_len
        try:
            for vers, mask, fd, pid in parsed:
                if vers != FANOTIFY_METADATA_VERSION:
                    raise FanotifyError(f"unexpected fanotify metadata version {vers}")
                event = self._event(mask, fd, pid)
                if event is not None:
                    events.append(event)
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _event(self, mask: int, fd: int, pid: int) -> FanotifyEvent | None:
        if mask & FAN_Q_OVERFLOW:
            return FanotifyEvent(mask)
        if fd == FAN_NOFD:
            return None
        if pid == self.own_pid:
            self.stats.own += 1
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink == 0:
                self.stats.other += 1
                return None
            path = os.readlink(b"/proc/self/fd/%d" % fd)
        except OSError:
            self.stats.other += 1
            return None
        if not self._protected(path):
            self.stats.outside += 1
            return None
        file, version = file_identity(info)
        if mask & FAN_CLOSE_WRITE:
            self.cache.forget(file)
        elif self.cache.is_clean(file, version):
            self.stats.cached += 1
            return None
        return FanotifyEvent(mask, path, pid)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def protected_prefixes(paths: Iterable[bytes]) -> tuple[bytes, ...]:
    """``paths`` as resolved directory prefixes (``/a/b/``), the form :class:`FanotifyWatcher` compares with."""
    return tuple(os.path.realpath(p).rstrip(b"/") + b"/" for p in paths)
