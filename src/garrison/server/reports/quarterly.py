"""The quarterly malware-infection report of a unit subtree: an editable DOCX, its PDF and an XLSX of its tables.

The DOCX has the shape of a Vietnamese administrative document (Decree 30/2020/NĐ-CP, Annex I; the letter in
``shared/docs``): the header table (the agency on the left, the national motto on the right, then the number and
the place and date), the title, "Kính gửi", the body, "Nơi nhận" and the signature block. There is no official
template for this report (regulations.md §8); the body follows the proposed quarterly figures there: coverage,
infections, changes against the previous period, and proposals, which the unit writes itself (the file is meant to
be edited before it is signed).

Every figure comes from :class:`~garrison.server.reports.statistics.Statistics`; the only arithmetic here is the
percentages. The rows of the tables are built once (:func:`coverage_rows` and the others) and both files write
them, so the DOCX and the XLSX cannot disagree.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from docx import Document
from docx.enum.section import WD_ORIENT
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Mm, Pt
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import select
from sqlalchemy.orm import Session

from garrison.server.auth.scope import Scope
from garrison.server.reports import pdf
from garrison.server.reports.exports import LABELS, Language
from garrison.server.reports.statistics import ZONE, NameCount, PeriodCounts, Statistics
from garrison.server.units import service as units
from garrison.server.units.models import Unit

#: Where something the report cannot know is to be filled in by hand (the usual dotted blank).
BLANK = "……"

# Decree 30/2020/NĐ-CP on administrative documents (Annex I): Times New Roman (a Unicode font), body text 13–14 pt,
# A4 paper, margins top 20–25 mm, bottom 20–25 mm, left 30–35 mm, right 15–20 mm.
FONT = "Times New Roman"
SIZE = Pt(13)
TEXT_WIDTH_MM = 210 - 30 - 15


@dataclass(frozen=True, slots=True)
class UnitLine:
    """One unit directly under the reporting one, as the document's section on the units' reports prints it: its
    latest report of the quarter (frozen figures) or, when it has sent none, its figures when the document was made
    (``live``). Made by ``reports.rollup.unit_lines``; kept in a submission's ``info`` so that the submitted document
    keeps the units' state at the moment it was sent."""

    name: str
    status: str  # reports.submissions.Status: submitted, late, not_yet, overdue
    submitted: date | None  # Vietnam's day of the latest version, when there is one
    version: int | None
    live: bool
    enrolled: int
    detections: int
    infected: int
    resolved: int
    outstanding: int

    FIGURES = ("enrolled", "detections", "infected", "resolved", "outstanding")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "submitted": self.submitted.isoformat() if self.submitted else None,
            "version": self.version,
            "live": self.live,
            **{key: getattr(self, key) for key in self.FIGURES},
        }

    @classmethod
    def from_json(cls, data: Any) -> UnitLine | None:
        """The line of ``data``, or None when it is not one (a federated server's odd info is skipped)."""
        if not isinstance(data, dict):
            return None
        name, status, submitted, version = (data.get(k) for k in ("name", "status", "submitted", "version"))
        counts = [n for key in cls.FIGURES if type(n := data.get(key)) is int]
        if not isinstance(name, str) or status not in STATUS_TEXTS or len(counts) != len(cls.FIGURES):
            return None
        try:
            day_ = date.fromisoformat(submitted) if isinstance(submitted, str) else None
        except ValueError:
            day_ = None
        return cls(name, status, day_, version if type(version) is int else None, data.get("live") is True, *counts)


@dataclass(frozen=True, slots=True)
class ReportInfo:
    """What the document says besides the figures. Empty texts are printed as the dotted blank ``……``."""

    year: int
    quarter: int
    agency: str = ""  # the reporting unit's name (printed upper case)
    parent_agency: str = ""  # the agency it belongs to (cơ quan chủ quản), above it; optional
    number: str = ""  # the document's number ("Số: 12/BC-…")
    symbol: str = ""  # the agency's abbreviation after "BC-"
    recipient: str = ""  # Kính gửi
    place: str = ""  # the place name of the date line
    issued: date | None = None  # None: the day left blank
    signer_title: str = ""
    signer_name: str = ""
    copies: tuple[str, ...] = field(default=())  # Nơi nhận, besides "Như trên" and the archive
    units: tuple[UnitLine, ...] = field(default=())  # the units directly under it; empty: no such section


