"""The AVReport for the national authority: the edXML envelope and its figures for a small fleet, the XML-DSig
signature (verified with signxml against the test certificate, broken by any change), configuration errors and
who may export."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy import select

from garrison.server.audit.models import AuditEvent
from garrison.server.db import Database
from garrison.server.settings import ServerSettings
from garrison.server.sharing import avreport, xmlsign
from tests.server.conftest import agent_auth, detection_event, enroll_agent, enrollment_token, login

NS = {"e": avreport.NAMESPACE, "ds": xmlsign.DSIG_NAMESPACE}
TROJAN, WORM, EICAR = "Win.Trojan.Agent-1", "Win.Worm.Edu-1", "Eicar-Test-Signature"
T0 = (datetime.now(UTC) - timedelta(days=10)).replace(microsecond=0)
START, END = T0 - timedelta(days=1), datetime.now(UTC) + timedelta(hours=1)


def _certificate(common_name: str = "Sở Thông tin và Truyền thông") -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def material() -> tuple[bytes, bytes]:
    return _certificate()


@pytest.fixture
def settings(tmp_path: Path, material: tuple[bytes, bytes]) -> ServerSettings:
    """conftest's settings, with the organisation and the signing key configured."""
    key_file, cert_file = tmp_path / "agency.key", tmp_path / "agency.crt"
    key_file.write_bytes(material[0])
    cert_file.write_bytes(material[1])
    return ServerSettings(
        data_dir=tmp_path,
        login_attempts=3,
        password_time_cost=1,
        password_memory_kib=64,
        updates_check_seconds=0,
        statistics_record_seconds=0,
        alerts_check_seconds=0,
        national_organ_id="000.00.00.H35",
        national_organ_name="Sở Thông tin và Truyền thông tỉnh Bắc Ninh",
        national_organ_address="Số 1 Lý Thái Tổ, Bắc Ninh",
        national_email="stttt@bacninh.gov.vn",
        national_telephone="0222 3822 000",
        national_website="https://stttt.bacninh.gov.vn",
        national_product="Garrison",
        national_key_file=key_file,
        national_cert_file=cert_file,
    )


def _at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def _beat(client: TestClient, enrolled: dict[str, Any], hostname: str, **inventory: Any) -> None:
    body = {"inventory": {"hostname": hostname, **inventory}}
    answer = client.post("/api/v1/agent/heartbeat", json=body, headers=agent_auth(enrolled))
    assert answer.status_code == 200, answer.text


def _send(client: TestClient, enrolled: dict[str, Any], *events: dict[str, Any]) -> None:
    answer = client.post("/api/v1/agent/events", json={"detections": list(events)}, headers=agent_auth(enrolled))
    assert answer.status_code == 200, answer.text


@pytest.fixture
def fleet(client: TestClient, tree: dict[str, int]) -> dict[str, Any]:
    """A Windows server in the hospital, a Linux workstation in the health department, one in education."""
    server = enroll_agent(client, enrollment_token(client, tree["hospital"]), "bv-may-chu")
    health = enroll_agent(client, enrollment_token(client, tree["health"]), "yte-01")
    education = enroll_agent(client, enrollment_token(client, tree["education"]), "gd-01")
    fresh, old = (datetime.now(UTC) - timedelta(days=d) for d in (1, 20))
    windows = {"os": "Windows", "os_version": "Windows Server 2022", "ips": ["10.1.2.3", "fe80::1"]}
    _beat(
        client,
        server,
        "bv-may-chu",
        **windows,
        realtime_enabled=True,
        firewall_enabled=True,
        signature_date=fresh.isoformat(),
    )
    linux = {"os": "Linux", "os_version": "Debian 12", "realtime_enabled": False, "firewall_enabled": False}
    _beat(client, health, "yte-01", **linux, signature_date=old.isoformat())
    _beat(client, education, "gd-01", os="Linux", os_version="Ubuntu 24.04", realtime_enabled=True)
    fp = detection_event(name="Win.Virus.Fp-1", occurred_at=_at(3))
    _send(
        client,
        server,
        detection_event(name=TROJAN, path="C:\\Users\\a\\hoa-don.exe", occurred_at=_at(0)),
        detection_event(name=TROJAN, path="C:\\Users\\a\\hoa-don.exe", occurred_at=_at(1)),
        detection_event(name=TROJAN, path="C:\\Users\\b\\bao-cao.exe", occurred_at=_at(2)),
        detection_event(name=EICAR, path="C:\\eicar.com", occurred_at=_at(2)),
        detection_event(name="Win.Ransomware.Old-1", occurred_at=(T0 - timedelta(days=100)).isoformat()),
        fp,
    )
    _send(client, health, detection_event(name=WORM, path="/home/u/x", occurred_at=_at(4)))
    headers = {"X-CSRF-Token": login(client)}
    answer = client.patch(f"/api/v1/detections/{fp['id']}", json={"triage": "false_positive"}, headers=headers)
    assert answer.status_code == 200, answer.text
    client.cookies.clear()
    return tree


