"""Every operation of the OpenAPI document, fuzzed with schemathesis against the real app on each database.

The app runs in-process (ASGI) inside the test's rolled-back transaction. Each operation is fuzzed twice: as an
administrator with an API token, so that requests reach the handlers, and without credentials. Every answer must
be below 500 and conform to the document (documented status code, body matching its schema, content type).
Bounded and derandomized so that CI is stable.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from garrison.server.app import create_app
from garrison.server.db import Database
from garrison.server.settings import ServerSettings
from tests.server.conftest import login, setup_admin

MAX_EXAMPLES = 15
# What the document promises: never a server error, and every answer documented (status, headers, content type,
# body), and a 405 for methods a path does not have. Schemathesis's request-side checks (is lax coercion of "1"
# to 1 a bug?) are not what this file tests.
CHECKS = [
    not_a_server_error,
    unsupported_method,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    # The app and its database are per-test fixtures shared by the examples on purpose (state builds up), and
    # examples on PostgreSQL are slow to generate next to pure functions: neither is a problem here.
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def fuzz_app(database: Database, settings: ServerSettings) -> FastAPI:
    return create_app(settings, database, run_migrations=False)


@pytest.fixture
def admin_token(fuzz_app: FastAPI, database: Database) -> str:
    """An administrator's API token, created through the API like automation would."""
    with TestClient(fuzz_app, base_url="https://testserver") as client:
        setup_admin(client, database)
        csrf = login(client)
        answer = client.post("/api/v1/auth/tokens", json={"name": "fuzz"}, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 201, answer.text
        token: str = answer.json()["token"]
    return token


def _document_app() -> FastAPI:
    """An app only to read the document from, on a throwaway in-memory database: one test per operation."""
    cheap = ServerSettings(data_dir=Path(tempfile.gettempdir()), password_time_cost=1, password_memory_kib=64)
    return create_app(cheap, Database(create_engine("sqlite://", poolclass=StaticPool)))


schema = schemathesis.openapi.from_dict(_document_app().openapi())


@schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_as_admin(case: schemathesis.Case, fuzz_app: FastAPI, admin_token: str) -> None:
    case.call_and_validate(app=fuzz_app, checks=CHECKS, headers={"Authorization": f"Bearer {admin_token}"})


@schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_unauthenticated(case: schemathesis.Case, fuzz_app: FastAPI) -> None:
    case.call_and_validate(app=fuzz_app, checks=CHECKS)


def test_every_operation_is_fuzzed(fuzz_app: FastAPI) -> None:
    """The document lists the REST API: a new route is fuzzed as soon as it exists."""
    operations = {(m.upper(), p) for p, item in fuzz_app.openapi()["paths"].items() for m in item}
    assert ("GET", "/healthz") in operations
    assert ("POST", "/api/v1/agent/events") in operations
    assert len(operations) >= 27