TEXTS: dict[str, tuple[str, str]] = {
    "nation": ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "SOCIALIST REPUBLIC OF VIETNAM"),
    "motto": ("Độc lập - Tự do - Hạnh phúc", "Independence - Freedom - Happiness"),
    "number": ("Số", "No."),
    "report": ("BÁO CÁO", "REPORT"),
    "subject": ("Tình hình lây nhiễm mã độc quý {q} năm {y}", "Malware infection, quarter {q} {y}"),
    "to": ("Kính gửi", "To"),
    "intro": (
        "Thực hiện nhiệm vụ theo dõi, thống kê chỉ số lây nhiễm mã độc trên các thiết bị đầu cuối và báo cáo định kỳ "
        "hằng quý, {agency} báo cáo tình hình lây nhiễm mã độc quý {q} năm {y} (từ ngày {first} đến ngày {last}) "
        "như sau:",
        "As part of the quarterly monitoring and reporting of malware infections on endpoints, {agency} reports on "
        "malware infection in quarter {q} {y} (from {first} to {last}) as follows:",
    ),
    "source": (
        "Số liệu do hệ thống quản lý phòng, chống mã độc Garrison tổng hợp tự động lúc {at}.",
        "The figures were compiled automatically by the Garrison anti-malware management system at {at}.",
    ),
    "coverage": ("1. Tình hình triển khai giải pháp phòng, chống mã độc", "1. Anti-malware coverage"),
    "coverage_note": (
        "Số máy đã đăng ký tính đến cuối kỳ; các chỉ số còn lại là tình trạng tại thời điểm lập báo cáo.",
        "Computers enrolled are counted at the end of the period; the other figures are the state when the report "
        "was made.",
    ),
    "coverage_note_day": (
        "Số máy đã đăng ký tính đến cuối kỳ; các chỉ số còn lại là tình trạng ghi nhận ngày {day}, ngày ghi nhận "
        "cuối cùng của kỳ.",
        "Computers enrolled are counted at the end of the period; the other figures are the state recorded on {day}, "
        "the last day recorded in the period.",
    ),
    "infections": ("2. Tình hình lây nhiễm và xử lý mã độc", "2. Malware infections and their removal"),
    "removal_time": ("Thời gian từ khi phát hiện đến khi gỡ bỏ", "Time from detection to removal"),
    "top_names": ("Các mã độc bị phát hiện nhiều nhất", "Most detected malware"),
    "by_type": ("Theo loại phát hiện", "By detection type"),
    "comparison": ("3. So sánh với kỳ trước", "3. Changes against the previous period"),
    "comparison_note": (
        "Kỳ trước: từ ngày {first} đến ngày {last} (cùng độ dài, ngay trước kỳ báo cáo).",
        "Previous period: from {first} to {last} (of the same length, just before the reported one).",
    ),
    "units": ("4. Tình hình báo cáo của các đơn vị trực thuộc", "4. Reports of the units under it"),
    "units_note": (
        "Số liệu của đơn vị đã gửi báo cáo là số liệu trong báo cáo đã gửi (lần gửi cuối); của đơn vị chưa gửi là "
        "số liệu tại thời điểm lập báo cáo này. Số máy: máy đã đăng ký đến cuối kỳ; phát hiện, máy nhiễm, chưa xử "
        "lý: trong kỳ. Dòng tổng chỉ cộng các báo cáo đã gửi.",
        "For a unit that has reported, the figures of its report (its latest version); for one that has not, its "
        "figures when this report was made. Enrolled: computers enrolled at the end of the period; detections, "
        "infected computers and those not dealt with: in the period. The total adds up the reports sent only.",
    ),
    "unit": ("Đơn vị", "Unit"),
    "status": ("Tình trạng", "Status"),
    "sent_on": ("Ngày gửi", "Sent on"),
    "enrolled_short": ("Số máy", "Enrolled"),
    "detections_short": ("Phát hiện", "Detections"),
    "infected_short": ("Máy nhiễm", "Infected"),
    "resolved_short": ("Đã xử lý", "Dealt with"),
    "outstanding_short": ("Chưa xử lý", "Not dealt with"),
    "total_sent": ("Tổng các báo cáo đã gửi", "Total of the reports sent"),
    "version": ("lần {n}", "version {n}"),
    "live_mark": ("(số liệu hiện tại)", "(figures now)"),
    "proposals": ("{n}. Đề xuất, kiến nghị", "{n}. Proposals"),
    "proposals_text": (
        "[Đơn vị ghi các khó khăn, vướng mắc và đề xuất, kiến nghị của mình tại đây.]",
        "[The unit writes its difficulties and proposals here.]",
    ),
    "closing": ("{agency} báo cáo để biết, tổng hợp./.", "{agency} submits this report for consolidation./."),
    "copies": ("Nơi nhận:", "Recipients:"),
    "as_above": ("Như trên;", "As above;"),
    "archive": ("Lưu: VT.", "Archive: office."),
    "sign_hint": ("(Ký, ghi rõ họ tên và đóng dấu)", "(Signature, full name and seal)"),
    "signer": ("NGƯỜI KÝ", "SIGNATORY"),
    "none": ("Không có phát hiện nào trong kỳ.", "No detections in the period."),
    # table headings
    "no": ("STT", "No."),
    "figure": ("Chỉ số", "Figure"),
    "count": ("Số lượng", "Count"),
    "percent": ("Tỷ lệ (%)", "Share (%)"),
    "base": ("So với", "Of"),
    "name": ("Tên mã độc", "Malware name"),
    "kind": ("Loại", "Type"),
    "detections": ("Lượt phát hiện", "Detections"),
    "computers": ("Số máy", "Computers"),
    "this": ("Kỳ báo cáo", "This period"),
    "previous": ("Kỳ trước", "Previous period"),
    "difference": ("Tăng (+) / giảm (-)", "Change"),
    "seconds": ("Giây", "Seconds"),
    "declared_base": ("số đã khai báo", "declared"),
    "active_base": ("số máy đang quản lý", "managed now"),
    "detections_base": ("số lượt phát hiện", "detections"),
    "enrolled_base": ("số máy đã đăng ký", "enrolled"),
}
STATUS_TEXTS: dict[str, tuple[str, str]] = {
    "submitted": ("Đã gửi đúng hạn", "Sent on time"),
    "late": ("Gửi muộn", "Sent late"),
    "not_yet": ("Chưa gửi (chưa đến hạn)", "Not sent (not yet due)"),
    "overdue": ("Quá hạn, chưa gửi", "Overdue, not sent"),
}
MONTHS_EN = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def text(key: str, language: Language, **values: object) -> str:
    found = TEXTS[key][0 if language == "vi" else 1]
    return found.format(**values) if values else found


