"""Console pages of policies, on SQLite and PostgreSQL: the form stores only the settings set here (a layer),
explains invalid input in the form, bumps the version; units' policies, groups, a computer's effective policy with
the source of each setting and whether it applied it; the allow-list from a detection; who may do what."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from garrison.server.console.views.policies import form_values
from garrison.server.db import Database
from garrison.server.detections.models import Detection, Triage
from garrison.server.policies.models import AgentGroup, AllowedFile, Policy, PolicyAssignment
from tests.server.conftest import agent_auth, detection_event, enroll_agent, enrollment_token
from tests.server.console.test_views import console_login, csrf_of

HTMX = {"HX-Request": "true"}


def _form(csrf: str, name: str, owner: int | str | None = None, **settings: str) -> dict[str, str]:
    """A filled policy form: every setting inherited but those given (``mode_x="set"`` is added for them)."""
    form = {"csrf_token": csrf, "name": name, "description": "", **form_values({})}
    if owner is not None:
        form["owner_unit_id"] = str(owner)
    for key, value in settings.items():
        form[key] = value
    return form


def _set(*names: str) -> dict[str, str]:
    return {f"mode_{name}": "set" for name in names}


def _policy(database: Database, name: str) -> Policy:
    with database.session() as session:
        policy = session.scalar(select(Policy).where(Policy.name == name))
        assert policy is not None
        session.expunge(policy)
        return policy


def _create(client: TestClient, owner: int, name: str, **settings: str) -> int:
    csrf = csrf_of(client, "/policies/new")
    made = client.post("/policies/new", data=_form(csrf, name, owner, **settings), follow_redirects=False)
    assert made.status_code == 303, made.text
    found = re.search(r"#policy-(\d+)$", made.headers["location"])
    assert found
    return int(found[1])


def test_the_form_stores_only_what_is_set_here_and_explains_mistakes(
    client: TestClient, tree: dict[str, int], database: Database
) -> None:
    console_login(client)
    page = client.get("/policies")
    assert page.status_code == 200 and "Chưa có chính sách nào" in page.text
    form_page = client.get("/policies/new")
    assert "Kế thừa (không đặt ở đây)" in form_page.text and "Đặt ở đây" in form_page.text
    assert "Chỉ báo cáo" in form_page.text and "Cách ly" in form_page.text and "Xoá" in form_page.text
    assert "0 12 * * 1-5" in form_page.text
    csrf = csrf_of(client, "/policies/new")
    settings = {
        **_set("action", "schedules", "exclude", "limits"),
        "action": "quarantine",
        "exclude": "/proc/*\n\n  /srv/backup/*  \n",
        "schedule_cron_0": "0  12 * * 1-5",
        "schedule_paths_0": "/home\n/srv",
        "schedule_delay_0": "45",
        "schedule_cron_2": "30 7 * * *",
        "heartbeat_seconds": "300",  # shown but inherited: not stored
        "max_file_mb": "50",
    }
    made = client.post(
        "/policies/new", data=_form(csrf, "Máy trạm", tree["health"], **settings), follow_redirects=False
    )
    assert made.status_code == 303, made.text
    policy = _policy(database, "Máy trạm")
    assert policy.owner_unit_id == tree["health"] and policy.version == 1
    assert policy.settings == {
        "action": "quarantine",
        "exclude": ["/proc/*", "/srv/backup/*"],
        "schedules": [
            {"cron": "0 12 * * 1-5", "paths": ["/home", "/srv"], "random_delay_minutes": 45},
            {"cron": "30 7 * * *", "paths": [], "random_delay_minutes": 30},
        ],
        "limits": {
            "max_file_mb": 50,
            "max_scan_mb": None,
            "max_depth": None,
            "max_members": None,
            "max_scan_seconds": None,
        },
    }
    listed = client.get(made.headers["location"]).text
    assert "Đã thêm chính sách." in listed
    assert "Cách ly" in listed and "0 12 * * 1-5" in listed and "/srv/backup/*" in listed
    assert "Báo cáo về máy chủ mỗi" not in listed  # inherited: not listed among what it sets
    assert f'href="/policies/{policy.id}/edit"' in listed

    # A bad schedule: the form comes back with the reason, next to the field, and what was typed.
    edit = client.get(f"/policies/{policy.id}/edit").text
    assert 'value="set" checked' in edit and "/srv/backup/*" in edit
    bad = client.post(
        f"/policies/{policy.id}/edit",
        data=_form(csrf, "Máy trạm", **{**settings, "schedule_cron_0": "61 * * * *"}),
    )
    assert bad.status_code == 400
    assert "Chưa lưu chính sách" in bad.text and "Lịch quét 1" in bad.text
    assert "không phải là thời gian hợp lệ" in bad.text and 'value="61 * * * *"' in bad.text
    assert 'id="schedule_cron_0-error"' in bad.text
    short = client.post(
        f"/policies/{policy.id}/edit", data=_form(csrf, "Máy trạm", **{**settings, "schedule_cron_0": "0 12"})
    )
    assert short.status_code == 400 and "năm phần" in short.text
    small = client.post(
        f"/policies/{policy.id}/edit",
        data=_form(csrf, "Máy trạm", **{**settings, **_set("heartbeat_seconds"), "heartbeat_seconds": "5"}),
    )
    assert small.status_code == 400 and "ít nhất là 10" in small.text
    typed = client.post(
        f"/policies/{policy.id}/edit",
        data=_form(csrf, "Máy trạm", **{**settings, **_set("heartbeat_seconds"), "heartbeat_seconds": "năm"}),
    )
    assert typed.status_code == 400 and "Nhập một số nguyên." in typed.text
    assert _policy(database, "Máy trạm").version == 1

    # Editing: the version goes up; a setting switched back to "inherit" is no longer stored.
    changed = {**settings, **_set("heartbeat_seconds"), "mode_limits": "inherit", "heartbeat_seconds": "120"}
    saved = client.post(f"/policies/{policy.id}/edit", data=_form(csrf, "Máy trạm", **changed), follow_redirects=False)
    assert saved.status_code == 303, saved.text
    policy = _policy(database, "Máy trạm")
    assert policy.version == 2
    assert set(policy.settings) == {"action", "exclude", "schedules", "heartbeat_seconds"}
    assert policy.settings["heartbeat_seconds"] == 120
    assert "2 phút" in client.get("/policies").text

    # A duplicate name in the same unit is explained in the form.
    twin = client.post("/policies/new", data=_form(csrf, "Máy trạm", tree["health"]))
    assert twin.status_code == 409 and "Đơn vị đã có chính sách tên “Máy trạm”" in twin.text


def test_units_groups_and_the_computers_policy(client: TestClient, tree: dict[str, int], database: Database) -> None:
    enrolled = enroll_agent(client, enrollment_token(client, tree["hospital"]), hostname="bv-ketoan-01")
    agent_id = enrolled["agent_id"]
    console_login(client)
    general = _create(client, tree["province"], "Chung của tỉnh", **_set("action"), action="quarantine")
    health = _create(client, tree["health"], "Ngành y tế", **_set("realtime_paths"), realtime_paths="/srv/his")

    csrf = csrf_of(client, "/policies/assign")
    page = client.get("/policies/assign").text
    assert f'action="/policies/assign/{tree["education"]}"' in page
    for unit, policy in ((tree["province"], general), (tree["health"], health)):
        assigned = client.post(f"/policies/assign/{unit}", data={"csrf_token": csrf, "policy_id": str(policy)})
        assert assigned.status_code == 200 and "Đã lưu chính sách của đơn vị." in assigned.text
    with database.session() as session:
        rows = {a.unit_id: a.policy_id for a in session.scalars(select(PolicyAssignment))}
    assert rows == {tree["province"]: general, tree["health"]: health}
    page = client.get("/policies/assign").text
    assert "Chung của tỉnh › Ngành y tế" in page  # what the hospital inherits

    # The computer's page loads its policy section; without JavaScript, the link opens it as a page.
    detail = client.get(f"/agents/{agent_id}").text
    assert f'hx-get="/agents/{agent_id}/policy-section"' in detail
    section = client.get(f"/agents/{agent_id}/policy-section", headers=HTMX).text
    assert "<html" not in section
    assert "Đơn vị Tỉnh Bắc Ninh: chính sách Chung của tỉnh" in section
    assert "Đơn vị Sở Y tế: chính sách Ngành y tế" in section and "/srv/his" in section
    assert "không chính sách nào đặt" in section and "Chưa nhận chính sách mới" in section
    assert "<html" in client.get(f"/agents/{agent_id}/policy-section").text

    # The computer reports the revision it applied.
    client.cookies.clear()
    document = client.get("/api/v1/agent/policy", headers=agent_auth(enrolled)).json()
    body = {"inventory": {"hostname": "bv-ketoan-01", "os": "Linux", "policy_revision": document["revision"]}}
    assert client.post("/api/v1/agent/heartbeat", json=body, headers=agent_auth(enrolled)).status_code == 200
    console_login(client)
    assert "Đã áp dụng" in client.get(f"/agents/{agent_id}/policy-section", headers=HTMX).text

    # A group with its own policy; the computer joins it on its page.
    servers = _create(client, tree["province"], "Máy chủ", **_set("heartbeat_seconds"), heartbeat_seconds="300")
    csrf = csrf_of(client, "/policies/groups/new")
    form = {"csrf_token": csrf, "name": "Máy chủ bệnh viện", "description": "", "unit_id": str(tree["health"])}
    made = client.post("/policies/groups/new", data={**form, "policy_id": str(servers)}, follow_redirects=False)
    assert made.status_code == 303, made.text
    with database.session() as session:
        group = session.scalars(select(AgentGroup)).one()
        group_id = group.id
    groups_page = client.get("/policies/groups").text
    assert "Máy chủ bệnh viện" in groups_page and "Sở Y tế" in groups_page
    section = client.get(f"/agents/{agent_id}/policy-section", headers=HTMX).text
    assert f'<option value="{group_id}"' in section
    joined = client.post(f"/agents/{agent_id}/group", data={"csrf_token": csrf, "group_id": str(group_id)})
    assert joined.status_code == 200
    section = client.get(f"/agents/{agent_id}/policy-section", headers=HTMX).text
    assert "Nhóm Máy chủ bệnh viện: chính sách Máy chủ" in section and "5 phút" in section
    assert "Chưa nhận chính sách mới" in section
    listed = client.get("/policies").text
    assert "Máy chủ bệnh viện" in listed  # where "Máy chủ" is used

    # A policy in use cannot be deleted; the page says why.
    refused = client.post(f"/policies/{servers}/delete", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "vẫn đang được dùng" in refused.text
    gone = client.post(f"/policies/groups/{group_id}/delete", data={"csrf_token": csrf}, follow_redirects=False)
    assert gone.status_code == 303
    deleted = client.post(f"/policies/{servers}/delete", data={"csrf_token": csrf}, follow_redirects=False)
    assert deleted.status_code == 303
    with database.session() as session:
        assert session.get(Policy, servers) is None
    # Back to inheriting: the hospital's unit has no own policy, the province's is removed.
    cleared = client.post(f"/policies/assign/{tree['province']}", data={"csrf_token": csrf, "policy_id": ""})
    assert cleared.status_code == 200
    with database.session() as session:
        assert session.get(PolicyAssignment, tree["province"]) is None


def _detection(client: TestClient, tree: dict[str, int], **extra: Any) -> str:
    enrolled = enroll_agent(client, enrollment_token(client, tree["hospital"]))
    event = detection_event(**extra)
    answer = client.post("/api/v1/agent/events", json={"detections": [event]}, headers=agent_auth(enrolled))
    assert answer.is_success, answer.text
    return str(event["id"])


def test_the_allow_list_from_a_detection(client: TestClient, tree: dict[str, int], database: Database) -> None:
    sha = "c" * 64
    whole = _detection(client, tree, chain=[], sha256=sha, name="Win.Trojan.Gia-1", action="report")
    inside = _detection(client, tree, sha256="d" * 64)  # inside an archive: cannot be allowed

    # A unit administrator sees no button and may not post.
    console_login(client, "yte.admin")
    assert "Cho phép tệp này trên mọi máy tính" not in client.get(f"/detections/{whole}").text
    csrf = csrf_of(client, "/policies/allowlist")
    refused = client.post(f"/detections/{whole}/allow", data={"csrf_token": csrf, "reason": "an toàn"})
    assert refused.status_code == 403 and "Chỉ quản trị viên cấp tỉnh" in refused.text
    client.cookies.clear()

    console_login(client)
    assert "Cho phép tệp này trên mọi máy tính" not in client.get(f"/detections/{inside}").text
    page = client.get(f"/detections/{whole}").text
    assert "Cho phép tệp này trên mọi máy tính" in page
    csrf = csrf_of(client, f"/detections/{whole}")
    empty = client.post(f"/detections/{whole}/allow", data={"csrf_token": csrf, "reason": " "})
    assert empty.status_code == 400
    allowed = client.post(f"/detections/{whole}/allow", data={"csrf_token": csrf, "reason": "phần mềm kế toán"})
    assert allowed.status_code == 200 and "Tệp này nay được phép trên mọi máy tính." in allowed.text
    with database.session() as session:
        assert session.get(Detection, whole).triage is Triage.FALSE_POSITIVE  # type: ignore[union-attr]
        assert session.scalars(select(AllowedFile.sha256)).all() == [sha]
    listed = client.get("/policies/allowlist").text
    assert sha in listed and "phần mềm kế toán" in listed and "Win.Trojan.Gia-1" in listed
    assert "Quản trị" in listed  # who added it

    # The unit administrator reads the list but cannot remove from it.
    client.cookies.clear()
    console_login(client, "yte.admin")
    seen = client.get("/policies/allowlist").text
    assert sha in seen and f"/policies/allowlist/{sha}/remove" not in seen
    csrf = csrf_of(client, "/policies/allowlist")
    assert client.post(f"/policies/allowlist/{sha}/remove", data={"csrf_token": csrf}).status_code == 403
    client.cookies.clear()

    console_login(client)
    csrf = csrf_of(client, "/policies/allowlist")
    assert client.post(f"/policies/allowlist/{sha}/remove", data={"csrf_token": "wrong"}).status_code == 403
    removed = client.post(f"/policies/allowlist/{sha}/remove", data={"csrf_token": csrf})
    assert removed.status_code == 200 and "Đã bỏ tệp khỏi danh sách được phép." in removed.text
    with database.session() as session:
        assert session.scalars(select(AllowedFile)).all() == []


def test_an_auditor_reads_but_cannot_change(client: TestClient, tree: dict[str, int], database: Database) -> None:
    enrolled = enroll_agent(client, enrollment_token(client, tree["hospital"]))
    console_login(client)
    policy = _create(client, tree["health"], "Ngành y tế", **_set("action"), action="delete")
    client.cookies.clear()

    console_login(client, "yte.audit")
    listed = client.get("/policies").text
    assert "Ngành y tế" in listed and "Xoá" in listed
    assert "/policies/new" not in listed and f"/policies/{policy}/edit" not in listed
    assign_page = client.get("/policies/assign").text
    assert "<select" not in assign_page
    section = client.get(f"/agents/{enrolled['agent_id']}/policy-section", headers=HTMX).text
    assert "/group" not in section and "(không có nhóm)" in section
    assert "/policies/groups/new" not in client.get("/policies/groups").text
    for path in ("/policies/new", f"/policies/{policy}/edit", "/policies/groups/new"):
        assert client.get(path).status_code == 403, path
    csrf = csrf_of(client, "/policies")
    posts = {
        "/policies/new": _form(csrf, "Khác", tree["health"]),
        f"/policies/{policy}/edit": _form(csrf, "Khác"),
        f"/policies/{policy}/delete": {"csrf_token": csrf},
        f"/policies/assign/{tree['hospital']}": {"csrf_token": csrf, "policy_id": str(policy)},
        "/policies/groups/new": {"csrf_token": csrf, "name": "Nhóm", "unit_id": str(tree["health"])},
        f"/agents/{enrolled['agent_id']}/group": {"csrf_token": csrf, "group_id": ""},
    }
    for path, form in posts.items():
        refused = client.post(path, data=form)
        assert refused.status_code == 403, path
        assert "Tài khoản của bạn chỉ được xem" in refused.text, path
    with database.session() as session:
        assert session.get(Policy, policy).version == 1  # type: ignore[union-attr]
        assert session.scalars(select(PolicyAssignment)).all() == []


def test_a_unit_admin_sees_only_their_part(client: TestClient, tree: dict[str, int]) -> None:
    console_login(client)
    province = _create(client, tree["province"], "Chung của tỉnh", **_set("action"), action="quarantine")
    education = _create(client, tree["education"], "Ngành giáo dục")
    client.cookies.clear()

    console_login(client, "yte.admin")
    listed = client.get("/policies").text
    assert "Chung của tỉnh" in listed  # it applies to them: they see it
    assert "Ngành giáo dục" not in listed and f"/policies/{province}/edit" not in listed
    assert "không được thay đổi" in listed
    for path in (f"/policies/{education}/edit", f"/policies/{education}/delete"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "nằm ngoài phạm vi bạn quản lý" in answer.text
    assert client.get(f"/policies/{province}/edit").status_code == 403
    csrf = csrf_of(client, "/policies/new")
    new_page = client.get("/policies/new").text
    assert "Sở Y tế" in new_page and "Sở Giáo dục" not in new_page
    assert client.post(f"/policies/{education}/edit", data=_form(csrf, "X")).status_code == 404
    outside = client.post("/policies/new", data=_form(csrf, "Của tôi", tree["education"]))
    assert outside.status_code == 404
    mine = client.post("/policies/new", data=_form(csrf, "Của tôi", tree["hospital"]), follow_redirects=False)
    assert mine.status_code == 303
    # They may give their units the province's policy, but not another department's, nor touch other units.
    ok = client.post(f"/policies/assign/{tree['hospital']}", data={"csrf_token": csrf, "policy_id": str(province)})
    assert ok.status_code == 200
    hidden = client.post(f"/policies/assign/{tree['hospital']}", data={"csrf_token": csrf, "policy_id": str(education)})
    assert hidden.status_code == 404
    other = client.post(f"/policies/assign/{tree['education']}", data={"csrf_token": csrf, "policy_id": ""})
    assert other.status_code == 404
    assign_page = client.get("/policies/assign").text
    assert "Bệnh viện" in assign_page and "Sở Giáo dục" not in assign_page


def test_pages_in_english(client: TestClient, tree: dict[str, int]) -> None:
    console_login(client)
    client.cookies.set("garrison_lang", "en")
    _create(client, tree["province"], "General", **_set("realtime_enabled"), realtime_enabled="off")
    listed = client.get("/policies").text
    assert "Real-time protection" in listed and "Off" in listed
    assert "Inherit (don't set here)" in client.get("/policies/new").text
    for path in ("/policies/assign", "/policies/groups", "/policies/allowlist", "/policies/groups/new"):
        assert client.get(path).status_code == 200, path
