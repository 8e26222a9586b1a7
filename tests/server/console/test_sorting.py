"""Sorting the console's lists by a column, on SQLite and PostgreSQL: computers, detections, tasks, quarantined
files and the activity log come back in the order asked for both ways, the pages continue each other in that order,
the column headers keep the filters, the CSV export follows the same order, and an unknown order is the default one.
"""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from garrison.protocol.tasks import QuarantineState
from garrison.server.agents.models import Agent
from garrison.server.audit.models import AuditEvent
from garrison.server.console import sorting
from garrison.server.console.views import audit as audit_view
from garrison.server.console.views import detections as detections_view
from garrison.server.console.views import quarantine as quarantine_view
from garrison.server.console.views import tasks as tasks_view
from garrison.server.db import Database
from garrison.server.detections.models import Detection, Triage
from garrison.server.tasks.models import QuarantinedFile
from tests.server.conftest import agent_auth, detection_event, enroll_agent, enrollment_token
from tests.server.console.test_views import console_login, csrf_of

NEXT = re.compile(r'<a href="([^"]*)">(?:Next|Older) →</a>')
BASE = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def _login(client: TestClient) -> None:
    client.cookies.clear()
    assert console_login(client).status_code == 303
    client.cookies.set("garrison_lang", "en")


def _enroll(client: TestClient, unit: int, hostname: str) -> dict[str, Any]:
    return enroll_agent(client, enrollment_token(client, unit), hostname)


def _rows(page: str, prefix: str) -> list[str]:
    """The ids of a list's rows, in the page's order."""
    return re.findall(rf'<tr id="{prefix}-([^"]+)">', page)


def _get(client: TestClient, url: str, **params: str) -> str:
    answer = client.get(url, params=params or None)  # (empty params would drop the query of ``url``)
    assert answer.status_code == 200, answer.text
    return answer.text


def _all_pages(client: TestClient, url: str, prefix: str) -> list[str]:
    """The rows of every page, following the pager's "next" links from ``url``."""
    found: list[str] = []
    while True:
        page = _get(client, url)
        found += _rows(page, prefix)
        link = NEXT.search(page)
        if not link:
            return found
        url = html.unescape(link[1])


def _header_link(page: str, label: str) -> str:
    """The URL of a sortable column header, found by its label."""
    found = re.search(rf'<th scope="col"[^>]*><a class="sort[^"]*" href="([^"]*)">{re.escape(label)}<', page)
    assert found, f"no sortable header {label!r}"
    return html.unescape(found[1])


def _csv(client: TestClient, url: str, **params: str) -> list[list[str]]:
    answer = client.get(url, params=params)
    assert answer.status_code == 200, answer.text
    return list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))[1:]


def _report(client: TestClient, enrolled: dict[str, Any], **batch: Any) -> None:
    answer = client.post("/api/v1/agent/events", json=batch, headers=agent_auth(enrolled))
    assert answer.status_code == 200, answer.text


# -- the parsing, on its own ---------------------------------------------------------------------------------


def test_unknown_keys_and_directions_give_the_default_order() -> None:
    options = sorting.Sortable(("time", "name"), "time", default_descending=True, descending_first=frozenset({"time"}))
    assert options.parse("", "") == sorting.Sort(options, "time", True)
    assert options.parse("name; DROP TABLE units", "asc") == sorting.Sort(options, "time", True)
    assert options.parse("name", "sideways") == sorting.Sort(options, "time", True)
    name = options.parse("name", "desc")
    assert (name.key, name.descending, name.is_default) == ("name", True, False)
    assert name.query_string() == "sort=name&dir=desc"
    assert options.parse("time", "desc").query_string() == ""  # the default order needs no parameter
    assert name.toggle("name") == "sort=name&dir=asc"
    assert name.toggle("time") == ""  # first click on a time: newest first, the default
    assert options.parse("", "").toggle("name") == "sort=name&dir=asc"
    assert (name.aria("name"), name.aria("time")) == ("descending", "")


