"""The statistics as CSV and XLSX files, in Vietnamese (default) or English.

The CSV is UTF-8 with a byte-order mark (so that Excel reads the Vietnamese text) and cells a spreadsheet will not
run as formulas, like the console's lists; the XLSX has real numbers, and its text cells are always text. Both
hold the same rows: one per figure (value, previous period, difference), then the malware names and the types.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Literal

from openpyxl import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from garrison.server.reports.statistics import ZONE, PeriodCounts, Statistics

Language = Literal["vi", "en"]

LABELS: dict[str, tuple[str, str]] = {
    "declared": ("Thiết bị đầu cuối đã khai báo", "Endpoints declared"),
    "declared_servers": ("Máy chủ đã khai báo", "Servers declared"),
    "declared_workstations": ("Máy trạm đã khai báo", "Workstations declared"),
    "declared_other": ("Thiết bị khác đã khai báo", "Other endpoints declared"),
    "active": ("Máy đang được quản lý", "Computers managed now"),
    "online": ("Máy đang kết nối", "Computers online"),
    "protected": ("Máy được bảo vệ (kết nối, bảo vệ thời gian thực bật)", "Protected (online, real-time on)"),
    "realtime_on": ("Bảo vệ thời gian thực bật", "Real-time protection on"),
    "firewall_on": ("Tường lửa bật", "Firewall on"),
    "firewall_unknown": ("Tường lửa không rõ", "Firewall unknown"),
    "signatures_7": ("Mẫu nhận diện cũ hơn 7 ngày", "Signatures older than 7 days"),
    "signatures_15": ("Mẫu nhận diện cũ hơn 15 ngày", "Signatures older than 15 days"),
    "enrolled": ("Máy đã đăng ký (cuối kỳ)", "Computers enrolled (end of period)"),
    "detections": ("Lượt phát hiện mã độc", "Detections"),
    "names": ("Số loại mã độc (theo tên)", "Distinct malware names"),
    "infected_endpoints": ("Máy bị nhiễm", "Infected endpoints"),
    "removed": ("Đã gỡ bỏ (cách ly hoặc xoá)", "Removed (quarantined or deleted)"),
    "quarantined": ("Đã cách ly", "Quarantined"),
    "deleted": ("Đã xoá", "Deleted"),
    "action_failed": ("Xử lý thất bại", "Action failed"),
    "resolved": ("Đã xử lý thủ công", "Resolved by hand"),
    "outstanding": ("Chưa xử lý", "Outstanding"),
    "false_positives": ("Nhận diện nhầm", "False alarms"),
    "time_median": ("Thời gian đến khi gỡ bỏ, trung vị (giây)", "Time to removal, median (seconds)"),
    "time_mean": ("Thời gian đến khi gỡ bỏ, trung bình (giây)", "Time to removal, mean (seconds)"),
    "time_count": ("Số lượt đã gỡ bỏ hoặc xử lý", "Removed or resolved detections"),
}
HEADINGS: dict[str, tuple[str, str]] = {
    "figure": ("Chỉ số", "Figure"),
    "value": ("Giá trị", "Value"),
    "previous": ("Kỳ trước", "Previous period"),
    "difference": ("Chênh lệch", "Difference"),
    "code": ("Mã", "Code"),
    "name": ("Tên mã độc", "Malware name"),
    "kind": ("Loại", "Type"),
    "computers": ("Số máy", "Computers"),
    "period": ("Kỳ", "Period"),
    "summary": ("Tổng hợp", "Summary"),
    "names": ("Theo tên mã độc", "By malware name"),
    "kinds": ("Theo loại", "By type"),
}

Cell = str | int | float | None


def _t(table: dict[str, tuple[str, str]], key: str, language: Language) -> str:
    return table[key][0 if language == "vi" else 1]


def summary_rows(stats: Statistics) -> Iterator[tuple[str, Cell, Cell, Cell]]:
    """(code, value, previous, difference) for every figure; previous and difference only for period figures."""
    e = stats.endpoints
    yield "declared", e.declared, None, None
    for code in ("declared_servers", "declared_workstations", "declared_other", "active", "online", "protected"):
        yield code, getattr(e, code), None, None
    for code in ("realtime_on", "firewall_on", "firewall_unknown", "signatures_7", "signatures_15"):
        yield code, getattr(e, code), None, None
    trend = stats.trend
    for code in PeriodCounts.FIELDS:
        yield code, getattr(stats.current, code), getattr(stats.previous, code), getattr(trend, code)
    t = stats.time_to_removal
    yield "time_count", t.count, None, None
    yield "time_median", t.median_seconds, None, None
    yield "time_mean", t.mean_seconds, None, None


def _period(stats: Statistics) -> str:
    last = stats.end.astimezone(ZONE)
    first = stats.start.astimezone(ZONE)
    return f"{first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M} (UTC+7)"


def safe(value: Cell) -> Cell:
    """A text cell that a spreadsheet will not run as a formula (numbers are left alone)."""
    if isinstance(value, str) and value[:1] in {"=", "+", "-", "@", "\t", "\r"}:
        return f"'{value}"
    return value


def to_csv(stats: Statistics, language: Language = "vi") -> bytes:
    """Three blocks (summary, names, types) separated by an empty line."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    h = HEADINGS
    writer.writerow([_t(h, "period", language), _period(stats)])
    writer.writerow([])
    writer.writerow([_t(h, k, language) for k in ("code", "figure", "value", "previous", "difference")])
    for code, value, previous, difference in summary_rows(stats):
        writer.writerow(
            [code, _t(LABELS, code, language), *("" if v is None else v for v in (value, previous, difference))]
        )
    for key, rows in (("name", stats.by_name), ("kind", stats.by_kind)):
        writer.writerow([])
        writer.writerow([_t(h, k, language) for k in (key, "value", "computers")])
        for row in rows:
            writer.writerow([safe(row.name), row.detections, row.computers])
    return buffer.getvalue().encode("utf-8")


