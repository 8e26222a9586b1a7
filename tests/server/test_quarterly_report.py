"""The quarterly report: the DOCX and the XLSX parsed back, every figure compared with the statistics service for the
same unit and quarter; the administrative header, the title, the English version; scope, auditors and the audit."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from typing import Any

import docx
import pypdf
import pytest
from docx.shared import Pt
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select

from garrison.server.agents.models import Agent
from garrison.server.audit.models import AuditEvent
from garrison.server.auth.scope import Scope
from garrison.server.db import Database
from garrison.server.reports import history, quarterly, statistics
from garrison.server.reports.exports import LABELS
from garrison.server.reports.statistics import PeriodCounts, Statistics
from garrison.server.units.models import Unit
from tests.server.conftest import agent_auth, detection_event, enroll_agent, enrollment_token, login

VN = statistics.ZONE
DOCX_PATH = "/api/v1/reports/quarterly.docx"
XLSX_PATH = "/api/v1/reports/quarterly.xlsx"


def _at(text: str) -> str:
    return datetime.fromisoformat(text).replace(tzinfo=VN).astimezone(UTC).isoformat()


def _send(client: TestClient, enrolled: dict[str, Any], *events: dict[str, Any]) -> list[str]:
    batch = [detection_event(**event) for event in events]
    answer = client.post("/api/v1/agent/events", json={"detections": batch}, headers=agent_auth(enrolled))
    assert answer.status_code == 200, answer.text
    return [event["id"] for event in batch]


def _beat(client: TestClient, enrolled: dict[str, Any], hostname: str, **inventory: Any) -> None:
    body = {"inventory": {"hostname": hostname, "os": "Linux", **inventory}}
    answer = client.post("/api/v1/agent/heartbeat", json=body, headers=agent_auth(enrolled))
    assert answer.status_code == 200, answer.text


@pytest.fixture
def fleet(client: TestClient, database: Database, tree: dict[str, int]) -> dict[str, Any]:
    """Declared endpoints, four computers (three in the health subtree) and detections in Q1 2026 and before."""
    with database.session() as session:
        for unit, counts, code in (
            (tree["health"], (2, 10, 0), "SYT"),
            (tree["hospital"], (1, 5, 1), None),
            (tree["education"], (0, 3, 0), None),
        ):
            row = session.get(Unit, unit)
            assert row is not None
            row.declared_servers, row.declared_workstations, row.declared_other = counts
            row.code = code
    fresh = datetime.now(UTC).isoformat()
    health, hospital, education = (enrollment_token(client, tree[u]) for u in ("health", "hospital", "education"))
    a1 = enroll_agent(client, health, "yte-01")
    a2 = enroll_agent(client, hospital, "bv-01")
    a3 = enroll_agent(client, hospital, "bv-02")
    a4 = enroll_agent(client, education, "gd-01")
    _beat(client, a1, "yte-01", realtime_enabled=True, firewall_enabled=True, signature_date=fresh)
    _beat(client, a2, "bv-01", realtime_enabled=False, firewall_enabled=False)
    _beat(client, a3, "bv-02", realtime_enabled=True, firewall_enabled=True, signature_date=fresh)
    _beat(client, a4, "gd-01", realtime_enabled=True)
    ids = _send(
        client,
        a1,
        {"occurred_at": _at("2026-01-10T09:00:00"), "name": "Eicar-Test-Signature", "kind": "builtin"},
        {"occurred_at": _at("2026-02-01T09:00:00"), "name": "Trojan.X", "kind": "clamav", "action": "delete"},
        {"occurred_at": _at("2025-12-15T10:00:00"), "name": "Trojan.X", "kind": "clamav", "action": "report"},
    )
    ids += _send(
        client,
        a2,
        {"occurred_at": _at("2026-02-10T10:00:00"), "name": "Trojan.X", "kind": "clamav", "action": "report"},
        {"occurred_at": _at("2026-03-01T08:00:00"), "name": '=HYPERLINK("http://x")', "kind": "yara"},
    )
    ids += _send(
        client, a3, {"occurred_at": _at("2026-03-20T08:00:00"), "name": "Eicar-Test-Signature", "action": "report"}
    )
    _send(client, a4, {"occurred_at": _at("2026-02-02T08:00:00"), "name": "Win.Edu", "kind": "yara"})
    headers = {"X-CSRF-Token": login(client)}
    answer = client.patch(f"/api/v1/detections/{ids[3]}", json={"triage": "resolved"}, headers=headers)
    assert answer.status_code == 200, answer.text
    client.cookies.clear()
    with database.session() as session:
        for enrolled in (a1, a2, a3, a4):
            agent = session.get(Agent, enrolled["agent_id"])
            assert agent is not None
            agent.enrolled_at = datetime(2025, 11, 1, tzinfo=UTC)  # before the quarter (enrolled at its end)
    return tree


def _get(client: TestClient, path: str, username: str = "admin", **params: Any) -> Any:
    client.cookies.clear()
    login(client, username)
    answer = client.get(path, params=params)
    client.cookies.clear()
    return answer


def _stats(database: Database, unit: int | None, year: int = 2026, quarter: int = 1) -> Statistics:
    with database.session() as session:
        return statistics.compute(session, Scope.whole_tree(), unit, *statistics.quarter_bounds(year, quarter))


def _vi(value: float, decimals: int = 0) -> str:
    """Vietnamese number formatting, written independently of the module's: 1.234,5."""
    whole = f"{value:,.{decimals}f}"
    return whole.translate(str.maketrans(",.", ".,"))


