from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from garrison.engine.errors import SignatureError
from garrison.engine.signatures.hashdb import ANY_SIZE, HashTable, HashTableBuilder, parse_hash_line

MD5 = hashlib.md5(b"sample").hexdigest()
SHA1 = hashlib.sha1(b"sample").hexdigest()
SHA256 = hashlib.sha256(b"sample").hexdigest()


@pytest.mark.parametrize(
    ("line", "algorithm", "size"),
    [
        (f"{MD5}:6:Test.Md5-1", "md5", 6),
        (f"{SHA1}:6:Test.Sha1-1", "sha1", 6),
        (f"{SHA256}:6:Test.Sha256-1", "sha256", 6),
        (f"{SHA256.upper()}:6:Test.Upper-1", "sha256", 6),
        (f"{MD5}:*:Test.AnySize-1:73", "md5", ANY_SIZE),
        (f"{MD5}:6:Test.Flevel-1:51:255", "md5", 6),
    ],
)
def test_parse_valid_lines(line: str, algorithm: str, size: int) -> None:
    sig = parse_hash_line(line, "x.hdb", 3)
    assert (sig.algorithm, sig.size, sig.line) == (algorithm, size, 3)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"{MD5}:6", "expected HashString"),
        (f"{MD5[:-1]}:6:Bad.Length", "not an MD5, SHA1 or SHA256"),
        (f"{'z' * 32}:6:Bad.Hex", "not an MD5, SHA1 or SHA256"),
        (f"{MD5}:six:Bad.Size", "not a number"),
        (f"{MD5}:*:Bad.AnySize", "functionality level of 73"),
        (f"{MD5}:6:Bad Name", "bad signature name"),
        (f"{MD5}:6:Bad.Flevel:x", "must be numbers"),
    ],
)
def test_malformed_lines_name_the_file_and_line(line: str, message: str) -> None:
    with pytest.raises(SignatureError, match=message) as caught:
        parse_hash_line(line, "db/x.hdb", 12)
    assert str(caught.value).startswith("db/x.hdb:12: ")


def _table(lines: list[str]) -> HashTable:
    builder = HashTableBuilder()
    for n, line in enumerate(lines, 1):
        builder.add(parse_hash_line(line, "t.hdb", n))
    return builder.build()


def test_lookup_respects_size_and_wildcard() -> None:
    other = hashlib.md5(b"other").hexdigest()
    table = _table([f"{MD5}:6:Sized-1", f"{other}:*:Any-1:73"])
    digest = bytes.fromhex(MD5)
    assert [h.name for h in table.lookup("md5", digest, 6)] == ["Sized-1"]
    assert table.lookup("md5", digest, 7) == []
    assert [h.name for h in table.lookup("md5", bytes.fromhex(other), 12345)] == ["Any-1"]
    assert table.lookup("sha256", hashlib.sha256(b"sample").digest(), 6) == []


def test_same_prefix_different_digest_is_not_a_match() -> None:
    # Digests sharing the 8-byte search key must still be compared in full.
    a = "00" * 8 + "11" * 8
    b = "00" * 8 + "22" * 8
    table = _table([f"{a}:1:A-1", f"{b}:1:B-1"])
    assert [h.name for h in table.lookup("md5", bytes.fromhex(b), 1)] == ["B-1"]
    assert table.lookup("md5", bytes.fromhex("00" * 8 + "33" * 8), 1) == []


def test_save_and_memory_map(tmp_path: Path) -> None:
    table = _table([f"{MD5}:6:Saved-1", f"{SHA256}:6:Saved-2"])
    table.save(tmp_path, "h_")
    loaded = HashTable.load(tmp_path, "h_")
    assert len(loaded) == 2
    hit = loaded.lookup("sha256", bytes.fromhex(SHA256), 6)[0]
    assert (hit.name, hit.source, hit.line) == ("Saved-2", "t.hdb", 2)


def test_many_signatures_stay_compact() -> None:
    builder = HashTableBuilder()
    for i in range(20_000):
        builder.add(parse_hash_line(f"{hashlib.md5(str(i).encode()).hexdigest()}:{i}:S-{i}", "m.hdb", i + 1))
    table = builder.build()
    probe = hashlib.md5(b"12345").digest()
    assert [h.name for h in table.lookup("md5", probe, 12345)] == ["S-12345"]
    assert table.count("md5") == 20_000