def _text(sheet: Worksheet, row: int, column: int, value: str) -> None:
    cell = sheet.cell(row=row, column=column, value=value)
    cell.data_type = "s"  # never a formula, whatever the text starts with


def to_xlsx(stats: Statistics, language: Language = "vi") -> bytes:
    """Sheets: summary (code, figure, value, previous, difference), names, types."""
    book = Workbook()
    h = HEADINGS
    for empty in list(book.worksheets):
        book.remove(empty)
    summary = book.create_sheet(_t(h, "summary", language))
    _text(summary, 1, 1, _t(h, "period", language))
    _text(summary, 1, 2, _period(stats))
    for column, key in enumerate(("code", "figure", "value", "previous", "difference"), start=1):
        _text(summary, 3, column, _t(h, key, language))
    for row, (code, value, previous, difference) in enumerate(summary_rows(stats), start=4):
        _text(summary, row, 1, code)
        _text(summary, row, 2, _t(LABELS, code, language))
        for column, number in enumerate((value, previous, difference), start=3):
            if number is not None:
                summary.cell(row=row, column=column, value=number)
    summary.column_dimensions["B"].width = 48
    for key, sheet_key, rows in (("name", "names", stats.by_name), ("kind", "kinds", stats.by_kind)):
        sheet = book.create_sheet(_t(h, sheet_key, language))
        for column, heading in enumerate((key, "value", "computers"), start=1):
            _text(sheet, 1, column, _t(h, heading, language))
        for row, found in enumerate(rows, start=2):
            _text(sheet, row, 1, found.name)
            sheet.cell(row=row, column=2, value=found.detections)
            sheet.cell(row=row, column=3, value=found.computers)
        sheet.column_dimensions["A"].width = 40
    output = io.BytesIO()
    book.save(output)
    return output.getvalue()