# -- computers -----------------------------------------------------------------------------------------------


def test_computers_are_sorted_by_name_unit_state_and_dates(
    client: TestClient, tree: dict[str, int], database: Database
) -> None:
    ids = {
        "bravo": _enroll(client, tree["health"], "bravo")["agent_id"],  # unit "Sở Y tế"
        "alpha": _enroll(client, tree["education"], "alpha")["agent_id"],  # unit "Sở Giáo dục"
        "charlie": _enroll(client, tree["hospital"], "charlie")["agent_id"],  # unit "Bệnh viện"
    }
    host = {v: k for k, v in ids.items()}
    with database.session() as session:
        for agent in session.scalars(select(Agent)):
            offset = {"alpha": 1, "bravo": 3, "charlie": 2}[agent.hostname]
            agent.last_seen_at = datetime.now(UTC) - timedelta(days=offset)  # all offline now
            agent.signature_date = None if agent.hostname == "charlie" else BASE + timedelta(days=offset)
    _login(client)

    def names(**params: str) -> list[str]:
        return [host[i] for i in _rows(_get(client, "/agents", **params), "agent")]

    assert names() == ["alpha", "bravo", "charlie"]  # by name by default, as before
    assert names(sort="name", dir="desc") == ["charlie", "bravo", "alpha"]
    assert names(sort="unit", dir="asc") == ["charlie", "alpha", "bravo"]
    assert names(sort="unit", dir="desc") == ["bravo", "alpha", "charlie"]
    assert names(sort="seen", dir="desc") == ["alpha", "charlie", "bravo"]
    assert names(sort="seen", dir="asc") == ["bravo", "charlie", "alpha"]
    assert names(sort="signatures", dir="asc") == ["charlie", "alpha", "bravo"]  # never reported: the oldest
    assert names(sort="signatures", dir="desc") == ["bravo", "alpha", "charlie"]
    assert names(sort="bogus", dir="up") == ["alpha", "bravo", "charlie"]

    # The state: revoke one, it goes after the offline ones (and before them the other way round).
    csrf = csrf_of(client, f"/agents/{ids['alpha']}")
    revoked = client.post(f"/agents/{ids['alpha']}/revoke", data={"csrf_token": csrf}, follow_redirects=False)
    assert revoked.status_code == 303, revoked.text
    assert names(sort="state", dir="asc") == ["bravo", "charlie", "alpha"]
    assert names(sort="state", dir="desc") == ["alpha", "charlie", "bravo"]

    # A header keeps the filters; the sorted one has an arrow and aria-sort; the form keeps the order.
    page = _get(client, "/agents", state="offline", sort="seen", dir="desc")
    assert '<th scope="col" aria-sort="descending"><a class="sort sorted" href="/agents?state=offline&amp;' in page
    assert '<input type="hidden" name="sort" value="seen">' in page
    assert _header_link(page, "Last seen") == "/agents?state=offline&sort=seen&dir=asc"
    by_unit = _header_link(page, "Unit")
    assert by_unit == "/agents?state=offline&sort=unit&dir=asc"
    assert [host[i] for i in _rows(_get(client, by_unit), "agent")] == ["charlie", "bravo"]  # still offline only

    # The export is in the same order, with the same filters.
    assert 'href="/agents.csv?state=offline&amp;sort=seen&amp;dir=desc"' in page
    rows = _csv(client, "/agents.csv", sort="unit", dir="desc")
    assert [row[0] for row in rows] == ["bravo", "alpha", "charlie"]
    assert [row[0] for row in _csv(client, "/agents.csv", sort="nope")] == ["alpha", "bravo", "charlie"]


# -- detections ----------------------------------------------------------------------------------------------


