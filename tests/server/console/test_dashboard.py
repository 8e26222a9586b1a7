"""The overview's dashboard on SQLite and PostgreSQL: coverage by unit, detections per day, most detected threats
and computers needing action. Each figure is checked against the database and its link is followed: the list
behind it shows exactly the rows counted. A unit administrator sees only their subtree's figures."""

from __future__ import annotations

import html
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from garrison.server.console import i18n
from garrison.server.db import Database
from garrison.server.detections.models import Detection, Triage
from garrison.server.units.models import Unit
from tests.server.console.test_protection_pages import add_agent, add_detection
from tests.server.console.test_views import console_login

AGENT_ROW = '<tr id="agent-'
DETECTION_ROW = '<tr id="detection-'


@pytest.fixture
def dashboard(database: Database, tree: dict[str, int]) -> dict[str, str]:
    """Declared endpoints (health 4, hospital 1, education none), computers in every state, detections.

    Needing action: bv-01 (a detection to review, 45 days old), bv-02 (real-time protection off), bv-kho (not
    connected for 3 days, signatures of 10 days, a detection to review), sgd-01 (detections to review), sgd-02
    (signatures never reported). Not: syt-01 (its detection is resolved), syt-02 (offline for 2 hours only),
    bv-cu (revoked).
    """
    with database.session() as session:
        for key, declared in (("health", 4), ("hospital", 1), ("education", 0)):
            unit = session.get(Unit, tree[key])
            assert unit is not None
            unit.declared_workstations = declared
    hospital, health, education = tree["hospital"], tree["health"], tree["education"]
    ids = {
        "bv-01": add_agent(database, hospital, "bv-01"),
        "bv-02": add_agent(database, hospital, "bv-02", realtime=False),
        "bv-kho": add_agent(
            database, hospital, "bv-kho", seen_ago=timedelta(days=3), signatures_age=timedelta(days=10)
        ),
        "bv-cu": add_agent(database, hospital, "bv-cu", revoked=True, realtime=False),
        "syt-01": add_agent(database, health, "syt-01"),
        "syt-02": add_agent(database, health, "syt-02", seen_ago=timedelta(hours=2)),
        "sgd-01": add_agent(database, education, "sgd-01"),
        "sgd-02": add_agent(database, education, "sgd-02", signatures_age=None),
    }
    trojan = "Win.Trojan.Agent-1"
    add_detection(database, ids["bv-01"], hospital, trojan)
    resolved = [
        add_detection(database, ids["bv-01"], hospital, trojan, ago=timedelta(days=3)),
        add_detection(database, ids["syt-01"], health, "Eicar-Test-Signature", ago=timedelta(days=2)),
    ]
    add_detection(database, ids["bv-kho"], hospital, trojan, ago=timedelta(days=5))
    add_detection(database, ids["sgd-01"], education, "Win.Worm.Other")
    add_detection(database, ids["sgd-01"], education, "Win.Worm.Other", ago=timedelta(days=10))
    add_detection(database, ids["bv-01"], hospital, "Old.Threat", ago=timedelta(days=45))
    with database.session() as session:
        for detection_id in resolved:
            found = session.get(Detection, detection_id)
            assert found is not None
            found.triage = Triage.RESOLVED
    return ids


def _figure(page: str, name: str) -> tuple[str, str]:
    found = re.search(
        rf'<a class="figure" href="([^"]+)" data-figure="{name}">\s*<span class="value[^"]*">([^<]+)<', page
    )
    assert found, page
    return html.unescape(found[1]), found[2].strip()


def _coverage(page: str) -> dict[str, dict[str, tuple[str, str]]]:
    """The coverage table: unit name -> cell -> (link or class, text)."""
    rows = {}
    for row in re.findall(r'<tr id="coverage-\d+">(.*?)</tr>', page, re.DOTALL):
        name = re.search(r'<a href="/units#unit-\d+">([^<]+)</a></span>', row)
        assert name, row
        cells = {
            cell: (html.unescape(target), text)
            for target, cell, text in re.findall(r'<a href="([^"]+)" data-cell="(\w+)">([^<]+)</a>', row)
        }
        coverage = re.search(r'<span class="([^"]*)" data-cell="coverage"[^>]*>([^<]+)</span>', row)
        assert coverage, row
        cells["coverage"] = (coverage[1], coverage[2])
        rows[name[1]] = cells
    return rows


def _threats(page: str) -> list[tuple[str, str, str, str]]:
    section = page[page.index('id="top-threats"') : page.index('id="needing-action"')]
    number = r'\s*<td class="num">(\d+)</td>'
    found = re.findall(r'<td class="threat"><a href="([^"]+)">([^<]+)</a></td>' + number + number, section)
    return [(html.unescape(link), name, n, computers) for link, name, n, computers in found]