def _share(value: int, base: int) -> str:
    return "—" if base == 0 else _vi(round(100 * value / base, 1), 1)


def _cells(table: Any) -> list[list[str]]:
    return [[cell.text for cell in row.cells] for row in table.rows]


def _expected_figures(stats: Statistics) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """Label → (count, share) of the coverage and the infection tables, straight from the statistics."""
    e, c = stats.endpoints, stats.current
    coverage: dict[str, tuple[int, int | None]] = {
        "declared": (e.declared, None),
        "declared_servers": (e.declared_servers, None),
        "declared_workstations": (e.declared_workstations, None),
        "declared_other": (e.declared_other, None),
        "enrolled": (c.enrolled, e.declared),
        "active": (e.active, e.declared),
        "online": (e.online, e.active),
        "protected": (e.protected, e.active),
        "realtime_on": (e.realtime_on, e.active),
        "firewall_on": (e.firewall_on, e.active),
        "firewall_unknown": (e.firewall_unknown, e.active),
        "signatures_7": (e.signatures_7, e.active),
        "signatures_15": (e.signatures_15, e.active),
    }
    infections: dict[str, tuple[int, int | None]] = {"detections": (c.detections, None), "names": (c.names, None)}
    infections["infected_endpoints"] = (c.infected_endpoints, c.enrolled)
    for code in ("removed", "quarantined", "deleted", "action_failed", "resolved", "outstanding", "false_positives"):
        infections[code] = (getattr(c, code), c.detections)

    def shown(table: dict[str, tuple[int, int | None]]) -> dict[str, tuple[str, str]]:
        return {
            LABELS[code][0]: (_vi(value), "" if base is None else _share(value, base))
            for code, (value, base) in table.items()
        }

    return shown(coverage), shown(infections)