def label(code: str, language: Language) -> str:
    return LABELS[code][0 if language == "vi" else 1]


#: What XML 1.0 (and so DOCX and XLSX) cannot hold: control characters but tab and line breaks, lone surrogates,
#: U+FFFE and U+FFFF. A malware name or a query parameter may carry them; they are dropped, not refused.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean(value: str) -> str:
    return _NOT_XML.sub("", value)


def _or_blank(value: str) -> str:
    return value.strip() or BLANK


# -- the rows of the tables (the only figures in both files) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    code: str
    value: int
    base: str | None  # the code of the figure the percentage is of (None: no percentage)
    percent: float | None  # None with a base: the base is 0


def _percent(value: int, base: int) -> float | None:
    return None if base == 0 else round(100.0 * value / base, 1)


COVERAGE: tuple[tuple[str, str | None], ...] = (
    ("declared", None),
    ("declared_servers", None),
    ("declared_workstations", None),
    ("declared_other", None),
    ("enrolled", "declared"),
    ("active", "declared"),
    ("online", "active"),
    ("protected", "active"),
    ("realtime_on", "active"),
    ("firewall_on", "active"),
    ("firewall_unknown", "active"),
    ("signatures_7", "active"),
    ("signatures_15", "active"),
)
INFECTIONS: tuple[tuple[str, str | None], ...] = (
    ("detections", None),
    ("names", None),
    ("infected_endpoints", "enrolled"),
    ("removed", "detections"),
    ("quarantined", "detections"),
    ("deleted", "detections"),
    ("action_failed", "detections"),
    ("resolved", "detections"),
    ("outstanding", "detections"),
    ("false_positives", "detections"),
)


def _figure(stats: Statistics, code: str) -> int:
    if code == "declared":
        return stats.endpoints.declared
    if code in PeriodCounts.FIELDS:
        return int(getattr(stats.current, code))
    return int(getattr(stats.endpoints, code))


def _rows(stats: Statistics, table: Sequence[tuple[str, str | None]]) -> list[Row]:
    rows = []
    for code, base in table:
        value = _figure(stats, code)
        rows.append(Row(code, value, base, None if base is None else _percent(value, _figure(stats, base))))
    return rows


def coverage_rows(stats: Statistics) -> list[Row]:
    return _rows(stats, COVERAGE)


def infection_rows(stats: Statistics) -> list[Row]:
    return _rows(stats, INFECTIONS)


def comparison_rows(stats: Statistics) -> Iterator[tuple[str, int, int, int]]:
    """(code, this period, previous period, difference) of every period figure."""
    trend = stats.trend
    for code in PeriodCounts.FIELDS:
        yield code, getattr(stats.current, code), getattr(stats.previous, code), getattr(trend, code)


