"""``garrison scan`` as a user runs it: a real process, its output and its exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from garrison.engine.eicar import EICAR
from tests.conftest import zip_bytes


def run(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "GARRISON_DB_DIR": "/nonexistent-db",
        "GARRISON_CACHE_DIR": "/tmp/garrison-test-cache",
    }
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "garrison.cli", *args],
        capture_output=True,
        env=environment,
        input=stdin.decode() if stdin is not None else None,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "eicar.com").write_bytes(EICAR)
    (tmp_path / "clean.txt").write_text("nothing to see\n")
    (tmp_path / "sub" / "nested.zip").write_bytes(zip_bytes({"inner/eicar.txt": EICAR}))
    return tmp_path


def test_text_output_summary_and_exit_code(tree: Path) -> None:
    result = run("scan", "-j", "2", str(tree))
    assert result.returncode == 1, result.stderr
    assert f"{tree}/eicar.com: Eicar-Test-Signature FOUND" in result.stdout
    assert f"{tree}/sub/nested.zip//inner/eicar.txt: Eicar-Test-Signature FOUND" in result.stdout
    assert f"{tree}/clean.txt: OK" in result.stdout
    assert "Scanned files: 3" in result.stdout
    assert "Infected files: 2" in result.stdout
    assert "only the built-in EICAR test-file check applies" in result.stderr
    assert "Traceback" not in result.stderr


def test_clean_exit_code_and_infected_only(tree: Path) -> None:
    clean = run("scan", "--infected", str(tree / "clean.txt"))
    assert clean.returncode == 0
    assert "clean.txt: OK" not in clean.stdout


def test_jsonl_is_one_stable_object_per_file(tree: Path) -> None:
    result = run("scan", "--jsonl", str(tree))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 3
    by_name = {Path(line["path"]).name: line for line in lines}
    assert by_name["nested.zip"]["status"] == "infected"
    assert by_name["nested.zip"]["detections"][0]["object"].endswith("nested.zip//inner/eicar.txt")
    assert {line["schema"] for line in lines} == {1}


def test_json_document_has_summary(tree: Path) -> None:
    result = run("scan", "--json", "--members", str(tree / "sub"))
    document = json.loads(result.stdout)
    assert document["summary"]["infected"] == 1
    assert document["summary"]["exit_code"] == 1
    names = [Path(o["chain"][-1]).name for o in document["results"][0]["objects"]]
    assert names == ["nested.zip", "eicar.txt"]


def test_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    result = run("scan", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "missing: no such file or directory" in result.stdout
    assert "Traceback" not in result.stderr


def test_stdin() -> None:
    result = run("scan", "-", stdin=EICAR)
    assert result.returncode == 1
    assert "stdin: Eicar-Test-Signature FOUND" in result.stdout


def test_exclude_and_limits_options(tree: Path) -> None:
    result = run("scan", "--exclude", "*.com", "--max-recursion", "0", "--alert-exceeds-max", str(tree))
    assert "eicar.com" not in result.stdout
    assert "nested.zip: Heuristics.Limits.Exceeded.MaxRecursion FOUND" in result.stdout


def test_bad_option_values_are_usage_errors(tree: Path) -> None:
    result = run("scan", "--max-filesize", "lots", str(tree))
    assert result.returncode == 2
    assert "is not a size" in result.stderr


def test_unusable_database_is_a_clear_error(tmp_path: Path, tree: Path) -> None:
    bad = tmp_path / "bad.hdb"
    bad.write_text("not a signature\n")
    result = run("scan", "--db", str(bad), "--strict", str(tree))
    assert result.returncode == 2
    assert "cannot load the signature database" in result.stderr
    assert f"{bad}:1:" in result.stderr
    assert "Traceback" not in result.stderr
