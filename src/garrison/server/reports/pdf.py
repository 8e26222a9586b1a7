"""A DOCX turned into PDF by LibreOffice, run headless.

The PDF is the DOCX as printed, so the two cannot disagree, and a report's look is written once (quarterly.py).
python-docx cannot lay out pages; LibreOffice can, and it is the office suite Vietnamese agencies already use
(Debian package ``libreoffice-writer-nogui``; ``fonts-liberation2`` gives Liberation Serif, the metric twin of Times
New Roman, with Vietnamese glyphs). Each conversion runs in its own temporary directory with its own LibreOffice
profile: two conversions at once do not share a profile lock, and nothing is left behind.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from garrison.server.errors import Unavailable

logger = logging.getLogger(__name__)

#: A cold start of LibreOffice takes a few seconds; a report of a few pages converts in well under a minute.
TIMEOUT_SECONDS = 120.0
PROGRAMS = ("soffice", "libreoffice")


def converter() -> str | None:
    """The LibreOffice program on this machine's PATH, or None."""
    for name in PROGRAMS:
        found = shutil.which(name)
        if found:
            return found
    return None


def docx_to_pdf(docx: bytes, timeout: float = TIMEOUT_SECONDS) -> bytes:
    """The PDF of ``docx``. :class:`Unavailable` (503, with what to install) when LibreOffice is missing or fails."""
    program = converter()
    if program is None:
        raise Unavailable(
            "PDF needs LibreOffice on the server (Debian: apt install libreoffice-writer-nogui fonts-liberation2); "
            "the DOCX and XLSX work without it"
        )
    with tempfile.TemporaryDirectory(prefix="garrison-pdf-") as work:
        folder = Path(work)
        source = folder / "report.docx"
        source.write_bytes(docx)
        command = [
            program,
            f"-env:UserInstallation={(folder / 'profile').as_uri()}",
            "--headless",
            "--norestore",
            "--nolockcheck",
            "--convert-to",
            "pdf:writer_pdf_Export",
            "--outdir",
            str(folder),
            str(source),
        ]
        try:
            done = subprocess.run(command, capture_output=True, timeout=timeout, check=False, cwd=folder)
        except subprocess.TimeoutExpired as exc:
            raise Unavailable(f"LibreOffice did not make the PDF within {timeout:.0f} s") from exc
        result = folder / "report.pdf"
        if done.returncode != 0 or not result.is_file():
            # LibreOffice's own words, for the operator; never the document (it is not in them).
            logger.error(
                "LibreOffice failed (exit %s): %s", done.returncode, done.stderr.decode(errors="replace")[-2000:]
            )
            raise Unavailable("LibreOffice could not make the PDF; the server log says why")
        return result.read_bytes()
