"""Logging in, first-time setup, CSRF, throttling, roles and scope, through the HTTP API."""

from __future__ import annotations

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from garrison.server.auth import service as auth
from garrison.server.auth.models import User
from garrison.server.db import Database
from tests.server.conftest import PASSWORD, login, setup_admin


def test_setup_link_works_once(client: TestClient, database: Database) -> None:
    with database.session() as session:
        token = auth.issue_setup_token(session)
    body = {"token": token, "username": "admin", "password": PASSWORD}
    assert client.post("/api/v1/setup", json=body).status_code == 201
    again = client.post("/api/v1/setup", json={**body, "username": "second"})
    assert again.status_code == 401
    with database.session() as session:
        assert auth.issue_setup_token(session) is None  # users exist: no more setup links


def test_no_default_account_and_no_access_withoutlogin(client: TestClient) -> None:
    assert client.post("/api/v1/auth/login", json={"username": "admin", "password": "admin"}).status_code == 401
    assert client.get("/api/v1/units").status_code == 401


def test_weak_passwords_are_refused(client: TestClient, database: Database) -> None:
    with database.session() as session:
        token = auth.issue_setup_token(session)
    answer = client.post("/api/v1/setup", json={"token": token, "username": "admin", "password": "short"})
    assert answer.status_code == 400
    assert "at least 12 characters" in answer.json()["message"]


def test_login_sets_a_secure_cookie_and_changes_need_the_csrf_token(client: TestClient, database: Database) -> None:
    setup_admin(client, database)
    answer = client.post("/api/v1/auth/login", json={"username": "ADMIN", "password": PASSWORD})
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=strict" in cookie
    csrf = answer.json()["csrf_token"]
    unit = {"name": "Tỉnh Bắc Ninh", "kind": "province"}
    assert client.get("/api/v1/units").status_code == 200
    refused = client.post("/api/v1/units", json=unit)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["message"]
    assert client.post("/api/v1/units", json=unit, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert client.post("/api/v1/units", json=unit, headers={"X-CSRF-Token": csrf}).status_code == 201


def test_login_throttling(client: TestClient, database: Database) -> None:
    setup_admin(client, database)
    for _ in range(3):
        assert client.post("/api/v1/auth/login", json={"username": "admin", "password": "nope"}).status_code == 401
    blocked = client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0


def test_totp(client: TestClient, database: Database, session: Session) -> None:
    setup_admin(client, database)
    secret = pyotp.random_base32()
    with database.session() as s:
        user = s.query(User).filter_by(username="admin").one()
        user.totp_secret = secret
    missing = client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    assert missing.status_code == 401
    code = pyotp.TOTP(secret).now()
    ok = client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD, "totp": code})
    assert ok.status_code == 200


def test_logout_ends_the_session(client: TestClient, database: Database) -> None:
    setup_admin(client, database)
    csrf = login(client)
    assert client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401


def test_api_tokens(client: TestClient, database: Database) -> None:
    setup_admin(client, database)
    csrf = login(client)
    token = client.post("/api/v1/auth/tokens", json={"name": "report script"}, headers={"X-CSRF-Token": csrf})
    assert token.status_code == 201
    value = token.json()["token"]
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {value}"}
    assert client.get("/api/v1/auth/me", headers=bearer).json()["username"] == "admin"
    # No CSRF token needed: a bearer token is not sent by browsers on their own.
    assert client.post("/api/v1/units", json={"name": "Tỉnh", "kind": "province"}, headers=bearer).status_code == 201
    assert client.get("/api/v1/auth/me", headers={"Authorization": "Bearer gst_nope"}).status_code == 401


# Every units route, and what a unit admin of "health" may do with the other department's unit.
ROUTES = [
    ("GET", "/api/v1/units/{education}", None),
    ("PUT", "/api/v1/units/{education}", {"name": "Đổi tên", "kind": "department", "parent_id": "{province}"}),
    ("DELETE", "/api/v1/units/{education}", None),
    ("POST", "/api/v1/units", {"name": "Trường", "kind": "unit", "parent_id": "{education}"}),
    ("GET", "/api/v1/units?root={education}", None),
]


