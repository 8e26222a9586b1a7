"""The statistics page (``/statistics``), on SQLite and PostgreSQL: the figures of a small fleet for a unit and a
quarter (or two days), compared with the previous period, each linked to its evidence when a list shows exactly
the counted rows; the export links; scope (a unit outside it is a 404) for an administrator and an auditor.

Pages are read in English (the ``garrison_lang`` cookie), so that the assertions hold before and after the
Vietnamese catalog gets the new entries."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from garrison.server.agents.models import Agent
from garrison.server.console import i18n
from garrison.server.db import Database
from garrison.server.detections.models import Detection, Triage
from garrison.server.reports import history
from tests.server.console.test_protection_pages import add_agent
from tests.server.console.test_views import console_login

ENROLLED = datetime(2025, 1, 10, tzinfo=UTC)
Q3 = "year=2025&quarter=3"  # 1 July – 30 September 2025; the previous period is 31 March – 30 June


def _login(client: TestClient, username: str = "admin") -> None:
    client.cookies.clear()
    console_login(client, username)
    client.cookies.set(i18n.LANGUAGE_COOKIE, "en")


def _detect(
    database: Database,
    agent: str,
    unit: int,
    name: str,
    at: datetime,
    *,
    action: str = "quarantine",
    kind: str = "hash",
) -> str:
    detection_id = str(uuid.uuid4())
    with database.session() as session:
        session.add(
            Detection(
                id=detection_id, agent_id=agent, unit_id=unit, occurred_at=at, path=r"C:\Users\a\hoadon.exe",
                chain=[], name=name, kind=kind, sha256="a" * 64, md5="b" * 32, size=10, action=action,
                action_ok=True, triage=Triage.NEW,
            )
        )  # fmt: skip
    return detection_id


@pytest.fixture
def fleet(database: Database, tree: dict[str, int]) -> dict[str, str]:
    """Two computers of the hospital (one without real-time protection), one of education, with detections in the
    third quarter of 2025 and one in the second."""
    ids = {
        "bv-1": add_agent(database, tree["hospital"], "bv-1"),
        "bv-2": add_agent(database, tree["hospital"], "bv-2", realtime=False),
        "sgd-1": add_agent(database, tree["education"], "sgd-1"),
    }
    with database.session() as session:
        for agent_id in ids.values():
            agent = session.get(Agent, agent_id)
            assert agent is not None
            agent.enrolled_at = ENROLLED
    hospital, education = tree["hospital"], tree["education"]
    july, august = datetime(2025, 7, 15, 3, tzinfo=UTC), datetime(2025, 8, 20, 3, tzinfo=UTC)
    _detect(database, ids["bv-1"], hospital, "Win.Trojan.A", july)
    _detect(database, ids["bv-1"], hospital, "Win.Trojan.A", august)
    _detect(database, ids["bv-2"], hospital, "Win.Trojan.A", august, action="report")
    _detect(database, ids["sgd-1"], education, "Win.Worm.B", july, kind="yara")
    _detect(database, ids["bv-1"], hospital, "Win.Trojan.A", datetime(2025, 5, 15, 3, tzinfo=UTC))
    return ids


def _figure(page: str, code: str) -> tuple[str | None, str, str]:
    """(evidence link or None, value, the change's ``data-change``) of a figure card."""
    found = re.search(rf'<div class="figure" data-figure="{code}">(.*?)</div>', page, re.S)
    assert found, page
    card = found[1]
    link = re.search(rf'<a href="([^"]+)" data-evidence="{code}">([^<]+)</a>', card)
    plain = re.search(rf'<span data-plain="{code}">([^<]+)</span>', card)
    change = re.search(r'data-change="([^"]+)"', card)
    assert (link or plain) and change, card
    if link:
        return html.unescape(link[1]), link[2], change[1]
    assert plain
    return None, plain[1], change[1]


def _names(page: str) -> dict[str, tuple[str, str]]:
    """Malware name → (detections, change) of the "most detected" table."""
    section = page[page.index('id="by-name"') : page.index('id="by-kind"')]
    rows = re.findall(
        r'<tr data-name="([^"]+)">.*?data-cell="detections">([^<]+)<.*?data-change="([^"]+)"', section, re.S
    )
    return {html.unescape(name): (count, change) for name, count, change in rows}


def test_the_figures_of_a_quarter_for_the_admin(client: TestClient, fleet: dict[str, str]) -> None:
    _login(client)
    page = client.get(f"/statistics?{Q3}")
    assert page.status_code == 200, page.text
    text = page.text
    assert 'href="/statistics" aria-current="page"' in text
    assert "Quarter 3 of 2025" in text and "31/03/2025 – 30/06/2025" in text
    days = "from=2025-07-01&to=2025-09-30"
    assert _figure(text, "detections") == (f"/detections?{days}", "4", "3")
    infected = "/agents?infected_from=2025-07-01&infected_to=2025-09-30"
    assert _figure(text, "infected_endpoints") == (infected, "3", "2")
    assert client.get(infected).text.count('<tr id="agent-') == 3
    assert _figure(text, "removed") == (f"/detections?{days}&outcome=removed", "3", "2")
    assert _figure(text, "quarantined") == (f"/detections?{days}&outcome=quarantined", "3", "2")
    assert _figure(text, "outstanding") == (f"/detections?{days}&outcome=outstanding", "1", "1")
    # Computers: their state now (nothing was recorded in 2025); the enrolled ones at the end of each period.
    assert "As they are now" in text
    assert _figure(text, "online") == ("/agents?state=online", "3", "none")
    assert _figure(text, "protected") == ("/agents?protected=1", "2", "none")
    assert _figure(text, "signatures_7") == ("/agents?signatures=7", "0", "none")
    assert _figure(text, "enrolled") == (None, "3", "0")
    assert _names(text) == {"Win.Trojan.A": ("3", "2"), "Win.Worm.B": ("1", "1")}
    assert 'href="/detections?from=2025-07-01&amp;to=2025-09-30&amp;name=Win.Trojan.A"' in text
    assert "Rule written by security staff" in text  # the yara detection, by type
    # The evidence lists the counted detections.
    listed = client.get(f"/detections?{days}").text
    assert listed.count('<tr id="detection-') == 4
    assert client.get(f"/detections?{days}&outcome=outstanding").text.count('<tr id="detection-') == 1

    # The previous quarter: one detection, nothing before it.
    second = client.get("/statistics?year=2025&quarter=2").text
    assert _figure(second, "detections") == ("/detections?from=2025-04-01&to=2025-06-30", "1", "1")
    assert _names(second) == {"Win.Trojan.A": ("1", "1")}
    # Custom days: August only, compared with the 31 days before it.
    august = client.get("/statistics?from=2025-08-01&to=2025-08-31").text
    assert "From 01/08/2025 to 31/08/2025" in august
    assert _figure(august, "detections") == ("/detections?from=2025-08-01&to=2025-08-31", "2", "0")


def test_the_unit_changes_the_figures_and_the_exports(
    client: TestClient, tree: dict[str, int], fleet: dict[str, str]
) -> None:
    _login(client)
    hospital = tree["hospital"]
    text = client.get(f"/statistics?unit={hospital}&{Q3}").text
    assert f'<option value="{hospital}" selected>' in text
    # Below the whole scope the detections list is narrowed to the unit's subtree.
    days = "from=2025-07-01&to=2025-09-30"
    assert _figure(text, "detections") == (f"/detections?{days}&unit={hospital}", "3", "2")
    listed = client.get(f"/detections?{days}&unit={hospital}").text
    assert listed.count('<tr id="detection-') == 3 and f'<option value="{hospital}" selected>' in listed
    assert _figure(text, "online") == (f"/agents?state=online&unit={hospital}", "2", "none")
    assert _figure(text, "protected") == (f"/agents?protected=1&unit={hospital}", "1", "none")
    assert _names(text) == {"Win.Trojan.A": ("3", "2")}
    query = f"unit_id={hospital}&start=2025-07-01&end=2025-10-01&lang=en"
    assert f'href="/api/v1/statistics.csv?{query.replace("&", "&amp;")}"' in text
    assert f'href="/api/v1/statistics.xlsx?{query.replace("&", "&amp;")}"' in text
    exported = client.get(f"/api/v1/statistics.csv?{query}")
    assert exported.status_code == 200 and "Win.Trojan.A" in exported.content.decode("utf-8")
    # Vietnamese pages export Vietnamese files.
    client.cookies.set(i18n.LANGUAGE_COOKIE, "vi")
    assert "lang=vi" in client.get(f"/statistics?unit={hospital}&{Q3}").text

    # A wrong period is explained, without figures.
    client.cookies.set(i18n.LANGUAGE_COOKIE, "en")
    wrong = client.get("/statistics?from=2025-09-01&to=2025-08-01")
    assert wrong.status_code == 400 and 'id="statistics-problem"' in wrong.text and "endpoint-figures" not in wrong.text
    assert client.get("/statistics?unit=99999").status_code == 404
    assert client.get("/statistics?unit=abc").status_code == 404


def test_an_auditor_sees_their_subtree_only(client: TestClient, tree: dict[str, int], fleet: dict[str, str]) -> None:
    _login(client, "yte.audit")
    page = client.get(f"/statistics?{Q3}")
    assert page.status_code == 200
    text = page.text
    assert "Sở Giáo dục" not in text and "Bệnh viện</option>" in text
    assert _figure(text, "detections") == ("/detections?from=2025-07-01&to=2025-09-30", "3", "2")
    assert _figure(text, "online") == ("/agents?state=online", "2", "none")
    assert _names(text) == {"Win.Trojan.A": ("3", "2")}
    assert 'href="/api/v1/statistics.csv?start=2025-07-01&amp;end=2025-10-01&amp;lang=en"' in text
    assert client.get(f"/statistics?unit={tree['education']}&{Q3}").status_code == 404
    assert client.get(f"/statistics?unit={tree['province']}&{Q3}").status_code == 404


def test_the_default_is_the_current_quarter(client: TestClient, fleet: dict[str, str]) -> None:
    _login(client)
    text = client.get("/statistics").text
    found = re.search(r'<option value="(\d)" selected>Quarter \d</option>', text)
    assert found
    assert "Download as CSV" in text and 'data-figure="detections"' in text


def test_a_past_quarter_shows_the_computers_as_recorded(
    client: TestClient, database: Database, fleet: dict[str, str]
) -> None:
    """With the state recorded during the quarter and before it, the page gives the recorded figures (no list
    link: the lists show computers as they are now) and their change; the current quarter keeps today's."""
    with database.session() as session:
        history.record(session, datetime(2025, 6, 20, 3, tzinfo=UTC))  # the previous period: all three online
        history.record(session, datetime(2025, 9, 29, 3, tzinfo=UTC))
        session.commit()
    with database.session() as session:
        bv2 = session.get(Agent, fleet["bv-2"])
        assert bv2 is not None
        bv2.realtime_enabled = True  # protected from now on: the third quarter does not change
        session.commit()
    _login(client)
    text = client.get(f"/statistics?{Q3}").text
    assert "As recorded on 29/09/2025" in text and "Compared with 20/06/2025." in text
    assert _figure(text, "protected") == (None, "2", "0")
    assert _figure(text, "online") == (None, "3", "0")
    now = client.get("/statistics").text
    assert "As they are now" in now
    assert _figure(now, "protected") == ("/agents?protected=1", "3", "none")


def _timeline(page: str) -> list[tuple[str, str, int]]:
    """(link, first day, count) of each bar of the period's chart."""
    section = page[page.index('id="timeline"') :]
    section = section[: section.index("</section>")]
    found = re.findall(r'<a href="([^"]+)" aria-label="[^"]*" data-day="([\d-]+)" data-count="(\d+)">', section)
    return [(html.unescape(link), day, int(count)) for link, day, count in found]


def test_the_period_chart_by_day_week_and_month(
    client: TestClient, tree: dict[str, int], fleet: dict[str, str]
) -> None:
    _login(client)
    page = client.get(f"/statistics?{Q3}").text
    assert "Detections per day" in page
    bars = _timeline(page)
    assert len(bars) == 92 and bars[0][1] == "2025-07-01" and bars[-1][1] == "2025-09-30"
    assert {day: n for _link, day, n in bars if n} == {"2025-07-15": 2, "2025-08-20": 2}
    assert sum(n for _link, _day, n in bars) == int(_figure(page, "detections")[1])
    for link, day, n in bars:
        assert link == f"/detections?from={day}&to={day}"
        if n:
            assert client.get(link).text.count('<tr id="detection-') == n

    # A unit: its bars open its own detections.
    hospital = tree["hospital"]
    bars = _timeline(client.get(f"/statistics?unit={hospital}&{Q3}").text)
    assert {day: n for _link, day, n in bars if n} == {"2025-07-15": 1, "2025-08-20": 2}
    link = next(link for link, day, _n in bars if day == "2025-07-15")
    assert link == f"/detections?from=2025-07-15&to=2025-07-15&unit={hospital}"
    assert client.get(link).text.count('<tr id="detection-') == 1

    # A year: weeks of seven days from the first day (the last one shorter); several years: calendar months.
    year = client.get("/statistics?from=2025-01-01&to=2025-12-31").text
    assert "Detections per week" in year
    weeks = _timeline(year)
    assert len(weeks) == 53 and weeks[-1][0] == "/detections?from=2025-12-31&to=2025-12-31"
    assert weeks[1][0] == "/detections?from=2025-01-08&to=2025-01-14"
    assert sum(n for _link, _day, n in weeks) == 5
    months = _timeline(client.get("/statistics?from=2024-06-10&to=2025-12-31").text)
    assert len(months) == 19 and months[0][0] == "/detections?from=2024-06-10&to=2024-06-30"
    assert [n for link, _day, n in months if n] == [1, 2, 2]  # May, July, August 2025
