"""Signature sources, on SQLite and PostgreSQL: every accepted format, refusals with the engine's reason (the
previous files stay), the watched directory, upstream URLs, local signatures, the generation, who may do what."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from garrison.engine.signatures.cdiff import make_cdiff
from garrison.engine.signatures.cvd import RsaPrivateKey, build_cvd, info_signer, md5_signer, read_container
from garrison.server.audit.models import AuditEvent
from garrison.server.audit.service import Actor
from garrison.server.db import Database
from garrison.server.settings import ServerSettings
from garrison.server.signatures import feeds, importers, local, service
from garrison.server.signatures.importers import ContainerKeys, Refused
from garrison.server.signatures.models import SignatureSource, SourceKind
from garrison.server.signatures.store import SourceStore
from tests.server.conftest import login

ACTOR = Actor(None, "kiểm thử", "127.0.0.1")
EICAR_MD5 = "44d88612fea8a8f36de82e1278abb02f"
HDB = f"{EICAR_MD5}:68:Garrison.Test.Eicar\n".encode()
HSB = f"{'ab' * 32}:1234:Garrison.Test.Sha256\n".encode()
NDB = b"Garrison.Test.Body:0:*:4761727269736f6e2d746573742d626f6479\n"
NDB_BROKEN = b"Garrison.Test.Body:0:*:4761727269736f6e2d746573742d626f6479\nBroken.Line:0:*:zz-not-hex\n"
YARA = b'rule garrison_test { strings: $a = "garrison-test-yara" condition: $a }\n'


def _key(bits: int) -> RsaPrivateKey:
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=bits).private_numbers()
    return RsaPrivateKey(n=numbers.public_numbers.n, e=numbers.public_numbers.e, d=numbers.d)


@pytest.fixture(scope="module")
def signing() -> tuple[RsaPrivateKey, RsaPrivateKey]:
    return _key(1024), _key(2048)


@pytest.fixture(scope="module")
def keys(signing: tuple[RsaPrivateKey, RsaPrivateKey]) -> ContainerKeys:
    return ContainerKeys(cvd_key=signing[0].public, info_key=signing[1].public, cdiff_key=signing[1].public)


def _cvd(signing: tuple[RsaPrivateKey, RsaPrivateKey], version: int, files: dict[str, bytes] | None = None) -> bytes:
    return build_cvd(
        "daily",
        version,
        files or {"daily.hdb": HDB, "daily.ndb": NDB},
        flevel=90,
        builder="tester",
        sign=md5_signer(signing[0]),
        info_sign=info_signer(signing[1]),
        build_time=1_750_000_000 + version,
    )


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tgz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _admin(client: TestClient, username: str = "admin") -> dict[str, str]:
    client.cookies.clear()
    return {"X-CSRF-Token": login(client, username)}


def _upload(client: TestClient, headers: dict[str, str], name: str, filename: str, data: bytes) -> Any:
    return client.post(
        "/api/v1/signature-uploads",
        data={"name": name, "licence": "GPL-2.0 (ClamAV)"},
        files={"file": (filename, data)},
        headers=headers,
    )


@pytest.fixture
def api(client: TestClient, tree: dict[str, int], keys: ContainerKeys) -> TestClient:
    client.app.state.signature_keys = keys  # type: ignore[attr-defined]
    return client


# -- formats --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "make", "fmt", "files", "signatures"),
    [
        ("eicar.hdb", lambda s: HDB, "clamav-plain", ["eicar.hdb"], 1),
        ("hashes.hsb", lambda s: HSB, "clamav-plain", ["hashes.hsb"], 1),
        ("body.ndb", lambda s: NDB, "clamav-plain", ["body.ndb"], 1),
        ("rules.yar", lambda s: YARA, "yara", ["rules.yar"], 1),
        (
            "bundle.zip",
            lambda s: _zip({"db/a.hdb": HDB, "b.ndb": NDB, "README.txt": b"hello", "c.yara": YARA}),
            "clamav-plain",
            ["a.hdb", "b.ndb", "c.yara"],
            3,
        ),
        ("bundle.tar.gz", lambda s: _tgz({"a.hdb": HDB, "b.hsb": HSB}), "clamav-plain", ["a.hdb", "b.hsb"], 2),
        ("daily.cvd", lambda s: _cvd(s, 27001), "clamav-cvd", ["COPYING", "daily.hdb", "daily.info", "daily.ndb"], 2),
    ],
)
def test_every_format_is_accepted(
    api: TestClient,
    signing: tuple[RsaPrivateKey, RsaPrivateKey],
    filename: str,
    make: Any,
    fmt: str,
    files: list[str],
    signatures: int,
) -> None:
    headers = _admin(api)
    answer = _upload(api, headers, "nguon-1", filename, make(signing))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    source = body["source"]
    assert source["format"] == fmt and source["kind"] == "upload" and source["enabled"] is True
    assert [f["name"] for f in source["files"]] == files
    assert source["signatures"] == signatures
    assert source["version"] == ("27001" if fmt == "clamav-cvd" else "1")
    assert source["last_error"] is None and source["licence"] == "GPL-2.0 (ClamAV)"
    if filename == "bundle.zip":
        assert body["warnings"] == ["README.txt: not a signature file; left out"]


def test_a_broken_version_is_refused_and_the_previous_files_stay(api: TestClient, database: Database) -> None:
    headers = _admin(api)
    made = _upload(api, headers, "rules", "body.ndb", NDB)
    assert made.status_code == 201, made.text
    source_id = made.json()["source"]["id"]
    refused = api.post(
        f"/api/v1/signature-sources/{source_id}/files", files={"file": ("body.ndb", NDB_BROKEN)}, headers=headers
    )
    assert refused.status_code == 400
    assert "body.ndb:2" in refused.json()["message"] and "/tmp" not in refused.json()["message"]
    source = api.get(f"/api/v1/signature-sources/{source_id}", headers=headers).json()
    assert source["version"] == "1" and source["signatures"] == 1
    assert "body.ndb:2" in source["last_error"]
    with database.session() as session:
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "signature_source"))
        assert list(actions) == ["signature_source.create", "signature_source.import", "signature_source.refused"]
    # A good version afterwards clears the error.
    good = api.post(
        f"/api/v1/signature-sources/{source_id}/files", files={"file": ("body.ndb", NDB + HDB[:0])}, headers=headers
    )
    assert good.status_code == 200 and good.json()["changed"] is False
    assert good.json()["source"]["last_error"] is None


@pytest.mark.parametrize(
    ("filename", "make", "reason"),
    [
        ("body.ndb", lambda s: NDB_BROKEN, "body.ndb:2"),
        ("daily.cvd", lambda s: _cvd(s, 5)[:600] + b"\0" + _cvd(s, 5)[601:], "MD5 mismatch"),
        ("daily.cud", lambda s: build_cvd("daily", 5, {"daily.hdb": HDB}, flevel=90, builder="t", sign=None), "signed"),
        ("evil.zip", lambda s: _zip({"../../etc/cron.d/x.hdb": HDB}), "outside the archive"),
        ("evil.tar.gz", lambda s: _tgz({"/etc/x.hdb": HDB}), "absolute"),
        ("twice.zip", lambda s: _zip({"a/x.hdb": HDB, "b/x.hdb": HDB}), "two members"),
        ("notes.txt", lambda s: b"hello", "not a signature file"),
        ("empty.zip", lambda s: _zip({"README": b"x"}), "no signature file inside"),
        ("daily-5.cdiff", lambda s: b"ClamAV-Diff:5:...", "import the .cvd first"),
        ("x.json", lambda s: b'{"hello": 1}', "neither a STIX"),
    ],
)
def test_broken_or_hostile_files_are_refused_with_the_reason(
    api: TestClient, database: Database, signing: tuple[RsaPrivateKey, RsaPrivateKey], filename: str, make: Any,
    reason: str,
) -> None:  # fmt: skip
    headers = _admin(api)
    answer = _upload(api, headers, "xau", filename, make(signing))
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["message"]
    assert api.get("/api/v1/signature-sources", headers=headers).json() == []
    with database.session() as session:  # the refusal is audited although nothing was created
        refusal = session.scalars(select(AuditEvent).where(AuditEvent.action == "signature_source.refused")).one()
        assert reason in refusal.details["reason"]


def test_archive_limits(keys: ContainerKeys) -> None:
    limits = importers.ImportLimits(max_members=2)
    with pytest.raises(Refused, match="more than 2 members"):
        importers.unpack(
            "a.zip", _zip({"a.hdb": HDB, "b.hdb": HDB, "c.hdb": HDB}), source="s", keys=keys, limits=limits
        )
    with pytest.raises(Refused, match="unpack to more than"):
        importers.unpack(
            "a.tgz", _tgz({"a.hdb": HDB * 100}), source="s", keys=keys, limits=importers.ImportLimits(max_total=1000)
        )
    with pytest.raises(Refused, match="larger than"):
        importers.unpack("a.hdb", HDB, source="s", keys=keys, limits=importers.ImportLimits(max_file=10))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        link = tarfile.TarInfo("a.hdb")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        archive.addfile(link)
    with pytest.raises(Refused, match="is a link"):
        importers.unpack("a.tar.gz", buffer.getvalue(), source="s", keys=keys, limits=importers.ImportLimits())


def test_cvd_versions_move_forward_only(api: TestClient, signing: tuple[RsaPrivateKey, RsaPrivateKey]) -> None:
    headers = _admin(api)
    made = _upload(api, headers, "daily", "daily.cvd", _cvd(signing, 100))
    source_id = made.json()["source"]["id"]
    newer = api.post(
        f"/api/v1/signature-sources/{source_id}/files",
        files={"file": ("daily.cvd", _cvd(signing, 101, {"daily.hdb": HDB, "daily.hsb": HSB}))},
        headers=headers,
    )
    assert newer.status_code == 200 and newer.json()["source"]["version"] == "101"
    older = api.post(
        f"/api/v1/signature-sources/{source_id}/files",
        files={"file": ("daily.cvd", _cvd(signing, 99))},
        headers=headers,
    )
    assert older.status_code == 400 and "older than" in older.json()["message"]
    cdiff = api.post(
        f"/api/v1/signature-sources/{source_id}/files", files={"file": ("daily-101.cdiff", b"junk")}, headers=headers
    )
    assert cdiff.status_code == 400  # the wrong version, or a broken cdiff: refused either way


def test_a_cdiff_moves_a_container_source_one_version_forward(
    session: Session, tmp_path: Path, keys: ContainerKeys, signing: tuple[RsaPrivateKey, RsaPrivateKey]
) -> None:
    store = SourceStore(tmp_path)
    old = _cvd(signing, 100)
    source, _ = service.create_source(
        session, store, ACTOR, name="daily", kind=SourceKind.UPLOAD, upload=("daily.cvd", old), keys=keys
    )
    old_files = read_container(old, "daily.cvd", key=keys.cvd_key, info_key=keys.info_key).files
    newer = _cvd(signing, 101, {"daily.hdb": HDB, "daily.hsb": HSB})
    new_files = read_container(newer, "daily.cvd", key=keys.cvd_key, info_key=keys.info_key).files
    start = service.generation(session)
    wrong = make_cdiff(old_files, new_files, 105, sign=info_signer(signing[1]))
    with pytest.raises(Refused, match="makes version 105, but the source is at version 100"):
        service.import_file(session, store, ACTOR, source, "daily-105.cdiff", wrong, keys=keys)
    assert source.version == "100" and source.last_error is not None
    unsigned = make_cdiff(old_files, new_files, 101)
    with pytest.raises(Refused, match="signature"):
        service.import_file(session, store, ACTOR, source, "daily-101.cdiff", unsigned, keys=keys)
    patch = make_cdiff(old_files, new_files, 101, sign=info_signer(signing[1]))
    result = service.import_file(session, store, ACTOR, source, "daily-101.cdiff", patch, keys=keys)
    assert result.changed and source.version == "101" and source.last_error is None
    assert service.files_of(store, source)["daily.hsb"] == HSB and "daily.ndb" not in source.files
    assert service.generation(session) == start + 1
    # The same cdiff again: now the wrong version, refused, nothing changes.
    with pytest.raises(Refused, match="makes version 101, but the source is at version 101"):
        service.import_file(session, store, ACTOR, source, "daily-101b.cdiff", patch + b"\n", keys=keys)
    assert service.generation(session) == start + 1


STIX = {
    "type": "bundle",
    "id": "bundle--6f1d3a2e-8a59-4c8e-9d0e-2f3b6f1e1a11",
    "objects": [
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--0b7e1c5e-5a4e-4c8e-9d0e-2f3b6f1e1a22",
            "created": "2026-01-01T00:00:00.000Z",
            "modified": "2026-01-01T00:00:00.000Z",
            "name": "Trojan.HoaDon",
            "pattern": f"[file:hashes.'SHA-256' = '{'cd' * 32}']",
            "pattern_type": "stix",
            "valid_from": "2026-01-01T00:00:00Z",
        }
    ],
}
MISP = {"Event": {"info": "chiến dịch", "Attribute": [{"type": "md5", "value": EICAR_MD5, "to_ids": True}]}}


@pytest.mark.parametrize(
    ("filename", "data", "fmt"),
    [
        ("vncert.csv", f"sha256,name\n{'ef' * 32},Trojan.Test\n".encode(), "ioc-csv"),
        ("feed.json", json.dumps(STIX).encode(), "ioc-stix"),
        ("event.json", json.dumps(MISP).encode(), "ioc-misp"),
    ],
)
def test_ioc_lists_become_hash_signatures(
    session: Session, tmp_path: Path, filename: str, data: bytes, fmt: str
) -> None:
    store = SourceStore(tmp_path)
    source, result = service.create_source(
        session, store, ACTOR, name="vncert-ioc", kind=SourceKind.UPLOAD, upload=(filename, data)
    )
    assert result is not None and result.changed
    assert source.format == fmt and list(source.files) == ["vncert-ioc.hsb"] and source.signatures == 1
    assert service.content(session, store)["vncert-ioc-vncert-ioc.hsb"].count(b"\n") == 1


def test_a_cdiff_only_applies_to_a_container_source(session: Session, tmp_path: Path) -> None:
    store = SourceStore(tmp_path)
    source, _ = service.create_source(
        session, store, ACTOR, name="plain", kind=SourceKind.UPLOAD, upload=("a.hdb", HDB)
    )
    with pytest.raises(Refused, match="only applies to a ClamAV database"):
        service.import_file(session, store, ACTOR, source, "daily-2.cdiff", b"ClamAV-Diff")
    assert source.last_error is not None and "only applies" in source.last_error


# -- who may do what ------------------------------------------------------------------------------------------


def test_only_province_admins_change_sources_and_everyone_reads(api: TestClient) -> None:
    headers = _admin(api)
    made = _upload(api, headers, "rules", "rules.yar", YARA)
    source_id = made.json()["source"]["id"]
    for username in ("yte.admin", "yte.audit"):
        other = _admin(api, username)
        listed = api.get("/api/v1/signature-sources", headers=other)
        assert listed.status_code == 200 and [s["name"] for s in listed.json()] == ["rules"]
        assert api.get("/api/v1/local-signatures", headers=other).status_code == 200
        assert _upload(api, other, "mine", "rules.yar", YARA).status_code == 403
        assert api.put(
            f"/api/v1/signature-sources/{source_id}/enabled", json={"enabled": False}, headers=other
        ).status_code == 403  # fmt: skip
        assert api.delete(f"/api/v1/signature-sources/{source_id}", headers=other).status_code == 403
        body = {"kind": "hash", "digest": EICAR_MD5, "name": "X", "reason": "thử"}
        assert api.post("/api/v1/local-signatures", json=body, headers=other).status_code == 403
    api.cookies.clear()
    assert api.get("/api/v1/signature-sources").status_code == 401


def test_names_are_unique_and_validated(api: TestClient) -> None:
    headers = _admin(api)
    assert _upload(api, headers, "Daily", "a.hdb", HDB).status_code == 201
    assert _upload(api, headers, "daily", "a.hdb", HDB).status_code == 409  # same slug
    assert _upload(api, headers, "local", "a.hdb", HDB).status_code == 409
    assert _upload(api, headers, "../x", "a.hdb", HDB).status_code == 400
    body = {"name": "mirror", "kind": "upstream", "origin": "ftp://example.org/daily.cvd"}
    assert api.post("/api/v1/signature-sources", json=body, headers=headers).status_code == 400


# -- the generation and what releases read --------------------------------------------------------------------


def test_the_generation_moves_only_on_real_change(api: TestClient) -> None:
    headers = _admin(api)

    def generation() -> int:
        value: int = api.get("/api/v1/signature-generation", headers=headers).json()["generation"]
        return value

    start = generation()
    made = _upload(api, headers, "rules", "body.ndb", NDB)
    source_id = made.json()["source"]["id"]
    assert generation() == start + 1
    url = f"/api/v1/signature-sources/{source_id}/files"
    again = api.post(url, files={"file": ("body.ndb", NDB)}, headers=headers)
    assert again.json()["changed"] is False and generation() == start + 1
    same_inside = api.post(url, files={"file": ("rules.zip", _zip({"body.ndb": NDB}))}, headers=headers)
    assert same_inside.json()["changed"] is False and same_inside.json()["source"]["version"] == "1"
    assert generation() == start + 1
    refused = api.post(url, files={"file": ("body.ndb", NDB_BROKEN)}, headers=headers)
    assert refused.status_code == 400 and generation() == start + 1
    changed = api.post(url, files={"file": ("body.ndb", NDB + HDB.replace(b"Eicar", b"Other").replace(b":68:", b":"))},
                       headers=headers)  # fmt: skip
    assert changed.status_code == 400  # an hdb line in an ndb file is a broken ndb
    changed = api.post(url, files={"file": ("rules.zip", _zip({"body.ndb": NDB, "e.hdb": HDB}))}, headers=headers)
    assert changed.json()["changed"] is True and changed.json()["source"]["version"] == "2"
    assert generation() == start + 2
    enabled = f"/api/v1/signature-sources/{source_id}/enabled"
    assert api.put(enabled, json={"enabled": False}, headers=headers).json()["enabled"] is False
    assert generation() == start + 3
    assert api.put(enabled, json={"enabled": False}, headers=headers).status_code == 200
    assert generation() == start + 3
    assert api.delete(f"/api/v1/signature-sources/{source_id}", headers=headers).status_code == 204
    assert generation() == start + 3  # it was disabled: releases did not contain it


def test_content_and_summary_for_releases(session: Session, tmp_path: Path, keys: ContainerKeys) -> None:
    store = SourceStore(tmp_path)
    service.create_source(session, store, ACTOR, name="One", kind=SourceKind.UPLOAD, upload=("main.hdb", HDB))
    two, _ = service.create_source(
        session, store, ACTOR, name="two_B", kind=SourceKind.UPLOAD, upload=("main.hdb", HDB.replace(b"Eicar", b"E2"))
    )
    off, _ = service.create_source(session, store, ACTOR, name="off", kind=SourceKind.UPLOAD, upload=("x.yar", YARA))
    service.set_enabled(session, ACTOR, off.id, False)
    local.add_local_hash(session, store, ACTOR, digest="ab" * 20, name="Local.Sha1", reason="mẫu từ Sở Y tế")
    local.add_local_rule(session, store, ACTOR, rule=YARA.decode(), reason="chiến dịch lừa đảo")
    bundle = service.content(session, store)
    assert sorted(bundle) == ["local.hsb", "local.yar", "one-main.hdb", "two-b-main.hdb"]
    assert all(importers.PLAIN_NAME.fullmatch(name) for name in bundle)
    assert bundle["one-main.hdb"] == HDB
    assert bundle["local.hsb"] == f"{'ab' * 20}:*:Local.Sha1:73\n".encode()
    rows = {row["name"]: row for row in service.summary(session)}
    assert set(rows) == {"One", "two_B", "local"}
    assert rows["two_B"] == {
        "name": "two_B",
        "kind": "upload",
        "version": "1",
        "signatures": 1,
        "sha256": two.content_sha256,
    }
    assert rows["local"]["signatures"] == 2 and rows["local"]["kind"] == "local"
    # The store holds each content once, under its SHA-256, and checks it when read back.
    sha = hashlib.sha256(HDB).hexdigest()
    assert (tmp_path / "signature-sources" / sha[:2] / sha).read_bytes() == HDB


# -- local signatures -----------------------------------------------------------------------------------------


def test_local_signatures_need_a_reason_and_are_validated(api: TestClient, database: Database) -> None:
    headers = _admin(api)
    url = "/api/v1/local-signatures"
    hash_body = {"kind": "hash", "digest": EICAR_MD5.upper(), "size": 68, "name": "Local.Eicar", "reason": "thử nghiệm"}
    assert api.post(url, json={**hash_body, "reason": ""}, headers=headers).status_code == 422
    assert api.post(url, json={**hash_body, "digest": "abc"}, headers=headers).status_code == 422
    added = api.post(url, json=hash_body, headers=headers)
    assert added.status_code == 201, added.text
    assert added.json()["algorithm"] == "md5" and added.json()["digest"] == EICAR_MD5
    assert added.json()["added_by_name"] == "admin"
    assert api.post(url, json=hash_body, headers=headers).status_code == 409
    rule = {"kind": "yara", "rule": YARA.decode(), "reason": "mẫu mã độc gửi qua thư"}
    assert api.post(url, json=rule, headers=headers).status_code == 201
    assert api.post(url, json=rule, headers=headers).status_code == 409  # same rule name
    broken = api.post(url, json={**rule, "rule": "rule x { condition: nope }"}, headers=headers)
    assert broken.status_code == 400 and "does not compile" in broken.json()["message"]
    two = api.post(url, json={**rule, "rule": "rule a { condition: true }\nrule b { condition: true }"},
                   headers=headers)  # fmt: skip
    assert two.status_code == 400
    listed = api.get(url, headers=headers).json()
    assert [row["kind"] for row in listed] == ["yara", "hash"]
    local = next(s for s in api.get("/api/v1/signature-sources", headers=headers).json() if s["name"] == "local")
    assert local["kind"] == "local" and local["signatures"] == 2
    assert [f["name"] for f in local["files"]] == ["local.hsb", "local.yar"]
    assert api.delete(f"{url}/{listed[1]['id']}", headers=headers).status_code == 204
    assert api.delete(f"{url}/{listed[1]['id']}", headers=headers).status_code == 404
    local = api.get(f"/api/v1/signature-sources/{local['id']}", headers=headers).json()
    assert [f["name"] for f in local["files"]] == ["local.yar"] and local["version"] == "3"
    assert api.delete(f"/api/v1/signature-sources/{local['id']}", headers=headers).status_code == 409
    with database.session() as session:
        actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "local_signature")))
        assert actions == ["local_signature.add", "local_signature.add", "local_signature.delete"]


# -- the watched directory ------------------------------------------------------------------------------------


def _drop(directory: Path, name: str, data: bytes, age: float = 60.0) -> Path:
    path = directory / name
    path.write_bytes(data)
    past = time.time() - age
    os.utime(path, (past, past))
    return path


def test_the_watched_directory_imports_moves_and_explains(
    session: Session, tmp_path: Path, keys: ContainerKeys, signing: tuple[RsaPrivateKey, RsaPrivateKey]
) -> None:
    store = SourceStore(tmp_path / "data")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    daily_cvd = _cvd(signing, 7)
    _drop(inbox, "daily.cvd", daily_cvd)
    _drop(inbox, "rules.yar", YARA)
    _drop(inbox, "broken.ndb", NDB_BROKEN)
    _drop(inbox, "fresh.hdb", HDB, age=0)
    start = service.generation(session)
    results = {r.file: r for r in feeds.import_watched(session, store, inbox, keys=keys)}
    assert {f: r.outcome for f, r in results.items()} == {
        "broken.ndb": "refused",
        "daily.cvd": "imported",
        "fresh.hdb": "waiting",
        "rules.yar": "imported",
    }
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == ["fresh.hdb"]
    assert sorted(p.name for p in (inbox / "imported").iterdir()) == ["daily.cvd", "rules.yar"]
    reason = (inbox / "refused" / "broken.ndb.reason.txt").read_text(encoding="utf-8")
    assert "broken.ndb:2" in reason and reason.strip() == results["broken.ndb"].reason
    daily = service.by_name(session, "daily")
    assert daily is not None and daily.kind is SourceKind.WATCHED and daily.version == "7"
    assert daily.origin == "daily.cvd"
    assert service.by_name(session, "broken") is None
    assert service.generation(session) == start + 2
    # The same bytes again change nothing; a newer container updates the same source.
    _drop(inbox, "daily.cvd", daily_cvd)
    _drop(inbox, "rules.yar", YARA.replace(b"garrison_test", b"garrison_test2"))
    again = {r.file: r.outcome for r in feeds.import_watched(session, store, inbox, keys=keys)}
    assert again == {"daily.cvd": "unchanged", "rules.yar": "imported", "fresh.hdb": "waiting"}
    assert len(list((inbox / "imported").iterdir())) == 4
    assert service.generation(session) == start + 3
    # A cdiff without its database's source is refused with the reason.
    _drop(inbox, "main-12.cdiff", b"ClamAV-Diff")
    (refused,) = [r for r in feeds.import_watched(session, store, inbox, keys=keys) if r.file == "main-12.cdiff"]
    assert refused.outcome == "refused" and "drop the whole .cvd" in refused.reason
    assert (inbox / "refused" / "main-12.cdiff.reason.txt").is_file()


# -- upstream URLs --------------------------------------------------------------------------------------------


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over a folder: (base URL, folder)."""
    folder = tmp_path / "mirror"
    folder.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_upstream_source_is_fetched_and_an_unchanged_download_changes_nothing(
    session: Session,
    tmp_path: Path,
    keys: ContainerKeys,
    signing: tuple[RsaPrivateKey, RsaPrivateKey],
    web: tuple[str, Path],
) -> None:
    base, folder = web
    store = SourceStore(tmp_path / "data")
    (folder / "daily.cvd").write_bytes(_cvd(signing, 40))
    source, _ = service.create_source(
        session, store, ACTOR, name="mirror", kind=SourceKind.UPSTREAM, origin=f"{base}/daily.cvd", licence="GPL"
    )
    start = service.generation(session)
    first = feeds.fetch_upstream(session, store, source, keys=keys)  # the real HTTP getter
    assert first.changed and source.version == "40" and service.generation(session) == start + 1
    second = feeds.fetch_upstream(session, store, source, keys=keys)
    assert not second.changed and service.generation(session) == start + 1
    (folder / "daily.cvd").write_bytes(_cvd(signing, 41, {"daily.hdb": HDB}))
    assert feeds.fetch_upstream(session, store, source, keys=keys).changed
    assert source.version == "41" and service.generation(session) == start + 2
    source.origin = f"{base}/missing.cvd"
    with pytest.raises(Refused, match="404"):
        feeds.fetch_upstream(session, store, source, keys=keys)
    assert source.last_error is not None and "download" in source.last_error and source.version == "41"
    with pytest.raises(OSError, match="larger than"):
        feeds.default_get(f"{base}/daily.cvd", max_bytes=100)


