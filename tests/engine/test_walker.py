from __future__ import annotations

import os
from pathlib import Path

from garrison.engine.walker import Found, Skipped, walk


def _tree(root: Path) -> None:
    (root / "d" / "e").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "d" / "b.txt").write_text("bb")
    (root / "d" / "e" / "c.log").write_text("ccc")
    os.mkfifo(root / "pipe")
    (root / "link").symlink_to(root / "a.txt")
    (root / "d" / "loop").symlink_to(root / "d")


def test_walk_finds_regular_files_and_explains_skips(tmp_path: Path) -> None:
    _tree(tmp_path)
    entries = list(walk([str(tmp_path)]))
    found = {Path(e.path).relative_to(tmp_path).as_posix(): e.size for e in entries if isinstance(e, Found)}
    skipped = {Path(e.path).name: e.reason for e in entries if isinstance(e, Skipped)}
    assert found == {"a.txt": 1, "d/b.txt": 2, "d/e/c.log": 3}
    assert skipped == {
        "pipe": "FIFO skipped",
        "link": "symbolic link not followed",
        "loop": "symbolic link not followed",
    }


def test_follow_symlinks_detects_loops(tmp_path: Path) -> None:
    _tree(tmp_path)
    entries = list(walk([str(tmp_path)], follow_symlinks=True))
    found = sorted(Path(e.path).relative_to(tmp_path).as_posix() for e in entries if isinstance(e, Found))
    assert found == ["a.txt", "d/b.txt", "d/e/c.log", "link"]
    assert any(isinstance(e, Skipped) and "loop" in e.reason for e in entries)


def test_named_symlink_is_followed_and_missing_path_is_an_error(tmp_path: Path) -> None:
    _tree(tmp_path)
    [entry] = list(walk([str(tmp_path / "link")]))
    assert isinstance(entry, Found)
    [missing] = list(walk([str(tmp_path / "nothing")]))
    assert isinstance(missing, Skipped) and missing.error


def test_exclude_globs(tmp_path: Path) -> None:
    _tree(tmp_path)
    entries = list(walk([str(tmp_path)], exclude=["*.log", "e"]))
    found = sorted(Path(e.path).name for e in entries if isinstance(e, Found))
    assert found == ["a.txt", "b.txt"]