def test_the_docx_holds_the_figures_of_the_statistics(
    client: TestClient, database: Database, fleet: dict[str, int]
) -> None:
    params: dict[str, Any] = {
        "unit_id": fleet["health"],
        "year": 2026,
        "quarter": 1,
        "number": "12",
        "recipient": "Sở Khoa học và Công nghệ tỉnh Bắc Ninh",
        "place": "Bắc Ninh",
        "issued": "2026-02-05",
        "signer_title": "Giám đốc",
        "signer_name": "Nguyễn Văn An",
    }
    answer = _get(client, DOCX_PATH, **params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == quarterly_media("docx")
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="garrison-bao-cao-q1-2026-unit{fleet["health"]}.docx"'
    )
    stats = _stats(database, fleet["health"])
    # The fleet is what the test thinks it is (the comparison below is not between two zeros).
    assert (stats.endpoints.declared, stats.endpoints.active, stats.current.detections) == (19, 3, 5)
    assert (stats.previous.detections, stats.current.outstanding, stats.current.resolved) == (1, 1, 1)

    document = docx.Document(io.BytesIO(answer.content))
    section = document.sections[0]
    page = (section.page_width, section.page_height)
    margins = (section.top_margin, section.bottom_margin, section.left_margin, section.right_margin)
    assert [round(length.mm) if length else None for length in (*page, *margins)] == [210, 297, 20, 20, 30, 15]
    normal = document.styles["Normal"].font
    assert (normal.name, normal.size) == ("Times New Roman", Pt(13))
    assert document.core_properties.title == "BÁO CÁO: Tình hình lây nhiễm mã độc quý 1 năm 2026"

    tables = document.tables
    assert len(tables) == 9
    header = _cells(tables[0])
    assert header[0][0].splitlines()[:2] == ["TỈNH BẮC NINH", "SỞ Y TẾ"]
    assert header[0][1].splitlines()[:2] == ["CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc"]
    assert header[1] == ["Số: 12/BC-SYT", "Bắc Ninh, ngày 05 tháng 02 năm 2026"]
    agency = tables[0].rows[0].cells[0].paragraphs[1].runs[0]
    assert agency.bold and agency.font.name == "Times New Roman"

    paragraphs = [p.text for p in document.paragraphs]
    title = paragraphs.index("BÁO CÁO")
    assert paragraphs[title + 1] == "Tình hình lây nhiễm mã độc quý 1 năm 2026"
    assert "Kính gửi: Sở Khoa học và Công nghệ tỉnh Bắc Ninh" in paragraphs
    assert any("từ ngày 01/01/2026 đến ngày 31/03/2026" in p for p in paragraphs)
    assert any("từ ngày 03/10/2025 đến ngày 31/12/2025" in p for p in paragraphs)  # the previous period, as compared
    for heading in (
        "1. Tình hình triển khai",
        "2. Tình hình lây nhiễm",
        "3. So sánh",
        "4. Tình hình báo cáo của các",
        "5. Đề xuất",
    ):
        assert any(p.startswith(heading) for p in paragraphs), heading

    coverage, infections = _expected_figures(stats)
    for table, expected in ((tables[1], coverage), (tables[2], infections)):
        rows = _cells(table)
        assert rows[0] == ["STT", "Chỉ số", "Số lượng", "Tỷ lệ (%)", "So với"]
        assert [r[0] for r in rows[1:]] == [str(i) for i in range(1, len(rows))]
        assert {r[1]: (r[2], r[3]) for r in rows[1:]} == expected
    assert _cells(tables[1])[5][1:4] == ["Máy đã đăng ký (cuối kỳ)", "3", "15,8"]  # 3 of 19 declared

    timing = _cells(tables[3])[1:]
    t = stats.time_to_removal
    assert timing[0][2] == str(t.count)
    assert timing[1][2].split(" ")[0] == _vi(round(t.median_seconds or 0))
    assert timing[2][2].split(" ")[0] == _vi(round(t.mean_seconds or 0))

    names = _cells(tables[4])
    assert names[0] == ["STT", "Tên mã độc", "Lượt phát hiện", "Số máy"]
    assert [tuple(r[1:]) for r in names[1:]] == [(n.name, str(n.detections), str(n.computers)) for n in stats.by_name]
    assert names[1][1:] == ["Eicar-Test-Signature", "2", "2"]
    kinds = _cells(tables[5])
    assert [tuple(r[1:]) for r in kinds[1:]] == [(k.name, str(k.detections), str(k.computers)) for k in stats.by_kind]

    comparison = _cells(tables[6])
    assert comparison[0][2:] == ["Kỳ báo cáo", "Kỳ trước", "Tăng (+) / giảm (-)"]
    trend = stats.trend
    changes = {
        LABELS[code][0]: [
            str(getattr(stats.current, code)),
            str(getattr(stats.previous, code)),
            f"{getattr(trend, code):+d}" if getattr(trend, code) else "0",
        ]
        for code in PeriodCounts.FIELDS
    }
    assert {r[1]: r[2:] for r in comparison[1:]} == changes
    assert changes[LABELS["detections"][0]] == ["5", "1", "+4"]

    # The units under it: the hospital has sent nothing; its figures now, kept out of the total of the reports sent.
    hospital = _stats(database, fleet["hospital"]).current
    figures = [str(n) for n in (hospital.enrolled, hospital.detections, hospital.infected_endpoints)]
    assert _cells(tables[7])[1:] == [
        ["1", "Bệnh viện", "Quá hạn, chưa gửi (số liệu hiện tại)", *figures, str(hospital.outstanding)],
        ["", "Tổng các báo cáo đã gửi", "", "0", "0", "0", "0"],
    ]
    assert figures == ["2", "3", "2"]

    copies, signature = (cell.text.splitlines() for cell in tables[8].rows[0].cells)
    assert copies == ["Nơi nhận:", "- Như trên;", "- Lưu: VT."]
    assert signature[0] == "GIÁM ĐỐC" and signature[-1] == "Nguyễn Văn An"


