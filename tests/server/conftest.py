"""Server tests run on a real database: SQLite always, and PostgreSQL (required in CI).

Each test runs inside a transaction that is rolled back at its end, on a schema built by the real migrations.
Set ``GARRISON_TEST_POSTGRES`` to a server URL to use another PostgreSQL; ``GARRISON_REQUIRE_POSTGRES=1``
(``.ci/run`` sets it) turns an unreachable PostgreSQL into a failure instead of a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from garrison.server.app import create_app
from garrison.server.auth import service as auth
from garrison.server.db import Database, make_engine, migrate
from garrison.server.settings import ServerSettings

PASSWORD = "correct horse battery staple"
POSTGRES = os.environ.get("GARRISON_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def postgres_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards; a skip when PostgreSQL is unreachable (a
    failure when ``GARRISON_REQUIRE_POSTGRES=1``, as in CI)."""
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    name = f"garrison_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL is not reachable at {POSTGRES}: {exc.orig}"
        if os.environ.get("GARRISON_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _postgres_engine() -> Iterator[Engine]:
    for url in postgres_database():
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A migrated database of each kind, shared by the tests of one worker."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'garrison.db'}")
        migrate(engine)
        yield engine
        engine.dispose()
    else:
        for engine in _postgres_engine():
            migrate(engine)
            yield engine


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database of each kind of this test's own, for tests that commit from several threads."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
        migrate(engine)
        yield engine
        engine.dispose()
    else:
        for engine in _postgres_engine():
            migrate(engine)
            yield engine


@pytest.fixture
def database(engine: Engine) -> Iterator[Database]:
    """The database inside a transaction rolled back when the test ends."""
    connection = engine.connect()
    transaction = connection.begin()
    try:
        yield Database(connection)
    finally:
        transaction.rollback()
        connection.close()


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    with database.session() as session:
        yield session


@pytest.fixture
def settings(tmp_path: Path) -> ServerSettings:
    # Cheap password hashing: the tests log in hundreds of times; the cost itself is not what they test.
    # No update housekeeping in the background: tests call it themselves (its thread would share the test's
    # rolled-back connection).
    # Nor alert passes (alerts_check_seconds): the alert tests call them with the moment they want. Their webhook
    # receivers listen on this machine, which webhooks may reach only when alerts_webhook_allow says so.
    return ServerSettings(
        data_dir=tmp_path,
        login_attempts=3,
        password_time_cost=1,
        password_memory_kib=64,
        updates_check_seconds=0,
        statistics_record_seconds=0,
        alerts_check_seconds=0,
        alerts_webhook_allow=["127.0.0.0/8"],
    )


@pytest.fixture
def client(database: Database, settings: ServerSettings) -> Iterator[TestClient]:
    app = create_app(settings, database, run_migrations=False)
    with TestClient(app, base_url="https://testserver") as client:
        yield client


def setup_admin(client: TestClient, database: Database) -> None:
    with database.session() as session:
        token = auth.issue_setup_token(session)
    assert token is not None
    answer = client.post(
        "/api/v1/setup", json={"token": token, "username": "Admin", "display_name": "Quản trị", "password": PASSWORD}
    )
    assert answer.status_code == 201, answer.text


def login(client: TestClient, username: str = "admin", password: str = PASSWORD) -> str:
    answer = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    csrf: str = answer.json()["csrf_token"]
    return csrf


@pytest.fixture
def tree(client: TestClient, database: Database) -> dict[str, int]:
    """Province with two departments; a unit admin and an auditor of the first department."""
    setup_admin(client, database)
    csrf = login(client)
    headers = {"X-CSRF-Token": csrf}

    def unit(name: str, kind: str, parent: int | None) -> int:
        answer = client.post("/api/v1/units", json={"name": name, "kind": kind, "parent_id": parent}, headers=headers)
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])

    province = unit("Tỉnh Bắc Ninh", "province", None)
    health = unit("Sở Y tế", "department", province)
    hospital = unit("Bệnh viện", "unit", health)
    education = unit("Sở Giáo dục", "department", province)
    for username, role in (("yte.admin", "unit_admin"), ("yte.audit", "auditor")):
        body = {"username": username, "password": PASSWORD, "role": role, "unit_id": health}
        assert client.post("/api/v1/users", json=body, headers=headers).status_code == 201
    client.cookies.clear()
    return {"province": province, "health": health, "hospital": hospital, "education": education}


# -- agents, as the tests of several domains enroll them ----------------------------------------------------


def enrollment_token(client: TestClient, unit: int, **extra: Any) -> str:
    """A fresh enrollment token for ``unit``, made by the admin (the client is logged out again)."""
    csrf = login(client)
    body = {"name": "đợt cài đặt tháng 11", "unit_id": unit, **extra}
    answer = client.post("/api/v1/enrollment-tokens", json=body, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 201, answer.text
    client.cookies.clear()
    token: str = answer.json()["token"]
    return token


def enroll_agent(client: TestClient, token: str, hostname: str = "may-tram-01") -> dict[str, Any]:
    answer = client.post(
        "/api/v1/agent/enroll", json={"token": token, "hostname": hostname, "os": "Linux", "os_version": "Debian 12"}
    )
    assert answer.status_code == 201, answer.text
    enrolled: dict[str, Any] = answer.json()
    return enrolled


def agent_auth(enrolled: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Agent {enrolled['agent_id']}:{enrolled['secret']}"}


def detection_event(**extra: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "path": "/home/user/Tải về/hoá đơn.zip",
        "chain": ["hoá đơn.zip", "eicar.com"],
        "name": "Eicar-Test-Signature",
        "kind": "builtin",
        "md5": "44d88612fea8a8f36de82e1278abb02f",
        "size": 68,
        "action": "quarantine",
        **extra,
    }