def _bars(page: str) -> list[tuple[str, str, int]]:
    return [
        (html.unescape(link), day, int(count))
        for link, day, count in re.findall(
            r'<a href="([^"]+)" aria-label="[^"]*" data-day="([\d-]+)" data-count="(\d+)">', page
        )
    ]


def _local_day(moment: datetime) -> date:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(i18n.DISPLAY_ZONE).date()


def _rows(client: TestClient, link: str, marker: str) -> int:
    page = client.get(link)
    assert page.status_code == 200, link
    return page.text.count(marker)


def test_coverage_by_unit(client: TestClient, tree: dict[str, int], dashboard: dict[str, str]) -> None:
    console_login(client)
    table = _coverage(client.get("/").text)
    # Province: 5 declared (4 + 1); 7 computers not revoked; protected bv-01, syt-01, sgd-01, sgd-02: 80 %.
    province, health, education = tree["province"], tree["health"], tree["education"]
    assert table["Tỉnh Bắc Ninh"] == {
        "declared": (f"/units#unit-{province}", "5"),
        "enrolled": (f"/agents?state=active&unit={province}", "7"),
        "protected": (f"/agents?unit={province}&protected=1", "4"),
        "coverage": ("below-target", "80%"),
    }
    assert table["Sở Y tế"]["enrolled"][1] == "5" and table["Sở Y tế"]["protected"][1] == "2"
    assert table["Sở Y tế"]["coverage"] == ("below-target", "40%")
    # Nothing declared: no percentage.
    assert table["Sở Giáo dục"]["declared"] == (f"/units#unit-{education}", "0")
    assert table["Sở Giáo dục"]["coverage"] == ("muted", "—")
    assert "Bệnh viện" not in table  # two levels only; the whole tree is one click away
    for cells in table.values():
        for cell in ("enrolled", "protected"):
            link, text = cells[cell]
            assert _rows(client, link, AGENT_ROW) == int(text), link
    assert "bv-cu" not in client.get(f"/agents?state=active&unit={health}").text

    client.cookies.clear()
    console_login(client, "yte.admin")
    scoped = _coverage(client.get("/").text)
    assert set(scoped) == {"Sở Y tế", "Bệnh viện"}
    # The hospital declared one endpoint and has one protected computer (bv-01): on target.
    assert scoped["Bệnh viện"]["coverage"] == ("on-target", "100%")
    assert scoped["Bệnh viện"]["enrolled"][1] == "3" and scoped["Sở Y tế"]["protected"][1] == "2"


def test_computers_needing_action(client: TestClient, tree: dict[str, int], dashboard: dict[str, str]) -> None:
    console_login(client)
    page = client.get("/").text
    link, value = _figure(page, "needs-action")
    assert (link, value) == ("/agents?needs=action", "5")
    listing = client.get(link).text
    assert listing.count(AGENT_ROW) == 5
    for host in ("bv-01", "bv-02", "bv-kho", "sgd-01", "sgd-02"):
        assert f'<tr id="agent-{dashboard[host]}">' in listing, host
    # The reasons are said in words, in the list and on the overview.
    assert "Tắt bảo vệ thời gian thực" in listing and "Có phát hiện chưa xem xét" in listing
    section = page[page.index('id="needing-action"') :]
    assert f"/agents/{dashboard['bv-kho']}" in section and f"/agents/{dashboard['syt-02']}" not in section
    # bv-kho needs three things: listed first.
    assert section.index(f"/agents/{dashboard['bv-kho']}") < section.index(f"/agents/{dashboard['bv-02']}")
    assert "Mất kết nối quá 1 ngày" in section
    assert 'href="/agents?needs=action"' in section
    # The filter is kept by the form and the CSV export.
    assert '<input type="hidden" name="needs" value="action">' in listing
    export = client.get("/agents.csv?needs=action").content.decode("utf-8")
    assert sorted(line.split(",")[0] for line in export.removeprefix("\ufeff").splitlines()[1:]) == [
        "bv-01",
        "bv-02",
        "bv-kho",
        "sgd-01",
        "sgd-02",
    ]

    client.cookies.clear()
    console_login(client, "yte.admin")
    scoped = client.get("/").text
    assert _figure(scoped, "needs-action") == ("/agents?needs=action", "3")
    assert client.get("/agents?needs=action").text.count(AGENT_ROW) == 3


