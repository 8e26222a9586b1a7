"""The console's national authority page, on SQLite and PostgreSQL, against the real local HTTPS receiver of
``test_outbox``: the configuration shown (or what is missing), the figures and the list of reports with their last
answer, "Send now" and "Retry" (CSRF-protected), a report's page with every attempt and the receiver's answer,
and who may see and do what. Pages are read in English (the ``garrison_lang`` cookie)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import select

from garrison.server.audit.models import AuditEvent
from garrison.server.console import i18n
from garrison.server.db import Database
from garrison.server.settings import ServerSettings
from garrison.server.sharing import outbox
from garrison.server.sharing.models import DeliveryStatus, NationalDelivery
from tests.server.console.test_views import console_login, csrf_of
from tests.server.test_outbox import Receiver, material, national_settings, receiver  # noqa: F401 - fixtures


def _e(text: str) -> str:
    """``text`` as the templates write it (Jinja's autoescape)."""
    return str(escape(text))


ROW = re.compile(r'<tr id="delivery-(\d+)" data-status="(\w+)">')


@pytest.fixture
def settings(tmp_path: Path, material: tuple[bytes, bytes], receiver: Receiver) -> ServerSettings:  # noqa: F811
    return national_settings(tmp_path, material, receiver)


def _login(client: TestClient, username: str = "admin") -> str:
    client.cookies.clear()
    console_login(client, username)
    client.cookies.set(i18n.LANGUAGE_COOKIE, "en")
    return csrf_of(client, "/sharing") if username == "admin" else ""


def _send_now(client: TestClient, csrf: str, start: str, end: str) -> int:
    answer = client.post("/sharing/send", data={"csrf_token": csrf, "start": start, "end": end}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.endswith("?done=queued")
    return int(location.split("/")[2].split("?")[0])


def test_send_now_then_the_answer_and_a_retry(
    client: TestClient,
    tree: dict[str, int],
    database: Database,
    settings: ServerSettings,
    receiver: Receiver,  # noqa: F811
) -> None:
    csrf = _login(client)
    page = client.get("/sharing").text
    assert _e(receiver.url) in page
    assert "000.00.00.H35" in page
    assert 'id="configuration-problem"' not in page
    assert "No report yet." in page

    # Without the form's token nothing is queued.
    refused = client.post("/sharing/send", data={"start": "2026-01-01", "end": "2026-01-31"}, follow_redirects=False)
    assert refused.status_code == 403
    delivery_id = _send_now(client, csrf, "2026-01-01", "2026-01-31")
    with database.session() as session:
        item = session.get(NationalDelivery, delivery_id)
        assert item is not None
        # Both days included, in Vietnam's calendar.
        assert outbox.as_utc(item.period_start) == datetime(2025, 12, 31, 17, tzinfo=UTC)
        assert outbox.as_utc(item.period_end) == datetime(2026, 1, 31, 17, tzinfo=UTC)
        assert item.created_by_name == "admin"
    detail = client.get(f"/sharing/{delivery_id}?done=queued")
    assert detail.status_code == 200
    assert "Not sent yet." in detail.text
    assert "It will be sent within a few minutes." in detail.text

    receiver.answers = [(400, '{"error": "OrganId not registered"}', {})]
    assert outbox.send_due(database, settings, datetime.now(UTC)) == [DeliveryStatus.FAILED]
    page = client.get("/sharing").text
    assert ROW.findall(page) == [(str(delivery_id), "failed")]
    assert "HTTP 400" in page and _e('{"error": "OrganId not registered"}') in page
    assert f'action="/sharing/{delivery_id}/retry"' in page
    assert 'data-figure="failed">\n    <span class="value warn">1</span>' in page
    detail = client.get(f"/sharing/{delivery_id}").text
    assert 'data-outcome="failed"' in detail
    assert _e('{"error": "OrganId not registered"}') in detail
    assert "HTTP 400: the receiver refused the document" in detail

    assert client.post(f"/sharing/{delivery_id}/retry", follow_redirects=False).status_code == 403  # no token
    answer = client.post(f"/sharing/{delivery_id}/retry", data={"csrf_token": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == f"/sharing/{delivery_id}?done=retried"
    assert outbox.send_due(database, settings, datetime.now(UTC)) == [DeliveryStatus.DELIVERED]
    detail = client.get(f"/sharing/{delivery_id}").text
    assert [m for m in re.findall(r'data-outcome="(\w+)"', detail)] == ["failed", "delivered"]
    assert _e('{"status": "received"}') in detail
    client.cookies.set(i18n.LANGUAGE_COOKIE, "vi")  # the default language renders the same rows
    assert ROW.findall(client.get("/sharing").text) == [(str(delivery_id), "delivered")]
    assert client.get(f"/sharing/{delivery_id}").status_code == 200
    client.cookies.set(i18n.LANGUAGE_COOKIE, "en")
    delivered = client.get("/sharing", params={"status": "delivered"}).text
    assert ROW.findall(delivered) == [(str(delivery_id), "delivered")]
    assert ROW.findall(client.get("/sharing", params={"status": "failed"}).text) == []
    with database.session() as session:
        actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("sharing.outbox%"))))
    assert actions == ["sharing.outbox_queue", "sharing.outbox_retry"]


def test_a_wrong_period_is_explained_with_the_form(
    client: TestClient, tree: dict[str, int], database: Database
) -> None:
    csrf = _login(client)
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    for start, end in (("2026-02-01", "2026-01-01"), ("soon", "2026-01-01"), (tomorrow, tomorrow)):
        answer = client.post("/sharing/send", data={"csrf_token": csrf, "start": start, "end": end})
        assert answer.status_code == 400, (start, end)
        assert 'id="error"' in answer.text
        assert f'value="{start}"' in answer.text
    with database.session() as session:
        assert session.scalars(select(NationalDelivery)).all() == []


def test_the_page_says_what_is_missing(client: TestClient, tree: dict[str, int], settings: ServerSettings) -> None:
    settings.national_endpoint_url = ""
    settings.national_key_file = None
    csrf = _login(client)
    page = client.get("/sharing").text
    assert "Not set: reports are not sent." in page
    said = "The national authority's address is not set yet (setting GARRISON_NATIONAL_ENDPOINT_URL)"
    assert str(escape(said)) in page
    assert "configure the national" not in page  # the server's words, in the reader's language
    answer = client.post("/sharing/send", data={"csrf_token": csrf, "start": "2026-01-01", "end": "2026-01-31"})
    assert answer.status_code == 409
    assert "GARRISON_NATIONAL_ENDPOINT_URL" in answer.text
    # In Vietnamese too; then the address set, the missing key is named.
    client.cookies.set(i18n.LANGUAGE_COOKIE, "vi")
    assert "Chưa thiết lập địa chỉ của cơ quan chức năng quốc gia" in client.get("/sharing").text
    settings.national_endpoint_url = "https://mis.example.gov.vn/AVReport/server.php"
    page = client.get("/sharing").text
    assert "GARRISON_NATIONAL_KEY_FILE" in page and "configure the national" not in page


def test_only_the_province_sees_the_page(
    client: TestClient, tree: dict[str, int], database: Database, settings: ServerSettings
) -> None:
    csrf = _login(client)
    delivery_id = _send_now(client, csrf, "2026-01-01", "2026-01-31")
    for user in ("yte.admin", "yte.audit"):
        _login(client, user)
        assert client.get("/sharing").status_code == 403
        assert client.get(f"/sharing/{delivery_id}").status_code == 403
        page = client.get("/").text  # a page of theirs, for its form token
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        answer = client.post("/sharing/send", data={"csrf_token": token[1], "start": "2026-01-01", "end": "2026-01-02"})
        assert answer.status_code == 403
        assert client.post(f"/sharing/{delivery_id}/retry", data={"csrf_token": token[1]}).status_code == 403
    _login(client)
    assert client.get("/sharing/999999").status_code == 404
    assert client.get("/sharing/abc").status_code == 404
    with database.session() as session:
        assert len(session.scalars(select(NationalDelivery)).all()) == 1
