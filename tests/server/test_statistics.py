"""Statistics of a unit subtree over a period: every figure against a small fleet built through the real APIs."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import Engine, func, select

from garrison.server.agents.models import Agent
from garrison.server.console import i18n
from garrison.server.db import Database, utcnow
from garrison.server.detections.models import Detection
from garrison.server.reports import history, statistics
from garrison.server.reports.models import EndpointState
from garrison.server.settings import ServerSettings
from garrison.server.units.models import Unit, UnitKind
from tests.server.conftest import agent_auth, detection_event, enroll_agent, enrollment_token, login
from tests.server.console.test_views import console_login

VN = statistics.ZONE
Q1_2026 = statistics.quarter_bounds(2026, 1)


def _at(text: str) -> str:
    """A time of Vietnam's day, in UTC as agents send it (on SQLite the server stores an offset's wall clock)."""
    return datetime.fromisoformat(text).replace(tzinfo=VN).astimezone(UTC).isoformat()


def _beat(client: TestClient, enrolled: dict[str, Any], hostname: str, **inventory: Any) -> None:
    body = {"inventory": {"hostname": hostname, "os": "Linux", **inventory}}
    answer = client.post("/api/v1/agent/heartbeat", json=body, headers=agent_auth(enrolled))
    assert answer.status_code == 200, answer.text


def _send(client: TestClient, enrolled: dict[str, Any], *events: dict[str, Any]) -> list[str]:
    batch = [detection_event(**event) for event in events]
    answer = client.post("/api/v1/agent/events", json={"detections": batch}, headers=agent_auth(enrolled))
    assert answer.status_code == 200, answer.text
    return [event["id"] for event in batch]


@pytest.fixture
def fleet(client: TestClient, database: Database, tree: dict[str, int]) -> dict[str, Any]:
    """Declared endpoints, five computers in three units (one revoked) and detections in and around Q1 2026."""
    with database.session() as session:
        for unit, counts in (
            (tree["health"], (2, 10, 0)),
            (tree["hospital"], (1, 5, 1)),
            (tree["education"], (0, 3, 0)),
        ):
            row = session.get(Unit, unit)
            assert row is not None
            row.declared_servers, row.declared_workstations, row.declared_other = counts
    fresh = utcnow().isoformat()
    old_10, old_20 = ((utcnow() - timedelta(days=d)).isoformat() for d in (10, 20))
    health, hospital, education = (enrollment_token(client, tree[u]) for u in ("health", "hospital", "education"))
    a1 = enroll_agent(client, health, "yte-01")
    a2 = enroll_agent(client, hospital, "bv-01")
    a3 = enroll_agent(client, hospital, "bv-02")
    a4 = enroll_agent(client, education, "gd-01")
    a5 = enroll_agent(client, education, "gd-02")
    _beat(client, a1, "yte-01", realtime_enabled=True, firewall_enabled=True, signature_date=fresh)
    _beat(client, a2, "bv-01", realtime_enabled=False, firewall_enabled=False, signature_date=old_10)
    _beat(client, a3, "bv-02", realtime_enabled=True, signature_date=old_20)
    _beat(client, a4, "gd-01", realtime_enabled=True, firewall_enabled=True)
    _beat(client, a5, "gd-02", realtime_enabled=True, firewall_enabled=True, signature_date=fresh)

    ids: dict[str, str] = {}
    ids["d1"], ids["d2"], ids["d8"], ids["d9"] = _send(
        client,
        a1,
        {"occurred_at": _at("2026-01-10T09:00:00"), "name": "Eicar-Test-Signature", "kind": "builtin"},
        {"occurred_at": _at("2026-02-01T09:00:00"), "name": "Eicar-Test-Signature", "kind": "builtin",
         "action": "delete"},
        {"occurred_at": _at("2026-04-01T00:00:00"), "name": "Eicar-Test-Signature", "kind": "builtin"},  # after
        {"occurred_at": _at("2025-12-15T10:00:00"), "name": "Trojan.X", "kind": "clamav", "action": "report"},
    )  # fmt: skip
    ids["d3"], ids["d4"] = _send(
        client,
        a2,
        {"occurred_at": _at("2026-02-10T10:00:00"), "name": "Trojan.X", "kind": "clamav", "action": "report"},
        {"occurred_at": _at("2026-02-11T10:00:00"), "name": "Trojan.X", "kind": "clamav", "action_ok": False},
    )
    ids["d5"], ids["d6"] = _send(
        client,
        a3,
        {"occurred_at": _at("2026-03-01T08:00:00"), "name": "Win.Test", "kind": "yara", "action": "report"},
        {"occurred_at": _at("2026-03-02T08:00:00"), "name": "Tool.Harmless", "kind": "yara", "action": "report"},
    )
    ids["d7"], ids["d10"] = _send(
        client,
        a4,
        {"occurred_at": _at("2026-03-31T23:00:00"), "name": "Eicar-Test-Signature", "kind": "builtin"},
        {"occurred_at": _at("2025-12-20T10:00:00"), "name": "Eicar-Test-Signature", "kind": "builtin"},
    )
    headers = {"X-CSRF-Token": login(client)}
    for detection, triage in (("d5", "resolved"), ("d6", "false_positive")):
        answer = client.patch(f"/api/v1/detections/{ids[detection]}", json={"triage": triage}, headers=headers)
        assert answer.status_code == 200, answer.text
    assert client.post(f"/api/v1/agents/{a5['agent_id']}/revoke", headers=headers).status_code == 200
    client.cookies.clear()

    with database.session() as session:
        enrolled = datetime(2025, 11, 1, tzinfo=UTC)
        for enrolled_agent in (a1, a3, a4, a5):
            agent = session.get(Agent, enrolled_agent["agent_id"])
            assert agent is not None
            agent.enrolled_at = enrolled
        second = session.get(Agent, a2["agent_id"])
        third = session.get(Agent, a3["agent_id"])
        assert second is not None and third is not None
        second.enrolled_at = datetime(2026, 2, 1, tzinfo=UTC)  # during the quarter: not enrolled at its start
        third.last_seen_at = utcnow() - timedelta(hours=2)  # offline
        resolved = session.get(Detection, ids["d5"])
        assert resolved is not None
        resolved.triaged_at = datetime.fromisoformat(_at("2026-03-01T09:00:00"))  # an hour after it was found
    return {"agents": [a1, a2, a3, a4, a5], "detections": ids, **tree}


def _get(client: TestClient, path: str, username: str = "admin", **params: Any) -> Any:
    client.cookies.clear()
    login(client, username)
    answer = client.get(path, params=params)
    client.cookies.clear()
    return answer


def _q1(**params: Any) -> dict[str, Any]:
    return {"start": "2026-01-01", "end": "2026-04-01", **params}


def test_every_figure_of_the_whole_province(client: TestClient, fleet: dict[str, Any]) -> None:
    answer = _get(client, "/api/v1/statistics", **_q1())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    endpoints = {name: figure["value"] for name, figure in body["endpoints"].items()}
    assert endpoints == {
        "declared": 22,
        "declared_servers": 3,
        "declared_workstations": 18,
        "declared_other": 1,
        "active": 4,
        "online": 3,  # yte-01, bv-01, gd-01 (bv-02 is offline, gd-02 revoked)
        "protected": 2,  # yte-01, gd-01: online with real-time protection on
        "realtime_on": 3,
        "firewall_on": 2,
        "firewall_unknown": 1,
        "signatures_7": 3,  # bv-01 (10 days), bv-02 (20 days), gd-01 (never said)
        "signatures_15": 2,
    }
    figures = {name: (f["value"], f["previous"], f["difference"]) for name, f in body["detections"].items()}
    assert figures == {
        "enrolled": (5, 4, 1),  # gd-02 was revoked after the quarter; bv-01 enrolled during it
        "detections": (7, 2, 5),
        "names": (4, 2, 2),
        "infected_endpoints": (4, 2, 2),  # the false alarm alone does not make bv-02 infected, Win.Test does
        "removed": (3, 1, 2),
        "quarantined": (2, 1, 1),
        "deleted": (1, 0, 1),
        "action_failed": (1, 0, 1),
        "resolved": (1, 0, 1),
        "outstanding": (2, 1, 1),
        "false_positives": (1, 0, 1),
    }
    assert [(n["name"], n["detections"], n["computers"]) for n in body["by_name"]] == [
        ("Eicar-Test-Signature", 3, 2),
        ("Trojan.X", 2, 1),
        ("Tool.Harmless", 1, 1),
        ("Win.Test", 1, 1),
    ]
    assert [(k["name"], k["detections"], k["computers"]) for k in body["by_kind"]] == [
        ("builtin", 3, 2),
        ("clamav", 2, 1),
        ("yara", 2, 1),
    ]
    # Three removals by the agent (0 s) and one resolved after an hour.
    assert body["time_to_removal"] == {"count": 4, "median_seconds": 0.0, "mean_seconds": 900.0}
    assert body["period"]["start"].startswith("2025-12-31T17:00:00")
    assert body["period"]["previous_start"].startswith("2025-10-02T17:00:00")
    # Evidence: the console lists with the filters they accept.
    assert body["endpoints"]["online"]["evidence"] == "/agents?state=online"
    assert body["endpoints"]["signatures_15"]["evidence"] == "/agents?signatures=15"
    assert body["endpoints"]["firewall_on"]["evidence"] == "/agents?firewall=on"
    assert body["detections"]["detections"]["evidence"] == "/detections?from=2026-01-01&to=2026-03-31"
    assert body["detections"]["false_positives"]["evidence"] == (
        "/detections?from=2026-01-01&to=2026-03-31&triage=false_positive"
    )
    assert body["detections"]["removed"]["evidence"] == "/detections?from=2026-01-01&to=2026-03-31&outcome=removed"
    assert body["detections"]["infected_endpoints"]["evidence"] == (
        "/agents?infected_from=2026-01-01&infected_to=2026-03-31"
    )
    assert body["detections"]["enrolled"]["evidence"] is None  # the quarter is over: today's list differs
    assert body["by_name"][1]["evidence"] == "/detections?from=2026-01-01&to=2026-03-31&name=Trojan.X"


def test_a_unit_subtree_and_the_median_time_to_removal(client: TestClient, fleet: dict[str, Any]) -> None:
    body = _get(client, "/api/v1/statistics", **_q1(unit_id=fleet["hospital"])).json()
    assert body["endpoints"]["declared"]["value"] == 7
    assert body["endpoints"]["active"]["value"] == 2
    assert body["endpoints"]["online"] == {
        "value": 1,
        "previous": None,  # nothing recorded by the previous period's end
        "evidence": f"/agents?state=online&unit={fleet['hospital']}",
    }
    assert body["detections"]["detections"]["value"] == 4
    assert body["detections"]["detections"]["evidence"] == (
        f"/detections?from=2026-01-01&to=2026-03-31&unit={fleet['hospital']}"
    )
    assert body["time_to_removal"] == {"count": 1, "median_seconds": 3600.0, "mean_seconds": 3600.0}


def test_a_unit_admin_sees_only_their_subtree(client: TestClient, fleet: dict[str, Any]) -> None:
    for username in ("yte.admin", "yte.audit"):
        answer = _get(client, "/api/v1/statistics", username, **_q1())
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["endpoints"]["declared"]["value"] == 19  # Sở Y tế and Bệnh viện
        assert body["endpoints"]["active"]["value"] == 3
        assert body["detections"]["detections"]["value"] == 6
        assert body["detections"]["detections"]["evidence"] == "/detections?from=2026-01-01&to=2026-03-31"
        assert _get(client, "/api/v1/statistics", username, **_q1(unit_id=fleet["education"])).status_code == 404
        assert _get(client, "/api/v1/statistics", username, **_q1(unit_id=fleet["province"])).status_code == 404
    assert client.get("/api/v1/statistics").status_code == 401


def test_the_service_and_the_previous_period(database: Database, fleet: dict[str, Any]) -> None:
    start, end = Q1_2026
    with database.session() as session:
        stats = statistics.compute(session, statistics.Scope.whole_tree(), None, start, end)
        # The month before the quarter's last month has only bv-01's two detections and yte-01's deletion.
        february = statistics.compute(
            session,
            statistics.Scope.whole_tree(),
            None,
            datetime(2026, 1, 31, 17, tzinfo=UTC),
            datetime(2026, 2, 28, 17, tzinfo=UTC),
        )
    assert stats.trend.detections == stats.current.detections - stats.previous.detections == 5
    assert february.current.detections == 3
    assert february.previous_start == datetime(2026, 1, 3, 17, tzinfo=UTC)
    assert february.previous.detections == 1  # yte-01's quarantine on 10 January
    assert february.trend.removed == 0
    # The previous period's names, types and time to removal are those of the previous period computed alone.
    with database.session() as session:
        january = statistics.compute(
            session, statistics.Scope.whole_tree(), None, february.previous_start, february.start
        )
    names = {n.name for n in february.by_name}
    assert february.previous_by_name == [n for n in january.by_name if n.name in names]
    assert february.previous_by_name  # yte-01's quarantined name was found in both
    assert february.previous_by_kind == january.by_kind
    assert february.previous_time_to_removal == january.time_to_removal


def test_a_snapshot_reads_back_equal(database: Database, fleet: dict[str, Any]) -> None:
    """What a submitted report freezes (``to_json``, stored as JSON) gives back the same statistics."""
    with database.session() as session:
        stats = statistics.compute(session, statistics.Scope.whole_tree(), None, *Q1_2026)
    stored = json.loads(json.dumps(stats.to_json()))
    assert statistics.Statistics.from_json(stored) == stats
    assert stats.by_name and stats.current.detections > 0  # the comparison covers real figures


def test_bad_periods(client: TestClient, fleet: dict[str, Any]) -> None:
    for params in ({"start": "2026-04-01", "end": "2026-01-01"}, {"start": "2026-01-01"}, {"start": "x", "end": "y"}):
        answer = _get(client, "/api/v1/statistics", **params)
        assert answer.status_code == 400, answer.text
    default = _get(client, "/api/v1/statistics").json()
    first, after = statistics.quarter_bounds(*statistics.current_quarter())
    assert datetime.fromisoformat(default["period"]["start"]) == first
    assert datetime.fromisoformat(default["period"]["end"]) == after


@pytest.mark.parametrize(
    ("year", "quarter", "start", "end"),
    [
        (2026, 1, "2026-01-01", "2026-04-01"),
        (2026, 2, "2026-04-01", "2026-07-01"),
        (2026, 3, "2026-07-01", "2026-10-01"),
        (2025, 4, "2025-10-01", "2026-01-01"),  # Q4 ends on 1 January of the next year
    ],
)
def test_quarter_bounds(year: int, quarter: int, start: str, end: str) -> None:
    first, after = statistics.quarter_bounds(year, quarter)
    assert first == datetime.fromisoformat(start).replace(tzinfo=VN)
    assert after == datetime.fromisoformat(end).replace(tzinfo=VN)
    assert first.tzinfo == UTC
    assert statistics.quarter_bounds(year, quarter, UTC)[1] == datetime.fromisoformat(end).replace(tzinfo=UTC)
    with pytest.raises(ValueError, match="quarter"):
        statistics.quarter_bounds(year, 5)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2025, 12, 31, 16, 59, tzinfo=UTC), (2025, 4)),
        (datetime(2025, 12, 31, 17, 0, tzinfo=UTC), (2026, 1)),  # already 1 January in Vietnam
        (datetime(2026, 6, 30, 12, tzinfo=UTC), (2026, 2)),
    ],
)
def test_current_quarter(now: datetime, expected: tuple[int, int]) -> None:
    assert statistics.current_quarter(now) == expected


def test_csv_and_xlsx_hold_the_same_numbers(client: TestClient, fleet: dict[str, Any]) -> None:
    body = _get(client, "/api/v1/statistics", **_q1()).json()
    expected: dict[str, list[Any]] = {name: [f["value"], None, None] for name, f in body["endpoints"].items()}
    expected |= {name: [f["value"], f["previous"], f["difference"]] for name, f in body["detections"].items()}
    timing = body["time_to_removal"]
    expected |= {
        "time_count": [timing["count"], None, None],
        "time_median": [timing["median_seconds"], None, None],
        "time_mean": [timing["mean_seconds"], None, None],
    }
    names = [[n["name"], n["detections"], n["computers"]] for n in body["by_name"]]
    kinds = [[k["name"], k["detections"], k["computers"]] for k in body["by_kind"]]

    answer = _get(client, "/api/v1/statistics.csv", **_q1(lang="en"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.content.startswith(b"\xef\xbb\xbf")
    blocks = answer.content.decode("utf-8-sig").split("\r\n\r\n")
    summary = list(csv.reader(io.StringIO(blocks[1])))
    assert summary[0] == ["Code", "Figure", "Value", "Previous period", "Difference"]

    def number(text: str) -> Any:
        return None if text == "" else float(text) if "." in text else int(text)

    assert {row[0]: [number(v) for v in row[2:]] for row in summary[1:]} == expected
    for block, rows in ((blocks[2], names), (blocks[3], kinds)):
        parsed = list(csv.reader(io.StringIO(block.strip())))[1:]
        assert [[r[0], int(r[1]), int(r[2])] for r in parsed] == rows

    answer = _get(client, "/api/v1/statistics.xlsx", **_q1())
    assert answer.status_code == 200, answer.text
    book = load_workbook(io.BytesIO(answer.content))
    assert book.sheetnames == ["Tổng hợp", "Theo tên mã độc", "Theo loại"]
    sheet = book["Tổng hợp"]
    parsed_rows = {row[0]: list(row[2:5]) for row in sheet.iter_rows(min_row=4, values_only=True)}
    assert parsed_rows == expected
    for title, rows in (("Theo tên mã độc", names), ("Theo loại", kinds)):
        assert [list(r) for r in book[title].iter_rows(min_row=2, values_only=True)] == rows


def test_exports_never_hold_formulas(client: TestClient, database: Database, fleet: dict[str, Any]) -> None:
    _send(
        client,
        fleet["agents"][0],
        {"occurred_at": _at("2026-02-02T09:00:00"), "name": '=HYPERLINK("http://x")', "kind": "yara"},
    )
    text = _get(client, "/api/v1/statistics.csv", **_q1()).content.decode("utf-8-sig")
    assert "'=HYPERLINK" in text
    book = load_workbook(io.BytesIO(_get(client, "/api/v1/statistics.xlsx", **_q1()).content))
    cells = [row[0] for row in book["Theo tên mã độc"].iter_rows(min_row=2, values_only=True)]
    assert '=HYPERLINK("http://x")' in cells
    assert all(c.data_type == "s" for c in book["Theo tên mã độc"]["A"])


def test_firewall_column_follows_the_heartbeat(client: TestClient, database: Database, fleet: dict[str, Any]) -> None:
    a1 = fleet["agents"][0]
    _beat(client, a1, "yte-01", realtime_enabled=True)
    with database.session() as session:
        agent = session.scalar(select(Agent).where(Agent.id == a1["agent_id"]))
        assert agent is not None and agent.firewall_enabled is None


def test_a_past_period_gives_the_endpoints_recorded_at_its_end(
    client: TestClient, database: Database, fleet: dict[str, Any]
) -> None:
    """Online, protected, firewall and signature figures of a past quarter are the last ones recorded in it, not
    today's; before anything was recorded, and for the current period, they are the state now."""
    whole = statistics.Scope.whole_tree()
    end_of_march = datetime(2026, 3, 30, 9, tzinfo=UTC)
    with database.session() as session:
        before = statistics.compute(session, whole, None, *Q1_2026)
        assert before.endpoints_day is None and before.previous_endpoints is None  # nothing recorded yet
        history.record(session, datetime(2025, 12, 20, 9, tzinfo=UTC))  # in the previous period
        history.record(session, end_of_march - timedelta(days=5))
        history.record(session, end_of_march)
        assert history.record(session, end_of_march) == date(2026, 3, 30)  # the day's rows replaced, not added
        units = session.scalar(select(func.count()).select_from(Unit))
        assert session.scalar(select(func.count()).select_from(EndpointState)) == 3 * units
        as_recorded = statistics.compute(session, whole, None, *Q1_2026, now=end_of_march)
        session.commit()
    assert as_recorded.endpoints_day is None  # the period had not ended then: the state at that moment
    # Later, every computer is revoked: today's state changes, the first quarter's does not.
    with database.session() as session:
        for agent in session.scalars(select(Agent)):
            agent.revoked = True
        session.commit()
    with database.session() as session:
        past = statistics.compute(session, whole, None, *Q1_2026)
        current = statistics.compute(session, whole, None, *statistics.quarter_bounds(*statistics.current_quarter()))
        health = statistics.compute(session, whole, fleet["health"], *Q1_2026)
    assert past.endpoints_day == date(2026, 3, 30)
    assert past.endpoints == as_recorded.endpoints and past.endpoints.active == 4
    assert past.previous_endpoints_day == date(2025, 12, 20) and past.previous_endpoints is not None
    assert current.endpoints_day is None and current.endpoints.active == 0
    assert health.endpoints.active == 3 and health.endpoints.declared == 2 + 10 + 1 + 5 + 1  # yte-01, bv-01, bv-02
    # A snapshot keeps all of it.
    assert statistics.Statistics.from_json(json.loads(json.dumps(past.to_json()))) == past