def removal_rows(stats: Statistics) -> list[tuple[str, float | int | None]]:
    t = stats.time_to_removal
    return [("time_count", t.count), ("time_median", t.median_seconds), ("time_mean", t.mean_seconds)]


# -- formatting -----------------------------------------------------------------------------------------------


def number(value: float, language: Language, decimals: int = 0) -> str:
    """``1.234,5`` in Vietnamese, ``1,234.5`` in English."""
    shown = f"{value:,.{decimals}f}"
    if language == "vi":
        shown = shown.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return shown


def signed(value: int, language: Language) -> str:
    return f"+{number(value, language)}" if value > 0 else number(value, language)


def percent(value: float | None, language: Language) -> str:
    return "—" if value is None else number(value, language, 1)


def seconds(value: float | None, language: Language) -> str:
    """Whole seconds, with hours and minutes after them when there are any."""
    if value is None:
        return "—"
    whole = round(value)
    shown = number(whole, language)
    hours, minutes = whole // 3600, whole % 3600 // 60
    if whole >= 60:
        parts = (
            (f"{hours} giờ {minutes} phút" if language == "vi" else f"{hours} h {minutes} min")
            if hours
            else (f"{minutes} phút" if language == "vi" else f"{minutes} min")
        )
        shown += f" ({parts})"
    return shown


def day(value: date, language: Language) -> str:
    """``05/02/2026`` (the report's period) in both languages: the day first, as Vietnam writes it."""
    del language
    return f"{value:%d/%m/%Y}"


def date_line(info: ReportInfo, language: Language) -> str:
    """``Hà Nội, ngày 05 tháng 02 năm 2026``: Decree 30 puts a 0 before days below 10 and the months 1 and 2."""
    place = _or_blank(info.place)
    issued = info.issued
    if language == "en":
        return f"{place}, {issued.day} {MONTHS_EN[issued.month - 1]} {issued.year}" if issued else f"{place}, {BLANK}"
    if issued is None:
        return f"{place}, ngày {BLANK} tháng {BLANK} năm {BLANK}"
    month = f"{issued.month:02d}" if issued.month <= 2 else str(issued.month)
    return f"{place}, ngày {issued.day:02d} tháng {month} năm {issued.year}"


def number_line(info: ReportInfo, language: Language) -> str:
    return f"{text('number', language)}: {_or_blank(info.number)}/BC-{_or_blank(info.symbol)}"


def title(info: ReportInfo, language: Language) -> tuple[str, str]:
    return text("report", language), text("subject", language, q=info.quarter, y=info.year)


def _period_days(stats: Statistics, previous: bool = False) -> tuple[date, date]:
    """First and last day (inclusive) in Vietnam's calendar."""
    first, after = (stats.previous_start, stats.start) if previous else (stats.start, stats.end)
    return first.astimezone(ZONE).date(), (after.astimezone(ZONE) - timedelta(microseconds=1)).date()


# -- the DOCX -------------------------------------------------------------------------------------------------


def _font(run: Any, size: Any = None, bold: bool = False, italic: bool = False) -> Any:
    run.font.name = FONT
    run.font.size = size or SIZE
    run.bold = bold or None
    run.italic = italic or None
    fonts = run._element.get_or_add_rPr().get_or_add_rFonts()
    for attribute in ("w:ascii", "w:hAnsi", "w:cs", "w:eastAsia"):
        fonts.set(qn(attribute), FONT)
    return run


def _paragraph(
    container: Any,
    content: str,
    *,
    align: Any = WD_ALIGN_PARAGRAPH.JUSTIFY,
    bold: bool = False,
    italic: bool = False,
    size: Any = None,
    indent: bool = False,
    after: float = 6,
    first: bool = False,
) -> Any:
    """A paragraph of one run; ``first`` reuses a table cell's empty first paragraph."""
    paragraph = container.paragraphs[0] if first else container.add_paragraph()
    paragraph.alignment = align
    paragraph.paragraph_format.space_after = Pt(after)
    paragraph.paragraph_format.space_before = Pt(0)
    if indent:
        paragraph.paragraph_format.first_line_indent = Mm(10)
    _font(paragraph.add_run(clean(content)), size, bold, italic)
    return paragraph