def quarterly_media(kind: str) -> str:
    return {
        "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }[kind]


def test_the_english_version_and_the_blanks(client: TestClient, database: Database, fleet: dict[str, int]) -> None:
    answer = _get(client, DOCX_PATH, unit_id=fleet["hospital"], year=2026, quarter=1, lang="en")
    assert answer.status_code == 200, answer.text
    document = docx.Document(io.BytesIO(answer.content))
    header = _cells(document.tables[0])
    assert header[0][0].splitlines()[:2] == ["SỞ Y TẾ", "BỆNH VIỆN"]
    assert header[0][1].splitlines()[:2] == ["SOCIALIST REPUBLIC OF VIETNAM", "Independence - Freedom - Happiness"]
    assert header[1][0] == "No.: ……/BC-……"  # no number, and the hospital has no code
    assert header[1][1].startswith("……, ")
    paragraphs = [p.text for p in document.paragraphs]
    assert paragraphs[paragraphs.index("REPORT") + 1] == "Malware infection, quarter 1 2026"
    assert document.core_properties.title == "REPORT: Malware infection, quarter 1 2026"
    assert "To: ……" in paragraphs
    stats = _stats(database, fleet["hospital"])
    rows = _cells(document.tables[2])
    assert rows[0] == ["No.", "Figure", "Count", "Share (%)", "Of"]
    assert rows[1][1:3] == ["Detections", str(stats.current.detections)]
    copies, signature = (cell.text.splitlines() for cell in document.tables[7].rows[0].cells)
    assert copies[0] == "Recipients:" and signature[0] == "SIGNATORY" and signature[-1] == "……"


def test_the_xlsx_holds_the_same_numbers(client: TestClient, database: Database, fleet: dict[str, int]) -> None:
    answer = _get(client, XLSX_PATH, unit_id=fleet["health"], year=2026, quarter=1)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == quarterly_media("xlsx")
    stats = _stats(database, fleet["health"])
    book = load_workbook(io.BytesIO(answer.content))
    assert book.sheetnames == ["Triển khai", "Lây nhiễm", "Tên mã độc", "Theo loại", "So sánh", "Đơn vị trực thuộc"]
    for sheet in book.worksheets:
        assert sheet["A1"].value == "BÁO CÁO: Tình hình lây nhiễm mã độc quý 1 năm 2026 — Sở Y tế"
        assert sheet["A2"].value == "01/01/2026 – 31/03/2026"
        assert sheet.column_dimensions["B"].width >= 40

    e, c = stats.endpoints, stats.current

    def share(value: int, base: int) -> float | None:
        return None if base == 0 else round(100 * value / base, 1)

    coverage = {row[1]: (row[2], row[3]) for row in book["Triển khai"].iter_rows(min_row=5, values_only=True)}
    assert coverage[LABELS["declared"][0]] == (e.declared, None)
    assert coverage[LABELS["enrolled"][0]] == (c.enrolled, share(c.enrolled, e.declared))
    for code in ("online", "protected", "realtime_on", "firewall_on", "firewall_unknown", "signatures_7"):
        assert coverage[LABELS[code][0]] == (getattr(e, code), share(getattr(e, code), e.active)), code
    assert coverage[LABELS["signatures_15"][0]] == (e.signatures_15, share(e.signatures_15, e.active))

    infections = {row[1]: (row[2], row[3]) for row in book["Lây nhiễm"].iter_rows(min_row=5, values_only=True)}
    assert infections[LABELS["detections"][0]] == (c.detections, None)
    assert infections[LABELS["infected_endpoints"][0]] == (
        c.infected_endpoints,
        share(c.infected_endpoints, c.enrolled),
    )
    for code in ("removed", "quarantined", "deleted", "action_failed", "resolved", "outstanding", "false_positives"):
        assert infections[LABELS[code][0]] == (getattr(c, code), share(getattr(c, code), c.detections)), code
    t = stats.time_to_removal
    assert infections[LABELS["time_count"][0]] == (t.count, None)
    assert infections[LABELS["time_median"][0]] == (t.median_seconds, None)
    assert infections[LABELS["time_mean"][0]] == (t.mean_seconds, None)

    for title, found in (("Tên mã độc", stats.by_name), ("Theo loại", stats.by_kind)):
        rows = [list(r[1:]) for r in book[title].iter_rows(min_row=5, values_only=True)]
        assert rows == [[n.name, n.detections, n.computers] for n in found]
    names = book["Tên mã độc"]
    formula = [cell for cell in names["B"] if cell.value == '=HYPERLINK("http://x")']
    assert formula and all(
        cell.data_type == "s" for (cell,) in names.iter_rows(min_row=4, min_col=2, max_col=2)
    )  # a name is never run as a formula

    hospital = _stats(database, fleet["hospital"]).current
    assert list(book["Đơn vị trực thuộc"].iter_rows(min_row=4, values_only=True)) == [
        ("STT", "Đơn vị", "Tình trạng", "Ngày gửi", "Số máy", "Phát hiện", "Máy nhiễm", "Đã xử lý", "Chưa xử lý"),
        (1, "Bệnh viện", "Quá hạn, chưa gửi (số liệu hiện tại)", None, hospital.enrolled, hospital.detections,
         hospital.infected_endpoints, hospital.resolved, hospital.outstanding),
        (None, "Tổng các báo cáo đã gửi", None, None, 0, 0, 0, 0, 0),
    ]  # fmt: skip

    comparison = {r[1]: list(r[2:5]) for r in book["So sánh"].iter_rows(min_row=5, values_only=True)}
    trend = stats.trend
    assert comparison == {
        LABELS[code][0]: [getattr(c, code), getattr(stats.previous, code), getattr(trend, code)]
        for code in PeriodCounts.FIELDS
    }


def test_scope_auditors_and_the_audit_log(client: TestClient, database: Database, fleet: dict[str, int]) -> None:
    for username in ("yte.admin", "yte.audit"):
        for path in (DOCX_PATH, XLSX_PATH):
            outside = _get(client, path, username, unit_id=fleet["education"], year=2026, quarter=1)
            assert outside.status_code == 404, outside.text
            assert _get(client, path, username, unit_id=fleet["province"]).status_code == 404
        answer = _get(client, DOCX_PATH, username, year=2026, quarter=1)  # default: their own subtree
        assert answer.status_code == 200, answer.text
        header = _cells(docx.Document(io.BytesIO(answer.content)).tables[0])
        assert header[0][0].splitlines()[1] == "SỞ Y TẾ"
        assert header[1][0] == "Số: ……/BC-SYT"
    assert client.get(DOCX_PATH).status_code == 401
    with database.session() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "report.quarterly_export").order_by(AuditEvent.id)
        ).all()
    assert [(e.actor_name, e.unit_id, e.details["format"]) for e in events] == [
        ("yte.admin", fleet["health"], "docx"),
        ("yte.audit", fleet["health"], "docx"),
    ]
    assert events[0].details == {"year": 2026, "quarter": 1, "format": "docx", "language": "vi"}


