"""The quarantine store: detected files moved out of reach, neutralised, and restorable byte for byte.

``Quarantine.quarantine(path, detection)`` encrypts the file into the store and only then removes the original;
``restore`` gives back the exact bytes with their owner, mode and modification time; ``delete`` destroys an item.
``delete_file`` is the policy's "delete" action, which hashes a file before removing it so that the report says
what was deleted. The agent reports every one of these actions; this module does no network and no reporting.

Store layout (a directory of mode 0700, normally in the agent's protected state directory)::

    <id>.blob   b"GQB1" | 12-byte nonce | AES-256-GCM ciphertext of the file | 16-byte tag
    <id>.json   {"format": 1, "nonce": <base64>, "sealed": <base64 AES-256-GCM of the metadata JSON>}

``id`` is 32 random hex digits, so stored names say nothing about the file. Both parts are bound to the id as
GCM associated data (with different labels), so a blob or a sidecar cannot be swapped for another item's. Files
are encrypted in 1 MiB chunks as a single GCM stream, so any size is handled in constant memory. The stored
blob has mode 0600, is not executable, and its bytes are ciphertext, so no scanner (ours included) finds the
malware in it again. The metadata is encrypted too: the original path and the detection are not readable
without the key.

Keys: one random 32-byte key per agent, made by :func:`load_or_create_key` in the agent's state directory
(mode 0600). Losing the key makes the stored items unrecoverable (they can still be deleted); a wrong key or
any change to an item is reported as :class:`TamperedItem`.

Crash safety: the encrypted copy and its sidecar are written under temporary names, fsynced, renamed into place,
and the directory fsynced, all before the original is unlinked, so a crash at any point leaves the original, the
item, or both -- never neither. Restore writes a temporary file next to the destination, checks the GCM tag and
the SHA-256 before the file gets its name, and never replaces an existing file unless asked.

Errors (every failure raises one of these with a plain message; callers never see a bare ``OSError``)::

    QuarantineError        the base; also "the store cannot be written" and similar
    ├── FileVanished       the file is gone (before it could be quarantined or deleted)
    ├── FileChanged        the file was replaced while being quarantined; nothing was removed
    ├── AccessDenied       the agent may not read or remove the file (or write the destination)
    ├── NotARegularFile    a symbolic link, directory, device or pipe
    ├── UnknownItem        no item with this id in the store
    ├── TamperedItem       an item failed authentication (modified, truncated, or another key)
    └── DestinationExists  restore would overwrite an existing file and overwrite=False
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from garrison.engine.results import printable

__all__ = [
    "KEY_BYTES",
    "AccessDenied",
    "DeletedFile",
    "DestinationExists",
    "FileChanged",
    "FileVanished",
    "NotARegularFile",
    "Quarantine",
    "QuarantineError",
    "QuarantineItem",
    "TamperedItem",
    "UnknownItem",
    "delete_file",
    "load_or_create_key",
]

log = logging.getLogger(__name__)

KEY_BYTES = 32
FORMAT = 1
_MAGIC = b"GQB1"
_NONCE_BYTES = 12
_TAG_BYTES = 16
_CHUNK = 1024 * 1024
_ID = re.compile(r"[0-9a-f]{32}")
_BLOB_LABEL = b"garrison-quarantine-blob:1:"
_META_LABEL = b"garrison-quarantine-meta:1:"
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


# -- errors -------------------------------------------------------------------------------------------------------


class QuarantineError(Exception):
    """A quarantine, restore or delete action failed; the message says why in plain words."""


class FileVanished(QuarantineError):
    """The file no longer exists."""


class FileChanged(QuarantineError):
    """The file was replaced by another while it was being quarantined; nothing was removed."""


class AccessDenied(QuarantineError):
    """The agent is not allowed to read or remove the file, or to write the destination."""


class NotARegularFile(QuarantineError):
    """Only regular files are quarantined or deleted, never what a symbolic link points to."""


class UnknownItem(QuarantineError):
    """No item with this id is in the store."""


class TamperedItem(QuarantineError):
    """A stored item failed authentication: it was modified or truncated, or the key is not the one it was made with."""


class DestinationExists(QuarantineError):
    """Restoring would replace an existing file, and overwrite was not asked for."""


# -- records ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuarantineItem:
    """One quarantined file and what is known about the original.

    Attributes:
        id: 32 hex digits, the item's name in the store.
        original_path: where the file was; exact even when the name is not valid UTF-8 (surrogate escapes).
        size, uid, gid, mode, mtime_ns: the original's, from ``fstat`` of the opened file.
        md5, sha256: hex digests of the original bytes, as read.
        detection: what the agent was given (signature name, engine version, ...), stored as is.
        quarantined_at: timezone-aware UTC.
    """

    id: str
    original_path: Path
    size: int
    uid: int
    gid: int
    mode: int
    mtime_ns: int
    md5: str
    sha256: str
    detection: dict[str, Any]
    quarantined_at: datetime

    @property
    def display_path(self) -> str:
        """The original path for people and reports: undecodable bytes and control characters shown as ``\\xNN``."""
        return printable(os.fsdecode(self.original_path))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary for reports (the path as display text and as base64 of its exact bytes)."""
        return {
            "id": self.id,
            "path": self.display_path,
            "path_b64": base64.b64encode(os.fsencode(self.original_path)).decode(),
            "size": self.size,
            "uid": self.uid,
            "gid": self.gid,
            "mode": self.mode,
            "mtime_ns": self.mtime_ns,
            "md5": self.md5,
            "sha256": self.sha256,
            "detection": self.detection,
            "quarantined_at": self.quarantined_at.isoformat(),
        }