def _export(client: TestClient, user: str = "admin", **params: Any) -> bytes:
    client.cookies.clear()
    login(client, user)
    params = {"start": START.isoformat(), "end": END.isoformat(), **params}
    answer = client.get("/api/v1/sharing/avreport", params={k: v for k, v in params.items() if v is not None})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/xml")
    assert answer.headers["content-disposition"].startswith('attachment; filename="garrison-avreport-')
    return answer.content


def _report(root: Any) -> Any:
    report = root.find("e:edXMLBody/AVReport", NS)
    assert report is not None
    return report


def _machines(report: Any, section: str, *fields: str) -> dict[str, tuple[str, ...]]:
    return {
        m.get("name"): (m.get("ip"), *(m.findtext(f) for f in fields)) for m in report.findall(f"{section}/Machine")
    }


def test_the_document_holds_the_fleet_s_figures(
    client: TestClient, fleet: dict[str, Any], material: tuple[bytes, bytes]
) -> None:
    data = _export(client)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = avreport.verify(data, material[1])
    assert root.tag == f"{{{avreport.NAMESPACE}}}edXMLEnvelope"

    sender = root.find("e:edXMLHeader/e:MessageHeader/e:From", NS)
    assert [(child.tag.split("}")[1], child.text or "") for child in sender] == [
        ("OrganId", "000.00.00.H35"),
        ("OrganName", "Sở Thông tin và Truyền thông tỉnh Bắc Ninh"),
        ("OrganAdd", "Số 1 Lý Thái Tổ, Bắc Ninh"),
        ("Email", "stttt@bacninh.gov.vn"),
        ("Telephone", "0222 3822 000"),
        ("Fax", ""),
        ("Website", "https://stttt.bacninh.gov.vn"),
    ]
    assert root.findtext("e:edXMLHeader/e:MessageHeader/e:Subject", namespaces=NS).startswith("AVReport 000.00.00.H35")
    # The signature sits in the header (QCVN 102); what verify returns is what was signed, without it.
    assert etree.fromstring(data).find("e:edXMLHeader/ds:Signature", NS) is not None
    assert root.find(".//ds:Signature", NS) is None

    report = _report(root)
    assert report.get("name") == "Garrison"
    assert abs(int(report.findtext("Datetime")) - datetime.now(UTC).timestamp()) < 120
    assert [child.tag for child in report] == [
        "Datetime",
        "Malware",
        "Connection",
        "Vulnerability",
        "OS",
        "Update",
        "QualityFeature",
    ]
    fields = ("MalwareName", "MalwareType", "MalwareBehavior", "TypeOfDevice", "NumberFile")
    infections = sorted(
        (m.get("name"), m.get("ip"), *(m.findtext(f"MalwareInfo/{f}") for f in fields))
        for m in report.findall("Malware/Machine")
    )
    assert infections == [
        ("bv-may-chu", "10.1.2.3", EICAR, "unknown", "unknown", "server", "1"),
        ("bv-may-chu", "10.1.2.3", TROJAN, "trojan", "trojan", "server", "2"),
        ("yte-01", "testclient", WORM, "worm", "worm", "workstation", "1"),
    ]
    assert len(report.find("Connection")) == 0
    assert len(report.find("Vulnerability")) == 0
    systems = _machines(report, "OS", "OSName", "LastUpdate")
    assert {name: value[:2] for name, value in systems.items()} == {
        "bv-may-chu": ("10.1.2.3", "Windows Windows Server 2022"),
        "yte-01": ("testclient", "Linux Debian 12"),
        "gd-01": ("testclient", "Linux Ubuntu 24.04"),
    }
    assert systems["gd-01"][2] == ""
    assert datetime.fromisoformat(systems["yte-01"][2]).utcoffset() == timedelta(hours=7)
    # Debian's signatures are 20 days old; Ubuntu never said how old its are.
    assert report.findtext("Update/NumberMachineNotUpdateOn15Day") == "2"
    assert _machines(report, "QualityFeature", "AutoProtect", "EnableFirewall") == {
        "bv-may-chu": ("10.1.2.3", "On", "On"),
        "yte-01": ("testclient", "Off", "Off"),
        "gd-01": ("testclient", "On", "Unknown"),
    }


