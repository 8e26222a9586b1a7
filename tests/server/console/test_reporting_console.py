"""The reporting page (``/reporting``), on SQLite and PostgreSQL: the deadline and the units' status for a quarter,
the Submit form (CSRF-protected, frozen figures, versions), the deadline settings form, and scope for a unit
administrator and an auditor. Pages are read in English, so the assertions hold whatever the Vietnamese catalog
says."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from garrison.server.console import i18n
from garrison.server.db import Database
from garrison.server.reports import calendar
from garrison.server.reports.models import ReportSubmission
from tests.server.console.test_views import console_login, csrf_of
from tests.server.test_reporting_calendar import detect, fleet, vn

__all__ = ["fleet"]  # the fixture, shared with the service tests

Q1 = "year=2026&quarter=1"


def _login(client: TestClient, username: str = "admin") -> None:
    client.cookies.clear()
    console_login(client, username)
    client.cookies.set(i18n.LANGUAGE_COOKIE, "en")


def _statuses(page: str) -> dict[str, str]:
    """Unit id → status of the table of units under the chosen one."""
    return dict(re.findall(r'<tr data-unit="(\d+)" data-status="([a-z_]+)">', page))


def _submit(client: TestClient, unit: int, csrf: str, **fields: str) -> object:
    form = {"csrf_token": csrf, "unit": str(unit), "year": "2026", "quarter": "1", **fields}
    return client.post("/reporting/submit", data=form, follow_redirects=False)


def test_the_page_shows_the_deadline_and_the_units_status(
    client: TestClient, database: Database, tree: dict[str, int], fleet: dict[str, str]
) -> None:
    _login(client)
    page = client.get(f"/reporting?unit={tree['province']}&{Q1}")
    assert page.status_code == 200, page.text
    text = page.text
    assert "Report of Tỉnh Bắc Ninh, quarter 1 of 2026" in text
    assert 'data-deadline="2026-03-19T17:00:00+00:00"' in text and "Due at the latest on 19/03/2026" in text
    assert "The deadline has passed." in text and 'data-status="overdue"' in text
    assert _statuses(text) == {str(tree["health"]): "overdue", str(tree["education"]): "overdue"}
    # The units' last day is written like the unit's own: the day before the deadline's day.
    assert re.findall(r"<td data-last-day>([^<]+)</td>", text) == ["19/03/2026", "19/03/2026"]
    # Not submitted: their figures of now, marked so, and kept out of the total.
    assert text.count('data-live="1"') == 2
    submitted_total = re.search(r'id="total-submitted">.*?data-cell="detections">([^<]+)<', text, re.S)
    missing_total = re.search(r'id="total-missing">.*?data-cell="detections">([^<]+)<', text, re.S)
    assert submitted_total and missing_total and (submitted_total[1], missing_total[1]) == ("0", "4")
    assert "before day 20 of the last month" in text and "This is the rule of the regulation" in text
    # The default is the top of the reader's scope and the current quarter.
    default = client.get("/reporting").text
    assert f'<option value="{tree["province"]}" selected>' in default and 'id="reporting-deadline"' in default


def test_the_submit_form_freezes_the_figures(
    client: TestClient, database: Database, tree: dict[str, int], fleet: dict[str, str]
) -> None:
    _login(client)
    health = tree["health"]
    csrf = csrf_of(client, f"/reporting?unit={health}&{Q1}")
    assert _submit(client, health, "not the token").status_code == 403
    answer = _submit(client, health, csrf, number="07", signer_name="Trần Thị B", issued="2026-03-15")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/reporting?unit={health}&{Q1}&done=submitted"
    page = client.get(answer.headers["location"]).text
    assert 'id="reporting-notice"' in page and 'data-version="1"' in page
    with database.session() as session:
        first = session.scalars(select(ReportSubmission).where(ReportSubmission.unit_id == health)).one()
        assert first.info["number"] == "07" and first.info["issued"] == "2026-03-15"
        assert first.figures["current"]["detections"] == 2
        first_id = first.id
    link = f"/api/v1/reporting/submissions/{first_id}/report.docx?lang=en"
    assert html.escape(link) in page or link in page
    assert client.get(link).status_code == 200

    # The province's page shows it as submitted late (after 20 March), with its frozen figures in the total.
    detect(database, fleet["bv-1"], tree["hospital"], "Win.Late.D", vn("2026-03-25T08:00:00"))
    province = client.get(f"/reporting?unit={tree['province']}&{Q1}").text
    assert _statuses(province)[str(health)] == "late"
    total = re.search(r'id="total-submitted">.*?data-cell="detections">([^<]+)<', province, re.S)
    assert total and total[1] == "2"

    # A correction is version 2 with the figures of now.
    assert _submit(client, health, csrf).status_code == 303
    with database.session() as session:
        versions = session.scalars(
            select(ReportSubmission).where(ReportSubmission.unit_id == health).order_by(ReportSubmission.version)
        ).all()
        assert [(s.version, s.figures["current"]["detections"]) for s in versions] == [(1, 2), (2, 3)]


def test_the_deadline_settings_form(client: TestClient, database: Database, tree: dict[str, int]) -> None:
    _login(client)
    province = tree["province"]
    csrf = csrf_of(client, f"/reporting?unit={province}&{Q1}")
    form = {"csrf_token": csrf, "unit": str(province), "year": "2026", "quarter": "1"}
    answer = client.post("/reporting/line", data={**form, "deadline_day": "10", "reminder_days": "7, 3; 1"})
    assert answer.status_code == 200 and "The deadline settings were saved." in answer.text
    assert 'data-day="10" data-own="1"' in answer.text
    with database.session() as session:
        assert calendar.deadline(session, tree["health"], 2026, 1) == vn("2026-03-10T00:00:00")
    wrong = client.post("/reporting/line", data={**form, "deadline_day": "31", "reminder_days": "7"})
    assert wrong.status_code == 400 and 'id="reporting-error"' in wrong.text
    words = client.post("/reporting/line", data={**form, "deadline_day": "ten", "reminder_days": "7"})
    assert words.status_code == 400
    health_page = client.get(f"/reporting?unit={tree['health']}&{Q1}").text
    assert "Rule of Tỉnh Bắc Ninh." in health_page and 'id="line-warning"' in health_page  # 10th, as its own
    assert 'id="line-warning"' not in answer.text
    health_form = {**form, "unit": str(tree["health"]), "deadline_day": "5", "reminder_days": "2"}
    assert 'id="line-warning"' not in client.post("/reporting/line", data=health_form).text
    cleared = client.post("/reporting/line", data={**form, "clear": "1"})
    assert cleared.status_code == 200 and 'data-day="20" data-own="0"' in cleared.text


def test_unit_admins_and_auditors_on_the_page(
    client: TestClient, database: Database, tree: dict[str, int], fleet: dict[str, str]
) -> None:
    _login(client, "yte.admin")
    page = client.get(f"/reporting?{Q1}")
    assert page.status_code == 200
    assert f'<option value="{tree["health"]}" selected>' in page.text and "Sở Giáo dục" not in page.text
    assert _statuses(page.text) == {str(tree["hospital"]): "overdue"}
    assert client.get(f"/reporting?unit={tree['education']}&{Q1}").status_code == 404
    csrf = csrf_of(client, f"/reporting?{Q1}")
    assert _submit(client, tree["education"], csrf).status_code == 404
    assert _submit(client, tree["hospital"], csrf).status_code == 303

    _login(client, "yte.audit")
    page = client.get(f"/reporting?{Q1}")
    assert (
        page.status_code == 200 and 'id="submit-form"' not in page.text and 'action="/reporting/line"' not in page.text
    )
    assert _statuses(page.text) == {str(tree["hospital"]): "late"}
    csrf = csrf_of(client, f"/reporting?{Q1}")
    assert _submit(client, tree["hospital"], csrf).status_code == 403
    with database.session() as session:
        assert len(session.scalars(select(ReportSubmission)).all()) == 1


def test_the_overview_says_when_the_report_is_due(
    client: TestClient, database: Database, tree: dict[str, int], fleet: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the first reminder day, the overview of the top unit says its report is due, and how many units under
    it have not sent theirs; nothing before that day, nothing once it is sent. The clock is the only fake."""
    _login(client)
    for today, shown in (("2026-03-01T09:00", False), ("2026-03-06T09:00", True), ("2026-03-25T09:00", True)):
        monkeypatch.setattr(calendar, "utcnow", lambda today=today: vn(today))
        page = client.get("/").text
        assert (f'id="report-due-{tree["province"]}"' in page) is shown, today
    assert 'data-days-left="-5"' in page and "is late: it was due by 19/03/2026" in page
    monkeypatch.setattr(calendar, "utcnow", lambda: vn("2026-03-12T09:00"))
    page = client.get("/").text
    assert "The report of quarter 1 of 2026 for Tỉnh Bắc Ninh is due by 19/03/2026 (8 days left)." in page
    assert "2 of the 2 units under it have not sent theirs yet." in page
    assert f'href="/reporting?unit={tree["province"]}&amp;year=2026&amp;quarter=1"' in page
    with database.session() as session:
        session.add(ReportSubmission(
            unit_id=tree["health"], year=2026, quarter=1, version=1, figures={}, info={},
            submitted_at=vn("2026-03-10T08:00"), submitted_by_name="yte.admin",
        ))  # fmt: skip
        session.add(ReportSubmission(
            unit_id=tree["province"], year=2026, quarter=1, version=1, figures={}, info={},
            submitted_at=vn("2026-03-11T08:00"), submitted_by_name="admin",
        ))  # fmt: skip
        session.commit()
    assert 'id="report-due-' not in client.get("/").text  # sent: nothing to say
    # The department's administrator sees their own unit's report, and the one unit under it.
    _login(client, "yte.admin")
    with database.session() as session:
        session.execute(ReportSubmission.__table__.delete().where(ReportSubmission.unit_id == tree["health"]))
        session.commit()
    page = client.get("/").text
    assert f'id="report-due-{tree["health"]}"' in page and "1 of the 1 units under it" in page