def _setup(document: Any) -> None:
    section = document.sections[0]
    section.orientation = WD_ORIENT.PORTRAIT
    section.page_width, section.page_height = Mm(210), Mm(297)
    section.top_margin, section.bottom_margin = Mm(20), Mm(20)
    section.left_margin, section.right_margin = Mm(30), Mm(15)
    normal = document.styles["Normal"]
    normal.font.name = FONT
    normal.font.size = SIZE
    fonts = normal.element.get_or_add_rPr().get_or_add_rFonts()
    for attribute in ("w:ascii", "w:hAnsi", "w:cs", "w:eastAsia"):
        fonts.set(qn(attribute), FONT)


def _widths(table: Any, widths_mm: Sequence[float]) -> None:
    table.autofit = False
    # Word reads each cell's width, LibreOffice the table's grid (python-docx divides it evenly): set both.
    for column, width in zip(table.columns, widths_mm, strict=True):
        column.width = Mm(width)
    for row in table.rows:
        for cell, width in zip(row.cells, widths_mm, strict=True):
            cell.width = Mm(width)


def _header(document: Any, info: ReportInfo, language: Language) -> None:
    table = document.add_table(rows=2, cols=2)  # the default table style has no borders
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    _widths(table, (70, TEXT_WIDTH_MM - 70))
    left, right = table.rows[0].cells
    center = WD_ALIGN_PARAGRAPH.CENTER
    small = Pt(12)
    if info.parent_agency.strip():
        _paragraph(left, info.parent_agency.strip().upper(), align=center, size=small, after=0, first=True)
        _paragraph(left, _or_blank(info.agency).upper(), align=center, bold=True, size=small, after=0)
    else:
        _paragraph(left, _or_blank(info.agency).upper(), align=center, bold=True, size=small, after=0, first=True)
    _paragraph(left, "―――――", align=center, size=small, after=0)
    _paragraph(right, text("nation", language), align=center, bold=True, size=small, after=0, first=True)
    _paragraph(right, text("motto", language), align=center, bold=True, after=0)
    _paragraph(right, "――――――――――", align=center, after=0)
    number_cell, date_cell = table.rows[1].cells
    _paragraph(number_cell, number_line(info, language), align=center, after=0, first=True)
    _paragraph(date_cell, date_line(info, language), align=center, italic=True, after=0, first=True)


def _table(
    document: Any, headings: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[float], size: int = 12
) -> Any:
    table = document.add_table(rows=1, cols=len(headings))
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    for cell, heading in zip(table.rows[0].cells, headings, strict=True):
        _paragraph(cell, heading, align=WD_ALIGN_PARAGRAPH.CENTER, bold=True, size=Pt(size), after=0, first=True)
    for values in rows:
        cells = table.add_row().cells
        for column, (cell, value) in enumerate(zip(cells, values, strict=True)):
            align = WD_ALIGN_PARAGRAPH.LEFT if column == 1 or len(values) == 1 else WD_ALIGN_PARAGRAPH.CENTER
            _paragraph(cell, value, align=align, size=Pt(size), after=0, first=True)
    _widths(table, widths)
    document.add_paragraph().paragraph_format.space_after = Pt(0)
    return table


def _names_table(document: Any, key: str, found: list[NameCount], language: Language) -> None:
    rows = [
        [str(i), item.name, number(item.detections, language), number(item.computers, language)]
        for i, item in enumerate(found, start=1)
    ]
    headings = [text(k, language) for k in ("no", key, "detections", "computers")]
    _table(document, headings, rows, (12, 93, 30, 30))


