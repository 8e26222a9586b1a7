"""The AVReport document for the national authority: a subtree's infections and protection state in the edXML
envelope of QCVN 102:2016/BTTTT, signed with XML-DSig (regulations.md §7B–§7C, §8; issue 5).

No official schema of the body was found; the layout is the de-facto one of a working connector that cites
official letter 2290/BTTTT-CATTT (regulations.md §7C)::

    edXML:edXMLEnvelope                         xmlns:edXML = http://www.mic.gov.vn/TBT/QCVN_102_2016
      edXML:edXMLHeader
        edXML:MessageHeader
          edXML:From   OrganId OrganName OrganAdd Email Telephone Fax Website   (configuration)
          edXML:Subject
        ds:Signature                            (enveloped; xmlsign.sign puts it here)
      edXML:edXMLBody
        AVReport name=<product>                 (no namespace, as the connector sends it)
          Datetime                              Unix time of the export
          Malware/Machine@ip,@name/MalwareInfo  one Machine per computer and malware name of the period
          Connection                            empty: Garrison does not see network connections
          Vulnerability                         empty: Garrison does not collect vulnerabilities (yet)
          OS/Machine@ip,@name                   OSName, LastUpdate, for every computer enrolled now
          Update/NumberMachineNotUpdateOn15Day
          QualityFeature/Machine@ip,@name       AutoProtect, EnableFirewall, for every computer enrolled now

Choices (the format says nothing about them):

- *Period*: the malware part counts detections in [start, end), not false positives, not of fleet-allow-listed
  files. ``OS``, ``Update`` and ``QualityFeature`` are the state **now** of the computers not revoked, as the
  statistics define it (nothing keeps its history).
- *ip*: the first address the computer reported (its own, as the agency's network knows it), else the address
  the server last saw it at (which may be a NAT or a proxy); empty if neither.
- *MalwareType*: the category of the ClamAV-style name (``Win.Trojan.X`` → ``trojan``), as the STIX export reads
  it; ``unknown`` otherwise. *MalwareBehavior*: the same value: Garrison detects by signature and does not observe
  behaviour (the connector does the same).
- *TypeOfDevice*: ``server`` when the operating system says so (a server edition, e.g. "Windows Server 2022"),
  else ``workstation``: agents do not report a role.
- *NumberFile*: the distinct file paths detected under that name on that computer.
- *LastUpdate*: the publication time of the signatures the computer runs, ISO 8601 in Vietnam time; empty if
  it never reported one. *AutoProtect*: ``On``/``Off`` (real-time protection). *EnableFirewall*: ``On``,
  ``Off`` or ``Unknown`` (the agent does not say).

Every figure comes from GROUP BY or per-computer queries in the database; nothing loops over detections.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy import distinct, exists, func, select
from sqlalchemy.orm import Session

from garrison.server.agents.models import Agent
from garrison.server.audit.service import Actor, record
from garrison.server.auth.scope import Scope
from garrison.server.db import utcnow
from garrison.server.detections.models import Detection, Triage
from garrison.server.errors import BadRequest, Conflict
from garrison.server.policies.models import AllowedFile
from garrison.server.reports import statistics
from garrison.server.settings import ServerSettings
from garrison.server.sharing import xmlsign
from garrison.server.sharing.stix import malware_types
from garrison.server.units import service as units
from garrison.server.updates.service import outdated

NAMESPACE = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
PREFIX = "edXML"
MEDIA_TYPE = "text/xml"
OUTDATED_DAYS = 15


@dataclass(frozen=True, slots=True)
class OrganisationInfo:
    """The sending organisation as ``MessageHeader/From`` names it (the agency code looks like
    ``000.00.00.H35``)."""

    organ_id: str
    name: str
    address: str = ""
    email: str = ""
    telephone: str = ""
    fax: str = ""
    website: str = ""


def organisation(settings: ServerSettings) -> OrganisationInfo:
    """The organisation of the configuration; :class:`Conflict` naming the settings to set when the code or the
    name is missing."""
    missing = [
        f"GARRISON_{name.upper()}"
        for name in ("national_organ_id", "national_organ_name")
        if not getattr(settings, name).strip()
    ]
    if missing:
        raise Conflict(f"configure the national authority export first: set {', '.join(missing)}")
    return OrganisationInfo(
        organ_id=settings.national_organ_id.strip(),
        name=settings.national_organ_name.strip(),
        address=settings.national_organ_address,
        email=settings.national_email,
        telephone=settings.national_telephone,
        fax=settings.national_fax,
        website=settings.national_website,
    )


def signing_material(settings: ServerSettings) -> tuple[bytes, bytes]:
    """The PEM private key and certificate the documents are signed with; :class:`Conflict` when they are not
    configured or cannot be read."""
    files: dict[str, Path | None] = {
        "GARRISON_NATIONAL_KEY_FILE": settings.national_key_file,
        "GARRISON_NATIONAL_CERT_FILE": settings.national_cert_file,
    }
    given = {name: path for name, path in files.items() if path is not None}
    if len(given) < len(files):
        missing = [name for name in files if name not in given]
        raise Conflict(f"configure the national authority export first: set {', '.join(missing)}")
    read: list[bytes] = []
    for name, path in given.items():
        try:
            read.append(path.read_bytes())
        except OSError as error:
            raise Conflict(f"cannot read {name} ({path}): {error.strerror}") from error
    return read[0], read[1]


# -- what the database says ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Machine:
    agent_id: str
    name: str
    ip: str
    os_name: str
    server: bool
    signature_date: datetime | None
    realtime: bool
    firewall: bool | None
    active: bool  # not revoked


@dataclass(frozen=True, slots=True)
class Infection:
    """Detections of one malware name on one computer in the period."""

    agent_id: str
    name: str
    files: int


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _machine(agent: Agent) -> Machine:
    ips = agent.inventory.get("ips") if isinstance(agent.inventory, dict) else None
    first = next((str(ip) for ip in ips if ip), "") if isinstance(ips, list) else ""
    os_name = " ".join(part for part in (agent.os, agent.os_version) if part) or "unknown"
    return Machine(
        agent_id=agent.id,
        name=agent.hostname,
        ip=first or agent.last_address or "",
        os_name=os_name,
        server="server" in f"{agent.os} {agent.os_version}".lower(),
        signature_date=_aware(agent.signature_date),
        realtime=bool(agent.realtime_enabled),
        firewall=agent.firewall_enabled,
        active=not agent.revoked,
    )


def infections(session: Session, subtree: Scope, start: datetime, end: datetime) -> list[Infection]:
    """The period's detections that count, grouped by computer and name (one query)."""
    allowed = exists().where(AllowedFile.sha256 == Detection.sha256)
    query = select(Detection.agent_id, Detection.name, func.count(distinct(Detection.path)))
    query = units.within(query, subtree, Detection.unit_id).where(
        Detection.occurred_at >= start,
        Detection.occurred_at < end,
        Detection.triage != Triage.FALSE_POSITIVE,
        ~allowed,
    )
    query = query.group_by(Detection.agent_id, Detection.name)
    found = [Infection(str(agent), str(name), int(files)) for agent, name, files in session.execute(query)]
    return sorted(found, key=lambda i: (i.agent_id, i.name))


