"""The scanner against hostile input: bombs, limits, corrupt and odd files. Nothing may raise."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import pytest

from garrison.engine import Engine, ScanLimits, Status
from garrison.engine.eicar import EICAR, EICAR_NAME
from tests.conftest import zip_bytes

MiB = 1024 * 1024


def _nested_zip(depth: int, payload: bytes) -> bytes:
    data = payload
    for level in range(depth):
        data = zip_bytes({f"level{level}.zip" if level else "eicar.com": data})
    return data


def _names(result: object) -> list[str]:
    return [d.name for _, d in result.detections]  # type: ignore[attr-defined]


def test_nested_archives_name_the_chain() -> None:
    inner = zip_bytes({"macro.doc": EICAR})
    mail_zip = zip_bytes({"invoice.zip": inner})
    result = Engine().scan_bytes(gzip.compress(mail_zip), "mail.gz")
    assert result.status is Status.INFECTED
    [(obj, det)] = result.detections
    assert obj.chain == ("mail.gz", "mail", "invoice.zip", "macro.doc")
    assert det.name == EICAR_NAME
    assert obj.md5 == "44d88612fea8a8f36de82e1278abb02f"


def test_recursion_limit_marks_incomplete_and_can_alert() -> None:
    data = _nested_zip(6, EICAR)
    result = Engine(limits=ScanLimits(max_depth=3)).scan_bytes(data, "deep.zip")
    assert result.status is Status.INCOMPLETE
    assert "recursion limit" in (result.reason or "")
    alerting = Engine(limits=ScanLimits(max_depth=3, alert_exceeds_max=True)).scan_bytes(data, "deep.zip")
    assert "Heuristics.Limits.Exceeded.MaxRecursion" in _names(alerting)
    assert Engine(limits=ScanLimits(max_depth=10)).scan_bytes(data, "deep.zip").status is Status.INFECTED


def test_nested_zip_bomb_stops_at_the_scan_size_limit() -> None:
    # Four layers of ten copies of 1 MiB of zeros: 10 GiB if fully expanded, a few KiB on disk.
    layer = zip_bytes({"zeros": b"\0" * MiB})
    for level in range(4):
        layer = zip_bytes({f"copy{i}-{level}.zip": layer for i in range(10)})
    assert len(layer) < 200_000
    limits = ScanLimits(max_scan_size=20 * MiB, max_ratio=0)
    result = Engine(limits=limits).scan_bytes(layer, "bomb.zip")
    assert result.status is Status.INCOMPLETE
    assert result.scanned_bytes <= 20 * MiB
    assert any(o.reason == "scan size limit reached" for o in result.objects)


def test_compression_ratio_limit() -> None:
    data = zip_bytes({"zeros.bin": b"\0" * (4 * MiB)})
    result = Engine(limits=ScanLimits(alert_exceeds_max=True)).scan_bytes(data, "ratio.zip")
    member = result.objects[1]
    assert member.reason == "compression ratio over the limit"
    assert "Heuristics.Limits.Exceeded.MaxCompressionRatio" in _names(result)
    assert Engine(limits=ScanLimits(max_ratio=0)).scan_bytes(data, "ratio.zip").status is Status.CLEAN


def test_member_count_limit() -> None:
    data = zip_bytes({f"f{i}.txt": b"x" for i in range(50)})
    result = Engine(limits=ScanLimits(max_members=10)).scan_bytes(data, "many.zip")
    assert result.status is Status.INCOMPLETE
    assert len(result.objects) == 11
    assert result.objects[0].reason == "too many members in the container"


def test_member_size_limit_is_checked_before_extraction() -> None:
    data = zip_bytes({"big.bin": b"\0" * (2 * MiB)})
    result = Engine(limits=ScanLimits(max_file_size=MiB, max_ratio=0)).scan_bytes(data, "big.zip")
    assert result.objects[1].status is Status.INCOMPLETE
    assert "size limit" in (result.objects[1].reason or "")


def test_file_size_limit_on_the_root(tmp_path: Path) -> None:
    path = tmp_path / "large.bin"
    path.write_bytes(b"\0" * 2048)
    result = Engine(limits=ScanLimits(max_file_size=1024, alert_exceeds_max=True)).scan_file(path)
    assert result.status is Status.INFECTED
    assert _names(result) == ["Heuristics.Limits.Exceeded.MaxFileSize"]
    assert Engine(limits=ScanLimits(max_file_size=1024)).scan_file(path).status is Status.INCOMPLETE


def test_scan_time_limit() -> None:
    data = zip_bytes({f"f{i}": b"y" * 1000 for i in range(200)})
    result = Engine(limits=ScanLimits(max_scan_time=1e-9)).scan_bytes(data, "slow.zip")
    assert result.status is Status.INCOMPLETE
    assert "time limit" in (result.reason or "")


def _overlapping_zip() -> bytes:
    """Two central-directory entries pointing at the same local file: the overlapping-entry bomb."""
    data = bytearray(zip_bytes({"a.txt": b"A" * 1000}))
    eocd = data.rindex(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack_from("<II", data, eocd + 12)
    entry = bytes(data[cd_offset : cd_offset + cd_size])
    twin = entry.replace(b"a.txt", b"b.txt")
    eocd_record = bytearray(data[eocd:])
    struct.pack_into("<HHII", eocd_record, 8, 2, 2, cd_size * 2, cd_offset)
    return bytes(data[:cd_offset]) + entry + twin + bytes(eocd_record)


def test_overlapping_entries_are_a_bomb() -> None:
    result = Engine().scan_bytes(_overlapping_zip(), "overlap.zip")
    assert result.status is Status.INFECTED
    assert _names(result) == ["Heuristics.Zip.OverlappingFiles"]


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x03\x04" + b"\xff" * 100,
        zip_bytes({"a.txt": b"hello" * 100})[:-30],
        gzip.compress(b"hello world" * 100)[:-12],
        b"\x1f\x8b\x08\x00" + b"\x00" * 20,
    ],
    ids=["garbage zip", "truncated zip", "truncated gzip", "garbage gzip"],
)
def test_corrupt_containers_are_incomplete_not_errors(data: bytes) -> None:
    result = Engine().scan_bytes(data, "corrupt")
    assert result.status in (Status.INCOMPLETE, Status.CLEAN)
    assert result.objects[0].status is not Status.ERROR


def test_corrupt_member_does_not_hide_the_others() -> None:
    data = bytearray(zip_bytes({"bad.txt": b"B" * 5000, "eicar.com": EICAR}))
    # Break the first member's compressed bytes (its local header is 30 + 7 bytes long).
    data[40:60] = b"\xff" * 20
    result = Engine().scan_bytes(bytes(data), "mixed.zip")
    assert result.status is Status.INFECTED
    assert any(o.status is Status.INCOMPLETE and "corrupt" in (o.reason or "") for o in result.objects)


def test_encrypted_zip_member() -> None:
    data = bytearray(zip_bytes({"secret.txt": b"s" * 100}))
    # Set the "encrypted" flag in the local and central headers.
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = data.index(signature)
        data[pos + flag_at] |= 1
    result = Engine().scan_bytes(bytes(data), "locked.zip")
    assert result.objects[1].reason == "encrypted member"
    assert result.status is Status.INCOMPLETE
    alerting = Engine(limits=ScanLimits(alert_encrypted=True)).scan_bytes(bytes(data), "locked.zip")
    assert _names(alerting) == ["Heuristics.Encrypted.Zip"]


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/etc/shadow", "a\nfake.txt: Clean OK", "nul\x00byte", "C:\\x.exe"]
)
def test_hostile_member_names_are_labels_only(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = Engine().scan_bytes(zip_bytes({name: EICAR}), "names.zip")
    assert result.status is Status.INFECTED
    label = result.detections[0][0].chain[-1]
    assert "\n" not in label and "\x00" not in label
    assert list(tmp_path.iterdir()) == []  # nothing was written anywhere


def test_unreadable_file_gives_an_error_result() -> None:
    # /proc/self/mem is a regular file whose first page cannot be read: a real I/O error.
    result = Engine().scan_file("/proc/self/mem")
    assert result.status is Status.ERROR
    assert result.reason == "input/output error while reading"


def test_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "secret.bin"
    path.write_bytes(EICAR)
    path.chmod(0)
    if os.geteuid() != 0:
        result = Engine().scan_file(path)
        assert (result.status, result.reason) == (Status.ERROR, "permission denied")
        return
    # As root, scan from a forked child that gave up its privileges.
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        os.setegid(65534)
        os.seteuid(65534)
        result = Engine().scan_file(path)
        os.write(write_end, f"{result.status.value}|{result.reason}".encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as pipe:
        assert pipe.read() == "error|permission denied"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, "file vanished before it could be read"),
        (os.mkfifo, "not a regular file"),
        (lambda p: p.mkdir(), "not a regular file"),
        (lambda p: p.symlink_to("/etc/hostname"), "is a symbolic link"),
    ],
    ids=["vanished", "fifo", "directory", "symlink"],
)
def test_special_files(tmp_path: Path, make: object, reason: str) -> None:
    path = tmp_path / "thing"
    make(path)  # type: ignore[operator]
    result = Engine().scan_file(path)
    assert (result.status, result.reason) == (Status.ERROR, reason)


def test_non_utf8_file_name(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9-\xff.com"
    with open(raw, "wb") as handle:
        handle.write(EICAR)
    result = Engine().scan_file(raw)
    assert result.status is Status.INFECTED
    assert result.path.endswith("caf\\xe9-\\xff.com")
    assert result.to_dict()["path"] == result.path


def test_results_can_leave_out_clean_members() -> None:
    data = zip_bytes({"a.txt": b"clean", "b/eicar.com": EICAR, "c.txt": b"clean too"})
    full = Engine().scan_bytes(data, "x.zip")
    lean = Engine(clean_members=False).scan_bytes(data, "x.zip")
    assert [o.chain[-1] for o in full.objects] == ["x.zip", "a.txt", "b/eicar.com", "c.txt"]
    assert [o.chain[-1] for o in lean.objects] == ["x.zip", "b/eicar.com"]
    assert lean.status is full.status and lean.scanned_bytes == full.scanned_bytes


def test_results_survive_a_process_boundary() -> None:
    import pickle  # noqa: TID251 - multiprocessing pickles results; check the round trip it relies on

    result = Engine().scan_bytes(zip_bytes({"e.com": EICAR, "c.txt": b"c"}), "x.zip")
    assert pickle.loads(pickle.dumps(result)) == result  # noqa: S301