def test_detections_are_sorted_paged_and_exported_in_the_same_order(
    client: TestClient, tree: dict[str, int], database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detections_view, "PAGE_SIZE", 2)
    first = _enroll(client, tree["health"], "may-b")
    second = _enroll(client, tree["health"], "may-a")
    found = {  # name: (computer, minutes after BASE)
        "Worm.Delta": (first, 1),
        "Adware.Echo": (second, 5),
        "Trojan.Alpha": (first, 3),
        "Backdoor.Bravo": (second, 2),
        "Keylogger.Charlie": (first, 4),
    }
    ids = {}
    for name, (agent, minutes) in found.items():
        event = detection_event(name=name, occurred_at=(BASE + timedelta(minutes=minutes)).isoformat())
        _report(client, agent, detections=[event])
        ids[event["id"]] = name
    with database.session() as session:
        for detection in session.scalars(select(Detection)):
            if detection.name in {"Trojan.Alpha", "Adware.Echo"}:
                detection.triage = Triage.RESOLVED
            if detection.name == "Backdoor.Bravo":
                detection.triage = Triage.FALSE_POSITIVE
    _login(client)

    def names(url: str = "/detections", **params: str) -> list[str]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return [ids[i] for i in _all_pages(client, f"{url}?{query}", "detection")]

    by_time = ["Adware.Echo", "Keylogger.Charlie", "Trojan.Alpha", "Backdoor.Bravo", "Worm.Delta"]
    assert names() == by_time  # newest first by default, over three pages
    assert names(sort="time", dir="asc") == by_time[::-1]
    by_name = sorted(found)
    assert names(sort="name", dir="asc") == by_name
    assert names(sort="name", dir="desc") == by_name[::-1]
    # The computer, then the same tie-breaker (the id) whichever the direction: the reverse order exactly.
    by_computer = names(sort="computer", dir="asc")
    assert [found[n][0]["agent_id"] for n in by_computer] == [second["agent_id"]] * 2 + [first["agent_id"]] * 3
    assert names(sort="computer", dir="desc") == by_computer[::-1]
    by_triage = names(sort="triage", dir="asc")
    assert set(by_triage[:2]) == {"Worm.Delta", "Keylogger.Charlie"} and by_triage[-1] == "Backdoor.Bravo"
    assert names(sort="triage", dir="desc") == by_triage[::-1]

    # Page 2 continues page 1 without repeats; the pager keeps the order.
    one = _get(client, "/detections", sort="name", dir="asc")
    two = _get(client, "/detections", sort="name", dir="asc", page="2")
    assert [ids[i] for i in _rows(one, "detection") + _rows(two, "detection")] == by_name[:4]
    assert 'href="/detections?sort=name&amp;dir=asc&page=2">Next →' in one

    # A header keeps the filters (and drops the page); the order survives the filters form.
    page = _get(client, "/detections", triage="new", page="1")
    link = _header_link(page, "Threat")
    assert link == "/detections?triage=new&sort=name&dir=asc"
    assert [ids[i] for i in _rows(_get(client, link), "detection")] == ["Keylogger.Charlie", "Worm.Delta"]
    assert _header_link(_get(client, link), "Threat") == "/detections?triage=new&sort=name&dir=desc"

    # The CSV, in the order of the pages.
    exported = _csv(client, "/detections.csv", sort="name", dir="desc")
    assert [row[5] for row in exported] == by_name[::-1]
    assert 'href="/detections.csv?sort=name&amp;dir=desc"' in _get(client, "/detections", sort="name", dir="desc")
    assert [row[5] for row in _csv(client, "/detections.csv", sort="size", dir="asc")] == by_time
    assert names(sort="size", dir="asc") == by_time


# -- tasks ---------------------------------------------------------------------------------------------------