def build_docx(stats: Statistics, info: ReportInfo, language: Language = "vi") -> bytes:
    """The report as an editable DOCX (Times New Roman 13 pt, A4, Decree 30/2020 margins)."""
    document = Document()
    _setup(document)
    report, subject = title(info, language)
    document.core_properties.title = clean(f"{report}: {subject}")
    document.core_properties.author = clean(_or_blank(info.agency))
    _header(document, info, language)

    center = WD_ALIGN_PARAGRAPH.CENTER
    _paragraph(document, "", after=0)
    _paragraph(document, report, align=center, bold=True, after=0)
    _paragraph(document, subject, align=center, bold=True, after=0)
    _paragraph(document, "――――――", align=center, after=6)
    _paragraph(document, f"{text('to', language)}: {_or_blank(info.recipient)}", align=center, after=12)

    first, last = _period_days(stats)
    agency = info.agency.strip() or BLANK
    made = stats.computed_at.astimezone(ZONE)
    at = f"{made:%H:%M} {day(made.date(), language)}" if language == "en" else f"{made:%H:%M} ngày {made:%d/%m/%Y}"
    intro = text("intro", language, agency=agency, q=info.quarter, y=info.year, first=day(first, language),
                 last=day(last, language))  # fmt: skip
    _paragraph(document, intro, indent=True)
    _paragraph(document, text("source", language, at=at), indent=True, italic=True)

    _paragraph(document, text("coverage", language), bold=True, indent=True)
    if stats.endpoints_day is None:
        note = text("coverage_note", language)
    else:
        note = text("coverage_note_day", language, day=day(stats.endpoints_day, language))
    _paragraph(document, note, indent=True, italic=True)
    headings = [text(k, language) for k in ("no", "figure", "count", "percent", "base")]
    coverage = [
        [str(i), label(r.code, language), number(r.value, language), "" if r.base is None else
         percent(r.percent, language), "" if r.base is None else text(f"{r.base}_base", language)]
        for i, r in enumerate(coverage_rows(stats), start=1)
    ]  # fmt: skip
    _table(document, headings, coverage, (12, 75, 22, 22, 34))

    _paragraph(document, text("infections", language), bold=True, indent=True)
    infections = [
        [str(i), label(r.code, language), number(r.value, language), "" if r.base is None else
         percent(r.percent, language), "" if r.base is None else text(f"{r.base}_base", language)]
        for i, r in enumerate(infection_rows(stats), start=1)
    ]  # fmt: skip
    _table(document, headings, infections, (12, 75, 22, 22, 34))
    _paragraph(document, text("removal_time", language), italic=True, indent=True)
    t = stats.time_to_removal
    removal = [
        ["1", label("time_count", language), number(t.count, language)],
        ["2", label("time_median", language), seconds(t.median_seconds, language)],
        ["3", label("time_mean", language), seconds(t.mean_seconds, language)],
    ]
    _table(document, [text(k, language) for k in ("no", "figure", "count")], removal, (12, 95, 58))

    _paragraph(document, text("top_names", language), italic=True, indent=True)
    if stats.by_name:
        _names_table(document, "name", stats.by_name, language)
    else:
        _paragraph(document, text("none", language), indent=True)
    _paragraph(document, text("by_type", language), italic=True, indent=True)
    if stats.by_kind:
        _names_table(document, "kind", stats.by_kind, language)
    else:
        _paragraph(document, text("none", language), indent=True)

    _paragraph(document, text("comparison", language), bold=True, indent=True)
    before_first, before_last = _period_days(stats, previous=True)
    note = text("comparison_note", language, first=day(before_first, language), last=day(before_last, language))
    _paragraph(document, note, indent=True, italic=True)
    comparison = [
        [str(i), label(code, language), number(now, language), number(before, language), signed(change, language)]
        for i, (code, now, before, change) in enumerate(comparison_rows(stats), start=1)
    ]
    headings = [text(k, language) for k in ("no", "figure", "this", "previous", "difference")]
    _table(document, headings, comparison, (12, 70, 26, 26, 31))

    if info.units:
        _units_section(document, info.units, language)
    _paragraph(document, text("proposals", language, n=5 if info.units else 4), bold=True, indent=True)
    _paragraph(document, text("proposals_text", language), indent=True)
    _paragraph(document, text("closing", language, agency=agency), indent=True)
    _signature(document, info, language)

    output = io.BytesIO()
    document.save(output)
    return output.getvalue()


def unit_rows(lines: Sequence[UnitLine], language: Language) -> tuple[list[list[str]], list[int]]:
    """The section's rows in words (number, unit, status, sent on, then the figures) and the total of the sent."""
    rows = []
    for i, line in enumerate(lines, start=1):
        sent = "" if line.submitted is None else day(line.submitted, language)
        if line.version and line.version > 1:
            sent += f" ({text('version', language, n=line.version)})"
        status = STATUS_TEXTS[line.status][0 if language == "vi" else 1]
        if line.live:
            status += " " + text("live_mark", language)
        figures = [number(getattr(line, key), language) for key in UnitLine.FIGURES]
        rows.append([str(i), line.name, status, sent, *figures])
    total = [sum(getattr(line, key) for line in lines if not line.live) for key in UnitLine.FIGURES]
    return rows, total


def unit_headings(language: Language) -> list[str]:
    keys = ("no", "unit", "status", "sent_on", *(f"{key}_short" for key in UnitLine.FIGURES))
    return [text(key, language) for key in keys]


#: The figures the document's table shows (the XLSX has every one): seven columns fit a 165 mm line at 11 pt.
DOCUMENT_FIGURES = ("enrolled", "detections", "infected", "outstanding")