def _fill(value: object, tree: dict[str, int]) -> object:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return tree[value[1:-1]]
    if isinstance(value, str):
        return value.format(**tree)
    if isinstance(value, dict):
        return {k: _fill(v, tree) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_a_unit_admin_never_reaches_another_units_data(
    client: TestClient, tree: dict[str, int], method: str, path: str, body: object
) -> None:
    csrf = login(client, "yte.admin")
    answer = client.request(method, str(_fill(path, tree)), json=_fill(body, tree), headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 404, answer.text


def test_unit_admin_sees_and_changes_only_their_subtree(client: TestClient, tree: dict[str, int]) -> None:
    csrf = login(client, "yte.admin")
    names = [u["name"] for u in client.get("/api/v1/units").json()]
    assert names == ["Sở Y tế", "Bệnh viện"]
    body = {"name": "Trạm Y tế xã", "kind": "unit", "parent_id": tree["health"]}
    assert client.post("/api/v1/units", json=body, headers={"X-CSRF-Token": csrf}).status_code == 201
    users = [u["username"] for u in client.get("/api/v1/users").json()]
    assert users == ["yte.admin", "yte.audit"]
    admin = {"username": "boss", "password": PASSWORD, "role": "admin"}
    assert client.post("/api/v1/users", json=admin, headers={"X-CSRF-Token": csrf}).status_code == 403


def test_auditor_reads_but_cannot_change(client: TestClient, tree: dict[str, int]) -> None:
    csrf = login(client, "yte.audit")
    assert [u["name"] for u in client.get("/api/v1/units").json()] == ["Sở Y tế", "Bệnh viện"]
    body = {"name": "Mới", "kind": "unit", "parent_id": tree["health"]}
    assert client.post("/api/v1/units", json=body, headers={"X-CSRF-Token": csrf}).status_code == 403
    assert client.delete(f"/api/v1/units/{tree['hospital']}", headers={"X-CSRF-Token": csrf}).status_code == 403


def test_every_change_is_in_the_audit_log(client: TestClient, tree: dict[str, int]) -> None:
    login(client)
    events = client.get("/api/v1/audit?limit=50").json()
    actions = [e["action"] for e in events]
    assert actions.count("unit.create") == 4
    assert actions.count("user.create") == 3  # the first admin too
    assert "auth.login" in actions
    create = next(e for e in events if e["action"] == "unit.create")
    assert create["actor_name"] == "admin" and create["address"]
    assert all("password" not in str(e["details"]).lower() for e in events)
    client.cookies.clear()
    login(client, "yte.admin")
    scoped = client.get("/api/v1/audit").json()
    assert scoped and all(e["unit_id"] in (tree["health"], tree["hospital"]) for e in scoped)


def test_csv_import_through_the_api(client: TestClient, tree: dict[str, int]) -> None:
    csrf = login(client)
    csv = "name,kind,parent,code,servers,workstations,other\nTrường THPT,unit,Sở Giáo dục,,0,50,2\n"
    answer = client.post(
        "/api/v1/units/import", files={"file": ("units.csv", csv.encode(), "text/csv")}, headers={"X-CSRF-Token": csrf}
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()[0]["parent_id"] == tree["education"]
    bad = client.post(
        "/api/v1/units/import",
        files={"file": ("u.csv", b"name,kind\nX,planet\n", "text/csv")},
        headers={"X-CSRF-Token": csrf},
    )
    assert bad.status_code == 400 and "CSV line 2" in bad.json()["message"]


def test_validation_errors_are_clear(client: TestClient, tree: dict[str, int]) -> None:
    csrf = login(client)
    answer = client.post("/api/v1/units", json={"name": "", "kind": "galaxy"}, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 422
    assert {p["where"] for p in answer.json()["problems"]} == {"body.name", "body.kind"}


# Regressions found by the fuzzer (tests/server/test_api_fuzz.py).


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/api/v1/units/2147483648", None),
        ("PUT", "/api/v1/units/9223372036854775808", {"name": "X", "kind": "unit"}),
        ("DELETE", "/api/v1/units/2147483648", None),
        ("GET", "/api/v1/units?root=9223372036854775808", None),
        ("POST", "/api/v1/units", {"name": "X", "kind": "unit", "parent_id": 2147483648}),
        ("POST", "/api/v1/users", {"username": "x", "password": PASSWORD, "role": "auditor", "unit_id": 2**31}),
        ("GET", "/api/v1/audit?offset=9223372036854775808", None),
        ("GET", "/api/v1/detections?offset=9223372036854775808", None),
    ],
)
def test_ids_beyond_the_database_integers_are_invalid_not_a_crash(
    client: TestClient, tree: dict[str, int], method: str, url: str, body: dict[str, object] | None
) -> None:
    csrf = login(client)
    answer = client.request(method, url, json=body, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid_request"


def test_csv_counts_beyond_the_api_bounds_are_refused(client: TestClient, tree: dict[str, int]) -> None:
    csrf = login(client)
    csv = "name,kind,parent,code,servers,workstations,other\nTrường,unit,,,9223372036854775808,0,0\n"
    answer = client.post(
        "/api/v1/units/import", files={"file": ("u.csv", csv.encode(), "text/csv")}, headers={"X-CSRF-Token": csrf}
    )
    assert answer.status_code == 400, answer.text
    assert "CSV line 2" in answer.json()["message"]


def test_framework_refusals_use_the_error_format(client: TestClient, tree: dict[str, int]) -> None:
    csrf = login(client)
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    unparsable = client.post("/api/v1/units", content=b"\x10\xff{", headers=headers)
    assert unparsable.status_code in (400, 422)
    assert {"error", "message"} <= unparsable.json().keys()
    # A 405 lists every method of the path, not only those of the first route matched.
    every_method = client.request("OPTIONS", f"/api/v1/units/{tree['health']}")
    assert every_method.status_code == 405
    assert set(every_method.headers["Allow"].split(", ")) >= {"GET", "PUT", "DELETE"}
    assert every_method.json()["error"] == "method_not_allowed"
    assert client.get("/api/v1/nothing-here").json()["error"] == "not_found"


def test_moments_carry_their_zone(client: TestClient, tree: dict[str, int]) -> None:
    """SQLite drops the zone of stored moments; the API still sends RFC 3339 date-times with one."""
    login(client)
    me = client.get("/api/v1/auth/me").json()
    assert me["last_login_at"].endswith(("+00:00", "Z"))
    [event, *_] = client.get("/api/v1/audit").json()
    assert event["at"].endswith(("+00:00", "Z"))