def test_the_whole_province_by_default_and_bad_requests(
    client: TestClient, database: Database, fleet: dict[str, int]
) -> None:
    answer = _get(client, XLSX_PATH)  # the admin's whole tree has one top unit: the province, this quarter
    assert answer.status_code == 200, answer.text
    year, quarter = statistics.current_quarter()
    book = load_workbook(io.BytesIO(answer.content))
    assert book.worksheets[0]["A1"].value == (
        f"BÁO CÁO: Tình hình lây nhiễm mã độc quý {quarter} năm {year} — Tỉnh Bắc Ninh"
    )
    stats = _stats(database, None, year, quarter)
    declared = {row[1]: row[2] for row in book.worksheets[0].iter_rows(min_row=5, values_only=True)}
    assert declared[LABELS["declared"][0]] == stats.endpoints.declared == 22
    assert _get(client, DOCX_PATH, year=2026).status_code == 400  # a year without its quarter
    assert _get(client, DOCX_PATH, year=2026, quarter=5).status_code in {400, 422}
    assert _get(client, "/api/v1/reports/quarterly.odt").status_code in {400, 404, 422}
    # Characters XML cannot hold are dropped, not a server error (found by the API fuzzer).
    for path in (DOCX_PATH, XLSX_PATH):
        answer = _get(client, path, number="\x1b12", recipient="Sở\x00 KH&CN", year=2026, quarter=1)
        assert answer.status_code == 200, answer.text
    document = docx.Document(io.BytesIO(_get(client, DOCX_PATH, number="\x1b12", unit_id=fleet["health"]).content))
    assert _cells(document.tables[0])[1][0] == "Số: 12/BC-SYT"


