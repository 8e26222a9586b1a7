"""Console pages through the ASGI app, on SQLite and PostgreSQL: login, setup, CSRF, scope, language, forms."""

from __future__ import annotations

import re

import pyotp
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select

from garrison.server.auth import service as auth
from garrison.server.auth.models import User
from garrison.server.db import Database
from tests.server.conftest import PASSWORD

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


def console_login(client: TestClient, username: str = "admin", password: str = PASSWORD, totp: str = "") -> Response:
    page = client.get("/login")
    token = LOGIN_TOKEN.search(page.text)
    assert token, page.text
    form = {"username": username, "password": password, "totp": totp, "login_token": token[1], "next": "/"}
    return client.post("/login", data=form, follow_redirects=False)


def csrf_of(client: TestClient, path: str = "/") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found, page.text
    return found[1]


def setup_via_console(client: TestClient, database: Database) -> None:
    with database.session() as session:
        token = auth.issue_setup_token(session)
    assert token is not None
    form = {
        "token": token,
        "username": "admin",
        "display_name": "Nguyễn Văn Quản",
        "password": PASSWORD,
        "password_again": PASSWORD,
    }
    answer = client.post("/setup", data=form, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/login?setup=done"


def test_pages_need_a_login_and_the_login_flow_works(client: TestClient, database: Database) -> None:
    first = client.get("/units", follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/login?next=/units"
    setup_via_console(client, database)
    login_page = client.get("/login?setup=done")
    assert '<html lang="vi">' in login_page.text
    assert "Đã tạo tài khoản quản trị" in login_page.text

    wrong = console_login(client, password="not the password at all")
    assert wrong.status_code == 401
    assert "Tên đăng nhập, mật khẩu hoặc mã xác thực không đúng." in wrong.text

    right = console_login(client, username="ADMIN")
    assert right.status_code == 303
    assert right.headers["location"] == "/"
    cookie = right.headers["set-cookie"]
    assert "garrison_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    home = client.get("/")
    assert home.status_code == 200
    assert "Tổng quan" in home.text and "Nguyễn Văn Quản" in home.text
    assert client.get("/login", follow_redirects=False).headers["location"] == "/"

    csrf = csrf_of(client)
    out = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303


def test_login_form_needs_its_own_token(client: TestClient, database: Database) -> None:
    setup_via_console(client, database)
    answer = client.post("/login", data={"username": "admin", "password": PASSWORD, "login_token": "forged"})
    assert answer.status_code == 400
    assert "Biểu mẫu đã hết hạn" in answer.text


def test_login_with_a_one_time_code(client: TestClient, database: Database) -> None:
    setup_via_console(client, database)
    secret = pyotp.random_base32()
    with database.session() as session:
        session.scalars(select(User).where(User.username == "admin")).one().totp_secret = secret
    without = console_login(client)
    assert without.status_code == 401 and "mã xác thực không đúng" in without.text
    assert console_login(client, totp=pyotp.TOTP(secret).now()).status_code == 303


def test_throttled_login_says_how_long_to_wait(client: TestClient, database: Database) -> None:
    setup_via_console(client, database)
    for _ in range(3):
        assert console_login(client, password="wrong password here").status_code == 401
    blocked = console_login(client)
    assert blocked.status_code == 429
    assert "Vui lòng đợi 15 phút rồi thử lại" in blocked.text
    assert int(blocked.headers["Retry-After"]) == 900


def test_setup_page(client: TestClient, database: Database) -> None:
    with database.session() as session:
        token = auth.issue_setup_token(session)
    assert token is not None
    page = client.get(f"/setup?token={token}")
    assert page.status_code == 200 and "Cài đặt lần đầu" in page.text
    base = {"token": token, "username": "admin", "display_name": ""}
    mismatch = client.post("/setup", data={**base, "password": PASSWORD, "password_again": PASSWORD + "x"})
    assert mismatch.status_code == 400 and "Hai mật khẩu không giống nhau." in mismatch.text
    weak = client.post("/setup", data={**base, "password": "short", "password_again": "short"})
    assert weak.status_code == 400 and "Mật khẩu phải có ít nhất 12 ký tự." in weak.text
    forged = client.post("/setup", data={**base, "token": "forged", "password": PASSWORD, "password_again": PASSWORD})
    assert forged.status_code == 400 and "Đường dẫn cài đặt này không còn hiệu lực" in forged.text
    ok = client.post("/setup", data={**base, "password": PASSWORD, "password_again": PASSWORD}, follow_redirects=False)
    assert ok.status_code == 303
    assert "Garrison đã có tài khoản quản trị" in client.get(f"/setup?token={token}").text


def test_a_form_without_the_csrf_token_is_refused(client: TestClient, database: Database) -> None:
    setup_via_console(client, database)
    console_login(client)
    unit = {"name": "Tỉnh Bắc Ninh", "kind": "province", "parent_id": ""}
    refused = client.post("/units/new", data=unit)
    assert refused.status_code == 403
    assert "Biểu mẫu đã hết hạn hoặc không xuất phát từ trang quản trị này" in refused.text
    assert client.post("/units/new", data={**unit, "csrf_token": "wrong"}).status_code == 403
    assert "Tỉnh Bắc Ninh" not in client.get("/units").text
    created = client.post("/units/new", data={**unit, "csrf_token": csrf_of(client)}, follow_redirects=False)
    assert created.status_code == 303
    # htmx sends the token in a header instead of a field.
    headers = {"X-CSRF-Token": csrf_of(client)}
    other = {"name": "Sở Y tế", "kind": "department", "parent_id": _unit_id(client, "Tỉnh Bắc Ninh")}
    assert client.post("/units/new", data=other, headers=headers, follow_redirects=False).status_code == 303


def _unit_id(client: TestClient, name: str) -> str:
    page = client.get("/units").text
    found = re.search(r'<tr id="unit-(\d+)">\s*<td><span class="tree"[^>]*>' + re.escape(name) + "<", page)
    assert found, page
    return found[1]


def test_a_unit_admin_cannot_open_another_units_pages(client: TestClient, tree: dict[str, int]) -> None:
    assert console_login(client, "yte.admin").status_code == 303
    for path in (
        f"/units/{tree['education']}/edit",
        f"/units/{tree['education']}/delete",
        f"/units/{tree['province']}/edit",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "nằm ngoài phạm vi bạn quản lý" in answer.text
    assert client.get(f"/units/{tree['hospital']}/edit").status_code == 200
    csrf = csrf_of(client, "/units")
    gone = client.post(f"/units/{tree['education']}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 404
    listed = client.get("/units").text
    assert "Sở Y tế" in listed and "Bệnh viện" in listed
    assert "Sở Giáo dục" not in listed and "Tỉnh Bắc Ninh" not in listed
    assert client.get(f"/units/new?parent={tree['education']}").status_code == 404
    # A unit outside the scope cannot be chosen as a parent either.
    moved = client.post(
        f"/units/{tree['hospital']}/edit",
        data={"csrf_token": csrf, "name": "Bệnh viện", "kind": "unit", "parent_id": str(tree["education"])},
    )
    assert moved.status_code == 404
    people = client.get("/users").text
    assert "yte.audit" in people and ">admin<" not in people


def test_an_auditor_reads_but_cannot_change(client: TestClient, tree: dict[str, int]) -> None:
    assert console_login(client, "yte.audit").status_code == 303
    page = client.get("/units")
    assert page.status_code == 200 and "Thêm đơn vị" not in page.text
    csrf = csrf_of(client, "/units")
    form = {"csrf_token": csrf, "name": "Khoa mới", "kind": "unit", "parent_id": str(tree["health"])}
    refused = client.post("/units/new", data=form)
    assert refused.status_code == 403
    assert "Tài khoản của bạn chỉ được xem" in refused.text


def test_language_switch(client: TestClient, database: Database) -> None:
    setup_via_console(client, database)
    console_login(client)
    switched = client.get("/lang/en?next=/units", follow_redirects=False)
    assert switched.status_code == 303 and switched.headers["location"] == "/units"
    page = client.get("/units")
    assert '<html lang="en">' in page.text
    assert "Organisation" in page.text and "Add a unit" in page.text and "Cơ cấu tổ chức" not in page.text
    assert client.get("/lang/vi?next=//evil.example/", follow_redirects=False).headers["location"] == "/"
    assert '<html lang="vi">' in client.get("/units").text
    assert client.get("/lang/fr", follow_redirects=False).headers["set-cookie"].startswith("garrison_lang=vi")


def test_unit_forms_tree_and_import(client: TestClient, database: Database) -> None:
    setup_via_console(client, database)
    console_login(client)
    csrf = csrf_of(client)
    bad = client.post("/units/new", data={"csrf_token": csrf, "name": " ", "kind": "nope", "declared_servers": "-1"})
    assert bad.status_code == 400
    assert "Hãy nhập tên" in bad.text and "Hãy chọn loại đơn vị." in bad.text and "Hãy nhập số nguyên" in bad.text
    province = {"csrf_token": csrf, "name": "Tỉnh Bắc Ninh", "kind": "province", "code": "BN", "declared_servers": "4"}
    assert client.post("/units/new", data=province, follow_redirects=False).status_code == 303
    again = client.post("/units/new", data={**province, "code": ""})
    assert again.status_code == 409 and "Cơ cấu tổ chức đã có cấp cao nhất" in again.text

    bad_csv = (
        "name,kind,parent,code,servers,workstations,other\nSở Y tế,department,BN,SYT,2,150,10\nX,department,ZZ,,1,1,1\n"
    )
    answer = client.post(
        "/units/import", data={"csrf_token": csrf}, files={"file": ("units.csv", bad_csv.encode(), "text/csv")}
    )
    assert answer.status_code == 400
    assert "Dòng 3 của tệp: không tìm thấy đơn vị cấp trên “ZZ”" in answer.text
    assert "Sở Y tế" not in client.get("/units").text  # all or nothing
    good_csv = bad_csv.replace("ZZ", "SYT")
    done = client.post(
        "/units/import", data={"csrf_token": csrf}, files={"file": ("units.csv", good_csv.encode(), "text/csv")}
    )
    assert done.status_code == 200 and "Đã nhập các đơn vị trong tệp." in done.text
    assert "--depth: 2" in done.text  # X sits two levels below the province
    assert "<strong>169</strong>" in done.text  # declared in the whole tree: 4 + (2 + 150 + 10) + (1 + 1 + 1)

    health, x = _unit_id(client, "Sở Y tế"), _unit_id(client, "X")
    edit = client.get(f"/units/{x}/edit")
    assert edit.status_code == 200 and "Sửa đơn vị “X”" in edit.text
    root = _unit_id(client, "Tỉnh Bắc Ninh")
    form = {"csrf_token": csrf, "name": "Phòng X", "kind": "unit", "parent_id": root, "declared_workstations": "7"}
    assert client.post(f"/units/{x}/edit", data=form, follow_redirects=False).status_code == 303
    assert "Phòng X" in client.get("/units").text
    under_itself = client.post(f"/units/{health}/edit", data={**form, "name": "Sở Y tế", "parent_id": health})
    assert under_itself.status_code == 400
    assert "Không thể chuyển một đơn vị vào dưới chính nó" in under_itself.text
    confirm = client.get(f"/units/{root}/delete")
    assert "Xoá đơn vị “Tỉnh Bắc Ninh”?" in confirm.text
    refused = client.post(f"/units/{root}/delete", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "vẫn còn đơn vị trực thuộc" in refused.text
    deleted = client.post(f"/units/{x}/delete", data={"csrf_token": csrf}, follow_redirects=False)
    assert deleted.status_code == 303
    assert "Phòng X" not in client.get("/units").text


def test_users_page_and_form(client: TestClient, tree: dict[str, int]) -> None:
    console_login(client)
    csrf = csrf_of(client, "/users/new")
    form = {
        "csrf_token": csrf,
        "username": "giaoduc.admin",
        "display_name": "Trần Thị Bình",
        "password": PASSWORD,
        "password_again": PASSWORD,
        "role": "unit_admin",
        "unit_id": "",
    }
    no_unit = client.post("/users/new", data=form)
    assert no_unit.status_code == 400 and "Hãy chọn đơn vị của người này." in no_unit.text
    created = client.post("/users/new", data={**form, "unit_id": str(tree["education"])}, follow_redirects=False)
    assert created.status_code == 303
    listed = client.get("/users").text
    assert "Trần Thị Bình" in listed and "Quản trị đơn vị" in listed and "Sở Giáo dục" in listed
    taken = client.post("/users/new", data={**form, "unit_id": str(tree["education"])})
    assert taken.status_code == 409 and "Tên đăng nhập “giaoduc.admin” đã có người dùng." in taken.text

    client.cookies.clear()
    console_login(client, "yte.admin")
    page = client.get("/users/new").text
    assert 'value="admin"' not in page  # a unit admin is not offered the administrator role
    csrf = csrf_of(client, "/users/new")
    as_admin = client.post("/users/new", data={**form, "csrf_token": csrf, "username": "sneaky", "role": "admin"})
    assert as_admin.status_code == 403
    elsewhere = {**form, "csrf_token": csrf, "username": "other", "unit_id": str(tree["education"])}
    assert client.post("/users/new", data=elsewhere).status_code == 404


@pytest.mark.parametrize("language", ["vi", "en"])
def test_audit_log_filters_paging_and_csv(client: TestClient, tree: dict[str, int], language: str) -> None:
    console_login(client)
    client.cookies.set("garrison_lang", language)
    page = client.get("/audit")
    assert page.status_code == 200
    created = "Thêm đơn vị" if language == "vi" else "Created a unit"
    assert created in page.text and "Sở Giáo dục" in page.text
    only_users = client.get("/audit?action=user.create").text
    assert "yte.audit" in only_users and "Sở Giáo dục" not in only_users
    future = client.get("/audit?since=2999-01-01").text
    assert ("Không có mục nào" if language == "vi" else "No entries match") in future
    assert client.get("/audit?since=not-a-date&page=99").status_code == 200

    export = client.get("/audit.csv?action=unit.create")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    text = export.content.decode("utf-8")
    assert text.startswith("\ufeff")
    lines = text.strip().splitlines()
    assert len(lines) == 1 + 4  # header + the four units of the tree
    assert "unit.create" in lines[1]

    client.cookies.clear()
    console_login(client, "yte.admin")
    scoped = client.get("/audit").text
    assert "Sở Giáo dục" not in scoped and "Bệnh viện" in scoped


def test_htmx_requests_are_redirected_to_login(client: TestClient) -> None:
    answer = client.get("/audit", headers={"HX-Request": "true"}, follow_redirects=False)
    assert answer.status_code == 204 and answer.headers["HX-Redirect"] == "/login?next=/audit"


def test_static_files(client: TestClient) -> None:
    assert client.get("/static/console.css").status_code == 200
    htmx = client.get("/static/vendor/htmx.min.js")
    assert htmx.status_code == 200 and b"htmx" in htmx.content[:200]


def test_lists_page_with_their_filters_kept(client: TestClient, tree: dict[str, int], database: Database) -> None:
    from garrison.server.audit.service import SYSTEM, record

    with database.session() as session:
        for i in range(60):
            record(session, SYSTEM, "unit.update", "unit", tree["health"], unit_id=tree["health"], n=i)
    console_login(client)
    client.cookies.set("garrison_lang", "en")
    first = client.get("/audit?action=unit.update").text
    assert "Page 1 of 2" in first
    assert 'href="/audit?action=unit.update&page=2"' in first
    second = client.get("/audit?action=unit.update&page=2").text
    assert "Page 2 of 2" in second and 'href="/audit?action=unit.update&page=1"' in second
    assert "Page 1 of" not in client.get("/detections").text  # one page: no pager at all