def _units_section(document: Any, lines: Sequence[UnitLine], language: Language) -> None:
    _paragraph(document, text("units", language), bold=True, indent=True)
    _paragraph(document, text("units_note", language), indent=True, italic=True)
    words, total = unit_rows(lines, language)
    shown = [UnitLine.FIGURES.index(key) for key in DOCUMENT_FIGURES]
    rows = [
        [no, name, f"{status}, {sent}" if sent else status, *(figures[k] for k in shown)]
        for no, name, status, sent, *figures in words
    ]
    rows.append(["", text("total_sent", language), "", *(number(total[k], language) for k in shown)])
    keys = ("no", "unit", "status", *(f"{key}_short" for key in DOCUMENT_FIGURES))
    table = _table(document, [text(k, language) for k in keys], rows, (12, 40, 37, 19, 19, 19, 19), size=11)
    for cell in table.rows[-1].cells:
        for paragraph in cell.paragraphs:
            for run in paragraph.runs:
                run.bold = True


def _signature(document: Any, info: ReportInfo, language: Language) -> None:
    table = document.add_table(rows=1, cols=2)
    _widths(table, (80, TEXT_WIDTH_MM - 80))
    left, right = table.rows[0].cells
    _paragraph(left, text("copies", language), align=WD_ALIGN_PARAGRAPH.LEFT, bold=True, italic=True, size=Pt(12),
               after=0, first=True)  # fmt: skip
    for copy in (text("as_above", language), *(c.strip() for c in info.copies if c.strip()), text("archive", language)):
        _paragraph(left, f"- {copy}", align=WD_ALIGN_PARAGRAPH.LEFT, size=Pt(11), after=0)
    center = WD_ALIGN_PARAGRAPH.CENTER
    signer_title = info.signer_title.strip().upper() or text("signer", language)
    _paragraph(right, signer_title, align=center, bold=True, after=0, first=True)
    _paragraph(right, text("sign_hint", language), align=center, italic=True, after=0)
    for _ in range(3):
        _paragraph(right, "", align=center, after=0)
    _paragraph(right, _or_blank(info.signer_name), align=center, bold=True, after=0)


# -- the XLSX -------------------------------------------------------------------------------------------------


def _text(sheet: Worksheet, row: int, column: int, value: str, bold: bool = False) -> None:
    cell = sheet.cell(row=row, column=column, value=clean(value))
    cell.data_type = "s"  # never a formula, whatever the text starts with (as reports/exports.py)
    if bold:
        cell.font = Font(bold=True)


def _sheet(
    book: Workbook,
    name: str,
    heading: str,
    subtitle: str,
    columns: Sequence[tuple[str, float]],
    rows: Sequence[Sequence[str | int | float | None]],
    text_columns: frozenset[int] = frozenset({2}),
) -> Worksheet:
    """A sheet: the title row (merged), the period, an empty row, the column headings from row 4, then the rows."""
    sheet: Worksheet = book.create_sheet(name[:31])
    _text(sheet, 1, 1, heading, bold=True)
    sheet.cell(row=1, column=1).font = Font(bold=True, size=13)
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(columns))
    _text(sheet, 2, 1, subtitle)
    sheet.merge_cells(start_row=2, start_column=1, end_row=2, end_column=len(columns))
    for column, (title_text, width) in enumerate(columns, start=1):
        _text(sheet, 4, column, title_text, bold=True)
        sheet.cell(row=4, column=column).alignment = Alignment(wrap_text=True, vertical="center")
        sheet.column_dimensions[get_column_letter(column)].width = width
    for number_of_row, values in enumerate(rows, start=5):
        for column, value in enumerate(values, start=1):
            if value is None:
                continue
            if column in text_columns or isinstance(value, str):
                _text(sheet, number_of_row, column, str(value))
            else:
                sheet.cell(row=number_of_row, column=column, value=value)
    sheet.freeze_panes = "A5"
    return sheet