def test_formatting() -> None:
    assert quarterly.number(1234567, "vi") == "1.234.567"
    assert quarterly.number(1234567, "en") == "1,234,567"
    assert quarterly.percent(95.5, "vi") == "95,5" and quarterly.percent(None, "vi") == "—"
    assert quarterly.signed(3, "vi") == "+3" and quarterly.signed(-1200, "vi") == "-1.200"
    assert quarterly.seconds(3725.4, "vi") == "3.725 (1 giờ 2 phút)"
    assert quarterly.seconds(0.0, "en") == "0"
    info = quarterly.ReportInfo(2026, 4, place="Quảng Ngãi", issued=date(2026, 12, 18))
    assert quarterly.date_line(info, "vi") == "Quảng Ngãi, ngày 18 tháng 12 năm 2026"
    early = quarterly.ReportInfo(2026, 1, issued=date(2026, 1, 5))
    assert quarterly.date_line(early, "vi") == "……, ngày 05 tháng 01 năm 2026"  # Decree 30: 0 before 1–9, 1 and 2
    assert quarterly.date_line(early, "en") == "……, 5 January 2026"
    assert quarterly.number_line(info, "vi") == "Số: ……/BC-……"


def _pdf_lines(content: bytes) -> tuple[Any, list[str]]:
    reader = pypdf.PdfReader(io.BytesIO(content))
    lines = [line.strip() for page in reader.pages for line in page.extract_text().splitlines()]
    return reader, [line for line in lines if line]


def test_the_pdf_is_the_docx_printed(client: TestClient, database: Database, fleet: dict[str, int]) -> None:
    """The PDF, read back: A4, the fonts embedded, the header, and every figure of the coverage and infection
    tables on the line of its label, as the statistics service computes them."""
    params = {"unit_id": fleet["health"], "year": 2026, "quarter": 1, "number": "12", "place": "Bắc Ninh"}
    answer = _get(client, "/api/v1/reports/quarterly.pdf", **params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.headers["content-disposition"].endswith(f'-unit{fleet["health"]}.pdf"')
    reader, lines = _pdf_lines(answer.content)
    width, height = (float(v) for v in reader.pages[0].mediabox.upper_right)
    assert (round(width / 72 * 25.4), round(height / 72 * 25.4)) == (210, 297)
    fonts = {
        str(font["/BaseFont"])
        for page in reader.pages
        for font in page["/Resources"]["/Font"].values()  # type: ignore[index,union-attr]
    }
    assert fonts and all("+" in name for name in fonts), fonts  # subsets embedded: prints the same anywhere
    text = "\n".join(lines)
    for expected in ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "SỞ Y TẾ", "Số: 12/BC-SYT", "BÁO CÁO"):
        assert expected in text, expected
    stats = _stats(database, fleet["health"])
    coverage, infections = _expected_figures(stats)
    flowing = " ".join(" ".join(lines).split())  # a label wrapped in its cell reads on as one line
    for label, (count, share) in {**coverage, **infections}.items():
        row = f"{label} {count} {share}" if share else f"{label} {count}"
        assert row in flowing, row


def test_without_libreoffice_the_pdf_says_what_to_install(
    client: TestClient, fleet: dict[str, int], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no soffice on it
    answer = _get(client, "/api/v1/reports/quarterly.pdf", year=2026, quarter=1)
    assert answer.status_code == 503
    assert answer.json()["error"] == "unavailable"
    assert "libreoffice-writer-nogui" in answer.json()["message"]
    # The DOCX does not need it.
    assert _get(client, DOCX_PATH, year=2026, quarter=1).status_code == 200


def test_a_past_quarter_reports_the_computers_as_recorded(
    client: TestClient, database: Database, fleet: dict[str, int]
) -> None:
    """Recorded during the quarter, the computers' state in the report is that day's, and the document says so."""
    with database.session() as session:
        history.record(session, datetime(2026, 3, 28, 3, tzinfo=UTC))
        session.commit()
    recorded = _stats(database, fleet["health"])
    with database.session() as session:
        for agent in session.scalars(select(Agent)):
            agent.realtime_enabled = not agent.realtime_enabled  # changes now, after the quarter
        session.commit()
    answer = _get(client, DOCX_PATH, unit_id=fleet["health"], year=2026, quarter=1)
    document = docx.Document(io.BytesIO(answer.content))
    notes = [p.text for p in document.paragraphs if p.text.startswith("Số máy đã đăng ký tính đến cuối kỳ")]
    assert notes == [
        "Số máy đã đăng ký tính đến cuối kỳ; các chỉ số còn lại là tình trạng ghi nhận ngày 28/03/2026, ngày ghi "
        "nhận cuối cùng của kỳ."
    ]
    coverage, _ = _expected_figures(recorded)
    assert {r[1]: (r[2], r[3]) for r in _cells(document.tables[1])[1:]} == coverage
    assert recorded.endpoints_day == date(2026, 3, 28)