@dataclass(frozen=True)
class DeletedFile:
    """What :func:`delete_file` removed, for the report."""

    path: Path
    size: int
    md5: str
    sha256: str
    deleted_at: datetime

    @property
    def display_path(self) -> str:
        return printable(os.fsdecode(self.path))


# -- the key ------------------------------------------------------------------------------------------------------


def load_or_create_key(path: Path) -> bytes:
    """The agent's quarantine key from ``path``, made (32 random bytes, mode 0600) when the file does not exist.

    An existing key is never replaced: a key of the wrong length is an error, because replacing it would make
    every stored item unrecoverable. A key file readable by others is tightened to 0600 (and logged).
    """
    path = Path(path)
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            _write_all(fd, AESGCM.generate_key(bit_length=8 * KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(partial, path)  # never replaces a key another process made meanwhile
        except FileExistsError:
            pass
        finally:
            partial.unlink()
        _fsync_directory(path.parent)
        return _read_key(path)
    except OSError as exc:
        raise QuarantineError(f"cannot create the quarantine key {path}: {exc.strerror or exc}") from exc


def _read_key(path: Path) -> bytes:
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise QuarantineError(f"cannot read the quarantine key {path}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise QuarantineError(f"the quarantine key {path} is not a regular file")
        if info.st_mode & 0o077:
            log.warning("quarantine key %s was readable by others; setting its mode to 0600", path)
            os.fchmod(fd, 0o600)
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_BYTES:
        raise QuarantineError(
            f"the quarantine key {path} is damaged ({len(key)} bytes, expected {KEY_BYTES}); "
            "it was not replaced, because items made with the old key could not be restored"
        )
    return key


# -- the store ----------------------------------------------------------------------------------------------------


class Quarantine:
    """The encrypted quarantine store in ``directory`` (created with mode 0700), using a 32-byte ``key``."""

    def __init__(self, directory: Path, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the quarantine key must be {KEY_BYTES} bytes, not {len(key)}")
        self.directory = Path(directory)
        self._key = bytes(key)
        self._aead = AESGCM(self._key)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
        except OSError as exc:
            raise QuarantineError(
                f"cannot use {self.directory} as the quarantine store: {exc.strerror or exc}"
            ) from exc

    # -- quarantine -----------------------------------------------------------------------------------------------

    def quarantine(self, path: Path, detection: dict[str, Any]) -> QuarantineItem:
        """Move the regular file at ``path`` into the store, encrypted, and return the new item.

        The original is unlinked only after its encrypted copy and metadata are on disk (fsynced). A symbolic
        link is refused rather than followed. ``detection`` must be JSON-serialisable (``TypeError`` otherwise).
        """
        path = Path(path)
        json.dumps(detection)  # a caller bug surfaces before anything is touched
        name = printable(os.fsdecode(path))
        item_id = secrets.token_hex(16)
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            raise _file_error(exc, name, "quarantine") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise NotARegularFile(f"cannot quarantine {name}: it is not a regular file")
            with _source(fd) as source:
                size, md5, sha256 = self._write_blob(item_id, source)
            item = QuarantineItem(
                id=item_id,
                original_path=path,
                size=size,
                uid=info.st_uid,
                gid=info.st_gid,
                mode=info.st_mode,
                mtime_ns=info.st_mtime_ns,
                md5=md5,
                sha256=sha256,
                detection=detection,
                quarantined_at=datetime.now(UTC),
            )
            self._write_sidecar(item)
            _fsync_directory(self.directory)
            self._remove_original(path, name, info, item_id)
        except OSError as exc:
            self._discard(item_id)
            raise _file_error(exc, name, "quarantine") from exc
        except BaseException:
            self._discard(item_id)
            raise
        finally:
            os.close(fd)
        log.info("quarantined %s as %s", name, item_id)
        return item

    def _write_blob(self, item_id: str, source: BinaryIO) -> tuple[int, str, str]:
        partial = self.directory / f".{item_id}.blob.tmp"
        md5 = hashlib.md5(usedforsecurity=False)
        sha256 = hashlib.sha256()
        size = 0
        nonce = os.urandom(_NONCE_BYTES)
        encryptor = Cipher(algorithms.AES(self._key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(_BLOB_LABEL + item_id.encode())
        try:
            out = _create(partial)
        except OSError as exc:
            raise _store_error(exc, self.directory) from exc
        try:
            _write_all(out, _MAGIC + nonce)
            while chunk := source.read(_CHUNK):
                md5.update(chunk)
                sha256.update(chunk)
                size += len(chunk)
                _write_all(out, encryptor.update(chunk))
            _write_all(out, encryptor.finalize() + encryptor.tag)
            os.fsync(out)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _store_error(exc, self.directory) from exc
            raise
        finally:
            os.close(out)
        os.replace(partial, self._blob(item_id))
        return size, md5.hexdigest(), sha256.hexdigest()

    def _write_sidecar(self, item: QuarantineItem) -> None:
        meta = {
            "format": FORMAT,
            "id": item.id,
            "original_path_b64": base64.b64encode(os.fsencode(item.original_path)).decode(),
            "original_path": item.display_path,
            "size": item.size,
            "uid": item.uid,
            "gid": item.gid,
            "mode": item.mode,
            "mtime_ns": item.mtime_ns,
            "md5": item.md5,
            "sha256": item.sha256,
            "detection": item.detection,
            "quarantined_at": item.quarantined_at.isoformat(),
        }
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, json.dumps(meta).encode(), _META_LABEL + item.id.encode())
        envelope = {
            "format": FORMAT,
            "nonce": base64.b64encode(nonce).decode(),
            "sealed": base64.b64encode(sealed).decode(),
        }
        partial = self.directory / f".{item.id}.json.tmp"
        try:
            out = _create(partial)
            try:
                _write_all(out, json.dumps(envelope).encode())
                os.fsync(out)
            finally:
                os.close(out)
            os.replace(partial, self._sidecar(item.id))
        except OSError as exc:
            raise _store_error(exc, self.directory) from exc

    def _remove_original(self, path: Path, name: str, opened: os.stat_result, item_id: str) -> None:
        try:
            now = os.lstat(path)
        except FileNotFoundError:
            return  # removed by someone else meanwhile; the item holds what was there
        if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            raise FileChanged(f"{name} was replaced while it was being quarantined; nothing was removed")
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except PermissionError as exc:
            raise AccessDenied(
                f"cannot quarantine {name}: the agent may not remove it (permission denied); it was left in place"
            ) from exc
        with contextlib.suppress(OSError):
            _fsync_directory(path.parent)

    # -- restore, delete, list ------------------------------------------------------------------------------------

    def restore(self, item_id: str, *, to: Path | None = None, overwrite: bool = False, keep: bool = False) -> Path:
        """Write the original bytes back, to the original path or ``to``, and return where they went.

        The owner (when the agent may set it), mode and modification time are those of the original. An existing
        file is replaced only with ``overwrite=True``. The item leaves the store afterwards unless ``keep``.

        Raises:
            UnknownItem, TamperedItem: no such item, or it does not authenticate (nothing is written).
            DestinationExists: the destination exists and ``overwrite`` is false.
            AccessDenied, QuarantineError: the destination cannot be written (e.g. its folder is gone).
        """
        item = self.get(item_id)
        destination = Path(to) if to is not None else item.original_path
        name = printable(os.fsdecode(destination))
        if not overwrite and os.path.lexists(destination):
            raise DestinationExists(f"cannot restore to {name}: a file with that name exists")
        partial = destination.with_name(f".{destination.name}.garrison-restore-{secrets.token_hex(8)}")
        try:
            out = _create(partial)
        except OSError as exc:
            raise _destination_error(exc, name) from exc
        placed = False
        try:
            self._decrypt_into(item, out)
            try:
                os.fchown(out, item.uid, item.gid)
            except PermissionError:
                log.warning("restored %s with the agent's owner: it may not give files to uid %d", name, item.uid)
            os.fchmod(out, stat.S_IMODE(item.mode))  # after chown, which clears set-id bits
            os.fsync(out)
            os.close(out)
            out = -1
            os.utime(partial, ns=(item.mtime_ns, item.mtime_ns), follow_symlinks=False)
            _place(partial, destination, overwrite=overwrite, name=name)
            placed = True
            with contextlib.suppress(OSError):
                _fsync_directory(destination.parent)
        except OSError as exc:
            raise _destination_error(exc, name) from exc
        finally:
            if out >= 0:
                os.close(out)
            if not placed:
                with contextlib.suppress(OSError):
                    os.unlink(partial)
        log.info("restored %s to %s", item_id, name)
        if not keep:
            self.delete(item_id)
        return destination

    def _decrypt_into(self, item: QuarantineItem, out: int) -> None:
        blob = self._blob(item.id)
        try:
            handle = blob.open("rb")
        except FileNotFoundError as exc:
            raise TamperedItem(f"quarantine item {item.id} has lost its encrypted file") from exc
        with handle:
            length = os.fstat(handle.fileno()).st_size - len(_MAGIC) - _NONCE_BYTES - _TAG_BYTES
            header = handle.read(len(_MAGIC) + _NONCE_BYTES)
            if length < 0 or header[: len(_MAGIC)] != _MAGIC:
                raise TamperedItem(f"quarantine item {item.id} is damaged (not an encrypted quarantine file)")
            handle.seek(-_TAG_BYTES, os.SEEK_END)
            tag = handle.read(_TAG_BYTES)
            handle.seek(len(header))
            decryptor = Cipher(algorithms.AES(self._key), modes.GCM(header[len(_MAGIC) :], tag)).decryptor()
            decryptor.authenticate_additional_data(_BLOB_LABEL + item.id.encode())
            sha256 = hashlib.sha256()
            left = length
            while left > 0:
                chunk = handle.read(min(_CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                plain = decryptor.update(chunk)
                sha256.update(plain)
                _write_all(out, plain)  # into the unnamed temporary file; it is named only once authenticated
            try:
                _write_all(out, decryptor.finalize())
            except InvalidTag as exc:
                raise TamperedItem(f"quarantine item {item.id} failed authentication: it was modified") from exc
        if left != 0 or sha256.hexdigest() != item.sha256:
            raise TamperedItem(f"quarantine item {item.id} does not give back the original bytes")

    def delete(self, item_id: str) -> None:
        """Destroy an item (its encrypted file and its metadata). Works without the right key."""
        self._check_id(item_id)
        removed = False
        for part in (self._sidecar(item_id), self._blob(item_id)):
            try:
                part.unlink()
                removed = True
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise QuarantineError(f"cannot delete quarantine item {item_id}: {exc.strerror or exc}") from exc
        if not removed:
            raise UnknownItem(f"no quarantine item {item_id}")
        with contextlib.suppress(OSError):
            _fsync_directory(self.directory)
        log.info("deleted quarantine item %s", item_id)

    def get(self, item_id: str) -> QuarantineItem:
        """The item's metadata, authenticated. Raises UnknownItem or TamperedItem."""
        self._check_id(item_id)
        try:
            envelope = json.loads(self._sidecar(item_id).read_bytes())
            nonce = base64.b64decode(envelope["nonce"], validate=True)
            sealed = base64.b64decode(envelope["sealed"], validate=True)
        except FileNotFoundError as exc:
            raise UnknownItem(f"no quarantine item {item_id}") from exc
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise TamperedItem(f"quarantine item {item_id} has damaged metadata") from exc
        except OSError as exc:
            raise QuarantineError(f"cannot read quarantine item {item_id}: {exc.strerror or exc}") from exc
        try:
            meta = json.loads(self._aead.decrypt(nonce, sealed, _META_LABEL + item_id.encode()))
        except (InvalidTag, ValueError) as exc:
            raise TamperedItem(f"quarantine item {item_id} failed authentication: its metadata was modified") from exc
        if meta.get("id") != item_id or meta.get("format") != FORMAT:
            raise TamperedItem(f"quarantine item {item_id} has metadata of another item")
        return QuarantineItem(
            id=item_id,
            original_path=Path(os.fsdecode(base64.b64decode(meta["original_path_b64"]))),
            size=meta["size"],
            uid=meta["uid"],
            gid=meta["gid"],
            mode=meta["mode"],
            mtime_ns=meta["mtime_ns"],
            md5=meta["md5"],
            sha256=meta["sha256"],
            detection=meta["detection"],
            quarantined_at=datetime.fromisoformat(meta["quarantined_at"]),
        )

    def list(self) -> list[QuarantineItem]:
        """Every item, oldest first. An item that fails authentication is left out and logged as a warning."""
        items: list[QuarantineItem] = []
        try:
            names = sorted(entry.name for entry in os.scandir(self.directory))
        except OSError as exc:
            raise QuarantineError(f"cannot read the quarantine store {self.directory}: {exc.strerror or exc}") from exc
        for entry_name in names:
            stem, _, suffix = entry_name.partition(".")
            if suffix != "json" or not _ID.fullmatch(stem):
                continue
            try:
                items.append(self.get(stem))
            except UnknownItem:
                continue  # deleted meanwhile
            except QuarantineError as exc:
                log.warning("skipping quarantine item %s: %s", stem, exc)
        items.sort(key=lambda item: item.quarantined_at)
        return items

    # -- helpers --------------------------------------------------------------------------------------------------

    def _blob(self, item_id: str) -> Path:
        return self.directory / f"{item_id}.blob"

    def _sidecar(self, item_id: str) -> Path:
        return self.directory / f"{item_id}.json"

    @staticmethod
    def _check_id(item_id: str) -> None:
        if not isinstance(item_id, str) or not _ID.fullmatch(item_id):
            raise UnknownItem(f"no quarantine item {printable(str(item_id))!r}: not a quarantine id")

    def _discard(self, item_id: str) -> None:
        for part in (
            self._sidecar(item_id),
            self._blob(item_id),
            self.directory / f".{item_id}.json.tmp",
            self.directory / f".{item_id}.blob.tmp",
        ):
            with contextlib.suppress(OSError):
                part.unlink()


# -- the delete action --------------------------------------------------------------------------------------------


def delete_file(path: Path) -> DeletedFile:
    """Delete the regular file at ``path`` (the policy's "delete" action) and say what was deleted.

    The file is hashed first, so the report carries its size, MD5 and SHA-256; it is unlinked only if the name
    still points at the file that was hashed. Symbolic links are refused, never followed.
    """
    path = Path(path)
    name = printable(os.fsdecode(path))
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _file_error(exc, name, "delete") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(f"cannot delete {name}: it is not a regular file")
        md5 = hashlib.md5(usedforsecurity=False)
        sha256 = hashlib.sha256()
        size = 0
        with _source(fd) as source:
            while chunk := source.read(_CHUNK):
                md5.update(chunk)
                sha256.update(chunk)
                size += len(chunk)
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            raise FileChanged(f"{name} was replaced while it was being deleted; nothing was removed")
        os.unlink(path)
        with contextlib.suppress(OSError):
            _fsync_directory(path.parent)
    except OSError as exc:
        raise _file_error(exc, name, "delete") from exc
    finally:
        os.close(fd)
    log.info("deleted %s", name)
    return DeletedFile(path, size, md5.hexdigest(), sha256.hexdigest(), datetime.now(UTC))


# -- small I/O helpers --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _source(fd: int) -> Iterator[BinaryIO]:
    """A buffered reader over ``fd`` that leaves the descriptor open for the caller to close."""
    handle = os.fdopen(os.dup(fd), "rb")
    try:
        yield handle
    finally:
        handle.close()


def _create(path: Path) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags, 0o600)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":  # Windows cannot open a directory for fsync; NTFS journals renames itself
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _place(partial: Path, destination: Path, *, overwrite: bool, name: str) -> None:
    """Give the restored file its name: atomically, and without replacing anything unless ``overwrite``."""
    if overwrite:
        os.replace(partial, destination)
        return
    try:
        os.link(partial, destination)  # fails if the name exists, with no window between check and create
    except FileExistsError as exc:
        raise DestinationExists(f"cannot restore to {name}: a file with that name exists") from exc
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(destination):  # a file system without hard links: check, then rename
            raise DestinationExists(f"cannot restore to {name}: a file with that name exists") from exc
        os.rename(partial, destination)
        return
    os.unlink(partial)


def _file_error(exc: OSError, name: str, action: str) -> QuarantineError:
    if isinstance(exc, FileNotFoundError):
        return FileVanished(f"cannot {action} {name}: it no longer exists")
    if isinstance(exc, PermissionError):
        return AccessDenied(f"cannot {action} {name}: permission denied")
    if exc.errno == errno.ELOOP:
        return NotARegularFile(f"cannot {action} {name}: it is a symbolic link")
    return QuarantineError(f"cannot {action} {name}: {exc.strerror or exc}")


def _store_error(exc: OSError, directory: Path) -> QuarantineError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return QuarantineError(f"the quarantine store {directory} is full; the file was left in place")
    return QuarantineError(f"cannot write to the quarantine store {directory}: {exc.strerror or exc}")


def _destination_error(exc: OSError, name: str) -> QuarantineError:
    if isinstance(exc, PermissionError):
        return AccessDenied(f"cannot restore to {name}: permission denied")
    if isinstance(exc, FileNotFoundError):
        return QuarantineError(f"cannot restore to {name}: its folder no longer exists; restore it elsewhere")
    return QuarantineError(f"cannot restore to {name}: {exc.strerror or exc}")
