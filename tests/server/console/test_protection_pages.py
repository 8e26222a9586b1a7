"""Console pages of enrollment tokens, computers (agents) and detections, and the overview's figures, on SQLite
and PostgreSQL: rendering in both languages, scope (404 outside the subtree), CSRF, CSV exports, figures."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from garrison.server import tls
from garrison.server.agents.models import Agent, EnrollmentToken
from garrison.server.db import Database, utcnow
from garrison.server.detections.models import Detection, Triage
from garrison.server.settings import ServerSettings
from tests.server.console.test_views import console_login, csrf_of

COMMAND = re.compile(r"garrison agent enroll --server (\S+) --token (gse_\S+) --fingerprint (\S+?)</code>")


def add_agent(
    database: Database,
    unit_id: int,
    hostname: str,
    *,
    seen_ago: timedelta | None = timedelta(seconds=10),
    realtime: bool = True,
    signatures_age: timedelta | None = timedelta(days=1),
    revoked: bool = False,
) -> str:
    now = utcnow()
    agent_id = str(uuid.uuid4())
    with database.session() as session:
        session.add(
            Agent(
                id=agent_id,
                unit_id=unit_id,
                secret_hash="0" * 64,
                hostname=hostname,
                os="windows",
                os_version="10",
                agent_version="0.1.0",
                last_seen_at=now - seen_ago if seen_ago is not None else None,
                realtime_enabled=realtime,
                signature_date=now - signatures_age if signatures_age is not None else None,
                inventory={"hostname": hostname, "ips": ["10.0.0.7"], "engine_version": "1.4.2"},
                revoked=revoked,
                revoked_at=now if revoked else None,
            )
        )
    return agent_id


def add_detection(
    database: Database, agent_id: str, unit_id: int, name: str, *, ago: timedelta = timedelta(hours=1)
) -> str:
    detection_id = str(uuid.uuid4())
    with database.session() as session:
        session.add(
            Detection(
                id=detection_id,
                agent_id=agent_id,
                unit_id=unit_id,
                occurred_at=utcnow() - ago,
                path=r"C:\Users\ke.toan\Downloads\hoadon.zip",
                chain=["hoadon.zip", "invoice.exe"],
                name=name,
                kind="virus",
                sha256="a" * 64,
                md5="b" * 32,
                size=1234,
                action="quarantine",
                triage=Triage.NEW,
            )
        )
    return detection_id


@pytest.fixture
def fleet(database: Database, tree: dict[str, int]) -> dict[str, str]:
    """Computers of the health department (online, offline, stale, revoked) and one of education; detections."""
    ids = {
        "online": add_agent(database, tree["hospital"], "bv-ketoan-01"),
        "unprotected": add_agent(database, tree["health"], "syt-vanthu", realtime=False, signatures_age=None),
        "offline": add_agent(
            database, tree["health"], "syt-giamdoc", seen_ago=timedelta(days=2), signatures_age=timedelta(days=10)
        ),
        "stale": add_agent(
            database, tree["hospital"], "bv-kho", seen_ago=timedelta(days=30), signatures_age=timedelta(days=40)
        ),
        "revoked": add_agent(database, tree["hospital"], "bv-cu", revoked=True, signatures_age=timedelta(days=90)),
        "education": add_agent(database, tree["education"], "sgd-server"),
    }
    ids["detection"] = add_detection(database, ids["online"], tree["hospital"], "Win.Trojan.Agent-1")
    ids["old_detection"] = add_detection(
        database, ids["offline"], tree["health"], "Eicar-Test-Signature", ago=timedelta(days=45)
    )
    ids["education_detection"] = add_detection(database, ids["education"], tree["education"], "Win.Worm.Other")
    return ids


@pytest.mark.parametrize("language", ["vi", "en"])
def test_enrollment_tokens_page(
    client: TestClient, tree: dict[str, int], settings: ServerSettings, database: Database, language: str
) -> None:
    pin = tls.ensure_self_signed(settings.data_dir, ["localhost"]).fingerprint
    console_login(client)
    client.cookies.set("garrison_lang", language)
    page = client.get("/enrollment")
    assert page.status_code == 200
    assert ("Mã đăng ký máy" if language == "vi" else "Enrollment tokens") in page.text
    csrf = csrf_of(client, "/enrollment")
    form = {"csrf_token": csrf, "unit_id": str(tree["hospital"]), "name": "Phòng Kế toán", "days": "7", "max_uses": "5"}
    made = client.post("/enrollment", data=form)
    assert made.status_code == 200, made.text
    found = COMMAND.search(made.text)
    assert found, made.text
    assert found[1] == "https://testserver" and found[3] == pin
    token = found[2]
    with database.session() as session:
        row = session.scalars(select(EnrollmentToken)).one()
        assert row.unit_id == tree["hospital"] and row.max_uses == 5 and not row.revoked
        token_id = row.id
    # Shown once: the list never shows the token again.
    listed = client.get("/enrollment").text
    assert "Phòng Kế toán" in listed and token not in listed and "0 / 5" in listed

    bad = client.post("/enrollment", data={**form, "days": "400"})
    assert bad.status_code == 400
    assert ("từ 1 đến 365" if language == "vi" else "from 1 to 365") in bad.text

    assert client.post(f"/enrollment/{token_id}/revoke", data={}).status_code == 403
    revoked = client.post(f"/enrollment/{token_id}/revoke", data={"csrf_token": csrf}, follow_redirects=False)
    assert revoked.status_code == 303
    with database.session() as session:
        assert session.get(EnrollmentToken, token_id).revoked  # type: ignore[union-attr]
    assert ("Đã thu hồi" if language == "vi" else "Revoked") in client.get("/enrollment").text


def test_enrollment_without_a_known_certificate_says_so(client: TestClient, tree: dict[str, int]) -> None:
    console_login(client)
    csrf = csrf_of(client, "/enrollment")
    form = {"csrf_token": csrf, "unit_id": str(tree["health"]), "name": "Văn phòng", "days": "3", "max_uses": ""}
    made = client.post("/enrollment", data=form)
    assert made.status_code == 200
    assert "--fingerprint &lt;SHA256&gt;" in made.text
    assert made.text.count("&lt;SHA256&gt;") == 2  # in the command and in the explanation, escaped
    assert "garrison server fingerprint --tls-cert" in made.text


def test_enrollment_scope(client: TestClient, tree: dict[str, int], database: Database) -> None:
    console_login(client)
    csrf = csrf_of(client, "/enrollment")
    base = {"csrf_token": csrf, "days": "7", "max_uses": ""}
    client.post("/enrollment", data={**base, "unit_id": str(tree["education"]), "name": "Giáo dục"})
    client.post("/enrollment", data={**base, "unit_id": str(tree["hospital"]), "name": "Bệnh viện A"})
    with database.session() as session:
        ids = {t.name: t.id for t in session.scalars(select(EnrollmentToken))}
    client.cookies.clear()
    console_login(client, "yte.admin")
    listed = client.get("/enrollment").text
    assert "Bệnh viện A" in listed and "Giáo dục" not in listed
    csrf = csrf_of(client, "/enrollment")
    elsewhere = client.post(
        "/enrollment", data={**base, "csrf_token": csrf, "unit_id": str(tree["education"]), "name": "x"}
    )
    assert elsewhere.status_code == 404
    gone = client.post(f"/enrollment/{ids['Giáo dục']}/revoke", data={"csrf_token": csrf})
    assert gone.status_code == 404 and "nằm ngoài phạm vi bạn quản lý" in gone.text
    client.cookies.clear()
    console_login(client, "yte.audit")
    page = client.get("/enrollment").text
    assert "Bệnh viện A" in page and 'action="/enrollment"' not in page
    csrf = csrf_of(client, "/enrollment")
    refused = client.post(f"/enrollment/{ids['Bệnh viện A']}/revoke", data={"csrf_token": csrf})
    assert refused.status_code == 403


@pytest.mark.parametrize("language", ["vi", "en"])
def test_agents_list_filters_csv_and_detail(
    client: TestClient, tree: dict[str, int], fleet: dict[str, str], language: str
) -> None:
    console_login(client)
    client.cookies.set("garrison_lang", language)
    page = client.get("/agents")
    assert page.status_code == 200
    for host in ("bv-ketoan-01", "syt-vanthu", "syt-giamdoc", "bv-kho", "bv-cu", "sgd-server"):
        assert host in page.text
    offline = "Mất kết nối từ" if language == "vi" else "Offline since"
    assert offline in page.text
    online = client.get("/agents?state=online").text
    assert "bv-ketoan-01" in online and "syt-giamdoc" not in online and "bv-cu" not in online
    revoked = client.get("/agents?state=revoked").text
    assert "bv-cu" in revoked and "bv-ketoan-01" not in revoked
    in_health = client.get(f"/agents?unit={tree['health']}").text
    assert "bv-kho" in in_health and "sgd-server" not in in_health
    in_hospital = client.get(f"/agents?unit={tree['hospital']}").text
    assert "bv-kho" in in_hospital and "syt-vanthu" not in in_hospital
    old = client.get("/agents?signatures=15").text
    assert "bv-kho" in old and "syt-vanthu" in old and "syt-giamdoc" not in old and "bv-cu" not in old
    protected = client.get("/agents?protected=1").text
    assert "bv-ketoan-01" in protected and "sgd-server" in protected and "syt-vanthu" not in protected

    export = client.get(f"/agents.csv?unit={tree['hospital']}")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    text = export.content.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert sorted(r[0] for r in rows[1:]) == ["bv-cu", "bv-ketoan-01", "bv-kho"]

    detail = client.get(f"/agents/{fleet['online']}")
    assert detail.status_code == 200
    assert "10.0.0.7" in detail.text and "1.4.2" in detail.text and "Win.Trojan.Agent-1" in detail.text
    assert client.get("/agents/not-an-agent").status_code == 404


def test_agent_scope_and_revoke(
    client: TestClient, tree: dict[str, int], fleet: dict[str, str], database: Database
) -> None:
    console_login(client, "yte.admin")
    listed = client.get("/agents").text
    assert "bv-ketoan-01" in listed and "sgd-server" not in listed
    other = client.get(f"/agents/{fleet['education']}")
    assert other.status_code == 404 and "nằm ngoài phạm vi bạn quản lý" in other.text
    assert "sgd-server" not in client.get("/agents.csv").content.decode("utf-8")
    csrf = csrf_of(client, "/agents")
    assert client.post(f"/agents/{fleet['education']}/revoke", data={"csrf_token": csrf}).status_code == 404
    assert client.post(f"/agents/{fleet['online']}/revoke", data={}).status_code == 403
    with database.session() as session:
        assert not session.get(Agent, fleet["online"]).revoked  # type: ignore[union-attr]
    done = client.post(f"/agents/{fleet['online']}/revoke", data={"csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303
    with database.session() as session:
        assert session.get(Agent, fleet["online"]).revoked  # type: ignore[union-attr]
    client.cookies.clear()
    console_login(client, "yte.audit")
    csrf = csrf_of(client, "/agents")
    assert client.post(f"/agents/{fleet['stale']}/revoke", data={"csrf_token": csrf}).status_code == 403


@pytest.mark.parametrize("language", ["vi", "en"])
def test_detections_list_detail_triage_and_csv(
    client: TestClient, tree: dict[str, int], fleet: dict[str, str], database: Database, language: str
) -> None:
    console_login(client)
    client.cookies.set("garrison_lang", language)
    page = client.get("/detections")
    assert page.status_code == 200
    assert "Win.Trojan.Agent-1" in page.text and "Eicar-Test-Signature" in page.text and "bv-ketoan-01" in page.text
    assert "invoice.exe" in page.text
    recent = client.get("/detections?days=30").text
    assert "Win.Trojan.Agent-1" in recent and "Eicar-Test-Signature" not in recent

    detail = client.get(f"/detections/{fleet['detection']}")
    assert detail.status_code == 200
    assert "a" * 64 in detail.text and "b" * 32 in detail.text and "invoice.exe" in detail.text
    assert ("Đã cách ly" if language == "vi" else "Moved to quarantine") in detail.text

    triage = f"/detections/{fleet['detection']}/triage"
    assert client.post(triage, data={"state": "resolved"}).status_code == 403
    csrf = csrf_of(client, f"/detections/{fleet['detection']}")
    assert client.post(triage, data={"state": "nonsense", "csrf_token": csrf}).status_code == 400
    done = client.post(triage, data={"state": "false_positive", "csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303
    with database.session() as session:
        assert session.get(Detection, fleet["detection"]).triage is Triage.FALSE_POSITIVE  # type: ignore[union-attr]
    assert ("Báo nhầm" if language == "vi" else "False alarm") in client.get(done.headers["location"]).text
    to_review = client.get("/detections?triage=new").text
    assert "Win.Trojan.Agent-1" not in to_review and "Eicar-Test-Signature" in to_review

    export = client.get("/detections.csv?triage=false_positive")
    assert export.status_code == 200
    rows = list(csv.reader(io.StringIO(export.content.decode("utf-8").removeprefix("\ufeff"))))
    assert len(rows) == 2 and rows[1][5] == "Win.Trojan.Agent-1" and "invoice.exe" in rows[1][4]


def test_detection_scope(client: TestClient, tree: dict[str, int], fleet: dict[str, str]) -> None:
    console_login(client, "yte.admin")
    listed = client.get("/detections").text
    assert "Win.Trojan.Agent-1" in listed and "Win.Worm.Other" not in listed
    other = client.get(f"/detections/{fleet['education_detection']}")
    assert other.status_code == 404 and "nằm ngoài phạm vi bạn quản lý" in other.text
    csrf = csrf_of(client, "/detections")
    moved = client.post(
        f"/detections/{fleet['education_detection']}/triage", data={"state": "resolved", "csrf_token": csrf}
    )
    assert moved.status_code == 404
    assert "Win.Worm.Other" not in client.get("/detections.csv").content.decode("utf-8")
    # The unit filter narrows within the scope; a unit outside it is a 404, not an empty list.
    assert client.get(f"/detections?unit={tree['education']}").status_code == 404
    assert client.get(f"/detections.csv?unit={tree['province']}").status_code == 404
    hospital = client.get(f"/detections?unit={tree['hospital']}")
    assert hospital.status_code == 200 and "Win.Worm.Other" not in hospital.text
    client.cookies.clear()
    console_login(client)
    assert "Win.Worm.Other" in client.get(f"/detections?unit={tree['education']}").text
    assert "Win.Worm.Other" not in client.get(f"/detections?unit={tree['health']}").text
    assert "Win.Worm.Other" in client.get(f"/detections.csv?unit={tree['education']}").content.decode("utf-8")
    client.cookies.clear()
    console_login(client, "yte.audit")
    page = client.get(f"/detections/{fleet['detection']}").text
    assert "/triage" not in page
    csrf = csrf_of(client, "/detections")
    refused = client.post(f"/detections/{fleet['detection']}/triage", data={"state": "resolved", "csrf_token": csrf})
    assert refused.status_code == 403


def _figure(page: str, name: str) -> tuple[str, str]:
    found = re.search(
        rf'<a class="figure" href="([^"]+)" data-figure="{name}">\s*<span class="value[^"]*">([^<]+)<', page
    )
    assert found, page
    return found[1], found[2].strip()


@pytest.mark.parametrize("language", ["vi", "en"])
def test_overview_figures_match_the_database(
    client: TestClient, tree: dict[str, int], fleet: dict[str, str], language: str
) -> None:
    body = {"csrf_token": "", "name": "Sở Y tế", "kind": "department", "parent_id": str(tree["province"])}
    console_login(client)
    client.cookies.set("garrison_lang", language)
    body["csrf_token"] = csrf_of(client, f"/units/{tree['health']}/edit")
    saved = client.post(f"/units/{tree['health']}/edit", data={**body, "declared_workstations": "20"})
    assert saved.status_code in {200, 303}, saved.text
    page = client.get("/").text
    # Protected: online with real-time on (bv-ketoan-01, sgd-server); declared: 20 workstations.
    assert _figure(page, "protected") == ("/agents?protected=1", "2 / 20")
    # Online: bv-ketoan-01, syt-vanthu, sgd-server.
    assert _figure(page, "online") == ("/agents?state=online", "3")
    # Not revoked with signatures older than 7 days or unknown: syt-vanthu, syt-giamdoc, bv-kho; 15 days: two.
    assert _figure(page, "signatures-7") == ("/agents?signatures=7", "3")
    assert _figure(page, "signatures-15") == ("/agents?signatures=15", "2")
    assert _figure(page, "detections") == ("/detections?days=30", "2")
    # Each figure's link lists the same number of computers.
    for name, expected in (("online", 3), ("signatures-7", 3), ("signatures-15", 2), ("protected", 2)):
        target, _ = _figure(page, name)
        listing = client.get(target).text
        assert listing.count('<tr id="agent-') == expected, name

    client.cookies.clear()
    console_login(client, "yte.admin")
    scoped = client.get("/").text
    assert _figure(scoped, "protected") == ("/agents?protected=1", "1 / 20")
    assert _figure(scoped, "online")[1] == "2"
    assert _figure(scoped, "detections")[1] == "1"
