"""Indicators as a STIX 2.1 bundle, for threat-sharing platforms (MISP, OpenCTI).

What a unit subtree detected in a period becomes: one ``malware`` per detection name, one ``indicator`` per file
SHA-256 (``indicates`` its malware), ``sighting`` objects carrying the detection counts, all created by one
``identity`` (the exporting organisation, named after the subtree's root unit) and marked TLP:AMBER or TLP:GREEN.

The bundle leaves the organisation: it must never carry per-computer facts (host names, addresses, paths, users,
detection ids). Only names, hashes, counts and first/last times are read from the database, grouped there.
False positives and fleet-allow-listed files are left out. Ids are UUIDv5 of a fixed namespace and the object's
natural key (hash, malware name), so a re-export updates the same objects on the receiving platform.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import stix2
from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session

from garrison.server.audit.service import Actor, record
from garrison.server.auth.scope import Scope
from garrison.server.db import utcnow
from garrison.server.detections.models import Detection, Triage
from garrison.server.errors import BadRequest
from garrison.server.policies.models import AllowedFile
from garrison.server.units import service as units
from garrison.server.units.models import Unit

#: Garrison's namespace for the UUIDv5 of its STIX objects. Never change it: receivers key objects by their ids.
NAMESPACE = uuid.UUID("0f5a6c1e-3b8d-5e7a-9c41-6a7d2b9e4f10")

S = TypeVar("S", bound=Select[*tuple[Any, ...]])

MEDIA_TYPE = "application/stix+json;version=2.1"
DEFAULT_PERIOD = timedelta(days=90)
#: STIX 2.1 caps a sighting's count.
MAX_COUNT = 999_999_999


class Tlp(StrEnum):
    """The Traffic Light Protocol marking of an export."""

    AMBER = "amber"
    GREEN = "green"


_MARKINGS: dict[Tlp, Any] = {Tlp.AMBER: stix2.TLP_AMBER, Tlp.GREEN: stix2.TLP_GREEN}

# The category part of ClamAV-style detection names (``Win.Trojan.Agent-1234``: platform, category, family) and
# the STIX 2.1 malware-type-ov value it stands for. The detection's ``kind`` (hash, body, logical, yara, builtin,
# heuristic) says which kind of *signature* matched, not what the malware does, so the name is what is read.
# Categories missing here (Test, Exploit, Packed, Phishing, Tool, ...) give "unknown".
# source: https://docs.clamav.net/manual/Signatures/SignatureNames.html ; STIX 2.1 §10.12 malware-type-ov
MALWARE_TYPES: dict[str, str] = {
    "adware": "adware",
    "backdoor": "backdoor",
    "bot": "bot",
    "ircbot": "bot",
    "coinminer": "resource-exploitation",
    "downloader": "downloader",
    "dropper": "dropper",
    "infostealer": "spyware",
    "keylogger": "keylogger",
    "ransomware": "ransomware",
    "rat": "remote-access-trojan",
    "rootkit": "rootkit",
    "spyware": "spyware",
    "trojan": "trojan",
    "virus": "virus",
    "webshell": "webshell",
    "wiper": "wiper",
    "worm": "worm",
}

_HEX = {32: re.compile(r"[0-9a-f]{32}"), 64: re.compile(r"[0-9a-f]{64}")}


def malware_types(name: str) -> list[str]:
    """The STIX malware types of a detection name: the first dotted part (not the last, the family) that names a
    known category; ``["unknown"]`` otherwise."""
    parts = name.split(".")[:-1]
    for part in parts:
        found = MALWARE_TYPES.get(part.lower())
        if found:
            return [found]
    return ["unknown"]


def stix_id(kind: str, key: str) -> str:
    """A deterministic STIX id: the same ``kind`` and natural ``key`` give the same id on every export."""
    return f"{kind}--{uuid.uuid5(NAMESPACE, f'{kind}:{key}')}"


# -- what the database says ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NameRow:
    """A detection name: how often it was detected, first and last."""

    name: str
    detections: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class HashRow:
    """A detected file, by SHA-256 (with its MD5 when an agent sent it)."""

    sha256: str
    md5: str | None
    detections: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class LinkRow:
    """A file detected under a name."""

    sha256: str
    name: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class Findings:
    """The grouped detections of one subtree and period: all the export needs, nothing about computers."""

    names: list[NameRow]
    hashes: list[HashRow]
    links: list[LinkRow]


def _utc(moment: datetime) -> datetime:
    """Aware UTC (SQLite hands back naive UTC; a naive query parameter is taken as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def period(start: datetime | None, end: datetime | None, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[start, end) in UTC: by default the last 90 days (up to now, or before ``end``)."""
    end = _utc(end) if end is not None else (now or utcnow())
    start = _utc(start) if start is not None else end - DEFAULT_PERIOD
    if start >= end:
        raise BadRequest("the period's start must be before its end")
    return start, end


def root_unit(session: Session, scope: Scope, unit_id: int | None) -> Unit:
    """The unit whose subtree is exported: ``unit_id`` (404 outside ``scope``), else the scope's own root (the
    tree's only top unit for the whole tree)."""
    if unit_id is not None:
        return units.get(session, scope, unit_id)
    if not scope.everything:
        return units.get(session, scope, int(scope.path.strip("/").split("/")[-1]))
    tops = session.scalars(select(Unit).where(Unit.parent_id.is_(None)).order_by(Unit.id).limit(2)).all()
    if len(tops) != 1:
        raise BadRequest("name the unit to export (unit_id): the tree has no single top unit")
    return tops[0]


def _counted(query: S, root: Unit, start: datetime, end: datetime) -> S:
    """``query`` limited to the detections that count: in ``root``'s subtree and [start, end), not false
    positives, not of a file allowed on every computer."""
    allowed = exists().where(AllowedFile.sha256 == Detection.sha256)
    query = units.within(query, Scope(root.path), Detection.unit_id)
    return query.where(
        Detection.occurred_at >= start,
        Detection.occurred_at < end,
        Detection.triage != Triage.FALSE_POSITIVE,
        ~allowed,
    )


def findings(session: Session, root: Unit, start: datetime, end: datetime) -> Findings:
    """Read-only: the detections of ``root``'s subtree in [start, end), grouped by name, by hash and by both.

    ``root`` must already be checked against the caller's scope (:func:`root_unit`). Three GROUP BY queries; no
    detection row reaches Python.
    """
    first, last, n = func.min(Detection.occurred_at), func.max(Detection.occurred_at), func.count(Detection.id)
    by_name = _counted(select(Detection.name, n, first, last), root, start, end).group_by(Detection.name)
    names = [NameRow(name, c, _utc(f), _utc(la)) for name, c, f, la in session.execute(by_name)]
    hashed = Detection.sha256.is_not(None)
    by_hash = _counted(select(Detection.sha256, func.max(Detection.md5), n, first, last), root, start, end)
    by_hash = by_hash.where(hashed).group_by(Detection.sha256)
    hashes = [HashRow(str(sha), md5, c, _utc(f), _utc(la)) for sha, md5, c, f, la in session.execute(by_hash)]
    by_link = _counted(select(Detection.sha256, Detection.name, first, last), root, start, end)
    by_link = by_link.where(hashed).group_by(Detection.sha256, Detection.name)
    links = [LinkRow(str(sha), name, _utc(f), _utc(la)) for sha, name, f, la in session.execute(by_link)]
    return Findings(
        sorted(names, key=lambda r: r.name),
        sorted(hashes, key=lambda r: r.sha256),
        sorted(links, key=lambda r: (r.sha256, r.name)),
    )


def organisation_key(session: Session, unit: Unit) -> str:
    """What identifies the exporting organisation across exports: the unit's code, or without one the names from
    the top of the tree down to it (a bare name would make every province's "Sở Y tế" one organisation)."""
    if unit.code:
        return f"code:{unit.code}"
    ids = [int(part) for part in unit.path.strip("/").split("/") if part]
    names = {i: name for i, name in session.execute(select(Unit.id, Unit.name).where(Unit.id.in_(ids)))}
    return "names:" + "/".join(names.get(i, "") for i in ids)


# -- the bundle (pure) ---------------------------------------------------------------------------------------


def _pattern(row: HashRow) -> str:
    if not _HEX[64].fullmatch(row.sha256):
        raise ValueError(f"not a SHA-256: {row.sha256!r}")
    pattern = f"[file:hashes.'SHA-256' = '{row.sha256}']"
    if row.md5 and _HEX[32].fullmatch(row.md5):
        pattern = f"[file:hashes.'SHA-256' = '{row.sha256}' OR file:hashes.MD5 = '{row.md5}']"
    return pattern


def organisation(unit: Unit, key: str) -> Any:
    """The exporting organisation's identity, named after ``unit``, its id made from ``key``
    (:func:`organisation_key`)."""
    return stix2.v21.Identity(
        id=stix_id("identity", key),
        name=unit.name,
        identity_class="organization",
        sectors=["government-regional"],
        created=_utc(unit.created_at),
        modified=_utc(unit.created_at),
    )


def bundle(identity: Any, found: Findings, tlp: Tlp, *, start: datetime, end: datetime) -> Any:
    """The STIX 2.1 bundle of ``found``, made by ``identity`` and marked ``tlp``.

    Every object's ``created`` is when its facts were first seen in the period and ``modified`` when last seen,
    so an export of the same data is identical, byte for byte, and a later export with new detections is a newer
    version of the same objects.
    """
    marking = _MARKINGS[tlp]
    common: dict[str, Any] = {"created_by_ref": identity.id, "object_marking_refs": [marking.id]}
    objects: list[Any] = [identity, marking]
    malware: dict[str, str] = {}
    sightings: list[Any] = []
    for row in found.names:
        made = stix2.v21.Malware(
            id=stix_id("malware", row.name),
            name=row.name,
            is_family=False,
            malware_types=malware_types(row.name),
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            created=row.first_seen,
            modified=row.last_seen,
            **common,
        )
        malware[row.name] = made.id
        objects.append(made)
        sightings.append(_sighting(identity, made.id, row.detections, row.first_seen, row.last_seen, common))
    for file in found.hashes:
        indicator = stix2.v21.Indicator(
            id=stix_id("indicator", f"sha256:{file.sha256}"),
            name=file.sha256,
            pattern=_pattern(file),
            pattern_type="stix",
            valid_from=file.first_seen,
            indicator_types=["malicious-activity"],
            created=file.first_seen,
            modified=file.last_seen,
            **common,
        )
        objects.append(indicator)
        sightings.append(_sighting(identity, indicator.id, file.detections, file.first_seen, file.last_seen, common))
    for link in found.links:
        target = malware.get(link.name)
        if target is None:  # cannot happen: a hash's names are among the names
            continue
        objects.append(
            stix2.v21.Relationship(
                id=stix_id("relationship", f"indicates:{link.sha256}:{link.name}"),
                relationship_type="indicates",
                source_ref=stix_id("indicator", f"sha256:{link.sha256}"),
                target_ref=target,
                created=link.first_seen,
                modified=link.last_seen,
                **common,
            )
        )
    objects.extend(sightings)
    key = f"{identity.id}:{tlp.value}:{start.isoformat()}:{end.isoformat()}"
    return stix2.v21.Bundle(objects=objects, id=stix_id("bundle", key))


def _sighting(identity: Any, of: str, count: int, first: datetime, last: datetime, common: dict[str, Any]) -> Any:
    """``identity`` saw ``of`` ``count`` times: one sighting per organisation and object, whatever the period."""
    return stix2.v21.Sighting(
        id=stix_id("sighting", f"{identity.id}:{of}"),
        sighting_of_ref=of,
        where_sighted_refs=[identity.id],
        count=min(count, MAX_COUNT),
        first_seen=first,
        last_seen=last,
        created=first,
        modified=last,
        **common,
    )


# -- the export ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Export:
    filename: str
    body: str
    indicators: int


def export(
    session: Session,
    scope: Scope,
    actor: Actor,
    *,
    unit_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    tlp: Tlp = Tlp.AMBER,
) -> Export:
    """The serialised STIX 2.1 bundle of a subtree's indicators in [start, end) (default: the last 90 days),
    audited as ``sharing.stix_export``. Read-only otherwise; any caller may export within their scope."""
    start, end = period(start, end)
    root = root_unit(session, scope, unit_id)
    found = findings(session, root, start, end)
    made = bundle(organisation(root, organisation_key(session, root)), found, tlp, start=start, end=end)
    body = str(made.serialize(ensure_ascii=False))
    record(
        session,
        actor,
        "sharing.stix_export",
        "unit",
        root.id,
        unit_id=root.id,
        start=start.isoformat(),
        end=end.isoformat(),
        tlp=tlp.value,
        malware=len(found.names),
        indicators=len(found.hashes),
    )
    filename = f"garrison-stix-unit{root.id}-{start:%Y%m%d}-{end:%Y%m%d}.json"
    return Export(filename, body, len(found.hashes))