def test_tasks_are_sorted_by_start_kind_and_end(
    client: TestClient, tree: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks_view, "PAGE_SIZE", 2)
    _enroll(client, tree["health"], "may-tram")
    _login(client)
    csrf = csrf_of(client, "/tasks/new")
    made = []
    for kind, hours, extra in (("update", 5, {}), ("scan", 72, {}), ("collect", 24, {"path": "/tmp/x"})):
        data = {"csrf_token": csrf, "kind": kind, "target": "unit", "unit_id": str(tree["health"]), "hours": str(hours)}
        answer = client.post("/tasks/new", data={**data, **extra}, follow_redirects=False)
        assert answer.status_code == 303, answer.text
        made.append((kind, answer.headers["location"].split("/tasks/")[1].split("?")[0]))
    kinds = dict((task_id, kind) for kind, task_id in made)

    def listed(**params: str) -> list[str]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return [kinds[i] for i in _all_pages(client, f"/tasks?{query}", "task")]

    assert listed() == ["collect", "scan", "update"]  # newest first by default
    assert listed(sort="created", dir="asc") == ["update", "scan", "collect"]
    assert listed(sort="kind", dir="asc") == ["scan", "update", "collect"]  # in the form's order
    assert listed(sort="kind", dir="desc") == ["collect", "update", "scan"]
    assert listed(sort="expires", dir="asc") == ["update", "collect", "scan"]
    assert listed(sort="expires", dir="desc") == ["scan", "collect", "update"]
    assert listed(sort="expires", dir="ascending") == ["collect", "scan", "update"]

    page = _get(client, "/tasks", kind="scan")
    assert _header_link(page, "Valid until") == "/tasks?kind=scan&sort=expires&dir=desc"  # the latest end first
    assert _header_link(page, "Task") == "/tasks?kind=scan&sort=kind&dir=asc"
    assert [kinds[i] for i in _rows(_get(client, _header_link(page, "Task")), "task")] == ["scan"]
    assert 'href="/tasks?sort=expires&amp;dir=asc&page=2">Next →' in _get(client, "/tasks", sort="expires", dir="asc")

    exported = _csv(client, "/tasks.csv", sort="expires", dir="asc")
    assert [row[-1] for row in exported] == [task_id for _kind, task_id in (made[0], made[2], made[1])]


# -- quarantine ----------------------------------------------------------------------------------------------


def test_quarantined_files_are_sorted_by_each_column(
    client: TestClient, tree: dict[str, int], database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quarantine_view, "PAGE_SIZE", 2)
    first = _enroll(client, tree["health"], "may-b")
    second = _enroll(client, tree["education"], "may-a")
    files = {  # item: (computer, threat, size, minutes after BASE)
        "i1": (first, "Worm.Delta", 300, 1),
        "i2": (second, "Adware.Echo", 100, 4),
        "i3": (first, "Trojan.Alpha", 500, 3),
        "i4": (second, "Backdoor.Bravo", 200, 2),
    }
    hex_id = {item: f"{n:032x}" for n, item in enumerate(files, 1)}  # quarantine ids are 32 hex digits
    label = {v: k for k, v in hex_id.items()}
    for item, (agent, name, size, minutes) in files.items():
        when = (BASE + timedelta(minutes=minutes)).isoformat()
        event = detection_event(
            name=name,
            chain=[],
            size=size,
            occurred_at=when,
            quarantine_id=hex_id[item],
            sha256="c" * 64,
            action_ok=True,
        )
        _report(client, agent, detections=[event])
    with database.session() as session:
        restored = session.scalars(select(QuarantinedFile).where(QuarantinedFile.item_id == hex_id["i2"])).one()
        restored.state = QuarantineState.RESTORED
    _login(client)

    def items(**params: str) -> list[str]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return [label[i] for i in _all_pages(client, f"/quarantine?{query}", "file")]

    assert items(state="all") == ["i2", "i3", "i4", "i1"]  # newest first by default
    assert items(state="all", sort="quarantined", dir="asc") == ["i1", "i4", "i3", "i2"]
    assert items(state="all", sort="name", dir="asc") == ["i2", "i4", "i3", "i1"]
    assert items(state="all", sort="name", dir="desc") == ["i1", "i3", "i4", "i2"]
    assert items(state="all", sort="size", dir="desc") == ["i3", "i1", "i4", "i2"]
    assert items(state="all", sort="size", dir="asc") == ["i2", "i4", "i1", "i3"]
    by_computer = items(state="all", sort="computer", dir="asc")
    assert set(by_computer[:2]) == {"i2", "i4"} and set(by_computer[2:]) == {"i1", "i3"}
    assert items(state="all", sort="computer", dir="desc") == by_computer[::-1]
    assert items(state="all", sort="state", dir="asc")[-1] == "i2"
    assert items(state="all", sort="state", dir="desc")[0] == "i2"
    assert items(state="all", sort="0; --", dir="asc") == ["i2", "i3", "i4", "i1"]

    # The state filter (all but the default) survives a header click.
    page = _get(client, "/quarantine", state="all")
    assert _header_link(page, "Size") == "/quarantine?state=all&sort=size&dir=desc"
    assert _header_link(_get(client, "/quarantine"), "Threat") == "/quarantine?sort=name&dir=asc"
    by_threat = _rows(_get(client, _header_link(_get(client, "/quarantine"), "Threat")), "file")
    assert [label[i] for i in by_threat] == ["i4", "i3"]

    exported = _csv(client, "/quarantine.csv", state="all", sort="size", dir="desc")
    assert [label[row[-1]] for row in exported] == ["i3", "i1", "i4", "i2"]


