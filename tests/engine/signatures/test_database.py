"""Loading whole databases: dispatch by extension, allow and ignore lists, YARA, strict mode, the cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from garrison.engine import DatabaseError, Engine, SignatureError, Status, load_database
from garrison.engine.eicar import EICAR

SAMPLE = b"\x00\x01garrison test sample\x02\x03"
MD5 = hashlib.md5(SAMPLE).hexdigest()
SHA1 = hashlib.sha1(SAMPLE).hexdigest()
SHA256 = hashlib.sha256(SAMPLE).hexdigest()
YARA = """
rule Garrison_Test_Rule {
    strings: $a = "garrison test sample"
    condition: $a
}
"""


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def _names(database_dir: Path, data: bytes = SAMPLE, **kwargs: object) -> list[str]:
    engine = Engine(load_database([database_dir], **kwargs))  # type: ignore[arg-type]
    return sorted(d.name for _, d in engine.scan_bytes(data, "sample").detections)


def test_hash_signatures_of_every_length(tmp_path: Path) -> None:
    db = _write(
        tmp_path / "db",
        {
            "a.hdb": f"{MD5}:{len(SAMPLE)}:Test.Md5-1\n",
            "b.hsb": f"{SHA1}:{len(SAMPLE)}:Test.Sha1-1\n{SHA256}:*:Test.Sha256-1:73\n",
        },
    )
    assert _names(db) == ["Test.Md5-1", "Test.Sha1-1", "Test.Sha256-1"]
    assert _names(db, b"something else") == []


def test_detection_says_which_database_and_line(tmp_path: Path) -> None:
    db = _write(tmp_path / "db", {"a.hdb": f"{'0' * 32}:1:Other-1\n{MD5}:{len(SAMPLE)}:Test.Md5-1\n"})
    [(_obj, detection)] = Engine(load_database([db])).scan_bytes(SAMPLE, "x").detections
    assert (detection.database, detection.signature, detection.kind.value) == (str(db / "a.hdb"), "line 2", "hash")


def test_allow_list_wins_over_detections(tmp_path: Path) -> None:
    db = _write(
        tmp_path / "db",
        {"a.hdb": f"{MD5}:{len(SAMPLE)}:Test.Md5-1\n", "a.yar": YARA, "ok.sfp": f"{SHA256}:{len(SAMPLE)}:Allowed\n"},
    )
    result = Engine(load_database([db])).scan_bytes(SAMPLE, "x")
    assert result.status is Status.CLEAN


def test_ignore_list_switches_signatures_off(tmp_path: Path) -> None:
    line = f"{MD5}:{len(SAMPLE)}:Test.Md5-1"
    pin = hashlib.md5(line.encode()).hexdigest()
    db = _write(
        tmp_path / "db",
        {"a.hdb": line + "\n" + f"{SHA256}:*:Test.Sha256-1:73\n", "local.ign2": f"Test.Md5-1:{pin}\nTest.Sha256-1\n"},
    )
    assert _names(db) == []


def test_yara_rules_are_named_like_clamav_names_them(tmp_path: Path) -> None:
    db = _write(tmp_path / "db", {"local.yar": YARA})
    assert _names(db) == ["YARA.Garrison_Test_Rule"]
    report = load_database([db]).report
    assert report.counts["yara"] == 1


def test_malformed_lines_are_skipped_with_a_warning_or_refused_in_strict_mode(tmp_path: Path) -> None:
    db = _write(tmp_path / "db", {"a.hdb": f"{MD5}:{len(SAMPLE)}:Test.Md5-1\nnonsense\n\n{'1' * 32}:3:Ok-2\n"})
    database = load_database([db])
    assert database.report.counts["hash"] == 2
    assert database.report.warnings == [
        f"{db / 'a.hdb'}:2: expected HashString:FileSize:MalwareName[:MinFL[:MaxFL]]",
        f"{db / 'a.hdb'}:3: blank line",
    ]
    with pytest.raises(SignatureError, match=r"a\.hdb:2:"):
        load_database([db], strict=True)


def test_broken_yara_file_is_reported_and_others_still_load(tmp_path: Path) -> None:
    db = _write(tmp_path / "db", {"bad.yar": "rule broken { condition: nope }", "good.yar": YARA})
    database = load_database([db])
    assert any("bad.yar" in w and "do not compile" in w for w in database.report.warnings)
    assert Engine(database).scan_bytes(SAMPLE, "x").status is Status.INFECTED


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p / "missing", "no such file or directory"),
        (lambda p: _write(p / "empty", {"README.txt": "x"}), "no signature database files"),
        (lambda p: _write(p / "d", {"x.txt": "x"}) / "x.txt", "unknown extension"),
        (lambda p: _write(p / "d", {"only.hdb": "bad line\n"}), "no usable signatures"),
    ],
    ids=["missing", "no database files", "unknown extension", "nothing usable"],
)
def test_unusable_databases(tmp_path: Path, setup: object, message: str) -> None:
    with pytest.raises(DatabaseError, match=message):
        load_database([setup(tmp_path)])  # type: ignore[operator]


def test_unsupported_formats_warn_once_per_file(tmp_path: Path) -> None:
    db = _write(tmp_path / "db", {"a.hdb": f"{MD5}:{len(SAMPLE)}:Test.Md5-1\n", "x.wdb": "X:whatever\n"})
    warnings = load_database([db]).report.warnings
    assert warnings == [f"{db / 'x.wdb'}: this signature format is not supported; skipped"]


def test_pua_databases_only_when_asked(tmp_path: Path) -> None:
    db = _write(tmp_path / "db", {"a.hdb": f"{'1' * 32}:1:Other-1\n", "p.hdu": f"{MD5}:{len(SAMPLE)}:PUA.Test-1\n"})
    assert _names(db) == []
    assert _names(db, pua=True) == ["PUA.Test-1"]


def test_flevel_gates_signatures(tmp_path: Path) -> None:
    db = _write(
        tmp_path / "db",
        {"a.hdb": f"{MD5}:{len(SAMPLE)}:Future-1:999\n{SHA256}:{len(SAMPLE)}:Old-1:1:20\n{'1' * 32}:1:X-1\n"},
    )
    assert _names(db) == []


def test_cache_round_trip_and_invalidation(tmp_path: Path) -> None:
    db = _write(tmp_path / "db", {"a.hdb": f"{MD5}:{len(SAMPLE)}:Test.Md5-1\n", "a.yar": YARA})
    cache = tmp_path / "cache"
    first = load_database([db], cache_dir=cache)
    second = load_database([db], cache_dir=cache)
    assert not first.report.from_cache
    assert second.report.from_cache
    assert second.report.counts == first.report.counts
    assert sorted(d.name for _, d in Engine(second).scan_bytes(SAMPLE, "x").detections) == [
        "Test.Md5-1",
        "YARA.Garrison_Test_Rule",
    ]
    (db / "a.hdb").write_text(f"{MD5}:{len(SAMPLE)}:Test.Changed-1\n")
    third = load_database([db], cache_dir=cache)
    assert not third.report.from_cache
    assert "Test.Changed-1" in [d.name for _, d in Engine(third).scan_bytes(SAMPLE, "x").detections]


def test_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    db = _write(tmp_path / "db", {"a.hdb": f"{MD5}:{len(SAMPLE)}:Test.Md5-1\n"})
    cache = tmp_path / "cache"
    load_database([db], cache_dir=cache)
    [entry] = [p for p in cache.iterdir() if not p.name.startswith(".")]
    (entry / "meta.json").write_text("{not json")
    reloaded = load_database([db], cache_dir=cache)
    assert not reloaded.report.from_cache
    assert Engine(reloaded).scan_bytes(SAMPLE, "x").status is Status.INFECTED


def test_eicar_still_detected_with_a_database(tmp_path: Path) -> None:
    db = _write(tmp_path / "db", {"a.yar": YARA})
    assert Engine(load_database([db])).scan_bytes(EICAR, "eicar.com").status is Status.INFECTED


LOGICAL = (
    # Needs one of its patterns: checked in the second stage, after the prefilter found a pattern.
    f"Test.Logical.Both-1;Engine:51-255,Target:0;0&1;{b'garrison'.hex()};{b'sample'.hex()}\n"
    # True when its pattern is absent: cannot wait for a prefilter, so it is evaluated for every object.
    f"Test.Logical.Absent-1;Engine:51-255,Target:0,FileSize:1-100;0=0;{b'never-present'.hex()}\n"
)


@pytest.mark.parametrize("cached", [False, True])
def test_logical_signatures_in_both_stages(tmp_path: Path, cached: bool) -> None:
    db = _write(tmp_path / "db", {"l.ldb": LOGICAL})
    cache = tmp_path / "cache"
    database = load_database([db], cache_dir=cache)
    if cached:
        database = load_database([db], cache_dir=cache)
        assert database.report.from_cache
    engine = Engine(database)
    assert sorted(d.name for _, d in engine.scan_bytes(SAMPLE, "x").detections) == [
        "Test.Logical.Absent-1",
        "Test.Logical.Both-1",
    ]
    assert [d.name for _, d in engine.scan_bytes(b"\x00 only garrison here", "y").detections] == [
        "Test.Logical.Absent-1"
    ]
    assert engine.scan_bytes(b"\x00" * 200, "z").status is Status.CLEAN
