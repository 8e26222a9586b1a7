"""The console's alerts page on SQLite and PostgreSQL: which rules watch a unit, saving a rule through the form
(webhook addresses shown only masked), validation, a test message with its outcome, the recent alerts and sending
attempts, and scope: unit administrators stay in their subtree, auditors read without changing.

The pages are read in English (the ``garrison_lang`` cookie), so that the assertions hold before and after the
Vietnamese catalog gets the new entries."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from garrison.server.alerts import evaluate
from garrison.server.alerts.models import AlertRecipient
from garrison.server.console import i18n
from garrison.server.db import Database
from tests.server import test_alerts
from tests.server.console.test_protection_pages import add_agent
from tests.server.console.test_views import console_login, csrf_of
from tests.server.test_alerts import SECRET_PATH, Receiver, detect, soon

receiver = test_alerts.receiver  # the local webhook receiver fixture

FORM = {
    "kinds": ["new_detection", "outbreak", "offline"],
    "language": "vi",
    "outbreak_computers": "4",
    "outbreak_minutes": "30",
    "offline_hours": "48",
    "outdated_days": "7",
    "quiet_minutes": "20",
}


def _login(client: TestClient, username: str = "admin") -> str:
    client.cookies.clear()
    console_login(client, username)
    client.cookies.set(i18n.LANGUAGE_COOKIE, "en")
    return csrf_of(client, "/alerts")


def test_a_rule_is_saved_through_the_form_and_its_webhooks_stay_masked(
    client: TestClient, database: Database, tree: dict[str, int], receiver: Receiver
) -> None:
    csrf = _login(client)
    first = client.get("/alerts")
    assert first.status_code == 200
    assert "This unit has no alert rule of its own." in first.text and "No rule watches it" in first.text

    hook = receiver.url + SECRET_PATH
    form = {**FORM, "csrf_token": csrf, "emails": "ttcntt@syt.bacninh.gov.vn\n\n", "new_webhooks": hook}
    saved = client.post(f"/alerts/{tree['health']}", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == f"/alerts?unit={tree['health']}&done=saved"
    page = client.get(saved.headers["location"])
    assert "The alert rule was saved." in page.text and "This unit has its own alert rule" in page.text
    assert "ttcntt@syt.bacninh.gov.vn</textarea>" in page.text
    assert html.escape(f"{receiver.url}/…") in page.text and "T0KEN" not in page.text
    assert re.search(r'name="quiet_minutes"[^>]*value="20"', page.text)
    assert re.search(r'name="kinds" value="offline" checked', page.text)
    assert not re.search(r'name="kinds" value="deadline" checked', page.text)

    below = client.get(f"/alerts?unit={tree['hospital']}")
    assert "It is also watched by the rules of the units above it" in below.text
    assert f'<a href="/alerts?unit={tree["health"]}">Sở Y tế</a>' in below.text

    # A wrong value is shown next to its field, and nothing changes.
    wrong = client.post(f"/alerts/{tree['health']}", data={**form, "quiet_minutes": "0", "emails": "không phải thư"})
    assert wrong.status_code == 400
    assert "Enter a whole number of minutes from 1 to 1,440 (one day)." in wrong.text
    assert "Enter one e-mail address per line (at most 20)." in wrong.text
    with database.session() as session:
        assert len(session.scalars(select(AlertRecipient)).all()) == 2

    # A test message: the webhook receives it; e-mail fails (no mail server configured) and says so.
    tested = client.post(f"/alerts/{tree['health']}/test", data={"csrf_token": csrf}, follow_redirects=False)
    assert tested.status_code == 303
    result = client.get(tested.headers["location"])
    assert "Test message: 1 sent, 1 failed" in result.text
    assert receiver.at(SECRET_PATH)[0]["test"] is True
    assert "no mail server is configured" in result.text and "T0KEN" not in result.text
    assert re.search(r'state online">Delivered</span>', result.text) and 'state bad">Failed</span>' in result.text

    # Alerts found show in the list.
    agent = add_agent(database, tree["hospital"], "bv-ketoan-01")
    detect(database, agent, tree["hospital"], "Win.Trojan.Agent-1")
    with database.session() as session:
        evaluate.evaluate(session, soon(), reminders=False)
    listed = client.get(f"/alerts?unit={tree['health']}")
    assert "Win.Trojan.Agent-1 — bv-ketoan-01" in listed.text and "New malware found on a computer" in listed.text

    # Unticking the saved webhook removes it; deleting the rule removes everything.
    kept = client.post(f"/alerts/{tree['health']}", data={**form, "new_webhooks": ""}, follow_redirects=False)
    assert kept.status_code == 303
    with database.session() as session:
        assert [r.channel for r in session.scalars(select(AlertRecipient))] == ["email"]
    gone = client.post(f"/alerts/{tree['health']}/delete", data={"csrf_token": csrf}, follow_redirects=False)
    assert gone.headers["location"] == f"/alerts?unit={tree['health']}&done=deleted"
    assert "This unit has no alert rule of its own." in client.get(gone.headers["location"]).text


def test_unit_admins_stay_in_their_subtree_and_auditors_only_read(client: TestClient, tree: dict[str, int]) -> None:
    csrf = _login(client, "yte.admin")
    assert client.get(f"/alerts?unit={tree['education']}").status_code == 404
    assert client.post(f"/alerts/{tree['education']}", data={**FORM, "csrf_token": csrf}).status_code == 404
    own = client.post(f"/alerts/{tree['health']}", data={**FORM, "csrf_token": csrf}, follow_redirects=False)
    assert own.status_code == 303
    assert client.post(f"/alerts/{tree['health']}", data=FORM).status_code == 403  # no CSRF token

    csrf = _login(client, "yte.audit")
    page = client.get(f"/alerts?unit={tree['health']}")
    assert page.status_code == 200 and "<fieldset disabled>" in page.text
    assert "Save the changes" not in page.text and "Send a test message" not in page.text
    assert client.post(f"/alerts/{tree['health']}", data={**FORM, "csrf_token": csrf}).status_code == 403
    assert client.post(f"/alerts/{tree['health']}/test", data={"csrf_token": csrf}).status_code == 403
    assert client.post(f"/alerts/{tree['health']}/delete", data={"csrf_token": csrf}).status_code == 403