def test_a_subtree_holds_only_its_computers(
    client: TestClient, fleet: dict[str, Any], material: tuple[bytes, bytes], database: Database
) -> None:
    report = _report(avreport.verify(_export(client, unit_id=fleet["health"]), material[1]))
    assert {m.get("name") for m in report.findall("Malware/Machine")} == {"bv-may-chu", "yte-01"}
    assert set(_machines(report, "OS")) == {"bv-may-chu", "yte-01"}
    assert report.findtext("Update/NumberMachineNotUpdateOn15Day") == "1"
    with database.session() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "sharing.avreport_export").order_by(AuditEvent.id.desc())
        ).first()
    assert event is not None
    assert event.unit_id == fleet["health"]
    assert event.details["machines"] == 2 and event.details["infected"] == 2


def test_the_default_period_is_the_current_quarter(client: TestClient, fleet: dict[str, Any]) -> None:
    data = _export(client, start=None, end=None)
    root = etree.fromstring(data)
    first, after = avreport.default_period(datetime.now(UTC))
    subject = root.findtext("e:edXMLHeader/e:MessageHeader/e:Subject", namespaces=NS)
    assert avreport._when(first) in subject and avreport._when(after) in subject


def test_any_change_breaks_the_signature(
    client: TestClient, fleet: dict[str, Any], material: tuple[bytes, bytes]
) -> None:
    data = _export(client)
    tag = b"<NumberMachineNotUpdateOn15Day>2</NumberMachineNotUpdateOn15Day>"
    assert tag in data
    with pytest.raises(xmlsign.SignatureError):
        avreport.verify(data.replace(tag, tag.replace(b">2<", b">0<")), material[1])
    with pytest.raises(xmlsign.SignatureError):
        avreport.verify(data.replace(b"<NumberFile>2</NumberFile>", b"<NumberFile>9</NumberFile>"), material[1])
    # Signed by someone else: the receiver pins the agency's certificate.
    with pytest.raises(xmlsign.SignatureError):
        avreport.verify(data, _certificate("Kẻ mạo danh")[1])
    # Unsigned.
    root = etree.fromstring(data)
    for signature in root.findall(".//ds:Signature", NS):
        signature.getparent().remove(signature)
    with pytest.raises(xmlsign.SignatureError):
        avreport.verify(etree.tostring(root), material[1])