def test_most_detected_threats(client: TestClient, tree: dict[str, int], dashboard: dict[str, str]) -> None:
    console_login(client)
    threats = _threats(client.get("/").text)
    # The 45-day-old detection is outside the window; ties would be ordered by name.
    assert [(name, n, computers) for _link, name, n, computers in threats] == [
        ("Win.Trojan.Agent-1", "3", "2"),
        ("Win.Worm.Other", "2", "1"),
        ("Eicar-Test-Signature", "1", "1"),
    ]
    for link, name, n, _computers in threats:
        assert link.startswith("/detections?name=") and "days=30" in link
        listing = client.get(link).text
        assert listing.count(DETECTION_ROW) == int(n), name
        assert f'value="{name}"' in listing  # the name filter is shown in the form
    assert client.get("/detections?name=Old.Threat").text.count(DETECTION_ROW) == 1
    assert client.get("/detections?name=Old.Threat&days=30").text.count(DETECTION_ROW) == 0
    export = client.get("/detections.csv?name=Win.Worm.Other").content.decode("utf-8")
    assert len(export.strip().splitlines()) == 3

    client.cookies.clear()
    console_login(client, "yte.admin")
    scoped = [name for _link, name, _n, _c in _threats(client.get("/").text)]
    assert scoped == ["Win.Trojan.Agent-1", "Eicar-Test-Signature"]


def test_detections_per_day(
    client: TestClient, tree: dict[str, int], dashboard: dict[str, str], database: Database
) -> None:
    # Two detections at the very edges of one of Vietnam's days, one just before it: the database groups by
    # Vietnam's calendar day on SQLite and PostgreSQL alike, and the day filter of the list agrees.
    edge_day = datetime.now(i18n.DISPLAY_ZONE).date() - timedelta(days=7)
    midnight = datetime.combine(edge_day, datetime.min.time(), i18n.DISPLAY_ZONE).astimezone(UTC)
    last_second = midnight + timedelta(hours=23, minutes=59, seconds=59)
    edges = {
        add_detection(database, dashboard["sgd-01"], tree["education"], "Edge"): moment
        for moment in (midnight, last_second, midnight - timedelta(seconds=1))
    }
    with database.session() as session:
        for detection_id, moment in edges.items():
            found = session.get(Detection, detection_id)
            assert found is not None
            found.occurred_at = moment
        stored = session.execute(select(Detection.occurred_at, Detection.unit_id)).all()
    today = datetime.now(i18n.DISPLAY_ZONE).date()
    first = today - timedelta(days=29)
    expected = Counter(d for d in (_local_day(m) for m, _unit in stored) if first <= d <= today)
    assert expected[edge_day] == 2 and expected[edge_day - timedelta(days=1)] == 1

    console_login(client)
    page = client.get("/").text
    bars = _bars(page)
    assert len(bars) == 30
    assert bars[0][1] == first.isoformat() and bars[-1][1] == today.isoformat()
    assert {date.fromisoformat(day): n for _link, day, n in bars if n} == dict(expected)
    for link, day, n in bars:
        assert link == f"/detections?from={day}&to={day}"
        if n:
            assert _rows(client, link, DETECTION_ROW) == n, day
    assert f"/detections?from={first.isoformat()}&amp;to={first.isoformat()}" in page  # the table of numbers
    assert "<svg" in page and "<title" in page and "Phát hiện theo ngày" in page
    # A range of days, both ends included.
    week = f"/detections?from={(edge_day - timedelta(days=1)).isoformat()}&to={edge_day.isoformat()}"
    assert _rows(client, week, DETECTION_ROW) == 3
    # Nonsense dates are ignored rather than refused.
    assert client.get("/detections?from=2026-13-45&to=soon").status_code == 200

    client.cookies.clear()
    console_login(client, "yte.admin")
    health = {tree["health"], tree["hospital"]}
    scoped_expected = Counter(d for d in (_local_day(m) for m, unit in stored if unit in health) if first <= d <= today)
    scoped = {date.fromisoformat(day): n for _link, day, n in _bars(client.get("/").text) if n}
    assert scoped == dict(scoped_expected)


@pytest.mark.parametrize(
    ("language", "words"),
    [
        (
            "vi",
            ["Mức độ bảo vệ theo đơn vị", "Phát hiện theo ngày", "Mã độc phát hiện nhiều nhất", "Máy tính cần xử lý"],
        ),
        (
            "en",
            ["Protection coverage by unit", "Detections per day", "Most detected threats", "Computers needing action"],
        ),
    ],
)
def test_dashboard_in_both_languages(
    client: TestClient, tree: dict[str, int], dashboard: dict[str, str], language: str, words: list[str]
) -> None:
    console_login(client)
    client.cookies.set("garrison_lang", language)
    page = client.get("/").text
    for word in words:
        assert word in page, word


def test_an_empty_dashboard_reads_well(client: TestClient, tree: dict[str, int]) -> None:
    console_login(client)
    page = client.get("/").text
    assert _figure(page, "needs-action") == ("/agents?needs=action", "0")
    assert "Hiện không có máy tính nào cần xử lý." in page
    assert "Không có phát hiện nào trong 30 ngày qua" in page
    assert all(n == 0 for _link, _day, n in _bars(page))
