"""Helpers for the signature translator tests: compile generated rules, scan with the globals, run clamscan."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import yara_x

from garrison.engine.signatures.ndb import GLOBALS

CLAMSCAN = shutil.which("clamscan")


def compile_rules(rules: Iterable[tuple[str, frozenset[str]]]) -> yara_x.Rules:
    """Compile (rule text, imports) pairs the way the database will: imports first, globals defined."""
    texts = list(rules)
    imports = sorted({m for _, mods in texts for m in mods})
    source = "".join(f'import "{m}"\n' for m in imports) + "\n".join(text for text, _ in texts)
    compiler = yara_x.Compiler()
    for name, value in GLOBALS.items():
        compiler.define_global(name, value)
    compiler.add_source(source)
    return compiler.build()


def yara_names(rules: yara_x.Rules, data: bytes, **globals_: object) -> set[str]:
    scanner = yara_x.Scanner(rules)
    for name, value in globals_.items():
        scanner.set_global(name, value)
    result = scanner.scan(data)
    return {str(dict(rule.metadata)["name"]) for rule in result.matching_rules}


def clamscan_matches(db_dir: Path, files: list[Path]) -> set[tuple[str, str]]:
    """(file name, detection name) pairs clamscan reports, with ClamAV's ``.UNOFFICIAL`` suffix removed."""
    assert CLAMSCAN is not None
    proc = subprocess.run(
        [CLAMSCAN, "--no-summary", "--allmatch", "-d", str(db_dir), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr
    found = set()
    for line in proc.stdout.splitlines():
        if line.endswith(" FOUND"):
            path, _, name = line[: -len(" FOUND")].rpartition(": ")
            found.add((Path(path).name, name.removesuffix(".UNOFFICIAL")))
    return found


needs_clamscan = pytest.mark.skipif(CLAMSCAN is None, reason="clamscan is not installed")


def cross_check(
    tmp_path: Path, db_name: str, lines: list[str], parse: Callable[[str, str, int], object], samples: dict[str, bytes]
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(what Garrison's translated rules find, what clamscan finds) for the same signatures and samples."""
    db = tmp_path / "db"
    db.mkdir()
    (db / db_name).write_text("\n".join(lines) + "\n")
    files = []
    for name, data in samples.items():
        (tmp_path / name).write_bytes(data)
        files.append(tmp_path / name)
    expected = clamscan_matches(db, files)
    sigs = [parse(line, db_name, n) for n, line in enumerate(lines, 1)]
    rules = compile_rules((s.to_yara(f"r{n}"), s.imports) for n, s in enumerate(sigs))  # type: ignore[attr-defined]
    got = {
        (name, found)
        for name, data in samples.items()
        for found in yara_names(rules, data, garrison_target=0, garrison_normalized=False)
    }
    return got, expected
