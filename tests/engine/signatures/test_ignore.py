from __future__ import annotations

import hashlib

import pytest

from garrison.engine.errors import SignatureError
from garrison.engine.signatures.ignore import IgnoreList


def test_ignore_by_name_and_pinned_md5() -> None:
    line = "Test.Sig-1:0:*:414243"
    pinned = hashlib.md5(line.encode()).hexdigest()
    ignore = IgnoreList()
    ignore.add_line("Test.Anywhere-1", "x.ign2", 1, legacy=False)
    ignore.add_line(f"Test.Sig-1:{pinned}", "x.ign2", 2, legacy=False)
    ignore.add_line("daily.ndb:1234:Test.Legacy-1", "x.ign", 1, legacy=True)
    assert ignore.ignores("Test.Anywhere-1", "whatever")
    assert ignore.ignores("Test.Sig-1", line)
    assert not ignore.ignores("Test.Sig-1", line + "44")  # the line changed: the pin no longer applies
    assert ignore.ignores("Test.Legacy-1", "any")
    assert not ignore.ignores("Other-1", "any")


@pytest.mark.parametrize("line", ["bad name", "Name:nothex", "A:B:C"])
def test_malformed_ignore_lines(line: str) -> None:
    with pytest.raises(SignatureError):
        IgnoreList().add_line(line, "x.ign2", 4, legacy=False)
