"""The STIX 2.1 export: a unit subtree's detections as malware, indicators, relationships and sightings, parsed back
with the stix2 library; nothing about single computers in it; scope, period, false positives and the allow-list."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stix2
from fastapi.testclient import TestClient

from garrison.server.sharing.stix import Tlp, malware_types, stix_id
from tests.server.conftest import agent_auth, detection_event, enroll_agent, enrollment_token, login

TROJAN = "Win.Trojan.Agent-1"
EICAR = "Eicar-Test-Signature"
A, B, D = "a" * 64, "b" * 64, "d" * 64
FALSE_POSITIVE, ALLOWED, OLD, EDUCATION = "e" * 64, "f" * 64, "9" * 64, "8" * 64
MD5_A, MD5_D = "1" * 32, "2" * 32
HOSTS = ("may-benh-vien-07", "may-so-y-te-02", "may-giao-duc-01")
T0 = (datetime.now(UTC) - timedelta(days=30)).replace(microsecond=0)


def _at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def _send(client: TestClient, enrolled: dict[str, Any], *events: dict[str, Any]) -> None:
    answer = client.post("/api/v1/agent/events", json={"detections": list(events)}, headers=agent_auth(enrolled))
    assert answer.status_code == 200, answer.text


@pytest.fixture
def fleet(client: TestClient, tree: dict[str, int]) -> dict[str, Any]:
    """Detections in the health department (its hospital and itself) and the education department."""
    hospital = enroll_agent(client, enrollment_token(client, tree["hospital"]), HOSTS[0])
    health = enroll_agent(client, enrollment_token(client, tree["health"]), HOSTS[1])
    education = enroll_agent(client, enrollment_token(client, tree["education"]), HOSTS[2])
    fp = detection_event(name="Win.Virus.Fp-1", sha256=FALSE_POSITIVE, occurred_at=_at(1))
    _send(
        client,
        hospital,
        detection_event(name=TROJAN, sha256=A, md5=MD5_A, occurred_at=_at(0)),
        detection_event(name=TROJAN, sha256=A, md5=MD5_A, occurred_at=_at(1)),
        detection_event(name=EICAR, sha256=D, md5=MD5_D, occurred_at=_at(4)),
        fp,
        detection_event(name="Win.Worm.Allowed-1", sha256=ALLOWED, occurred_at=_at(2)),
    )
    _send(
        client,
        health,
        detection_event(name=TROJAN, sha256=A, md5=MD5_A, occurred_at=_at(2)),
        detection_event(name=TROJAN, sha256=B, md5=None, occurred_at=_at(3)),
        detection_event(name="Win.Ransomware.Old-1", sha256=OLD, occurred_at=_at(-24 * 170)),
    )
    _send(client, education, detection_event(name="Win.Worm.Edu-1", sha256=EDUCATION, occurred_at=_at(5)))
    headers = {"X-CSRF-Token": login(client)}
    triaged = client.patch(f"/api/v1/detections/{fp['id']}", json={"triage": "false_positive"}, headers=headers)
    assert triaged.status_code == 200, triaged.text
    allowed = client.post("/api/v1/allowlist", json={"sha256": ALLOWED, "reason": "công cụ nội bộ"}, headers=headers)
    assert allowed.status_code == 201, allowed.text
    client.cookies.clear()
    return {"agents": [hospital["agent_id"], health["agent_id"], education["agent_id"]], **tree}


def _export(client: TestClient, user: str = "admin", **params: Any) -> tuple[str, Any]:
    client.cookies.clear()
    login(client, user)
    answer = client.get("/api/v1/sharing/stix", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/stix+json;version=2.1"
    assert re.fullmatch(
        r'attachment; filename="garrison-stix-unit\d+-\d{8}-\d{8}\.json"', answer.headers["content-disposition"]
    )
    return answer.text, stix2.parse(answer.text, allow_custom=False)


def _by_type(parsed: Any) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for obj in parsed.objects:
        found.setdefault(obj.type, []).append(obj)
    return found


def _hashes(parsed: Any) -> set[str]:
    return {i.name for i in _by_type(parsed).get("indicator", [])}


def test_the_bundle_holds_exactly_the_subtree_s_indicators(client: TestClient, fleet: dict[str, Any]) -> None:
    _raw, parsed = _export(client, unit_id=fleet["health"])
    objects = _by_type(parsed)
    assert {kind: len(found) for kind, found in objects.items()} == {
        "identity": 1,
        "marking-definition": 1,
        "malware": 2,
        "indicator": 3,
        "relationship": 3,
        "sighting": 5,
    }
    (identity,) = objects["identity"]
    assert identity.name == "Sở Y tế"
    assert identity.identity_class == "organization"
    assert objects["marking-definition"][0].id == stix2.TLP_AMBER.id

    malware = {m.name: m for m in objects["malware"]}
    assert set(malware) == {TROJAN, EICAR}
    assert malware[TROJAN].malware_types == ["trojan"]
    assert malware[EICAR].malware_types == ["unknown"]
    assert all(m.is_family is False for m in malware.values())
    assert (malware[TROJAN].first_seen, malware[TROJAN].last_seen) == (T0, T0 + timedelta(hours=3))
    assert malware[TROJAN].id == stix_id("malware", TROJAN)

    indicators = {i.name: i for i in objects["indicator"]}
    assert set(indicators) == {A, B, D}
    assert indicators[A].pattern == f"[file:hashes.'SHA-256' = '{A}' OR file:hashes.MD5 = '{MD5_A}']"
    assert indicators[B].pattern == f"[file:hashes.'SHA-256' = '{B}']"
    assert indicators[D].pattern == f"[file:hashes.'SHA-256' = '{D}' OR file:hashes.MD5 = '{MD5_D}']"
    assert indicators[A].valid_from == T0
    assert indicators[B].valid_from == T0 + timedelta(hours=3)
    for indicator in indicators.values():
        assert indicator.pattern_type == "stix"
        assert indicator.indicator_types == ["malicious-activity"]
        assert indicator.id == stix_id("indicator", f"sha256:{indicator.name}")

    names = {m.id: m.name for m in objects["malware"]} | {i.id: i.name for i in objects["indicator"]}
    links = {(names[r.source_ref], names[r.target_ref]) for r in objects["relationship"]}
    assert links == {(A, TROJAN), (B, TROJAN), (D, EICAR)}
    assert all(r.relationship_type == "indicates" for r in objects["relationship"])

    counts = {names[s.sighting_of_ref]: s.count for s in objects["sighting"]}
    assert counts == {A: 3, B: 1, D: 1, TROJAN: 4, EICAR: 1}
    sighted = {names[s.sighting_of_ref]: s for s in objects["sighting"]}
    assert (sighted[A].first_seen, sighted[A].last_seen) == (T0, T0 + timedelta(hours=2))
    for sighting in objects["sighting"]:
        assert sighting.where_sighted_refs == [identity.id]

    for obj in [*objects["malware"], *objects["indicator"], *objects["relationship"], *objects["sighting"]]:
        assert obj.created_by_ref == identity.id
        assert obj.object_marking_refs == [stix2.TLP_AMBER.id]
        assert obj.created <= obj.modified


def test_nothing_about_single_computers_leaves(client: TestClient, fleet: dict[str, Any]) -> None:
    raw, _parsed = _export(client)
    assert EDUCATION in raw  # the whole tree, as the province admin sees it
    for secret in (*HOSTS, *fleet["agents"], "/home/user", "Tải về", "hoá đơn", "eicar.com", "testclient", "Bệnh viện"):
        assert secret not in raw
    assert not re.search(r"\b\d{1,3}(\.\d{1,3}){3}\b", raw)  # no IPv4 address
    for obj in json.loads(raw)["objects"]:
        assert not {"observed_data_refs", "description", "x_garrison"} & set(obj)


def test_false_positives_and_allowed_files_are_left_out(client: TestClient, fleet: dict[str, Any]) -> None:
    raw, parsed = _export(client, unit_id=fleet["province"])
    assert _hashes(parsed) == {A, B, D, EDUCATION}
    for left_out in (FALSE_POSITIVE, ALLOWED, "Win.Virus.Fp-1", "Win.Worm.Allowed-1"):
        assert left_out not in raw


def test_the_period(client: TestClient, fleet: dict[str, Any]) -> None:
    _raw, parsed = _export(client, unit_id=fleet["health"], start=_at(2.5))
    assert _hashes(parsed) == {B, D}
    _raw, parsed = _export(client, unit_id=fleet["health"], end=_at(2.5))
    assert _hashes(parsed) == {A}  # the 90 days before the end: the old detection is older still
    _raw, parsed = _export(client, unit_id=fleet["health"], start=_at(-24 * 365), end=_at(3))
    assert _hashes(parsed) == {A, OLD}
    old = next(m for m in _by_type(parsed)["malware"] if m.name == "Win.Ransomware.Old-1")
    assert old.malware_types == ["ransomware"]
    client.cookies.clear()
    login(client)
    assert client.get("/api/v1/sharing/stix", params={"start": _at(3), "end": _at(3)}).status_code == 400


def test_ids_are_the_same_on_every_export(client: TestClient, fleet: dict[str, Any]) -> None:
    params = {"unit_id": fleet["health"], "start": _at(-1), "end": _at(10)}
    first, parsed = _export(client, **params)
    again, _ = _export(client, **params)
    assert first == again
    default, other = _export(client, unit_id=fleet["health"])
    assert first != default  # another bundle (another period) ...
    assert {o.id for o in other.objects} == {o.id for o in parsed.objects}  # ... of the same objects


def test_tlp_green(client: TestClient, fleet: dict[str, Any]) -> None:
    _raw, parsed = _export(client, unit_id=fleet["health"], tlp=Tlp.GREEN.value)
    objects = _by_type(parsed)
    assert objects["marking-definition"][0].id == stix2.TLP_GREEN.id
    assert all(i.object_marking_refs == [stix2.TLP_GREEN.id] for i in objects["indicator"])
    assert client.get("/api/v1/sharing/stix", params={"tlp": "red"}).status_code == 422


def test_an_auditor_exports_their_subtree_and_nothing_else(client: TestClient, fleet: dict[str, Any]) -> None:
    raw, parsed = _export(client, "yte.audit")
    assert _by_type(parsed)["identity"][0].name == "Sở Y tế"
    assert _hashes(parsed) == {A, B, D}
    assert EDUCATION not in raw
    _raw, hospital = _export(client, "yte.audit", unit_id=fleet["hospital"])
    assert _by_type(hospital)["identity"][0].name == "Bệnh viện"
    assert _hashes(hospital) == {A, D}
    outside = client.get("/api/v1/sharing/stix", params={"unit_id": fleet["education"]})
    assert outside.status_code == 404
    assert client.get("/api/v1/sharing/stix", params={"unit_id": fleet["province"]}).status_code == 404

    client.cookies.clear()
    login(client)
    audit = [e for e in client.get("/api/v1/audit").json() if e["action"] == "sharing.stix_export"]
    assert [(e["actor_name"], e["unit_id"]) for e in audit] == [
        ("yte.audit", fleet["hospital"]),
        ("yte.audit", fleet["health"]),
    ]
    assert audit[0]["details"]["tlp"] == "amber"
    assert audit[0]["details"]["indicators"] == 2


def test_a_namesake_unit_is_another_organisation_and_hashless_detections_name_malware(
    client: TestClient, fleet: dict[str, Any]
) -> None:
    client.cookies.clear()
    body = {"name": "Sở Y tế", "kind": "unit", "parent_id": fleet["education"]}
    made = client.post("/api/v1/units", json=body, headers={"X-CSRF-Token": login(client)})
    assert made.status_code == 201, made.text
    namesake = int(made.json()["id"])
    client.cookies.clear()
    enrolled = enroll_agent(client, enrollment_token(client, namesake), "may-truong-03")
    _send(client, enrolled, detection_event(name="Win.Virus.NoHash-1", occurred_at=_at(6)))

    _raw, theirs = _export(client, unit_id=namesake)
    _raw, ours = _export(client, unit_id=fleet["health"])
    (identity,) = _by_type(theirs)["identity"]
    assert identity.name == _by_type(ours)["identity"][0].name == "Sở Y tế"
    assert identity.id != _by_type(ours)["identity"][0].id
    objects = _by_type(theirs)
    assert "indicator" not in objects
    (malware,) = objects["malware"]
    assert (malware.name, malware.malware_types) == ("Win.Virus.NoHash-1", ["virus"])
    (sighting,) = objects["sighting"]
    assert (sighting.sighting_of_ref, sighting.count) == (malware.id, 1)


def test_logged_out_is_refused(client: TestClient, fleet: dict[str, Any]) -> None:
    client.cookies.clear()
    assert client.get("/api/v1/sharing/stix").status_code == 401


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Win.Trojan.Agent-1234", ["trojan"]),
        ("Unix.Worm.Mirai-1", ["worm"]),
        ("Win.Ransomware.WannaCry-6313787-0", ["ransomware"]),
        ("Doc.Downloader.Emotet-1", ["downloader"]),
        ("Win.Coinminer.Generic-1", ["resource-exploitation"]),
        ("Win.Test.EICAR_HDB-1", ["unknown"]),
        ("Eicar-Test-Signature", ["unknown"]),
        ("Trojan", ["unknown"]),  # a single part is a family, not a category
    ],
)
def test_malware_types_from_the_name(name: str, expected: list[str]) -> None:
    assert malware_types(name) == expected
