"""Release bundles: canonical form, deterministic packing, strict unpacking, and Garrison's own deltas."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from garrison.engine.errors import DatabaseError
from garrison.engine.signatures.bundle import (
    BundleLimits,
    apply_delta,
    canonical,
    compress,
    decompress,
    digest,
    make_delta,
    pack,
    unpack,
)

BUNDLE = {
    "main.hdb": b"bbbb:2:B\naaaa:1:A\n",
    "rules.yar": b"rule x { condition: false }\n",
    "daily.info": b"anything, byte for byte\r\n",
}


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.hdb", b"b\r\na\n\na\nc", b"a\nb\nc\n"),
        ("a.ndb", b"", b""),
        ("a.ldb", b"\n\r\n", b""),
        ("a.ign2", "tên\nabc\n".encode(), "abc\ntên\n".encode()),
        ("a.txt", b"z\ny\n", b"y\nz\n"),
        ("a.yar", b"b\na\n\n", b"b\na\n\n"),
        ("a.json", b'{"x": 1}', b'{"x": 1}'),
        ("A.HSB", b"2\n1\n", b"1\n2\n"),
    ],
)
def test_canonical(name: str, content: bytes, expected: bytes) -> None:
    assert canonical({name: content}) == {name: expected}
    assert canonical(canonical({name: content})) == {name: expected}


def test_canonical_refusals() -> None:
    with pytest.raises(DatabaseError, match=r"bad\.hdb: not UTF-8"):
        canonical({"bad.hdb": b"\xff\xfe\n"})
    assert canonical({"ok.yar": b"\xff"}) == {"ok.yar": b"\xff"}  # other files are kept byte for byte
    for name in ("../x.hdb", "a/b.hdb", ".hidden", "", "a" * 129, "tên.hdb", "a b", "a\\b"):
        with pytest.raises(DatabaseError, match="refused file name"):
            canonical({name: b""})


def test_pack_is_deterministic_and_plain() -> None:
    data = pack(BUNDLE)
    assert data == pack(dict(reversed(list(BUNDLE.items()))))
    assert digest(BUNDLE) == hashlib.sha256(data).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == sorted(BUNDLE)
    assert all(m.isreg() and m.mtime == 0 and m.uid == m.gid == 0 and m.mode == 0o644 for m in members)
    assert unpack(data) == BUNDLE
    long_name = "n" * 120 + ".hdb"  # longer than ustar's 100 characters: a pax header carries it
    assert unpack(pack({long_name: b"x\n"})) == {long_name: b"x\n"}
    assert compress(data) == compress(data) and gzip.decompress(compress(data)) == data


def tar_members(*members: tuple[str, bytes, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, kind, content in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(content) if kind == tarfile.REGTYPE else 0
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = "a.hdb"
            archive.addfile(info, io.BytesIO(content) if kind == tarfile.REGTYPE else None)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "limits", "message"),
    [
        (tar_members(("a.hdb", tarfile.REGTYPE, b"x"), ("l.hdb", tarfile.SYMTYPE, b"")), None, "not a regular file"),
        (tar_members(("a.hdb", tarfile.REGTYPE, b"x"), ("h.hdb", tarfile.LNKTYPE, b"")), None, "not a regular file"),
        (tar_members(("d", tarfile.DIRTYPE, b"")), None, "not a regular file"),
        (tar_members(("c", tarfile.CHRTYPE, b"")), None, "not a regular file"),
        (tar_members(("f", tarfile.FIFOTYPE, b"")), None, "not a regular file"),
        (tar_members(("../evil.hdb", tarfile.REGTYPE, b"x")), None, "refused file name"),
        (tar_members(("/etc/evil", tarfile.REGTYPE, b"x")), None, "refused file name"),
        (tar_members(("dir/a.hdb", tarfile.REGTYPE, b"x")), None, "refused file name"),
        (tar_members(("a.hdb", tarfile.REGTYPE, b"x"), ("a.hdb", tarfile.REGTYPE, b"y")), None, "appears twice"),
        (
            tar_members(*((f"{i}.hdb", tarfile.REGTYPE, b"x") for i in range(4))),
            BundleLimits(max_members=3),
            "more than 3",
        ),
        (tar_members(("a.hdb", tarfile.REGTYPE, b"x" * 100)), BundleLimits(max_total_size=99), "exceed 99 bytes"),
        (tar_members(("a.hdb", tarfile.REGTYPE, b"x" * 2000))[:1024], None, "truncated|corrupt|not a valid"),
        (b"not a tar archive at all" * 40, None, "not a valid tar|corrupt"),
        (b"", None, "not a valid tar|corrupt"),
    ],
)
def test_unpack_refusals(data: bytes, limits: BundleLimits | None, message: str) -> None:
    with pytest.raises(DatabaseError, match=message):
        unpack(data, limits)


def test_decompress_is_bounded() -> None:
    bomb = compress(b"\0" * (32 * 1024 * 1024))
    assert len(bomb) < 100_000
    with pytest.raises(DatabaseError, match="limit"):
        decompress(bomb, 1024 * 1024)
    assert decompress(compress(b"abc"), 3) == b"abc"
    for bad in (b"", b"plain", compress(b"abc")[:-3], compress(b"abc") + b"junk"):
        with pytest.raises(DatabaseError):
            decompress(bad, 100)


# ------------------------------------------------------------------------------------------------------------
# Deltas


def test_delta_round_trip() -> None:
    old = canonical(BUNDLE | {"gone.fp": b"x:1:y\n"})
    new = canonical(
        {
            "main.hdb": b"aaaa:1:A\ncccc:3:C\n",
            "rules.yar": b"rule y { condition: false }\n",
            "daily.info": BUNDLE["daily.info"],
            "fresh.ndb": b"Sig-1:0:*:41\n",
            "data.bin": bytes(range(256)) + b"\n\n\0",
        }
    )
    delta = make_delta(old, new)
    assert gzip.decompress(delta).startswith(b"GARRISON-DELTA 1\n")
    assert apply_delta(old, delta) == new
    assert apply_delta(new, make_delta(new, new)) == new


def test_delta_on_the_wrong_base_fails() -> None:
    old = canonical(BUNDLE)
    new = canonical(BUNDLE | {"main.hdb": b"aaaa:1:A\n"})
    delta = make_delta(old, new)
    with pytest.raises(DatabaseError, match="it is for base"):
        apply_delta(new, delta)
    with pytest.raises(DatabaseError, match="it is for base"):
        apply_delta(BUNDLE, delta)  # the same release, not in canonical form


def _edit(delta: bytes, old: bytes, new: bytes) -> bytes:
    text = gzip.decompress(delta)
    assert old in text
    return compress(text.replace(old, new, 1))


def test_tampered_or_truncated_delta_fails() -> None:
    old = canonical(BUNDLE)
    new = canonical(BUNDLE | {"main.hdb": b"aaaa:1:A\ncccc:3:C\n", "rules.yar": b"rule z { condition: true }\n"})
    delta = make_delta(old, new)
    tampered = [
        _edit(delta, b"cccc:3:C", b"cccc:3:D"),  # an added line changed: the file digest no longer matches
        _edit(delta, b"condition: true", b"condition: TRUE"),
        _edit(delta, b"GARRISON-DELTA 1", b"GARRISON-DELTA 2"),
        _edit(delta, b"end\n", b"end\nmore"),
        _edit(delta, b"end\n", b""),
        _edit(delta, b"bbbb:2:B\n", b"zzzz:2:B\n"),  # removes a line the base does not have
        gzip.decompress(delta)[:-1],  # not compressed
        delta[: len(delta) // 2],
        delta[:-4],
    ]
    text = gzip.decompress(delta)
    tampered += [compress(text[:cut]) for cut in range(0, len(text), 7)]
    for data in tampered:
        with pytest.raises(DatabaseError):
            apply_delta(old, data)


def test_delta_size_is_about_the_changed_lines() -> None:
    lines = [hashlib.sha256(str(i).encode()).hexdigest().encode() + b":%d:Sig-%d" % (i, i) for i in range(100_000)]
    old = canonical({"main.hsb": b"\n".join(lines) + b"\n"})
    changed = [line for i, line in enumerate(lines) if i % 200] + [
        hashlib.sha256(b"new %d" % i).hexdigest().encode() + b":1:New-%d" % i for i in range(500)
    ]
    new = canonical({"main.hsb": b"\n".join(changed) + b"\n"})
    delta = make_delta(old, new)
    full = compress(pack(new))
    assert len(delta) * 30 < len(full)
    assert apply_delta(old, delta) == new


def test_delta_refuses_too_large_results() -> None:
    old = canonical(BUNDLE)
    new = canonical(BUNDLE | {"big.yar": b"x" * 10_000})
    with pytest.raises(DatabaseError, match="limit"):
        apply_delta(old, make_delta(old, new), BundleLimits(max_total_size=5_000))


_NAMES = st.sampled_from(["a.hdb", "b.ldb", "c.yar", "d.ign2", "e.info"])
_LINE = st.binary(max_size=6).filter(lambda b: b"\n" not in b).map(lambda b: b.decode("latin-1").encode())
_CONTENT = st.lists(_LINE, max_size=8).map(b"\n".join)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_NAMES, _CONTENT), st.dictionaries(_NAMES, _CONTENT))
def test_delta_round_trip_property(old: dict[str, bytes], new: dict[str, bytes]) -> None:
    before, after = canonical(old), canonical(new)
    assert apply_delta(before, make_delta(old, new)) == after


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_deltas_raise_only_database_error(junk: bytes) -> None:
    for data in (junk, compress(junk), compress(b"GARRISON-DELTA 1\n" + junk)):
        with pytest.raises(DatabaseError):
            apply_delta(BUNDLE, data)