def build_xlsx(stats: Statistics, info: ReportInfo, language: Language = "vi") -> bytes:
    """The report's tables, one sheet each, with real numbers (percentages as numbers of percent, one decimal)."""
    book = Workbook()
    for empty in list(book.worksheets):
        book.remove(empty)
    report, subject = title(info, language)
    agency = info.agency.strip() or BLANK
    heading = f"{report}: {subject} — {agency}"
    first, last = _period_days(stats)
    subtitle = f"{day(first, language)} – {day(last, language)}"
    t = {k: text(k, language) for k in TEXTS}
    figure_columns = [(t["no"], 6.0), (t["figure"], 52.0), (t["count"], 12.0), (t["percent"], 12.0), (t["base"], 22.0)]

    def figures(rows: list[Row]) -> list[list[str | int | float | None]]:
        return [
            [i, label(r.code, language), r.value, r.percent, None if r.base is None else t[f"{r.base}_base"]]
            for i, r in enumerate(rows, start=1)
        ]

    sheets = {
        "coverage": ("Triển khai", "Coverage"),
        "infections": ("Lây nhiễm", "Infections"),
        "names": ("Tên mã độc", "Malware names"),
        "kinds": ("Theo loại", "By type"),
        "comparison": ("So sánh", "Comparison"),
    }  # and "Đơn vị trực thuộc" / "Units" when the report has units under it
    index = 0 if language == "vi" else 1
    _sheet(book, sheets["coverage"][index], heading, subtitle, figure_columns, figures(coverage_rows(stats)))
    infections = figures(infection_rows(stats))
    infections += [
        [len(infections) + i, label(code, language), value, None, None]
        for i, (code, value) in enumerate(removal_rows(stats), start=1)
    ]
    _sheet(book, sheets["infections"][index], heading, subtitle, figure_columns, infections)
    for key, column_key, found in (("names", "name", stats.by_name), ("kinds", "kind", stats.by_kind)):
        columns = [(t["no"], 6.0), (t[column_key], 48.0), (t["detections"], 14.0), (t["computers"], 12.0)]
        rows: list[Sequence[str | int | float | None]] = [
            [i, item.name, item.detections, item.computers] for i, item in enumerate(found, start=1)
        ]
        _sheet(book, sheets[key][index], heading, subtitle, columns, rows)
    before_first, before_last = _period_days(stats, previous=True)
    columns = [(t["no"], 6.0), (t["figure"], 48.0), (t["this"], 14.0), (t["previous"], 14.0), (t["difference"], 16.0)]
    comparison: list[Sequence[str | int | float | None]] = [
        [i, label(code, language), now, before, change]
        for i, (code, now, before, change) in enumerate(comparison_rows(stats), start=1)
    ]
    sheet = _sheet(book, sheets["comparison"][index], heading, subtitle, columns, comparison)
    _text(sheet, 3, 1, text("comparison_note", language, first=day(before_first, language),
                            last=day(before_last, language)))  # fmt: skip
    if info.units:
        widths = (6.0, 40.0, 34.0, 16.0, 12.0, 12.0, 12.0, 12.0, 12.0)
        columns = list(zip(unit_headings(language), widths, strict=True))
        words, total = unit_rows(info.units, language)
        unit_sheet: list[Sequence[str | int | float | None]] = [
            [i, line.name, said[2], said[3], *(getattr(line, key) for key in UnitLine.FIGURES)]
            for i, (line, said) in enumerate(zip(info.units, words, strict=True), start=1)
        ]
        unit_sheet.append([None, t["total_sent"], None, None, *total])
        sheet = _sheet(book, ("Đơn vị trực thuộc", "Units")[index], heading, subtitle, columns, unit_sheet)
        _text(sheet, 3, 1, t["units_note"])
    output = io.BytesIO()
    book.save(output)
    return output.getvalue()


# -- the unit and the info of a request ---------------------------------------------------------------------


def build_pdf(stats: Statistics, info: ReportInfo, language: Language = "vi") -> bytes:
    """The DOCX as printed by LibreOffice (:mod:`garrison.server.reports.pdf`); 503 when it is not installed."""
    return pdf.docx_to_pdf(build_docx(stats, info, language))


Builder = Callable[[Statistics, ReportInfo, Language], bytes]
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: Every file a report is given as: its builder and media type, by extension. Routes pick from here.
FORMATS: dict[str, tuple[Builder, str]] = {
    "docx": (build_docx, DOCX_TYPE),
    "pdf": (build_pdf, "application/pdf"),
    "xlsx": (build_xlsx, XLSX_TYPE),
}


def report_unit(session: Session, scope: Scope, unit_id: int | None) -> Unit | None:
    """The reporting unit: ``unit_id`` (404 outside ``scope``), else the scope's root, else the tree's only top
    unit; None for a whole tree with several top units (the report then speaks for the whole scope)."""
    if unit_id is not None:
        return units.get(session, scope, unit_id)
    if not scope.everything:
        return units.get(session, scope, int(scope.path.strip("/").split("/")[-1]))
    tops = session.scalars(select(Unit).where(Unit.parent_id.is_(None)).order_by(Unit.id).limit(2)).all()
    return tops[0] if len(tops) == 1 else None


def parent_name(session: Session, unit: Unit | None) -> str:
    if unit is None or unit.parent_id is None:
        return ""
    parent = session.get(Unit, unit.parent_id)
    return parent.name if parent is not None else ""