def machines(session: Session, subtree: Scope, ids: Iterable[str] = ()) -> dict[str, Machine]:
    """The computers of ``subtree`` not revoked, and those of ``ids`` whatever their state, by agent id."""
    wanted = set(ids)
    query = units.within(select(Agent), subtree, Agent.unit_id)
    condition = Agent.revoked.is_(False) if not wanted else (Agent.revoked.is_(False) | Agent.id.in_(wanted))
    found = {agent.id: _machine(agent) for agent in session.scalars(query.where(condition))}
    return dict(sorted(found.items(), key=lambda item: (item[1].name, item[0])))


def not_updated(session: Session, subtree: Scope, now: datetime) -> int:
    """Computers not revoked whose signatures are older than 15 days (or that never said)."""
    query = select(func.count()).select_from(Agent).where(Agent.revoked.is_(False), outdated(OUTDATED_DAYS, now))
    return int(session.scalar(units.within(query, subtree, Agent.unit_id)) or 0)


# -- the document (pure but for the queries) ------------------------------------------------------------------


def _sub(parent: Any, tag: str, text: str | None = None, *, qualified: bool = False, **attrs: str) -> Any:
    element = etree.SubElement(parent, f"{{{NAMESPACE}}}{tag}" if qualified else tag, attrs)
    if text is not None:
        element.text = text
    return element


def _when(moment: datetime | None) -> str:
    return moment.astimezone(statistics.ZONE).isoformat(timespec="seconds") if moment else ""


def _on(value: bool | None) -> str:
    return "Unknown" if value is None else ("On" if value else "Off")


