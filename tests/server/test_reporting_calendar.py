"""The reporting calendar, on SQLite and PostgreSQL: deadlines (the regulation's, inherited, in Vietnam time),
reminder days, submissions with frozen figures and versions, their documents, scope, and the roll-up's sums."""

from __future__ import annotations

import dataclasses
import io
import uuid
from datetime import UTC, datetime
from typing import Any

import docx
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select

from garrison.server.agents.models import Agent
from garrison.server.audit.models import AuditEvent
from garrison.server.audit.service import Actor
from garrison.server.auth import service as auth
from garrison.server.auth.models import User
from garrison.server.auth.scope import Scope
from garrison.server.db import Database
from garrison.server.deps import Caller
from garrison.server.detections.models import Detection, Triage
from garrison.server.errors import BadRequest, Conflict
from garrison.server.reports import calendar, quarterly, rollup, statistics, submissions
from garrison.server.reports.models import ReportSubmission
from garrison.server.reports.statistics import NameCount, RemovalTime
from garrison.server.units.models import Unit
from tests.server.conftest import login
from tests.server.console.test_protection_pages import add_agent

VN = statistics.ZONE
Q1 = (2026, 1)


def vn(text: str) -> datetime:
    """A Vietnam wall-clock time, as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=VN).astimezone(UTC)


def detect(database: Database, agent: str, unit: int, name: str, at: datetime, action: str = "quarantine") -> str:
    detection_id = str(uuid.uuid4())
    with database.session() as session:
        session.add(
            Detection(
                id=detection_id, agent_id=agent, unit_id=unit, occurred_at=at, path="C:/a.exe", chain=[], name=name,
                kind="hash", sha256="a" * 64, md5="b" * 32, size=10, action=action, action_ok=True,
                triage=Triage.NEW,
            )
        )  # fmt: skip
    return detection_id


def caller(database: Database, username: str = "admin") -> Caller:
    with database.session() as session:
        user = session.scalars(select(User).where(User.username == username)).one()
        scope = auth.scope_of(session, user)
        session.expunge(user)
    return Caller(user, scope, Actor(user.id, user.username, "127.0.0.1"))


@pytest.fixture
def fleet(database: Database, tree: dict[str, int]) -> dict[str, Any]:
    """Computers in the hospital (two) and in education (one), enrolled before Q1 2026, with detections in it."""
    agents = {
        "bv-1": add_agent(database, tree["hospital"], "bv-1"),
        "bv-2": add_agent(database, tree["hospital"], "bv-2"),
        "gd-1": add_agent(database, tree["education"], "gd-1"),
    }
    with database.session() as session:
        for agent_id in agents.values():
            agent = session.get(Agent, agent_id)
            assert agent is not None
            agent.enrolled_at = datetime(2025, 10, 1, tzinfo=UTC)
    detect(database, agents["bv-1"], tree["hospital"], "Win.Trojan.A", vn("2026-01-15T09:00:00"))
    detect(database, agents["bv-2"], tree["hospital"], "Win.Trojan.B", vn("2026-02-15T09:00:00"), action="report")
    detect(database, agents["gd-1"], tree["education"], "Win.Trojan.A", vn("2026-02-20T09:00:00"))
    detect(database, agents["gd-1"], tree["education"], "Win.Worm.C", vn("2026-03-02T09:00:00"))
    return {**tree, **agents}


# -- deadlines and reminders ------------------------------------------------------------------------------------


def test_deadlines_default_to_the_regulation_and_lines_are_inherited(database: Database, tree: dict[str, int]) -> None:
    province, health, hospital, education = (tree[k] for k in ("province", "health", "hospital", "education"))
    admin = caller(database)
    with database.session() as session:
        # Before the 20th of the quarter's last month, at 00:00 Vietnam time (17:00 UTC the day before).
        assert calendar.deadline(session, hospital, *Q1) == datetime(2026, 3, 19, 17, 0, tzinfo=UTC)
        assert calendar.deadline(session, province, 2026, 4) == datetime(2026, 12, 19, 17, 0, tzinfo=UTC)
        calendar.set_line(session, admin.scope, admin.actor, province, 10, [3, 7, 7])
        calendar.set_line(session, admin.scope, admin.actor, health, 5, [2])
    with database.session() as session:
        # The province's line is for the units under it; the hospital follows its department's own line.
        assert calendar.deadline(session, province, *Q1) == vn("2026-03-20T00:00:00")
        assert calendar.deadline(session, health, *Q1) == vn("2026-03-10T00:00:00")
        assert calendar.deadline(session, education, 2026, 2) == vn("2026-06-10T00:00:00")
        assert calendar.deadline(session, hospital, *Q1) == vn("2026-03-05T00:00:00")
        views = {v.unit.id: v for v in calendar.list_lines(session, admin.scope)}
        assert views[province].own and views[province].rule.reminder_days == (7, 3)
        assert not views[hospital].own and views[hospital].rule.unit_id == health
        calendar.clear_line(session, admin.scope, admin.actor, health)
    with database.session() as session:
        assert calendar.deadline(session, hospital, *Q1) == vn("2026-03-10T00:00:00")
        for day, days in ((1, [3]), (31, [3]), (10, [61]), (10, [0]), (10, list(range(1, 8)))):
            with pytest.raises(BadRequest):
                calendar.set_line(session, admin.scope, admin.actor, health, day, days)
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("reporting_line.%"))).all()
        assert sorted(actions) == ["reporting_line.clear", "reporting_line.set", "reporting_line.set"]


def test_reminders_come_on_their_days_in_vietnam_time(database: Database, tree: dict[str, int]) -> None:
    everyone = {tree[k] for k in ("province", "health", "hospital", "education")}
    with database.session() as session:
        # 14 days before 20 March is 6 March in Vietnam: from 5 March 17:00 UTC, not before.
        assert calendar.due_reminders(session, datetime(2026, 3, 5, 16, 59, tzinfo=UTC)) == []
        found = calendar.due_reminders(session, datetime(2026, 3, 5, 17, 0, tzinfo=UTC))
        assert {r.unit_id for r in found} == everyone
        assert {(r.year, r.quarter, r.days_left, r.deadline) for r in found} == {(2026, 1, 14, vn("2026-03-20"))}
        assert {r.unit_name for r in found} >= {"Sở Y tế", "Bệnh viện"}
        assert calendar.due_reminders(session, vn("2026-03-07T12:00:00")) == []  # 13 days: not a reminder day
        assert len(calendar.due_reminders(session, vn("2026-03-19T23:59:00"))) == 4  # the last day
        assert calendar.due_reminders(session, vn("2026-03-20T00:00:00")) == []  # passed
        # A unit that submitted (here or through federation) is not reminded.
        session.add(
            ReportSubmission(
                unit_id=tree["health"], year=2026, quarter=1, version=1, figures={}, info={},
                submitted_by_name="cấp dưới", received_from="may-chu-huyen",
            )
        )  # fmt: skip
        session.flush()
        later = calendar.due_reminders(session, vn("2026-03-13T08:00:00"))
        assert {r.unit_id for r in later} == everyone - {tree["health"]}
        assert {r.days_left for r in later} == {7}
        admin = caller(database)
        calendar.set_line(session, admin.scope, admin.actor, tree["province"], 10, [3])
        moved = calendar.due_reminders(session, vn("2026-03-07T08:00:00"))
        # Its children now 3 days before the 10th; the province itself still reports before the 20th.
        assert {(r.unit_id, r.days_left) for r in moved} == {(tree["hospital"], 3), (tree["education"], 3)}


# -- submissions ----------------------------------------------------------------------------------------------


def _docx_text(body: bytes) -> str:
    document = docx.Document(io.BytesIO(body))
    cells = [c.text for t in document.tables for r in t.rows for c in r.cells]
    return "\n".join([p.text for p in document.paragraphs] + cells)


def _xlsx_values(body: bytes) -> list[list[object]]:
    book = load_workbook(io.BytesIO(body))
    return [[c for c in row] for sheet in book.worksheets for row in sheet.iter_rows(values_only=True)]


def _live(database: Database, unit: int) -> statistics.Statistics:
    with database.session() as session:
        return statistics.compute(session, Scope.whole_tree(), unit, *statistics.quarter_bounds(*Q1))


def test_a_submitted_report_keeps_its_figures_and_documents(
    client: TestClient, database: Database, fleet: dict[str, Any]
) -> None:
    health = fleet["health"]
    headers = {"X-CSRF-Token": login(client)}
    body = {"unit_id": health, "year": 2026, "quarter": 1, "number": "12", "signer_name": "Nguyễn Văn A"}
    answer = client.post("/api/v1/reporting/submissions", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    first = answer.json()
    assert first["version"] == 1 and first["submitted_by"] == "admin" and first["received_from"] is None
    assert first["info"]["agency"] == "Sở Y tế" and first["info"]["parent_agency"] == "Tỉnh Bắc Ninh"
    live = _live(database, health)
    assert first["figures"]["current"] == live.to_json()["current"]
    assert live.current.detections == 2 and live.current.names == 2
    docs = {f: client.get(f"/api/v1/reporting/submissions/{first['id']}/report.{f}?lang=en") for f in ("docx", "xlsx")}
    assert all(d.status_code == 200 for d in docs.values())
    text, values = _docx_text(docs["docx"].content), _xlsx_values(docs["xlsx"].content)
    assert "SỞ Y TẾ" in text and "Nguyễn Văn A" in text and "Win.Trojan.B" in text

    # Later: a detection of the quarter triaged, a new one in the quarter, the unit renamed.
    with database.session() as session:
        triaged = session.scalars(select(Detection).where(Detection.name == "Win.Trojan.B")).one()
        triaged.triage, triaged.triaged_at = Triage.RESOLVED, vn("2026-04-02T08:00:00")
    detect(database, fleet["bv-1"], fleet["hospital"], "Win.Late.D", vn("2026-03-25T08:00:00"))
    renamed = {"name": "Sở Y tế mới", "kind": "department", "parent_id": fleet["province"]}
    assert client.put(f"/api/v1/units/{health}", json=renamed, headers=headers).is_success
    changed = _live(database, health)
    assert (changed.current.detections, changed.current.resolved) == (3, 1)

    again = client.get(f"/api/v1/reporting/submissions/{first['id']}").json()
    assert again["figures"] == first["figures"] and again["info"] == first["info"]
    docs_again = {f: client.get(f"/api/v1/reporting/submissions/{first['id']}/report.{f}?lang=en") for f in docs}
    assert _docx_text(docs_again["docx"].content) == text and "Win.Late.D" not in text
    assert _xlsx_values(docs_again["xlsx"].content) == values

    # A correction is the next version, with the figures of now; the first stays as it was.
    second = client.post("/api/v1/reporting/submissions", json=body, headers=headers).json()
    assert second["version"] == 2 and second["figures"]["current"]["detections"] == 3
    assert second["info"]["agency"] == "Sở Y tế mới"
    listed = client.get("/api/v1/reporting/submissions", params={"unit_id": health}).json()
    assert [s["version"] for s in listed] == [2, 1]
    assert client.get(f"/api/v1/reporting/submissions/{first['id']}").json()["figures"] == first["figures"]
    with database.session() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action.like("report.submi%"))).all()
        assert sorted(e.action for e in events).count("report.submit") == 2
        assert sum(e.action == "report.submission_download" for e in events) == 4


def _units_table(body: bytes) -> list[list[str]]:
    """The rows of the document's table of the units' reports (the one headed "Đơn vị")."""
    document = docx.Document(io.BytesIO(body))
    [table] = [t for t in document.tables if t.rows[0].cells[1].text == "Đơn vị"]
    return [[c.text for c in row.cells] for row in table.rows]


def test_a_report_lists_its_units_reports_frozen_when_it_was_submitted(
    client: TestClient, database: Database, fleet: dict[str, Any]
) -> None:
    health, hospital = fleet["health"], fleet["hospital"]
    headers = {"X-CSRF-Token": login(client)}
    body = {"year": 2026, "quarter": 1}
    sent = client.post("/api/v1/reporting/submissions", json={**body, "unit_id": hospital}, headers=headers).json()
    figures = _live(database, hospital).current
    assert (figures.enrolled, figures.detections, figures.infected_endpoints) == (2, 2, 2)
    report = client.post("/api/v1/reporting/submissions", json={**body, "unit_id": health}, headers=headers).json()
    assert [u["name"] for u in report["info"]["units"]] == ["Bệnh viện"]

    sent_on = quarterly.day(submissions.submitted_at(client_submission(database, sent["id"])).astimezone(VN).date(),
                            "vi")  # fmt: skip
    expected = ["2", "2", "2", str(figures.outstanding)]
    rows = _units_table(client.get(f"/api/v1/reporting/submissions/{report['id']}/report.docx").content)
    assert rows[0] == ["STT", "Đơn vị", "Tình trạng", "Số máy", "Phát hiện", "Máy nhiễm", "Chưa xử lý"]
    assert rows[1] == ["1", "Bệnh viện", f"Gửi muộn, {sent_on}", *expected]  # Q1's deadline passed long ago
    assert rows[2] == ["", "Tổng các báo cáo đã gửi", "", *expected]

    # The hospital finds more and sends a correction: the department's submitted document does not change; its
    # report made now shows the correction.
    detect(database, fleet["bv-1"], hospital, "Win.Late.D", vn("2026-03-25T08:00:00"))
    client.post("/api/v1/reporting/submissions", json={**body, "unit_id": hospital}, headers=headers)
    again = _units_table(client.get(f"/api/v1/reporting/submissions/{report['id']}/report.docx").content)
    assert again == rows
    now = client.get("/api/v1/reports/quarterly.docx", params={"unit_id": health, **body})
    assert _units_table(now.content)[1][2:5] == [f"Gửi muộn, {sent_on} (lần 2)", "2", "3"]

    # The province, made now: the department sent, education did not (its figures of now, apart from the total).
    book = load_workbook(io.BytesIO(client.get("/api/v1/reports/quarterly.xlsx",
                                               params={"unit_id": fleet["province"], **body}).content))  # fmt: skip
    values = [list(row) for row in book["Đơn vị trực thuộc"].iter_rows(min_row=5, values_only=True)]
    education = _live(database, fleet["education"]).current
    assert [v[:3] for v in values] == [
        [1, "Sở Y tế", "Gửi muộn"],
        [2, "Sở Giáo dục", "Quá hạn, chưa gửi (số liệu hiện tại)"],
        [None, "Tổng các báo cáo đã gửi", None],
    ]
    assert values[1][5] == education.detections == 2 and values[0][5] == values[2][5] == 2  # health's frozen 2


def client_submission(database: Database, submission_id: int) -> ReportSubmission:
    with database.session() as session:
        found = session.get(ReportSubmission, submission_id)
        assert found is not None
        return found


def test_submissions_open_in_the_quarters_last_month(database: Database, fleet: dict[str, Any]) -> None:
    admin = caller(database)
    with database.session() as session:
        with pytest.raises(Conflict):
            submissions.submit(session, admin, fleet["health"], *Q1, submissions.DocumentFields(),
                               now=vn("2026-02-28T23:59:00"))  # fmt: skip
        early = submissions.submit(
            session, admin, fleet["health"], *Q1, submissions.DocumentFields(), now=vn("2026-03-01T00:00:00")
        )
        assert early.version == 1 and early.figures["current"]["detections"] == 2
        assert submissions.status(early, calendar.deadline(session, fleet["health"], *Q1), vn("2026-04-01")) == (
            "submitted"
        )
        late = submissions.submit(
            session, admin, fleet["health"], *Q1, submissions.DocumentFields(), now=vn("2026-03-20T00:00:00")
        )
        assert late.version == 2
        assert submissions.status(late, calendar.deadline(session, fleet["health"], *Q1), vn("2026-04-01")) == "late"


def test_unit_admins_and_auditors_stay_in_their_subtree(
    client: TestClient, database: Database, fleet: dict[str, Any]
) -> None:
    headers = {"X-CSRF-Token": login(client)}
    body = {"unit_id": fleet["education"], "year": 2026, "quarter": 1}
    education = client.post("/api/v1/reporting/submissions", json=body, headers=headers).json()
    client.cookies.clear()

    headers = {"X-CSRF-Token": login(client, "yte.admin")}
    refused = client.post("/api/v1/reporting/submissions", json=body, headers=headers)
    assert refused.status_code == 404
    hospital = client.post(
        "/api/v1/reporting/submissions", json={**body, "unit_id": fleet["hospital"]}, headers=headers
    )
    assert hospital.status_code == 201, hospital.text
    assert [s["unit_id"] for s in client.get("/api/v1/reporting/submissions").json()] == [fleet["hospital"]]
    assert client.get(f"/api/v1/reporting/submissions/{education['id']}").status_code == 404
    assert client.get(f"/api/v1/reporting/submissions/{education['id']}/report.docx").status_code == 404
    assert client.get("/api/v1/reporting/rollup", params={"unit_id": fleet["province"]}).status_code == 404
    line = {"deadline_day": 15, "reminder_days": [5, 1]}
    assert client.put(f"/api/v1/reporting/lines/{fleet['province']}", json=line, headers=headers).status_code == 404
    assert client.put(f"/api/v1/reporting/lines/{fleet['health']}", json=line, headers=headers).status_code == 200
    assert {x["unit_id"] for x in client.get("/api/v1/reporting/lines").json()} == {fleet["health"], fleet["hospital"]}
    client.cookies.clear()

    headers = {"X-CSRF-Token": login(client, "yte.audit")}
    hospital_body = {**body, "unit_id": fleet["hospital"]}
    assert client.post("/api/v1/reporting/submissions", json=hospital_body, headers=headers).status_code == 403
    assert client.put(f"/api/v1/reporting/lines/{fleet['health']}", json=line, headers=headers).status_code == 403
    assert len(client.get("/api/v1/reporting/submissions").json()) == 1
    rolled = client.get("/api/v1/reporting/rollup", params={"unit_id": fleet["health"], "year": 2026, "quarter": 1})
    assert rolled.status_code == 200 and rolled.json()["rows"][0]["status"] in {"submitted", "late"}
    bad = client.put(f"/api/v1/reporting/lines/{fleet['health']}", json={**line, "deadline_day": 31})
    assert bad.status_code in {403, 422}


# -- the roll-up ------------------------------------------------------------------------------------------------

ADDITIVE = [f for f in statistics.PeriodCounts.FIELDS if f != "names"]


def test_the_rollup_sums_submitted_figures_and_keeps_missing_ones_apart(
    database: Database, fleet: dict[str, Any]
) -> None:
    admin = caller(database)
    province, health, education = fleet["province"], fleet["health"], fleet["education"]
    with database.session() as session:
        submissions.submit(session, admin, health, *Q1, submissions.DocumentFields(), now=vn("2026-03-10T10:00"))
        found = rollup.rollup(session, admin.scope, province, *Q1, now=vn("2026-03-25T10:00"))
    assert [(r.unit.id, r.status, r.live) for r in found.rows] == [
        (health, "submitted", False),
        (education, "overdue", True),
    ]
    assert found.submitted is not None and found.missing is not None
    assert found.submitted.current.detections == 2 and found.missing.current.detections == 2

    # Education's report arrives from its own server (federation): the same kind of row.
    figures = _live(database, education).to_json()
    with database.session() as session:
        session.add(
            ReportSubmission(
                unit_id=education, year=2026, quarter=1, version=1, figures=figures, info={},
                submitted_at=vn("2026-03-21T08:00"), submitted_by_name="gd.admin", received_from="may-chu-so-gd",
            )
        )  # fmt: skip
        session.flush()
        found = rollup.rollup(session, admin.scope, province, *Q1, now=vn("2026-03-25T10:00"))
    assert [(r.status, r.live) for r in found.rows] == [("submitted", False), ("late", False)]
    assert found.missing is None and found.submitted is not None and found.names_exact
    whole = _live(database, province)
    total = found.submitted
    for code in ADDITIVE:
        assert getattr(total.current, code) == getattr(whole.current, code), code
        assert getattr(total.previous, code) == getattr(whole.previous, code), code
    assert total.current.names == whole.current.names == 3  # Win.Trojan.A is in both: counted once
    assert total.endpoints == whole.endpoints
    assert total.by_name == whole.by_name and total.by_kind == whole.by_kind
    assert total.time_to_removal.count == whole.time_to_removal.count
    assert total.time_to_removal.mean_seconds == whole.time_to_removal.mean_seconds == 0.0
    assert total.time_to_removal.median_seconds is None  # medians do not add


def test_combined_names_and_removal_times_are_defined_carefully(database: Database, tree: dict[str, int]) -> None:
    with database.session() as session:
        unit = session.get(Unit, tree["province"])
        assert unit is not None
        start, end = statistics.quarter_bounds(*Q1)
        now = vn("2026-04-01")
        base = statistics.compute(session, Scope.whole_tree(), tree["health"], start, end, now=now)
    a = _with(base, names=2, by_name=[NameCount("X", 3, 1), NameCount("Y", 1, 1)], removal=RemovalTime(4, 0.0, 10.0))
    b = _with(base, names=12, by_name=[NameCount("X", 2, 2)], removal=RemovalTime(1, 100.0, 100.0))
    total, exact = rollup.combine([a, b], unit, start, end, now)
    # b listed only one of its 12 names: the union (2) is too small, so the largest count, and not exact.
    assert (total.current.names, exact) == (12, False)
    assert total.by_name == [NameCount("X", 5, 3), NameCount("Y", 1, 1)]
    assert total.time_to_removal == RemovalTime(5, None, 28.0)
    single, exact = rollup.combine([a], unit, start, end, now)
    assert (single.current.names, exact, single.time_to_removal) == (2, True, RemovalTime(4, 0.0, 10.0))


def _with(
    base: statistics.Statistics, *, names: int, by_name: list[NameCount], removal: RemovalTime
) -> statistics.Statistics:
    current = dataclasses.replace(base.current, names=names, detections=sum(n.detections for n in by_name))
    return dataclasses.replace(base, current=current, by_name=by_name, time_to_removal=removal)
