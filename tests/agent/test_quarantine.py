"""The quarantine store neutralises files, gives back the exact bytes and metadata, and detects tampering."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from garrison.agent.quarantine import (
    AccessDenied,
    DestinationExists,
    FileChanged,
    FileVanished,
    NotARegularFile,
    Quarantine,
    QuarantineError,
    TamperedItem,
    UnknownItem,
    delete_file,
    load_or_create_key,
)
from garrison.engine import Engine, Status
from garrison.engine.eicar import EICAR

DETECTION = {"signature": "Eicar-Test-Signature", "engine": "garrison 0.1.0"}
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def key(tmp_path: Path) -> bytes:
    return load_or_create_key(tmp_path / "state" / "quarantine.key")


@pytest.fixture
def store(tmp_path: Path, key: bytes) -> Quarantine:
    return Quarantine(tmp_path / "state" / "quarantine", key)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


def write(path: Path, data: bytes, *, mode: int = 0o644, mtime_ns: int = 1_700_000_000_123_456_789) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def store_files(store: Quarantine) -> list[Path]:
    return sorted(store.directory.iterdir())


# -- round trip ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        EICAR,
        bytes(range(256)) * 13_000 + b"tail",  # over 3 MiB, not a multiple of the 1 MiB chunk
    ],
    ids=["empty", "eicar", "multi-chunk"],
)
def test_round_trip_exact_bytes(store: Quarantine, victim: Path, data: bytes) -> None:
    original = write(victim / "invoice.exe", data, mode=0o751)
    item = store.quarantine(original, DETECTION)

    assert not original.exists()
    assert item.original_path == original
    assert item.size == len(data)
    assert item.sha256 == hashlib.sha256(data).hexdigest()
    assert item.md5 == hashlib.md5(data).hexdigest()
    assert stat.S_IMODE(item.mode) == 0o751
    assert item.mtime_ns == 1_700_000_000_123_456_789
    assert item.detection == DETECTION
    assert item.quarantined_at.tzinfo is not None
    assert store.list() == [item]
    assert store.get(item.id) == item

    assert store.restore(item.id) == original
    assert original.read_bytes() == data
    info = original.stat()
    assert stat.S_IMODE(info.st_mode) == 0o751
    assert info.st_mtime_ns == 1_700_000_000_123_456_789
    assert store.list() == []  # restored items leave the store
    assert store_files(store) == []


@pytest.mark.skipif(not IS_ROOT, reason="changing a file's owner needs root")
def test_owner_is_restored(store: Quarantine, victim: Path) -> None:
    original = write(victim / "report.doc", b"owned by nobody", mode=0o4750)
    os.chown(original, 65534, 65534)
    os.chmod(original, 0o4750)  # noqa: S103 -- a set-uid file on purpose: chown clears the bit, restore must not
    item = store.quarantine(original, DETECTION)
    assert (item.uid, item.gid) == (65534, 65534)

    restored = store.restore(item.id)
    info = restored.stat()
    assert (info.st_uid, info.st_gid) == (65534, 65534)
    assert stat.S_IMODE(info.st_mode) == 0o4750
    os.chown(restored, 0, 0)


def test_non_utf8_name(store: Quarantine, victim: Path) -> None:
    raw_name = b"h\xf3a-\xff\xfe \n.exe"
    original = victim / os.fsdecode(raw_name)
    write(original, EICAR)
    item = store.quarantine(original, DETECTION)
    assert raw_name not in os.listdir(os.fsencode(victim))

    again = store.get(item.id)
    assert os.fsencode(again.original_path) == os.fsencode(victim) + b"/" + raw_name
    assert "\\xff" in again.display_path
    assert "\n" not in again.display_path
    report = again.to_dict()
    json.dumps(report)  # the report is valid JSON, names and all
    assert base64.b64decode(report["path_b64"]).endswith(raw_name)

    store.restore(item.id)
    assert raw_name in os.listdir(os.fsencode(victim))
    assert original.read_bytes() == EICAR


def test_restore_elsewhere_and_keep(store: Quarantine, victim: Path, tmp_path: Path) -> None:
    original = write(victim / "a.bin", b"sample")
    item = store.quarantine(original, DETECTION)
    elsewhere = tmp_path / "analysis.bin"
    assert store.restore(item.id, to=elsewhere, keep=True) == elsewhere
    assert elsewhere.read_bytes() == b"sample"
    assert store.list() == [item]
    assert not original.exists()


# -- neutralised --------------------------------------------------------------------------------------------------


def test_stored_item_is_neutralised(store: Quarantine, victim: Path) -> None:
    original = write(victim / "eicar.com", EICAR, mode=0o755)
    engine = Engine()
    assert engine.scan_file(original).status is Status.INFECTED

    item = store.quarantine(original, DETECTION)

    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    files = store_files(store)
    assert [path.name for path in files] == sorted([f"{item.id}.blob", f"{item.id}.json"])
    assert re.fullmatch(r"[0-9a-f]{32}", item.id)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # private, not executable
        content = path.read_bytes()
        assert EICAR not in content
        assert b"EICAR" not in content
        assert b"eicar.com" not in content  # the metadata is encrypted too
        assert engine.scan_file(path).status is Status.CLEAN


# -- tampering ----------------------------------------------------------------------------------------------------


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        lambda blob: flip_byte(blob, 20),  # ciphertext
        lambda blob: flip_byte(blob, -1),  # tag
        lambda blob: flip_byte(blob, 5),  # nonce
        lambda blob: blob.write_bytes(blob.read_bytes()[:-40]),  # truncated
        lambda blob: blob.write_bytes(b"GQB1"),  # far too short
        lambda blob: blob.unlink(),
    ],
    ids=["ciphertext", "tag", "nonce", "truncated", "stub", "missing"],
)
def test_tampered_blob_is_refused(store: Quarantine, victim: Path, damage: Callable[[Path], None]) -> None:
    original = write(victim / "x.exe", EICAR + b" " * 40)
    item = store.quarantine(original, DETECTION)
    damage(store.directory / f"{item.id}.blob")

    with pytest.raises(TamperedItem, match=item.id):
        store.restore(item.id)
    assert os.listdir(victim) == []  # nothing written, not even a temporary file
    store.delete(item.id)  # a damaged item can still be removed
    assert store_files(store) == []


def test_tampered_metadata_is_refused(store: Quarantine, victim: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = store.quarantine(write(victim / "one", b"1"), DETECTION)
    second = store.quarantine(write(victim / "two", b"2"), DETECTION)
    sidecar = store.directory / f"{first.id}.json"
    envelope = json.loads(sidecar.read_text())
    sealed = bytearray(base64.b64decode(envelope["sealed"]))
    sealed[3] ^= 0x01
    envelope["sealed"] = base64.b64encode(bytes(sealed)).decode()
    sidecar.write_text(json.dumps(envelope))

    with pytest.raises(TamperedItem, match="metadata was modified"):
        store.get(first.id)
    with caplog.at_level(logging.WARNING, logger="garrison.agent.quarantine"):
        assert store.list() == [second]
    assert first.id in caplog.text

    sidecar.write_text("{not json")
    with pytest.raises(TamperedItem, match="damaged metadata"):
        store.get(first.id)


def test_parts_cannot_be_swapped_between_items(store: Quarantine, victim: Path) -> None:
    first = store.quarantine(write(victim / "one", b"first file"), DETECTION)
    second = store.quarantine(write(victim / "two", b"second file"), DETECTION)
    folder = store.directory
    (folder / f"{first.id}.json").write_bytes((folder / f"{second.id}.json").read_bytes())
    with pytest.raises(TamperedItem):
        store.get(first.id)
    (folder / f"{second.id}.blob").write_bytes((folder / f"{first.id}.blob").read_bytes())
    with pytest.raises(TamperedItem):
        store.restore(second.id)


def test_wrong_key(store: Quarantine, victim: Path) -> None:
    item = store.quarantine(write(victim / "x", b"data"), DETECTION)
    other = Quarantine(store.directory, os.urandom(32))
    with pytest.raises(TamperedItem):
        other.get(item.id)
    assert other.list() == []


# -- restore never clobbers ---------------------------------------------------------------------------------------


def test_restore_refuses_to_overwrite(store: Quarantine, victim: Path) -> None:
    original = write(victim / "doc.pdf", b"quarantined bytes")
    item = store.quarantine(original, DETECTION)
    original.write_bytes(b"the user's new file")

    with pytest.raises(DestinationExists, match="exists"):
        store.restore(item.id)
    assert original.read_bytes() == b"the user's new file"
    assert sorted(os.listdir(victim)) == ["doc.pdf"]
    assert store.list() == [item]

    store.restore(item.id, overwrite=True)
    assert original.read_bytes() == b"quarantined bytes"


def test_restore_into_a_missing_folder(store: Quarantine, victim: Path, tmp_path: Path) -> None:
    item = store.quarantine(write(victim / "x", b"data"), DETECTION)
    with pytest.raises(QuarantineError, match="folder no longer exists"):
        store.restore(item.id, to=tmp_path / "gone" / "x")
    assert store.list() == [item]


# -- files that cannot be quarantined -----------------------------------------------------------------------------


def test_file_that_vanished(store: Quarantine, victim: Path) -> None:
    with pytest.raises(FileVanished, match="no longer exists"):
        store.quarantine(victim / "gone.exe", DETECTION)
    assert store_files(store) == []


def test_links_and_special_files_are_refused(store: Quarantine, victim: Path) -> None:
    target = write(victim / "target", b"data")
    link = victim / "link"
    link.symlink_to(target)
    fifo = victim / "fifo"
    os.mkfifo(fifo)
    for path in (link, victim, fifo):
        with pytest.raises(NotARegularFile):
            store.quarantine(path, DETECTION)
    assert target.read_bytes() == b"data"
    assert link.is_symlink()
    assert store_files(store) == []


def test_file_that_cannot_be_removed_is_left_in_place(
    store: Quarantine, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = write(victim / "locked.exe", b"data")
    real_unlink = os.unlink

    def unlink(path: str | bytes | os.PathLike[str], *args: object, **kwargs: object) -> None:
        if os.fspath(path) == os.fspath(original):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        real_unlink(path)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(AccessDenied, match="left in place"):
        store.quarantine(original, DETECTION)
    monkeypatch.undo()
    assert original.read_bytes() == b"data"
    assert store_files(store) == []  # the half-made item was rolled back


def test_file_replaced_while_quarantined_is_left_alone(
    store: Quarantine, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = write(victim / "busy.exe", b"old contents")
    write_blob = Quarantine._write_blob

    def replace_then_write(self: Quarantine, item_id: str, source: BinaryIO) -> tuple[int, str, str]:
        replacement = write(victim / "new", b"the user's new file")
        os.replace(replacement, original)  # another program saves a new file under the same name
        return write_blob(self, item_id, source)

    monkeypatch.setattr(Quarantine, "_write_blob", replace_then_write)
    with pytest.raises(FileChanged, match="nothing was removed"):
        store.quarantine(original, DETECTION)
    assert original.read_bytes() == b"the user's new file"
    assert store_files(store) == []


def test_detection_must_be_json(store: Quarantine, victim: Path) -> None:
    original = write(victim / "x", b"data")
    with pytest.raises(TypeError):
        store.quarantine(original, {"when": object()})
    assert original.exists()


# -- ids, delete --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("item_id", ["", "../../etc/passwd", "0" * 31, "A" * 32, "0" * 32])
def test_unknown_ids(store: Quarantine, item_id: str) -> None:
    with pytest.raises(UnknownItem):
        store.get(item_id)
    with pytest.raises(UnknownItem):
        store.restore(item_id)
    with pytest.raises(UnknownItem):
        store.delete(item_id)


def test_delete_item(store: Quarantine, victim: Path) -> None:
    item = store.quarantine(write(victim / "x", EICAR), DETECTION)
    store.delete(item.id)
    assert store.list() == []
    assert store_files(store) == []
    with pytest.raises(UnknownItem):
        store.delete(item.id)


def test_delete_file_reports_what_it_deleted(victim: Path) -> None:
    path = write(victim / "eicar.com", EICAR)
    deleted = delete_file(path)
    assert not path.exists()
    assert deleted.path == path
    assert deleted.size == len(EICAR)
    assert deleted.sha256 == hashlib.sha256(EICAR).hexdigest()
    assert deleted.md5 == hashlib.md5(EICAR).hexdigest()
    assert deleted.deleted_at.tzinfo is not None

    with pytest.raises(FileVanished):
        delete_file(path)
    link = victim / "link"
    link.symlink_to(write(victim / "target", b"data"))
    with pytest.raises(NotARegularFile):
        delete_file(link)
    assert (victim / "target").exists()


# -- the key ------------------------------------------------------------------------------------------------------


def test_key_is_created_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "quarantine.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    assert sorted(os.listdir(path.parent)) == ["quarantine.key"]

    os.chmod(path, 0o644)
    assert load_or_create_key(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_damaged_key_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "quarantine.key"
    path.write_bytes(b"short")
    with pytest.raises(QuarantineError, match="damaged"):
        load_or_create_key(path)
    assert path.read_bytes() == b"short"
    with pytest.raises(ValueError, match="32 bytes"):
        Quarantine(tmp_path / "q", b"short")
