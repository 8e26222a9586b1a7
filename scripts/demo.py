"""``make run`` for now: build a small sample tree with EICAR hidden in nested containers, then scan it.

The central server and agent (later issues) will turn ``make run`` into the whole system; until then this
shows the engine and the ``garrison scan`` command end to end, with a small signature database in ClamAV's
formats and YARA written next to the samples.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from email.message import EmailMessage
from pathlib import Path

from garrison.engine.eicar import EICAR

ROOT = Path(__file__).resolve().parent.parent / ".garrison" / "demo"
MARKER = b"GARRISON-DEMO-MARKER"


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _mail(attachment_name: str, attachment: bytes) -> bytes:
    message = EmailMessage()
    message["From"] = "phong.tckt@example.gov.vn"
    message["To"] = "van.thu@example.gov.vn"
    message["Subject"] = "Hoa don thang 11"
    message.set_content("Kinh gui anh chi, xin xem hoa don dinh kem.")
    message.add_attachment(attachment, maintype="application", subtype="zip", filename=attachment_name)
    return bytes(message)


def build() -> tuple[Path, Path]:
    samples, database = ROOT / "samples", ROOT / "db"
    for directory in (samples / "documents", samples / "mail", database):
        directory.mkdir(parents=True, exist_ok=True)
    planted = b"\x00\x01 quarterly report " + MARKER + b" \x02\x03"
    (samples / "eicar.com").write_bytes(EICAR)
    (samples / "readme.txt").write_text("Tai lieu huong dan su dung.\n")
    (samples / "documents" / "backup.tar.gz").write_bytes(
        _tar_gz({"2026/q3/report.zip": _zip({"report.bin": planted}), "2026/q3/notes.txt": b"clean notes\n"})
    )
    (samples / "mail" / "invoice.eml").write_bytes(_mail("invoice.zip", _zip({"invoice/eicar.com": EICAR})))
    planted_md5 = hashlib.md5(planted, usedforsecurity=False).hexdigest()
    (database / "demo.hdb").write_text(f"{planted_md5}:{len(planted)}:Demo.Hash.Planted-1\n")
    (database / "demo.ndb").write_text(f"Demo.Body.Marker-1:0:*:{MARKER.hex()}\n")
    (database / "demo.yar").write_text(
        'rule Demo_Marker {\n  strings: $m = "' + MARKER.decode() + '"\n  condition: $m\n}\n'
    )
    (database / "demo.ign2").write_text("Some.Signature.Switched.Off-1\n")
    return samples, database


def main() -> int:
    samples, database = build()
    print(f"Sample tree: {samples}")
    print(f"Signature database: {database}\n")
    garrison = [sys.executable, "-m", "garrison.cli"]
    subprocess.run([*garrison, "db", "info", str(database)], check=False)
    print()
    scan = subprocess.run([*garrison, "scan", "--db", str(database), str(samples)], check=False)
    print(f"\ngarrison scan exited with status {scan.returncode} (0 clean, 1 found, 2 errors)")
    return 0 if scan.returncode in (0, 1) else scan.returncode


if __name__ == "__main__":
    sys.exit(main())