def test_the_signature_uses_the_national_algorithms(
    client: TestClient, fleet: dict[str, Any], material: tuple[bytes, bytes]
) -> None:
    root = etree.fromstring(_export(client))
    signature = root.find("e:edXMLHeader/ds:Signature", NS)
    assert signature.find("ds:SignedInfo/ds:CanonicalizationMethod", NS).get("Algorithm") == xmlsign.EXC_C14N
    assert signature.find("ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm") == xmlsign.RSA_SHA256
    assert signature.find("ds:SignedInfo/ds:Reference", NS).get("URI") == ""
    cert = signature.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS)
    expected = x509.load_pem_x509_certificate(material[1]).public_bytes(serialization.Encoding.DER)
    assert base64.b64decode(cert) == expected


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("national_organ_id", "", "GARRISON_NATIONAL_ORGAN_ID"),
        ("national_organ_name", " ", "GARRISON_NATIONAL_ORGAN_NAME"),
        ("national_key_file", None, "GARRISON_NATIONAL_KEY_FILE"),
        ("national_cert_file", None, "GARRISON_NATIONAL_CERT_FILE"),
    ],
)
def test_missing_configuration_is_a_clear_conflict(
    client: TestClient, tree: dict[str, int], settings: ServerSettings, field: str, value: Any, named: str
) -> None:
    setattr(settings, field, value)
    login(client)
    answer = client.get("/api/v1/sharing/avreport")
    assert answer.status_code == 409, answer.text
    assert "configure the national authority export first" in answer.text and named in answer.text


def test_a_key_that_does_not_match_the_certificate_is_refused(
    client: TestClient, tree: dict[str, int], settings: ServerSettings, tmp_path: Path
) -> None:
    other = tmp_path / "other.crt"
    other.write_bytes(_certificate()[1])
    settings.national_cert_file = other
    login(client)
    answer = client.get("/api/v1/sharing/avreport")
    assert answer.status_code == 409, answer.text
    assert "not the signing key's" in answer.text


@pytest.mark.parametrize("user", ["yte.admin", "yte.audit"])
def test_only_province_wide_administrators_export(client: TestClient, fleet: dict[str, Any], user: str) -> None:
    client.cookies.clear()
    login(client, user)
    answer = client.get("/api/v1/sharing/avreport", params={"unit_id": fleet["health"]})
    assert answer.status_code == 403, answer.text
    client.cookies.clear()
    assert client.get("/api/v1/sharing/avreport").status_code == 401


def test_the_period_must_end_after_it_starts(client: TestClient, tree: dict[str, int]) -> None:
    login(client)
    answer = client.get("/api/v1/sharing/avreport", params={"start": END.isoformat(), "end": START.isoformat()})
    assert answer.status_code == 400, answer.text


def _issued(ca_key: rsa.RSAPrivateKey, issuer: x509.Name, subject: str, *, ca: bool) -> tuple[Any, x509.Certificate]:
    key = ca_key if ca else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    usage = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    builder = builder.add_extension(
        x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **usage), critical=True
    )
    return key, builder.sign(ca_key, hashes.SHA256())


def test_a_certificate_issued_by_a_trusted_authority_verifies() -> None:
    """The receiver may trust the issuing authority (the government CA) instead of pinning each agency's
    certificate; a certificate from another authority is refused."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA thử nghiệm")])
    _, ca_cert = _issued(ca_key, ca_name, "CA thử nghiệm", ca=True)
    leaf_key, leaf = _issued(ca_key, ca_name, "Sở TT&TT", ca=False)
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    root = etree.Element(f"{{{avreport.NAMESPACE}}}edXMLEnvelope", nsmap={"edXML": avreport.NAMESPACE})
    etree.SubElement(root, "AVReport").text = "1"
    data = avreport.serialize(avreport.sign(root, key_pem, leaf.public_bytes(serialization.Encoding.PEM)))
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    assert avreport.verify(data, ca_pem, as_ca=True).findtext("AVReport") == "1"
    with pytest.raises(xmlsign.SignatureError):
        avreport.verify(data, _certificate()[1], as_ca=True)
