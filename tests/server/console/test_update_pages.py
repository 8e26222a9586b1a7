"""Console pages of the update channel, on SQLite and PostgreSQL: the updates page (warnings, figures, rollout
settings, publish now, releases), a release's page with its promote and pull-back buttons, agent software, the
computers list's signature columns and filters, and the overview's figures; auditors read but cannot change.

The pages are read in English (the ``garrison_lang`` cookie), so that the assertions hold before and after the
Vietnamese catalog gets the new entries."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select

from garrison.server.agents.models import Agent
from garrison.server.audit.models import AuditEvent
from garrison.server.audit.service import SYSTEM
from garrison.server.auth.scope import Scope
from garrison.server.console import i18n
from garrison.server.db import Database, utcnow
from garrison.server.policies.models import AgentGroup
from garrison.server.updates import releases, service
from garrison.server.updates.models import AgentRelease, Release, RolloutSettings, Stage
from garrison.server.updates.repository import UpdateRepository
from tests.server.console.test_protection_pages import add_agent
from tests.server.console.test_views import console_login, csrf_of

AGENT_ROW = re.compile(r'<tr id="agent-[^"]+">\s*<td><a href="/agents/[^"]+">([^<]+)</a>')


def _english(client: TestClient) -> None:
    client.cookies.set(i18n.LANGUAGE_COOKIE, "en")


def _login(client: TestClient, username: str = "admin") -> str:
    client.cookies.clear()
    console_login(client, username)
    _english(client)
    return csrf_of(client, "/updates")


def _hdb(*names: str) -> dict[str, bytes]:
    lines = []
    for name in names:
        sample = f"garrison console test sample {name}".encode()
        lines.append(f"{hashlib.md5(sample).hexdigest()}:{len(sample)}:Garrison.Test.{name}\n")
    return {"t.hdb": "".join(lines).encode()}


def _repo(client: TestClient) -> UpdateRepository:
    repo: UpdateRepository = client.app.state.update_repository  # type: ignore[attr-defined]
    return repo


def _publish(client: TestClient, database: Database, *names: str) -> int:
    repo = _repo(client)
    with database.session() as session:
        release = releases.publish(session, repo, _hdb(*names), actor=SYSTEM, reason="t")
        assert release is not None
        return release.number


def _release(database: Database, number: int) -> Release:
    with database.session() as session:
        release = session.get(Release, number)
        assert release is not None
        session.expunge(release)
        return release


def _canary_group(database: Database, unit: int) -> int:
    with database.session() as session:
        group = AgentGroup(name="Máy thử nghiệm", description="", unit_id=unit)
        session.add(group)
        session.flush()
        return group.id


def _names(page: str) -> list[str]:
    return sorted(html.unescape(name) for name in AGENT_ROW.findall(page))


def _figure(page: str, name: str) -> tuple[str, str]:
    found = re.search(
        rf'<a class="figure" href="([^"]+)" data-figure="{name}">\s*<span class="value[^"]*">([^<]+)<', page
    )
    assert found, page
    return html.unescape(found[1]), found[2].strip()


def _post(client: TestClient, path: str, csrf: str, **form: str) -> Response:
    return client.post(path, data={"csrf_token": csrf, **form}, follow_redirects=False)


def test_the_updates_page_for_an_admin(client: TestClient, tree: dict[str, int], database: Database) -> None:
    csrf = _login(client)
    page = client.get("/updates")
    assert page.status_code == 200
    assert 'href="/updates" aria-current="page"' in page.text
    # The server starts with its root key on disk: the warning says where and what to do.
    assert 'data-notice="root_key_online"' in page.text and "What to do:" in page.text
    assert str(_repo(client).key_path("root")) in page.text
    assert "Nothing published yet" in page.text and "No release was published yet" in page.text
    assert 'action="/updates/publish"' in page.text and 'action="/updates/rollout"' in page.text
    assert _figure(page.text, "outdated-7") == ("/agents?signatures=7", "0")

    # Nothing to publish: no sources yet.
    answer = _post(client, "/updates/publish", csrf, reason="thử")
    assert answer.status_code == 303 and answer.headers["location"] == "/updates?done=unchanged"
    assert "Nothing changed since the latest release" in client.get("/updates?done=unchanged").text
    with database.session() as session:
        assert releases.latest(session) is None

    first = _publish(client, database, "a")
    text = client.get("/updates").text
    assert _figure(text, "newest") == (f"/updates/releases/{first}", f"#{first}")
    assert _figure(text, "general") == (f"/updates/releases/{first}", f"#{first}")
    row = text[text.index(f'<tr id="release-{first}">') :]
    row = row[: row.index("</tr>")]
    assert 'data-stage="general"' in row and "All computers" in row and ">1<" in row  # one signature
    assert f'href="/agents?state=active&amp;release={first}"' in row

    detail = client.get(f"/updates/releases/{first}")
    assert detail.status_code == 200
    assert "t.hdb" in detail.text and "Published a signature release" in detail.text
    assert "the server, automatically" in detail.text  # published by SYSTEM
    assert client.get("/updates/releases/999").status_code == 404


def test_a_refused_publication_is_a_message(
    client: TestClient, tree: dict[str, int], database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    csrf = _login(client)

    def refuse(*_args: object, **_kw: object) -> None:
        raise releases.ReleaseRefused("the signature set does not compile, so it was not published: line 3: bad hex")

    monkeypatch.setattr(service, "publish_from_sources", refuse)
    answer = _post(client, "/updates/publish", csrf)
    assert answer.status_code == 400
    text = answer.text
    assert 'class="alert error"' in text and "nothing was published" in text and "line 3: bad hex" in text
    assert "Traceback" not in text


def test_rollout_settings_promote_and_pull_back(client: TestClient, tree: dict[str, int], database: Database) -> None:
    csrf = _login(client)
    group = _canary_group(database, tree["province"])

    # A mistake is explained in the form, nothing is changed.
    wrong = _post(client, "/updates/rollout", csrf, canary_group_id=str(group), canary_hours="mười", auto_promote="1")
    assert wrong.status_code == 400 and "from 0 to 720" in wrong.text
    assert "<details open>" in wrong.text
    saved = _post(client, "/updates/rollout", csrf, canary_group_id=str(group), canary_hours="12")
    assert saved.status_code == 303
    with database.session() as session:
        settings = session.get(RolloutSettings, 1)
        assert settings is not None
        assert (settings.canary_group_id, settings.canary_hours, settings.auto_promote) == (group, 12.0, False)
    page = client.get("/updates").text
    assert "Máy thử nghiệm" in page and "Waits for an administrator" in page

    first = _publish(client, database, "a")
    assert _release(database, first).stage == Stage.CANARY
    detail = client.get(f"/updates/releases/{first}").text
    assert 'data-stage="canary"' in detail and "Trial (canary group)" in detail
    assert 'id="no-problems"' in detail
    assert f'href="/updates/releases/{first}/promote"' in detail

    confirm = client.get(f"/updates/releases/{first}/promote")
    assert confirm.status_code == 200 and f'action="/updates/releases/{first}/promote"' in confirm.text
    promoted = _post(client, f"/updates/releases/{first}/promote", csrf)
    assert promoted.headers["location"] == f"/updates/releases/{first}?done=promoted"
    release = _release(database, first)
    assert release.stage == Stage.GENERAL and release.available_at is not None
    # Promoting it again is refused in plain words, on the page.
    again = _post(client, f"/updates/releases/{first}/promote", csrf)
    assert again.status_code == 409 and "is not on trial any more" in again.text

    second = _publish(client, database, "a", "b")
    assert _release(database, second).stage == Stage.CANARY
    explained = client.get(f"/updates/releases/{second}/pull").text
    assert f"same content as release #{first}" in explained
    pulled = _post(client, f"/updates/releases/{second}/pull", csrf)
    assert pulled.status_code == 303
    with database.session() as session:
        restored = releases.latest(session)
        assert restored is not None and restored.number == second + 1
        assert (restored.restores, restored.stage) == (first, Stage.GENERAL)
        assert session.get(Release, second).stage == Stage.PULLED  # type: ignore[union-attr]
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.target_type == "release", AuditEvent.actor_name == "admin")
        ).all()
        assert sorted(actions) == ["release.promote", "release.publish", "release.pull"]
    assert pulled.headers["location"] == f"/updates/releases/{second + 1}?done=pulled"
    assert "The release was taken back" in client.get(f"/updates/releases/{second + 1}?done=pulled").text
    old = client.get(f"/updates/releases/{second}").text
    assert "Took back a signature release" in old and f"release #{second + 1} instead" in old

    # Nothing before the first release: refused with the reason, not a traceback.
    nothing = _post(client, f"/updates/releases/{first}/pull", csrf)
    assert nothing.status_code == 409 and "no earlier release" in nothing.text


def test_agent_software(client: TestClient, tree: dict[str, int], database: Database) -> None:
    csrf = _login(client)
    page = client.get("/updates/agent-software")
    assert page.status_code == 200 and "No agent version was added yet" in page.text

    def upload(version: str, data: bytes) -> Response:
        files = {"file": (f"garrison-{version}-py3-none-any.whl", data, "application/zip")}
        form = {"csrf_token": csrf, "version": version, "notes": "sửa lỗi"}
        return client.post("/updates/agent-software", data=form, files=files, follow_redirects=False)

    not_a_wheel = upload("1.2.3", b"not a zip")
    assert not_a_wheel.status_code == 400 and "a .whl file" in not_a_wheel.text
    bad_version = upload("một", b"PK\x03\x04")
    assert bad_version.status_code == 400 and "is not a version number" in bad_version.text
    assert upload("1.2.3", b"PK\x03\x04 wheel").status_code == 303
    with database.session() as session:
        row = session.get(AgentRelease, "1.2.3")
        assert row is not None and row.stage == Stage.GENERAL and row.notes == "sửa lỗi"  # no canary group
    listed = client.get("/updates/agent-software").text
    assert 'id="agent-1.2.3"' in listed and "/updates/agent-software/1.2.3/pull" in listed

    assert client.get("/updates/agent-software/1.2.3/pull").status_code == 200
    assert _post(client, "/updates/agent-software/1.2.3/pull", csrf).status_code == 303
    with database.session() as session:
        assert session.get(AgentRelease, "1.2.3").stage == Stage.PULLED  # type: ignore[union-attr]
    assert _post(client, "/updates/agent-software/1.2.3/promote", csrf).status_code == 303
    with database.session() as session:
        assert session.get(AgentRelease, "1.2.3").stage == Stage.GENERAL  # type: ignore[union-attr]
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "agent_release")).all()
        assert sorted(actions) == ["agent_release.add", "agent_release.general", "agent_release.pulled"]
    assert client.get("/updates/agent-software/9.9.9/pull").status_code == 404
    assert client.get("/updates/agent-software/1.2.3/delete").status_code == 404


def test_auditors_read_but_cannot_change(client: TestClient, tree: dict[str, int], database: Database) -> None:
    first = _publish(client, database, "a")
    _login(client, "yte.audit")
    page = client.get("/updates")
    assert page.status_code == 200
    assert 'action="/updates/publish"' not in page.text and 'action="/updates/rollout"' not in page.text
    detail = client.get(f"/updates/releases/{first}")
    assert detail.status_code == 200 and "/pull" not in detail.text
    assert "/updates/agent-software" in detail.text
    software = client.get("/updates/agent-software").text
    assert 'action="/updates/agent-software"' not in software
    csrf = csrf_of(client, "/updates")
    for path in (
        "/updates/publish",
        "/updates/rollout",
        f"/updates/releases/{first}/promote",
        f"/updates/releases/{first}/pull",
        "/updates/agent-software",
    ):
        assert _post(client, path, csrf, canary_hours="1").status_code == 403, path
    assert client.get(f"/updates/releases/{first}/pull").status_code == 403
    assert _release(database, first).stage == Stage.GENERAL
    # The unit administrator may not change the fleet-wide channel either.
    csrf = _login(client, "yte.admin")
    assert _post(client, "/updates/publish", csrf).status_code == 403


@pytest.fixture
def fleet(database: Database, tree: dict[str, int]) -> dict[str, str]:
    """Computers with signatures of 1, 10 and 20 days, none reported, and a revoked one of 20 days."""
    return {
        "fresh": add_agent(database, tree["hospital"], "bv-moi", signatures_age=timedelta(days=1)),
        "ten": add_agent(database, tree["hospital"], "bv-muoi", signatures_age=timedelta(days=10)),
        "twenty": add_agent(database, tree["health"], "syt-hai-muoi", signatures_age=timedelta(days=20)),
        "never": add_agent(database, tree["education"], "sgd-chua-bao", signatures_age=None),
        "revoked": add_agent(
            database, tree["education"], "sgd-thu-hoi", signatures_age=timedelta(days=20), revoked=True
        ),
    }


def test_the_outdated_filters_list_exactly_the_counted_computers(
    client: TestClient, tree: dict[str, int], database: Database, fleet: dict[str, str]
) -> None:
    _login(client)
    updates_page = client.get("/updates").text
    overview = client.get("/").text
    expected = {7: ["bv-muoi", "sgd-chua-bao", "syt-hai-muoi"], 15: ["sgd-chua-bao", "syt-hai-muoi"]}
    for days, names in expected.items():
        link, count = _figure(updates_page, f"outdated-{days}")
        assert (link, count) == (f"/agents?signatures={days}", str(len(names)))
        assert _figure(overview, f"signatures-{days}") == (link, count)
        assert _names(client.get(link).text) == names
        assert _names(client.get(f"/agents?outdated={days}").text) == names
        export = client.get(f"/agents.csv?signatures={days}").content.decode("utf-8").removeprefix("\ufeff")
        assert sorted(r[0] for r in list(csv.reader(io.StringIO(export)))[1:]) == names
    with database.session() as session:
        assert service.outdated_counts(session, Scope.whole_tree()) == {7: 3, 15: 2}

    # A unit administrator counts and lists their subtree only.
    _login(client, "yte.admin")
    scoped = client.get("/updates").text
    assert _figure(scoped, "outdated-7") == ("/agents?signatures=7", "2")
    assert _names(client.get("/agents?signatures=7").text) == ["bv-muoi", "syt-hai-muoi"]


def test_signature_columns_and_the_release_filter(
    client: TestClient, tree: dict[str, int], database: Database, fleet: dict[str, str]
) -> None:
    first = _publish(client, database, "a")
    second = _publish(client, database, "a", "b")
    with database.session() as session:
        for key, number in (("fresh", second), ("ten", first), ("twenty", first), ("revoked", first)):
            agent = session.get(Agent, fleet[key])
            assert agent is not None
            agent.signature_release = number
        failing = session.get(Agent, fleet["ten"])
        assert failing is not None
        failing.update_error = "tải bản cập nhật thất bại: " + "không kết nối được máy chủ " * 5
        failing.update_error_at = utcnow()
    _login(client)
    listing = client.get("/agents").text
    ten = listing[listing.index(f'<tr id="agent-{fleet["ten"]}">') :]
    ten = ten[: ten.index("</tr>")]
    assert f'<a href="/updates/releases/{first}">#{first}</a>' in ten
    assert '<span class="state bad" data-age="10">10 days old</span>' in ten
    assert 'title="tải bản cập nhật thất bại: không kết nối' in ten and "…" in ten
    fresh = listing[listing.index(f'<tr id="agent-{fleet["fresh"]}">') :]
    fresh = fresh[: fresh.index("</tr>")]
    assert '<span class="muted" data-age="1">1 day old</span>' in fresh

    # Running the first release: two enrolled computers (the revoked one is not counted, nor listed as active).
    detail = client.get(f"/updates/releases/{first}").text
    found = re.search(r'<a href="([^"]+)" data-fact="computers">(\d+)</a>', detail)
    assert found and (html.unescape(found[1]), found[2]) == (f"/agents?state=active&release={first}", "2")
    assert _names(client.get(html.unescape(found[1])).text) == ["bv-muoi", "syt-hai-muoi"]
    assert _names(client.get(f"/agents?release={second}").text) == ["bv-moi"]
    assert "Showing only the computers that run signature release" in client.get(f"/agents?release={second}").text
    export = client.get(f"/agents.csv?release={first}&state=active").content.decode("utf-8").removeprefix("\ufeff")
    rows = list(csv.reader(io.StringIO(export)))
    assert sorted(r[0] for r in rows[1:]) == ["bv-muoi", "syt-hai-muoi"]
    assert "Last update error" in rows[0]


def test_the_overview_shows_the_update_warnings(client: TestClient, tree: dict[str, int], database: Database) -> None:
    _login(client)
    overview = client.get("/").text
    assert 'id="update-warnings"' in overview and 'data-notice="root_key_online"' in overview
    assert 'href="/updates"' in overview
    # A release older than 7 days: the feed is stale.
    with database.session() as session:
        releases.publish(session, _repo(client), _hdb("a"), actor=SYSTEM, reason="t", now=utcnow() - timedelta(days=9))
    assert 'data-notice="feed_stale"' in client.get("/").text
    stale = client.get("/updates").text
    assert 'data-notice="feed_stale"' in stale and 'href="/signatures"' in stale
