"""The same files and the same databases through clamscan and through Garrison: the same detections.

Covers the whole pipeline (typing, unpacking, hashing, matching, allow and ignore lists, a container database),
where the translator tests cover each signature feature on its own.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from garrison.engine import Engine, Status, load_database
from garrison.engine.signatures.cvd import build_cvd
from tests.conftest import zip_bytes

CLAMSCAN = shutil.which("clamscan")
pytestmark = [pytest.mark.clamav, pytest.mark.skipif(CLAMSCAN is None, reason="clamscan is not installed")]

# Leading NULs keep ClamAV from guessing a text encoding and normalising the sample.
PAD = b"\0" * 8


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


SAMPLES = {
    "body_plain.bin": PAD + b"alpha \xde\xad\xbe\xef middle \xca\xfe omega",
    "body_offset.bin": PAD + b"HEADERMARK" + b"\x11" * 100 + b"TAILMARK",
    "hashed.bin": PAD + b"exact bytes of a known-bad file",
    "allowed.bin": PAD + b"alpha \xde\xad\xbe\xef middle \xca\xfe omega, but allow-listed",
    "logical.bin": PAD + b"first-part" + b"." * 50 + b"second-part" + b"first-part",
    "ignored.bin": PAD + b"IGNORED-PATTERN here",
    "clean.bin": PAD + b"nothing to find in here at all",
}
SAMPLES["nested.zip"] = zip_bytes({"dir/inner.bin": SAMPLES["body_plain.bin"], "other.bin": SAMPLES["clean.bin"]})
SAMPLES["deep.tar.gz"] = _tar_gz({"a/b.zip": zip_bytes({"hashed.bin": SAMPLES["hashed.bin"]})})
SAMPLES["logical_in_zip.zip"] = zip_bytes({"l.bin": SAMPLES["logical.bin"]})


def _database() -> dict[str, str]:
    hashed = SAMPLES["hashed.bin"]
    allowed = SAMPLES["allowed.bin"]
    return {
        "parity.ndb": "\n".join(
            [
                "Parity.Body.Wildcards-1:0:*:dead??ef{1-4}6d69(64|65)646c65*cafe",
                f"Parity.Body.Offset-1:0:8:{b'HEADERMARK'.hex()}",
                f"Parity.Body.Eof-1:0:EOF-8:{b'TAILMARK'.hex()}",
                f"Parity.Body.Ignored-1:0:*:{b'IGNORED-PATTERN'.hex()}",
                f"Parity.Body.Never-1:0:0:{b'HEADERMARK'.hex()}",
                f"Parity.Body.Shift-1:0:5,4:{b'HEADERMARK'.hex()}",
                f"Parity.Body.ShiftMiss-1:0:0,7:{b'HEADERMARK'.hex()}",
                f"Parity.Body.EofShift-1:0:EOF-10,2:{b'TAILMARK'.hex()}",
                f"Parity.Body.EofMiss-1:0:EOF-7,3:{b'TAILMARK'.hex()}",
            ]
        )
        + "\n",
        "parity.ldb": "\n".join(
            [
                f"Parity.Logical.Count-1;Engine:51-255,Target:0;0>1&1;{b'first-part'.hex()};{b'second-part'.hex()}",
                f"Parity.Logical.InZip-1;Engine:81-255,Container:CL_TYPE_ZIP,Target:0;0&1;"
                f"{b'first-part'.hex()};{b'second-part'.hex()}",
            ]
        )
        + "\n",
        "parity.hdb": f"{hashlib.md5(hashed).hexdigest()}:{len(hashed)}:Parity.Hash.Md5-1\n",
        "parity.hsb": f"{hashlib.sha256(hashed).hexdigest()}:*:Parity.Hash.Sha256-1:73\n",
        "parity.sfp": f"{hashlib.sha256(allowed).hexdigest()}:{len(allowed)}:Parity.Allowed\n",
        "parity.ign2": "Parity.Body.Ignored-1\n",
    }


def _clamscan(db: Path, samples: Path) -> set[tuple[str, str]]:
    assert CLAMSCAN is not None
    proc = subprocess.run(
        [CLAMSCAN, "--no-summary", "--allmatch", "-d", str(db), str(samples)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr
    found = set()
    for line in proc.stdout.splitlines():
        if line.endswith(" FOUND"):
            path, _, name = line.removesuffix(" FOUND").rpartition(": ")
            found.add((Path(path).name, name.removesuffix(".UNOFFICIAL")))
    return found


def _garrison(db: Path, samples: Path) -> set[tuple[str, str]]:
    engine = Engine(load_database([db]))
    found = set()
    for path in sorted(samples.iterdir()):
        result = engine.scan_file(path)
        assert result.status in (Status.CLEAN, Status.INFECTED), result.reason
        found.update((path.name, detection.name) for _, detection in result.detections)
    return found


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    directory = tmp_path / "samples"
    directory.mkdir()
    for name, data in SAMPLES.items():
        (directory / name).write_bytes(data)
    return directory


def test_plain_databases_give_the_same_detections(tmp_path: Path, samples: Path) -> None:
    db = tmp_path / "db"
    db.mkdir()
    for name, text in _database().items():
        (db / name).write_text(text)
    expected = _clamscan(db, samples)
    assert ("hashed.bin", "Parity.Hash.Md5-1") in expected  # the comparison is not vacuous
    assert not any(name == "Parity.Body.Ignored-1" for _, name in expected)
    assert _garrison(db, samples) == expected


def test_container_database_gives_the_same_detections(tmp_path: Path, samples: Path) -> None:
    db = tmp_path / "db"
    db.mkdir()
    # ClamAV applies an ignore list only to signatures loaded after it, so inside a container order matters to
    # ClamAV; Garrison applies ignore lists to every signature. Put it first so both mean the same.
    database = _database()
    files = {"parity.ign2": database.pop("parity.ign2").encode()}
    files.update((name, text.encode()) for name, text in database.items())
    (db / "parity.cud").write_bytes(build_cvd("parity", 3, files, flevel=210, builder="garrison-test", sign=None))
    expected = _clamscan(db, samples)
    assert len(expected) >= 6
    assert _garrison(db, samples) == expected
