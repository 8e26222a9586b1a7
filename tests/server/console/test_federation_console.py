"""The federation page (``/federation``) on SQLite and PostgreSQL: registering a child (the join command shown once),
the children with their freshness (late ones in red) and figures, the totals, a child's figures page, revoking; on
a child, the parent it reports to and the last error of "Send now"; whole-tree administrators only.

Pages are read in English (the ``garrison_lang`` cookie); the child server is a second app on its own SQLite
database whose requests reach the parent's app in-process (tests/server/test_federation.py)."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from garrison.server import tls
from garrison.server.audit.models import AuditEvent
from garrison.server.console import i18n
from garrison.server.db import Database, utcnow
from garrison.server.federation import child
from garrison.server.federation.models import FederationChild
from tests.conftest import free_port
from tests.server import test_federation
from tests.server.conftest import setup_admin
from tests.server.console.test_views import console_login, csrf_of
from tests.server.test_federation import Child, register, through

# The child server's fixtures, shared with the API tests.
district = test_federation.district
joined = test_federation.joined


def _login(client: TestClient, username: str = "admin") -> None:
    client.cookies.clear()
    console_login(client, username)
    client.cookies.set(i18n.LANGUAGE_COOKIE, "en")


def _row(page: str, name: str) -> str:
    found = re.search(rf'<tr id="child-\d+" data-name="{re.escape(name)}">(.*?)</tr>', page, re.S)
    assert found, page
    return found[1]


def _cell(row: str, cell: str) -> str:
    found = re.search(rf'data-cell="{cell}">([^<]*)<', row)
    assert found, row
    return html.unescape(found[1]).strip()


def test_registering_shows_the_join_command_once(client: TestClient, tree: dict[str, int], database: Database) -> None:
    _login(client)
    csrf = csrf_of(client, "/federation")
    form = {"csrf_token": csrf, "name": "Huyện Gia Lâm", "unit_id": str(tree["health"]), "days": "7"}
    page = client.post("/federation", data=form)
    assert page.status_code == 200, page.text
    join = r"garrison server federation join https://testserver gsf_\S+ --fingerprint [^<]+"
    command = re.search(rf"<code>({join})<", page.text)
    assert command, page.text
    assert _row(page.text, "Huyện Gia Lâm").count('data-state="waiting"') == 1
    token = command[1].split()[5]
    again = client.get("/federation")
    assert token not in again.text and "Huyện Gia Lâm" in again.text
    with database.session() as session:
        assert session.scalar(select(AuditEvent.action).where(AuditEvent.action == "federation.child_register"))
    # A form that is not complete is explained, and nothing is made.
    refused = client.post("/federation", data={**form, "name": " ", "unit_id": str(tree["education"])})
    assert refused.status_code == 400 and "Enter the child server" in refused.text
    assert client.post("/federation", data={**form, "csrf_token": "wrong"}).status_code == 403


def test_children_their_freshness_figures_and_totals(client: TestClient, joined: Child, database: Database) -> None:
    child.push(joined.database, joined.settings, transport=through(client))
    _login(client)
    page = client.get("/federation")
    assert page.status_code == 200, page.text
    row = _row(page.text, "Huyện Gia Lâm")
    assert 'class="state online" data-state="fresh"' in row
    assert (_cell(row, "active"), _cell(row, "detections"), _cell(row, "infected")) == ("1", "1", "1")
    totals = re.search(r'data-figure="detections">.*?class="value">([^<]+)<', page.text, re.S)
    assert totals and totals[1] == "1"
    with database.session() as session:
        row_id = session.scalars(select(FederationChild.id)).one()
        stale = session.get(FederationChild, row_id)
        assert stale is not None
        stale.received_at = utcnow() - timedelta(days=1)
    row = _row(client.get("/federation").text, "Huyện Gia Lâm")
    assert 'class="state stale" data-state="stale"' in row  # red

    detail = client.get(f"/federation/{row_id}")
    assert detail.status_code == 200, detail.text
    assert re.search(r'data-cell="detections">1<', detail.text) and "Eicar-Test-Signature" in detail.text
    assert "Quarter 3 of 2026" in detail.text  # the report it submitted
    assert client.get("/federation/999999").status_code == 404


def test_revoking_a_child(client: TestClient, joined: Child, database: Database) -> None:
    _login(client)
    csrf = csrf_of(client, "/federation")
    child_id = joined.link().child_id
    answer = client.post(f"/federation/{child_id}/revoke", data={"csrf_token": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/federation?done=revoked"
    page = client.get("/federation?done=revoked").text
    assert 'data-state="revoked"' in _row(page, "Huyện Gia Lâm") and "was revoked" in page
    with database.session() as session:
        assert session.scalar(select(AuditEvent.id).where(AuditEvent.action == "federation.child_revoke"))


def test_on_a_child_the_parent_and_the_last_error(client: TestClient, tree: dict[str, int], tmp_path: Path) -> None:
    # A child whose parent is now down: joined through the parent's app, then its address answers nothing.
    server = Child(tmp_path / "district")
    with server.client:
        setup_admin(server.client, server.database)
        token = register(client, tree["health"])["token"]
        down = f"https://127.0.0.1:{free_port()}"
        cert, _key = tls.make_self_signed(["127.0.0.1"])
        child.join(server.settings, down, token, cert.decode(), "AB:CD", transport=through(client))
        _login(server.client)
        page = server.client.get("/federation")
        assert "This server reports to Tỉnh Bắc Ninh" in page.text and down in page.text
        csrf = csrf_of(server.client, "/federation")
        answer = server.client.post("/federation/push", data={"csrf_token": csrf}, follow_redirects=False)
        assert answer.headers["location"] == "/federation?done=push_failed"
        page = server.client.get(answer.headers["location"])
        error = re.search(r'data-cell="last-error">([^<]+)<', page.text)
        assert error and "cannot reach the parent" in html.unescape(error[1])
    server.database.engine.dispose()


def test_only_administrators_of_the_whole_tree(client: TestClient, tree: dict[str, int]) -> None:
    for username in ("yte.admin", "yte.audit"):
        _login(client, username)
        assert client.get("/federation").status_code == 403
    client.cookies.clear()
    answer = client.get("/federation", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