def build(
    session: Session,
    scope: Scope,
    unit_id: int | None,
    start: datetime,
    end: datetime,
    *,
    organisation: OrganisationInfo,
    product: str,
    now: datetime,
) -> Any:
    """The unsigned ``edXMLEnvelope`` of ``unit_id``'s subtree (None: the whole ``scope``) for [start, end).

    It holds a ``ds:Signature`` placeholder in ``edXMLHeader`` for :func:`sign`. Naive times are UTC.
    """
    start, end, now = (_aware(moment) or now for moment in (start, end, now))
    if not start < end:
        raise BadRequest("the period must end after it starts")
    subtree = units.narrow(session, scope, unit_id)
    found = infections(session, subtree, start, end)
    computers = machines(session, subtree, {i.agent_id for i in found})
    active = [machine for machine in computers.values() if machine.active]

    root = etree.Element(f"{{{NAMESPACE}}}edXMLEnvelope", nsmap={PREFIX: NAMESPACE})
    header = _sub(root, "edXMLHeader", qualified=True)
    message = _sub(header, "MessageHeader", qualified=True)
    sender = _sub(message, "From", qualified=True)
    for tag, value in (
        ("OrganId", organisation.organ_id),
        ("OrganName", organisation.name),
        ("OrganAdd", organisation.address),
        ("Email", organisation.email),
        ("Telephone", organisation.telephone),
        ("Fax", organisation.fax),
        ("Website", organisation.website),
    ):
        _sub(sender, tag, value, qualified=True)
    local_start, local_end = (_when(moment) for moment in (start, end))
    _sub(message, "Subject", f"AVReport {organisation.organ_id} {local_start} – {local_end}", qualified=True)
    header.append(xmlsign.placeholder())

    body = _sub(root, "edXMLBody", qualified=True)
    report = _sub(body, "AVReport", name=product)
    _sub(report, "Datetime", str(int(now.timestamp())))
    malware = _sub(report, "Malware")
    for infection in found:
        machine = computers.get(infection.agent_id)
        if machine is None:  # cannot happen: every detection's computer was read
            continue
        kind = malware_types(infection.name)[0]
        info = _sub(_sub(malware, "Machine", ip=machine.ip, name=machine.name), "MalwareInfo")
        _sub(info, "MalwareName", infection.name)
        _sub(info, "MalwareType", kind)
        _sub(info, "MalwareBehavior", kind)
        _sub(info, "TypeOfDevice", "server" if machine.server else "workstation")
        _sub(info, "NumberFile", str(infection.files))
    _sub(report, "Connection")
    _sub(report, "Vulnerability")
    systems = _sub(report, "OS")
    for machine in active:
        item = _sub(systems, "Machine", ip=machine.ip, name=machine.name)
        _sub(item, "OSName", machine.os_name)
        _sub(item, "LastUpdate", _when(machine.signature_date))
    update = _sub(report, "Update")
    _sub(update, "NumberMachineNotUpdateOn15Day", str(not_updated(session, subtree, now)))
    quality = _sub(report, "QualityFeature")
    for machine in active:
        item = _sub(quality, "Machine", ip=machine.ip, name=machine.name)
        _sub(item, "AutoProtect", _on(machine.realtime))
        _sub(item, "EnableFirewall", _on(machine.firewall))
    return root


def sign(root: Any, key_pem: bytes, cert_pem: bytes) -> Any:
    """``root`` (from :func:`build`) with its enveloped XML-DSig signature in ``edXMLHeader``."""
    return xmlsign.sign(root, key_pem, cert_pem)


def serialize(root: Any) -> bytes:
    """The document as sent: UTF-8 with an XML declaration, no pretty-printing (whitespace is signed too)."""
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data


def verify(data: bytes, trusted_pem: bytes, *, as_ca: bool = False) -> Any:
    """The receiver's side: the signed ``edXMLEnvelope`` of ``data``, or :class:`xmlsign.SignatureError`."""
    signed = xmlsign.verify(data, trusted_pem, as_ca=as_ca)
    if signed.tag != f"{{{NAMESPACE}}}edXMLEnvelope":
        raise xmlsign.SignatureError("the signed element is not an edXML envelope")
    return signed


# -- the export -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Export:
    filename: str
    body: bytes
    machines: int


def default_period(now: datetime) -> tuple[datetime, datetime]:
    """The quarter ``now`` falls in (Vietnam's calendar)."""
    return statistics.quarter_bounds(*statistics.current_quarter(now))


def export(
    session: Session,
    settings: ServerSettings,
    scope: Scope,
    actor: Actor,
    *,
    unit_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
) -> Export:
    """The signed AVReport of ``unit_id``'s subtree (default: ``scope``) for [start, end) (default: the current
    quarter), audited as ``sharing.avreport_export``. :class:`Conflict` when the organisation or the signing key
    is not configured."""
    info = organisation(settings)
    key_pem, cert_pem = signing_material(settings)
    now = _aware(now) or utcnow()
    first, after = default_period(now)
    start = _aware(start) or first
    end = _aware(end) or after
    root = build(
        session, scope, unit_id, start, end, organisation=info, product=settings.national_product or "Garrison", now=now
    )
    try:
        signed = sign(root, key_pem, cert_pem)
    except ValueError as error:
        raise Conflict(f"cannot sign with the configured key and certificate: {error}") from error
    machines_in = len(signed.findall("./{*}edXMLBody/AVReport/OS/Machine"))
    infected = {m.get("name") for m in signed.findall("./{*}edXMLBody/AVReport/Malware/Machine")}
    record(
        session,
        actor,
        "sharing.avreport_export",
        "unit",
        unit_id,
        unit_id=unit_id,
        start=start.isoformat(),
        end=end.isoformat(),
        machines=machines_in,
        infected=len(infected),
    )
    filename = f"garrison-avreport-{'unit' + str(unit_id) if unit_id else 'all'}-{start:%Y%m%d}-{end:%Y%m%d}.xml"
    return Export(filename, serialize(signed), machines_in)