def test_upstream_through_the_api(api: TestClient, signing: tuple[RsaPrivateKey, RsaPrivateKey]) -> None:
    headers = _admin(api)
    fetched: list[str] = []
    container = _cvd(signing, 3)  # signed once: the manifest's signature is salted

    def get(url: str) -> bytes:
        fetched.append(url)
        return container

    api.app.state.signature_get = get  # type: ignore[attr-defined]
    body = {"name": "talos", "kind": "upstream", "origin": "https://mirror.example.vn/daily.cvd", "fetch": True}
    made = api.post("/api/v1/signature-sources", json=body, headers=headers)
    assert made.status_code == 201, made.text
    assert made.json()["version"] == "3" and fetched == ["https://mirror.example.vn/daily.cvd"]
    source_id = made.json()["id"]
    changed = api.patch(
        f"/api/v1/signature-sources/{source_id}", json={"origin": "https://other.example.vn/daily.cvd"}, headers=headers
    )
    assert changed.status_code == 200 and changed.json()["origin"] == "https://other.example.vn/daily.cvd"
    again = api.post(f"/api/v1/signature-sources/{source_id}/fetch", headers=headers)
    assert again.status_code == 200 and again.json()["changed"] is False


def test_sources_are_rows_of_the_database(session: Session, tmp_path: Path) -> None:
    store = SourceStore(tmp_path)
    service.create_source(session, store, ACTOR, name="a", kind=SourceKind.UPLOAD, upload=("a.hdb", HDB))
    row = session.scalars(select(SignatureSource)).one()
    assert row.files == {"a.hdb": {"sha256": hashlib.sha256(HDB).hexdigest(), "size": len(HDB)}}
    assert service.files_of(store, row) == {"a.hdb": HDB}


def test_unsigned_cud_containers_only_when_the_server_accepts_them(
    database: Database, settings: ServerSettings, tree: dict[str, int]
) -> None:
    """ClamAV's unsigned ``.cud`` (private mirrors) is refused unless ``updates_accept_cud`` is set."""
    from garrison.server.app import create_app

    cud = build_cvd("daily", 5, {"daily.hdb": HDB}, flevel=90, builder="t", sign=None)
    for accept, status in ((False, 400), (True, 201)):
        app = create_app(settings.model_copy(update={"updates_accept_cud": accept}), database, run_migrations=False)
        with TestClient(app, base_url="https://testserver") as client:
            answer = _upload(client, _admin(client), f"mirror-{accept}".lower(), "daily.cud", cud)
            assert answer.status_code == status, answer.text
