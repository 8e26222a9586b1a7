"""Hash IOC lists (CSV, STIX 2.1, MISP) turned into ClamAV hash signature lines."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from garrison.engine import Engine, load_database
from garrison.engine.errors import DatabaseError
from garrison.engine.signatures.hashdb import parse_hash_line
from garrison.engine.signatures.ioc import IocResult, from_csv, from_misp, from_stix

SAMPLE = b"\x00garrison ioc sample\x01"
MD5 = hashlib.md5(SAMPLE).hexdigest()
SHA1 = hashlib.sha1(SAMPLE).hexdigest()
SHA256 = hashlib.sha256(SAMPLE).hexdigest()
OTHER = hashlib.sha256(b"other").hexdigest()
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _check(result: IocResult) -> None:
    assert result.lines == sorted(set(result.lines))
    for number, line in enumerate(result.lines, 1):
        parse_hash_line(line, "test.hsb", number)


# ------------------------------------------------------------------------------------------------------------
# CSV


@pytest.mark.parametrize(
    ("text", "lines", "skipped"),
    [
        (f"sha256,name,size\n{SHA256},Evil dropper,{len(SAMPLE)}\n", [f"{SHA256}:{len(SAMPLE)}:Evil_dropper"], 0),
        (f"{SHA256}\n{MD5},Trojan.X\n", [f"{MD5}:*:Trojan.X:73", f"{SHA256}:*:Garrison.IOC.feed:73"], 0),
        (f"{SHA256.upper()},,12\n", [f"{SHA256}:12:Garrison.IOC.feed"], 0),
        # MalwareBazaar style: comments, quoted cells after ", ", several hash columns per row.
        (
            f'# comment\n"sha256_hash", "md5_hash", "signature"\n"{SHA256}", "{MD5}", "AgentTesla"\n',
            [f"{MD5}:*:AgentTesla:73", f"{SHA256}:*:AgentTesla:73"],
            0,
        ),
        (f"hash;threat\n{SHA1};Mã độc\n", [f"{SHA1}:*:Ma_doc:73"], 0),
        (f"md5\tname\n{MD5}\t../../etc/passwd\n", [f"{MD5}:*:etc_passwd:73"], 0),
        (f"hash,name\nnot-a-hash,X\n{SHA256},Y\n,Z\n", [f"{SHA256}:*:Y:73"], 2),
        (f"hash,size\n{SHA256},12 KB\n", [f"{SHA256}:*:Garrison.IOC.feed:73"], 0),
        (f"{EMPTY_SHA256}\n{SHA256}\n", [f"{SHA256}:*:Garrison.IOC.feed:73"], 1),
        (f"{SHA256},A\n{SHA256},B\n{SHA256},A\n", [f"{SHA256}:*:A:73"], 0),
        (f"hash,name\n{'a' * 128},X\n{SHA256},Y\n", [f"{SHA256}:*:Y:73"], 1),
    ],
)
def test_from_csv(text: str, lines: list[str], skipped: int) -> None:
    result = from_csv(text, "feed")
    assert result.lines == sorted(lines)
    assert result.skipped == skipped
    _check(result)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("", "no usable hash"),
        ("# only comments\n", "no usable hash"),
        ("hash,name\nxyz,A\n", "no usable hash.*not an MD5"),
        (b"\xff\xfe\x00", "not UTF-8"),
        ("a" * 200, "larger than the limit"),
    ],
)
def test_from_csv_refusals(data: str | bytes, message: str) -> None:
    with pytest.raises(DatabaseError, match=message):
        from_csv(data, "feed", max_size=100)


# ------------------------------------------------------------------------------------------------------------
# STIX 2.1


def _bundle(*objects: dict[str, Any]) -> str:
    return json.dumps({"type": "bundle", "id": "bundle--1", "objects": list(objects)})


def _indicator(pattern: str, ident: str = "indicator--1", **extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": ident, "pattern": pattern, "pattern_type": "stix",
            "valid_from": "2024-01-01T00:00:00Z", **extra}  # fmt: skip


MALWARE = {"type": "malware", "id": "malware--1", "name": "Emotet", "is_family": True}
INDICATES = {"type": "relationship", "id": "relationship--1", "relationship_type": "indicates",
             "source_ref": "indicator--1", "target_ref": "malware--1"}  # fmt: skip


@pytest.mark.parametrize(
    ("objects", "lines", "skipped"),
    [
        (
            [_indicator(f"[file:hashes.'SHA-256' = '{SHA256}']", name="Bad file"), MALWARE, INDICATES],
            [f"{SHA256}:*:Emotet:73"],
            0,
        ),
        ([_indicator(f"[file:hashes.'SHA-256' = '{SHA256}']", name="Bad file")], [f"{SHA256}:*:Bad_file:73"], 0),
        (
            [
                _indicator(
                    f"[file:hashes.MD5 = '{MD5}' AND file:size = {len(SAMPLE)}] OR [file:hashes.'SHA-1' = '{SHA1}']"
                )
            ],
            [f"{MD5}:{len(SAMPLE)}:Garrison.IOC.feed", f"{SHA1}:*:Garrison.IOC.feed:73"],
            0,
        ),
        (
            [_indicator(f"[(file:hashes.MD5 = '{MD5}' OR file:hashes.SHA256 = '{SHA256}') AND file:name = 'x.exe']")],
            [f"{MD5}:*:Garrison.IOC.feed:73", f"{SHA256}:*:Garrison.IOC.feed:73"],
            0,
        ),
        (
            [
                _indicator(f"[file:hashes.'SHA-256' = '{SHA256}']", revoked=True),
                _indicator(f"[file:hashes.'SHA-256' = '{OTHER}']", "indicator--2", valid_until="2025-01-01T00:00:00Z"),
                _indicator(f"[file:hashes.MD5 = '{MD5}']", "indicator--3", valid_until="2027-01-01T00:00:00Z"),
            ],
            [f"{MD5}:*:Garrison.IOC.feed:73"],
            2,
        ),
        (
            [
                _indicator(f"[file:hashes.MD5 = '{MD5}']"),
                _indicator(f"[file:hashes.MD5 = '{MD5}'] AND [file:hashes.'SHA-1' = '{SHA1}']", "indicator--2"),
                _indicator(f"[file:hashes.'SHA-1' = '{SHA1}'] REPEATS 2 TIMES", "indicator--3"),
                _indicator(f"[file:hashes.'SHA-1' = '{SHA1}'] FOLLOWEDBY [file:hashes.MD5 = '{MD5}']", "indicator--4"),
                _indicator(f"[file:hashes.'SHA-1' != '{SHA1}']", "indicator--5"),
                _indicator("[ipv4-addr:value = '10.0.0.1']", "indicator--6"),
                _indicator(f"[file:hashes.'SHA-1' = '{SHA1}' AND process:name = 'x']", "indicator--7"),
                _indicator("[file:hashes.MD5 = ", "indicator--8"),
                _indicator(f"{SHA1}", "indicator--9", pattern_type="yara"),
                _indicator(f"[file:hashes.MD5 = '{MD5}' AND file:hashes.MD5 = '{'0' * 32}']", "indicator--10"),
                _indicator(f"[file:hashes.'SHA-512' = '{'a' * 128}']", "indicator--11"),
            ],
            [f"{MD5}:*:Garrison.IOC.feed:73"],
            10,
        ),
        (
            [{"type": "file", "id": "file--1", "hashes": {"SHA-256": SHA256, "MD5": MD5}, "size": len(SAMPLE)}],
            [f"{MD5}:{len(SAMPLE)}:Garrison.IOC.feed", f"{SHA256}:{len(SAMPLE)}:Garrison.IOC.feed"],
            0,
        ),
    ],
)
def test_from_stix(objects: list[dict[str, Any]], lines: list[str], skipped: int) -> None:
    result = from_stix(_bundle(*objects), "feed", now=NOW)
    assert result.lines == sorted(lines)
    assert result.skipped == skipped, result.warnings
    _check(result)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a STIX bundle"),
        ('{"type": "bundle", "objects": {}}', "not a STIX bundle"),
        (_bundle(), "no usable hash"),
        (json.dumps({"type": "bundle", "objects": [{"type": "indicator"}, 5, None]}), "no usable hash"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON|not a STIX bundle"),
    ],
)
def test_from_stix_refusals(data: str, message: str) -> None:
    with pytest.raises(DatabaseError, match=message):
        from_stix(data, "feed", now=NOW)


# ------------------------------------------------------------------------------------------------------------
# MISP


def _event(**extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "info": "OSINT - Phishing wave",
        "Attribute": [
            {"uuid": "a1", "type": "sha256", "value": SHA256, "to_ids": True},
            {"uuid": "a2", "type": "md5", "value": MD5, "to_ids": False},
            {"uuid": "a3", "type": "ip-dst", "value": "10.0.0.1", "to_ids": True},
            {"uuid": "a4", "type": "filename|sha1", "value": f"evil.exe|{SHA1}", "to_ids": "1"},
            {"uuid": "a5", "type": "sha256", "value": OTHER, "to_ids": True, "deleted": True},
        ],
        "Object": [
            {
                "name": "file",
                "Attribute": [
                    {"type": "md5", "value": MD5, "to_ids": True},
                    {"type": "size-in-bytes", "value": str(len(SAMPLE)), "to_ids": False},
                ],
            }
        ],
    }
    event.update(extra)
    return event


def test_from_misp_shapes_and_to_ids() -> None:
    expected = [
        f"{MD5}:{len(SAMPLE)}:OSINT_-_Phishing_wave",
        f"{SHA1}:*:OSINT_-_Phishing_wave:73",
        f"{SHA256}:*:OSINT_-_Phishing_wave:73",
    ]
    for document in ({"Event": _event()}, {"response": [{"Event": _event()}]}, [{"Event": _event()}]):
        result = from_misp(json.dumps(document), "misp")
        assert result.lines == sorted(expected)
        assert result.skipped == 2  # to_ids off, deleted
        _check(result)


def test_from_misp_takes_the_malware_name_from_galaxies_and_tags() -> None:
    galaxy = [{"type": "malpedia", "GalaxyCluster": [{"value": "Lumma Stealer"}]}]
    assert ":Lumma_Stealer" in from_misp(json.dumps({"Event": _event(Galaxy=galaxy)}), "misp").lines[0]
    tags = [{"name": "tlp:white"}, {"name": 'misp-galaxy:mitre-malware="PlugX - S0013"'}]
    assert ":PlugX_-_S0013" in from_misp(json.dumps({"Event": _event(Tag=tags)}), "misp").lines[0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("nope", "not valid JSON"),
        ("[]", "no MISP event"),
        (json.dumps({"Event": {"info": "x", "Attribute": []}}), "no usable hash"),
        (json.dumps({"Event": {"Attribute": [{"type": "md5", "value": MD5, "to_ids": False}]}}), "to_ids is off"),
        (json.dumps({"Event": {"Attribute": [{"type": "md5", "value": "zz", "to_ids": True}]}}), "not an MD5"),
    ],
)
def test_from_misp_refusals(data: str, message: str) -> None:
    with pytest.raises(DatabaseError, match=message):
        from_misp(data, "misp")


# ------------------------------------------------------------------------------------------------------------
# The lines are a working database


def test_lines_load_and_detect(tmp_path: Path) -> None:
    lines = (
        from_csv(f"{SHA256},CSV.Hit\n", "csv").lines
        + from_stix(_bundle(_indicator(f"[file:hashes.MD5 = '{MD5}']", name="STIX hit")), "stix", now=NOW).lines
        + from_misp(json.dumps({"Event": _event()}), "misp").lines
    )
    (tmp_path / "ioc.hsb").write_text("\n".join(lines) + "\n")
    database = load_database([tmp_path], strict=True)
    names = {d.name for _, d in Engine(database).scan_bytes(SAMPLE, "sample").detections}
    assert {"CSV.Hit", "STIX_hit", "OSINT_-_Phishing_wave"} <= names
    assert not Engine(database).scan_bytes(b"clean", "clean").detections
