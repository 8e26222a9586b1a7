"""The console's CSV downloads: UTF-8 with a byte-order mark (so that Excel reads the Vietnamese text), cells that
a spreadsheet will not run as formulas, and a file name with the list's name and the time."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime

from fastapi import Response

from garrison.server.console import i18n


def cell(value: object) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in {"=", "+", "-", "@", "\t", "\r"} else text


def download(prefix: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Response:
    """``rows`` under ``header`` as ``garrison-PREFIX-YYYYmmdd-HHMM.csv``."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([cell(value) for value in row])
    filename = f"garrison-{prefix}-{datetime.now(i18n.DISPLAY_ZONE):%Y%m%d-%H%M}.csv"
    return Response(
        buffer.getvalue().encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
