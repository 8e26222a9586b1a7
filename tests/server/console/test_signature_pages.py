"""Console pages of signature sources and local signatures, on SQLite and PostgreSQL: upload, a refusal shown with
the engine's reason (and kept), enable/disable/delete, upstream URL, local hashes and YARA rules with a reason, who
may do what."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from garrison.server.audit.models import AuditEvent
from garrison.server.db import Database
from garrison.server.signatures.models import LocalSignature, SignatureSource
from tests.server.console.test_views import console_login, csrf_of

HDB = b"44d88612fea8a8f36de82e1278abb02f:68:Garrison.Test.Eicar\n"
NDB_BROKEN = b"Broken.Line:0:*:zz-not-hex\n"
YARA = 'rule garrison_console { strings: $a = "garrison-console" condition: $a }'


def _source(database: Database, name: str) -> SignatureSource:
    with database.session() as session:
        source = session.scalar(select(SignatureSource).where(SignatureSource.name == name))
        assert source is not None
        session.expunge(source)
        return source


def test_upload_refusal_and_changes(client: TestClient, tree: dict[str, int], database: Database) -> None:
    console_login(client)
    page = client.get("/signatures")
    assert page.status_code == 200 and 'href="/signatures" aria-current="page"' in page.text
    assert 'href="/policies/allowlist"' in page.text  # false alarms are allowed there, not here
    csrf = csrf_of(client, "/signatures")
    made = client.post(
        "/signatures/upload",
        data={"csrf_token": csrf, "name": "eicar", "licence": "CC0"},
        files={"file": ("eicar.hdb", HDB)},
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    source = _source(database, "eicar")
    assert source.version == "1" and source.signatures == 1 and source.licence == "CC0"
    listed = client.get("/signatures").text
    assert f'id="source-{source.id}"' in listed and "CC0" in listed and "eicar.hdb" in listed

    refused = client.post(
        f"/signatures/{source.id}/files",
        data={"csrf_token": csrf},
        files={"file": ("eicar.ndb", NDB_BROKEN)},
        follow_redirects=False,
    )
    assert refused.status_code == 400
    assert "eicar.ndb:1" in refused.text and 'class="alert error"' in refused.text
    source = _source(database, "eicar")
    assert source.version == "1" and source.last_error is not None and "eicar.ndb:1" in source.last_error
    assert 'class="field-error"' in client.get("/signatures").text  # the reason stays on the list, in red

    no_file = client.post("/signatures/upload", data={"csrf_token": csrf, "name": "x"}, follow_redirects=False)
    assert no_file.status_code == 400

    disabled = client.post(f"/signatures/{source.id}/disable", data={"csrf_token": csrf}, follow_redirects=False)
    assert disabled.status_code == 303 and not _source(database, "eicar").enabled
    client.post(f"/signatures/{source.id}/enable", data={"csrf_token": csrf}, follow_redirects=False)
    assert _source(database, "eicar").enabled
    assert client.post(f"/signatures/{source.id}/disable", data={}, follow_redirects=False).status_code == 403

    upstream = client.post(
        "/signatures/upstream",
        data={"csrf_token": csrf, "name": "mirror", "origin": "https://mirror.example.vn/daily.cvd"},
        follow_redirects=False,
    )
    assert upstream.status_code == 303
    mirror = _source(database, "mirror")
    edited = client.post(
        f"/signatures/{mirror.id}/edit",
        data={"csrf_token": csrf, "origin": "https://other.example.vn/daily.cvd", "licence": "GPL-2.0"},
        follow_redirects=False,
    )
    assert edited.status_code == 303
    assert _source(database, "mirror").origin == "https://other.example.vn/daily.cvd"
    bad = client.post(
        f"/signatures/{mirror.id}/edit",
        data={"csrf_token": csrf, "origin": "file:///etc/passwd"},
        follow_redirects=False,
    )
    assert bad.status_code == 400

    deleted = client.post(f"/signatures/{source.id}/delete", data={"csrf_token": csrf}, follow_redirects=False)
    assert deleted.status_code == 303
    with database.session() as session:
        assert session.scalar(select(SignatureSource).where(SignatureSource.name == "eicar")) is None
        actions = set(session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "signature_source")))
    assert {"signature_source.create", "signature_source.refused", "signature_source.delete"} <= actions
    assert client.get("/audit").status_code == 200


def test_local_signatures(client: TestClient, tree: dict[str, int], database: Database) -> None:
    console_login(client)
    page = client.get("/signatures/local")
    assert page.status_code == 200
    csrf = csrf_of(client, "/signatures/local")
    form = {"csrf_token": csrf, "digest": "ab" * 32, "size": "", "name": "Local.Test", "reason": ""}
    no_reason = client.post("/signatures/local/hash", data=form, follow_redirects=False)
    assert no_reason.status_code == 400 and 'value="Local.Test"' in no_reason.text  # the form keeps what was typed
    added = client.post("/signatures/local/hash", data={**form, "reason": "mẫu từ VNCERT"}, follow_redirects=False)
    assert added.status_code == 303, added.text
    rule = {"csrf_token": csrf, "rule": YARA, "rule_reason": "chiến dịch lừa đảo"}
    assert client.post("/signatures/local/rule", data=rule, follow_redirects=False).status_code == 303
    broken = client.post(
        "/signatures/local/rule", data={**rule, "rule": "rule x { condition: nope }"}, follow_redirects=False
    )
    assert broken.status_code == 400 and "nope" in broken.text
    listed = client.get("/signatures/local").text
    assert "mẫu từ VNCERT" in listed and "garrison_console" in listed and "ab" * 32 in listed
    with database.session() as session:
        rows = session.scalars(select(LocalSignature).order_by(LocalSignature.id)).all()
        assert [(r.kind.value, r.added_by_name) for r in rows] == [("hash", "admin"), ("yara", "admin")]
        first = rows[0].id
    assert "local.hsb" in client.get("/signatures").text or _source(database, "local").signatures == 2
    gone = client.post(f"/signatures/local/{first}/delete", data={"csrf_token": csrf}, follow_redirects=False)
    assert gone.status_code == 303
    assert "ab" * 32 not in client.get("/signatures/local").text
    assert _source(database, "local").signatures == 1


def test_others_read_but_cannot_change(client: TestClient, tree: dict[str, int], database: Database) -> None:
    console_login(client)
    csrf = csrf_of(client, "/signatures")
    client.post(
        "/signatures/upload",
        data={"csrf_token": csrf, "name": "eicar"},
        files={"file": ("eicar.hdb", HDB)},
        follow_redirects=False,
    )
    source = _source(database, "eicar")
    for username in ("yte.audit", "yte.admin"):
        client.cookies.clear()
        console_login(client, username)
        page = client.get("/signatures")
        assert page.status_code == 200 and f'id="source-{source.id}"' in page.text
        assert 'action="/signatures/upload"' not in page.text and "/delete" not in page.text
        assert client.get("/signatures/local").status_code == 200
        csrf = csrf_of(client, "/signatures")
        for url in (f"/signatures/{source.id}/delete", f"/signatures/{source.id}/disable", "/signatures/watched"):
            assert client.post(url, data={"csrf_token": csrf}, follow_redirects=False).status_code == 403
        denied = client.post(
            "/signatures/local/hash",
            data={"csrf_token": csrf, "digest": "ab" * 32, "name": "X", "reason": "y"},
            follow_redirects=False,
        )
        assert denied.status_code == 403
    assert _source(database, "eicar").enabled
    assert re.search(r"Garrison", client.get("/signatures").text)