def test_server_processes_recording_the_same_day_at_once_keep_one_row_per_unit(
    fresh_engine: Engine, tmp_path: Path
) -> None:
    """Several server processes run the recording pass; two replacing the same day at once must not both insert."""
    database = Database(fresh_engine)
    with database.session() as session:
        for name in ("Tỉnh", "Sở Y tế", "Sở Tài chính"):
            unit = Unit(name=name, kind=UnitKind.DEPARTMENT, path="")
            session.add(unit)
            session.flush()
            unit.path = f"/{unit.id}/"
        session.commit()
    settings = ServerSettings(data_dir=tmp_path)
    start = threading.Barrier(6)
    failures: list[BaseException] = []

    def record() -> None:
        start.wait()
        try:
            history.record_pass(database, settings)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=record) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with database.session() as session:
        rows = session.execute(select(EndpointState.unit_id, func.count()).group_by(EndpointState.unit_id)).all()
    assert sorted(count for _unit, count in rows) == [1, 1, 1]


@pytest.mark.parametrize("unit", [None, "health", "hospital"])
def test_every_detection_figure_opens_the_list_of_what_it_counted(
    client: TestClient, fleet: dict[str, Any], unit: str | None
) -> None:
    """Following a figure's evidence link shows as many detections as the figure says (the page's total)."""
    params = _q1(unit_id=fleet[unit]) if unit else _q1()
    body = _get(client, "/api/v1/statistics", **params).json()
    linked = {
        code: figure
        for code, figure in body["detections"].items()
        if figure["evidence"] and figure["evidence"].startswith("/detections")
    }
    outcomes = {"removed", "quarantined", "deleted", "action_failed", "resolved", "outstanding", "false_positives"}
    assert set(linked) == {"detections", "names", *outcomes}
    assert sum(body["detections"][code]["value"] for code in outcomes) > 0  # the comparison is not only of zeros
    console_login(client)
    client.cookies.set(i18n.LANGUAGE_COOKIE, "en")
    for code, figure in linked.items():
        if code == "names":
            continue  # distinct names: the list shows their detections
        page = client.get(figure["evidence"])
        assert page.status_code == 200, (code, page.text)
        total = re.search(r"<p class=\"muted\">([\d,]+) detections</p>", page.text)
        assert total is not None, code
        assert int(total[1].replace(",", "")) == figure["value"], (code, figure)
    # Computers: the list's count is the figure's.
    infected = body["detections"]["infected_endpoints"]
    computers = {code: figure for code, figure in body["endpoints"].items() if not code.startswith("declared")}
    assert all(figure["evidence"] for figure in computers.values())  # nothing recorded: the state now, listed
    assert infected["value"] > 0 and any(figure["value"] for figure in computers.values())
    for code, figure in [*computers.items(), ("infected_endpoints", infected)]:
        page = client.get(figure["evidence"])
        total = re.search(r"<p class=\"muted\">([\d,]+) computers</p>", page.text)
        assert total is not None, code
        assert int(total[1].replace(",", "")) == figure["value"], (code, figure)
    for name in body["by_name"]:
        page = client.get(name["evidence"])
        total = re.search(r"<p class=\"muted\">([\d,]+) detections</p>", page.text)
        assert total is not None and int(total[1].replace(",", "")) == name["detections"], name