# -- the activity log ----------------------------------------------------------------------------------------


def test_the_activity_log_is_sorted_by_time_action_and_who(
    client: TestClient, tree: dict[str, int], database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_view, "PAGE_SIZE", 2)
    entries = [  # (who, action, minutes after BASE), on a day of their own
        ("binh", "units.update", 3),
        ("an", "users.create", 1),
        ("cuong", "auth.login", 5),
        ("dung", "units.create", 2),
        ("em", "units.delete", 4),
    ]
    with database.session() as session:
        for name, action, minutes in entries:
            at = BASE + timedelta(minutes=minutes)
            session.add(AuditEvent(at=at, actor_name=name, action=action, target_type="unit", details={}))
    with database.session() as session:
        ids = {
            str(e.id): e.actor_name
            for e in session.scalars(select(AuditEvent).where(AuditEvent.at < BASE.replace(day=2)))
        }
    assert len(ids) == 5
    _login(client)
    day = {"since": "2024-03-01", "until": "2024-03-01"}

    def actors(**params: str) -> list[str]:
        query = "&".join(f"{k}={v}" for k, v in {**day, **params}.items())
        return [ids[i] for i in _all_pages(client, f"/audit?{query}", "event")]

    assert actors() == ["cuong", "em", "binh", "dung", "an"]  # newest first by default
    assert actors(sort="time", dir="asc") == ["an", "dung", "binh", "em", "cuong"]
    assert actors(sort="who", dir="asc") == ["an", "binh", "cuong", "dung", "em"]
    assert actors(sort="who", dir="desc") == ["em", "dung", "cuong", "binh", "an"]
    assert actors(sort="action", dir="asc") == ["cuong", "dung", "em", "binh", "an"]
    assert actors(sort="action", dir="desc") == ["an", "binh", "em", "dung", "cuong"]
    assert actors(sort="who", dir="") == ["cuong", "em", "binh", "dung", "an"]

    page = _get(client, "/audit", **day)
    link = _header_link(page, "Who")
    assert link == "/audit?since=2024-03-01&until=2024-03-01&sort=who&dir=asc"
    assert [ids[i] for i in _rows(_get(client, link), "event")] == ["an", "binh"]
    # The list is boosted by htmx: the header links are plain links inside it, answered with the whole page.
    boosted = client.get(link, headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert boosted.status_code == 200 and [ids[i] for i in _rows(boosted.text, "event")] == ["an", "binh"]

    exported = _csv(client, "/audit.csv", **day, sort="who", dir="desc")
    assert [row[1] for row in exported] == ["em", "dung", "cuong", "binh", "an"]
    assert 'href="/audit.csv?since=2024-03-01&amp;until=2024-03-01&amp;sort=who&amp;dir=desc"' in _get(
        client, "/audit", **day, sort="who", dir="desc"
    )
