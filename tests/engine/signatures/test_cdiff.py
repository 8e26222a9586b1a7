"""ClamAV cdiff patches: parsing, verification, applying, building, and ClamAV's own sigtool as a referee."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from garrison.engine.errors import DatabaseError
from garrison.engine.signatures.cdiff import (
    CLAMAV_CDIFF_KEY,
    CdiffLimits,
    apply_cdiff,
    apply_to_container,
    make_cdiff,
    parse_cdiff,
)
from garrison.engine.signatures.cvd import (
    RsaPrivateKey,
    build_cld,
    build_cvd,
    info_signer,
    md5_signer,
    read_container,
    sign_info_digest,
)
from tests.engine.signatures.test_cvd import generate_key

STAMP = 1_700_000_000
OLD = {
    "test.hdb": b"44d88612fea8a8f36de82e1278abb02f:68:Garrison.Test.EICAR-1\n"
    b"aaaa:1:Old-1\nbbbb:2:Old-2\ncccc:3:Old-3\n",
    "test.ndb": b"Garrison.Test.Body-1:0:*:414243444546\n",
    "gone.fp": b"cccc:3:Allowed\n",
}
NEW = {
    "test.hdb": b"44d88612fea8a8f36de82e1278abb02f:68:Garrison.Test.EICAR-1\n"
    b"bbbb:2:Old-2\ncccc:3:Old-3b\ndddd:4:New-1\n",
    "test.ndb": b"Garrison.Test.Body-1:0:*:414243444546\n",
    "test.ldb": b"Garrison.Test.Logical-1;Target:0;0;414243\n",
}


@pytest.fixture(scope="session")
def keys() -> dict[str, RsaPrivateKey]:
    return {"cvd": generate_key(1024, 100001027), "info": generate_key(2048), "cdiff": generate_key(2048)}


def wrap(script: bytes, version: int = 2, dsig: bytes = b"", declared: int | None = None) -> bytes:
    """A cdiff around a hand-written script, signed with nothing (parse it with key=None)."""
    length = len(script) if declared is None else declared
    return f"ClamAV-Diff:{version}:{length}:".encode() + gzip.compress(script, mtime=0) + b":" + dsig


def run(files: dict[str, bytes], script: bytes) -> dict[str, bytes]:
    return apply_cdiff(files, parse_cdiff(wrap(script), key=None))


# ------------------------------------------------------------------------------------------------------------
# Round trips


def test_make_parse_apply_round_trip() -> None:
    data = make_cdiff(OLD, NEW, 7)
    assert data.startswith(b"ClamAV-Diff:7:")
    patch = parse_cdiff(data, key=None)
    assert patch.version == 7 and not patch.signed
    assert apply_cdiff(OLD, patch) == NEW
    assert {c.op for c in patch.commands} >= {"OPEN", "DEL", "XCHG", "ADD", "CLOSE", "UNLINK"}


def test_signed_round_trip_and_signature_checks(keys: dict[str, RsaPrivateKey]) -> None:
    data = make_cdiff(OLD, NEW, 3, info_signer(keys["cdiff"]))
    assert parse_cdiff(data, key=keys["cdiff"].public).signed
    with pytest.raises(DatabaseError, match="bad signature"):
        parse_cdiff(data)  # Talos's key: not ours
    with pytest.raises(DatabaseError, match="bad signature"):
        parse_cdiff(data, key=keys["info"].public)
    # Any byte of the header or the compressed script changed: refused before decompressing.
    for at in (13, len(data) // 2, data.rfind(b":") - 1):
        tampered = bytearray(data)
        tampered[at] ^= 0x01
        with pytest.raises(DatabaseError):
            parse_cdiff(bytes(tampered), key=keys["cdiff"].public)


def test_talos_cdiff_key_is_the_published_one() -> None:
    assert CLAMAV_CDIFF_KEY.e == 100002053
    assert str(CLAMAV_CDIFF_KEY.n).endswith("1989844180721010947")
    assert CLAMAV_CDIFF_KEY.n.bit_length() == 2047


# Not -1: the last character of a signature carries only the few bits left over by the encoding, and when the
# signature's value has them at zero, it decodes to the same number without it (a shorter spelling of the same,
# valid signature). Ten characters are sixty bits.
@pytest.mark.parametrize("cut", [0, 5, 20, 40, 100, -400, -200, -10])
def test_truncated_cdiff_is_refused(keys: dict[str, RsaPrivateKey], cut: int) -> None:
    data = make_cdiff(OLD, NEW, 3, info_signer(keys["cdiff"]))
    with pytest.raises(DatabaseError):
        parse_cdiff(data[:cut], key=keys["cdiff"].public)
    if cut >= 0:  # cut in the header or the script: refused even without a signature check
        with pytest.raises(DatabaseError):
            parse_cdiff(data[:cut], key=None)


def _containers(keys: dict[str, RsaPrivateKey]) -> tuple[bytes, dict[str, bytes]]:
    """An old signed CVD (version 5) and the files of the CLD version 6 Talos would publish."""
    old = build_cvd(
        "test", 5, OLD, flevel=90, builder="tester", sign=md5_signer(keys["cvd"]),
        info_sign=info_signer(keys["info"]), build_time=STAMP,
    )  # fmt: skip
    new = build_cld(
        "test", 6, NEW, flevel=90, builder="tester", info_sign=info_signer(keys["info"]), build_time=STAMP + 3600
    )
    return old, read_container(new, "test.cld", info_key=keys["info"].public).files


def test_apply_to_container_like_freshclam(keys: dict[str, RsaPrivateKey]) -> None:
    old, new_files = _containers(keys)
    current = read_container(old, "test.cvd", key=keys["cvd"].public, info_key=keys["info"].public)
    patch = make_cdiff(current.files, new_files, 6, info_signer(keys["cdiff"]))
    cld = apply_to_container(
        old, patch, source="test.cvd", key=keys["cdiff"].public, cvd_key=keys["cvd"].public,
        info_key=keys["info"].public,
    )  # fmt: skip
    result = read_container(cld, "test.cld", info_key=keys["info"].public)
    assert result.signed and result.header.version == 6
    assert result.files == new_files

    # The CLD is the next base: a patch to version 7 applies to it, one to version 8 does not.
    again = make_cdiff(result.files, result.files | {"extra.hdb": b"eeee:5:Extra-1\n"}, 8, None)
    with pytest.raises(DatabaseError, match="needs version 7, have 6"):
        apply_to_container(cld, again, source="test.cld", key=None, info_key=keys["info"].public)


def test_apply_to_container_refuses_a_patch_that_breaks_the_manifest(keys: dict[str, RsaPrivateKey]) -> None:
    old, new_files = _containers(keys)
    current = read_container(old, "test.cvd", key=keys["cvd"].public, info_key=keys["info"].public)
    # The database files change, the signed manifest does not: the new container would not verify.
    stale = dict(new_files)
    stale["test.hdb"] += b"ffff:6:Sneaked-In\n"
    patch = make_cdiff(current.files, stale, 6, None)
    with pytest.raises(DatabaseError, match="manifest mismatch"):
        apply_to_container(
            old, patch, source="test.cvd", key=None, cvd_key=keys["cvd"].public, info_key=keys["info"].public
        )


def test_apply_to_container_can_re_sign(keys: dict[str, RsaPrivateKey]) -> None:
    old, _ = _containers(keys)
    current = read_container(old, "test.cvd", key=keys["cvd"].public, info_key=keys["info"].public)
    changed = current.files | {"test.hdb": current.files["test.hdb"] + b"ffff:6:Local-1\n"}
    patch = make_cdiff(current.files, changed, 6, None)
    cld = apply_to_container(
        old, patch, source="test.cvd", key=None, cvd_key=keys["cvd"].public, info_key=keys["info"].public,
        info_sign=info_signer(keys["info"]), build_time=STAMP + 60,
    )  # fmt: skip
    result = read_container(cld, "test.cld", info_key=keys["info"].public)
    assert result.header.version == 6 and result.files["test.hdb"] == changed["test.hdb"]


# ------------------------------------------------------------------------------------------------------------
# Script semantics and refusals


def test_script_semantics() -> None:
    files = {"a.hdb": b"one 1\ntwo 2\nthree 3\n", "b.hdb": b"x\n"}
    script = (
        b"# a comment\n#LSIZE 100000\n\nOPEN a.hdb\nXCHG 3 three tres 3\nDEL 1 one\nADD four 4\nCLOSE\n"
        b"MOVE a.hdb b.hdb 1 two 1 two\nUNLINK b.hdb\nOPEN c.hdb\nADD c\r\nCLOSE\n"
    )
    assert run(files, script) == {"a.hdb": b"tres 3\nfour 4\n", "c.hdb": b"c\n"}
    # ADD appends to the file as it is, like ClamAV: no final newline means the line is glued on.
    assert run({"n.hdb": b"a\nb"}, b"OPEN n.hdb\nADD c\nCLOSE\n") == {"n.hdb": b"a\nbc\n"}
    # A file opened and closed with nothing to do is not created.
    assert run({}, b"OPEN x.hdb\nCLOSE\n") == {}


@pytest.mark.parametrize(
    ("files", "script", "message"),
    [
        (
            {"a.hdb": b"one\n"},
            b"OPEN a.hdb\nDEL 1 two\nCLOSE\n",
            r"script line 2: DEL at line 1 of a.hdb: .*does not start",
        ),
        ({"a.hdb": b"one\n"}, b"OPEN a.hdb\nXCHG 1 x y\nCLOSE\n", r"XCHG at line 1 of a.hdb"),
        ({"a.hdb": b"one\n"}, b"OPEN a.hdb\nDEL 2 one\nCLOSE\n", r"DEL at line 2 of a.hdb: the file has only 1 lines"),
        ({"a.hdb": b"one\n"}, b"OPEN a.hdb\nDEL 1 one\nXCHG 1 one two\nCLOSE\n", "already edited on script line 2"),
        ({"a.hdb": b"one"}, b"OPEN a.hdb\nDEL 1 one\nCLOSE\n", "no final newline"),
        ({}, b"OPEN a.hdb\nDEL 1 one\nCLOSE\n", "a.hdb does not exist"),
        ({}, b"ADD x\n", "ADD: no file is open"),
        ({}, b"CLOSE\n", "CLOSE: no file is open"),
        ({}, b"OPEN a.hdb\nOPEN b.hdb\n", "a.hdb .* is not closed"),
        ({}, b"OPEN a.hdb\nADD x\n", "still open"),
        ({}, b"UNLINK a.hdb\n", "UNLINK: a.hdb does not exist"),
        ({"a.hdb": b"x\n"}, b"MOVE a.hdb a.hdb 1 x 1 x\n", "to itself"),
        ({"a.hdb": b"x\n"}, b"MOVE a.hdb b.hdb 1 y 1 x\n", "MOVE at line 1 of a.hdb"),
    ],
)
def test_mismatches_name_the_command_and_line(files: dict[str, bytes], script: bytes, message: str) -> None:
    with pytest.raises(DatabaseError, match=message):
        run(files, script)


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (b"FROB x\n", "unknown command 'FROB'"),
        (b"ADD\n", "ADD without a line"),
        (b"DEL x a\n", "is not a line number"),
        (b"DEL 0 a\n", "is not a line number"),
        (b"DEL 1\n", "DEL needs"),
        (b"XCHG 1 a\n", "XCHG needs"),
        (b"MOVE a.hdb b.hdb 3 x 2 y\n", "ends .* before it starts"),
        (b"OPEN ../etc/passwd\n", "refused database name"),
        (b"OPEN a/b.hdb\n", "refused database name"),
        (b"OPEN ..\n", "refused database name"),
        (b"OPEN .hidden\n", "refused database name"),
        (b"UNLINK a\\b\n", "refused database name"),
        (b"MOVE a.hdb ../b 1 x 1 x\n", "refused database name"),
        (b"OPEN \n", "refused database name"),
    ],
)
def test_malformed_scripts_and_hostile_names(script: bytes, message: str) -> None:
    with pytest.raises(DatabaseError, match=message):
        parse_cdiff(wrap(script), key=None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"ClamAV-VDB:1:2:", "does not start with 'ClamAV-Diff:'"),
        (b"ClamAV-Diff:x:1:", "bad header"),
        (b"ClamAV-Diff:2:5", "bad header"),
        (b"ClamAV-Diff:2:5::", "no compressed script"),
        (b"ClamAV-Diff:2:5:not gzip:", "bad script"),
        (wrap(b"ADD x\n", declared=3), "more than the limit|header says 3"),
        (wrap(b"ADD x\n", declared=100), "header says 100"),
    ],
)
def test_bad_files(data: bytes, message: str) -> None:
    # (The cases are built at collection, identically in every test worker: gzip without a time stamp.)
    with pytest.raises(DatabaseError, match=message):
        parse_cdiff(data, key=None)


def test_gzip_bomb_is_refused() -> None:
    bomb = b"# " + b"A" * (64 * 1024 * 1024) + b"\n"
    data = wrap(bomb)
    assert len(data) < 200_000
    with pytest.raises(DatabaseError, match="limit"):
        parse_cdiff(data, key=None, limits=CdiffLimits(max_script_size=1024 * 1024))
    # A header that understates the size is caught while decompressing, not after.
    with pytest.raises(DatabaseError, match="limit"):
        parse_cdiff(wrap(bomb, declared=1000), key=None)


def test_make_cdiff_refusals() -> None:
    with pytest.raises(ValueError, match="bad database name"):
        make_cdiff({}, {"../x.hdb": b"a\n"}, 1)
    with pytest.raises(ValueError, match="does not end with a newline"):
        make_cdiff({}, {"a.hdb": b"a"}, 1)
    with pytest.raises(ValueError, match="empty file"):
        make_cdiff({}, {"a.hdb": b""}, 1)
    with pytest.raises(ValueError, match="cannot write the line"):
        make_cdiff({}, {"a.hdb": b"a\n\nb\n"}, 1)
    with pytest.raises(ValueError, match="negative"):
        make_cdiff({}, {}, -1)


def test_make_cdiff_replaces_files_it_cannot_edit_and_handles_long_lines() -> None:
    old = {"a.hdb": b"no final newline", "b.hdb": b" leading space\nx\n", "c.hdb": b"a\nb\n"}
    new = {"a.hdb": b"fixed\n", "b.hdb": b"x\ny\n", "c.hdb": b""}
    assert apply_cdiff(old, parse_cdiff(make_cdiff(old, new, 2), key=None)) == new
    long_line = b"L" * 40_000 + b"\n"
    data = make_cdiff({}, {"l.ldb": long_line}, 2)
    assert gzip.decompress(data[data.index(b":", 14) + 1 : data.rfind(b":")]).startswith(b"#LSIZE ")


def test_append_and_delete_patches_stay_small() -> None:
    lines = [hashlib.sha256(str(i).encode()).hexdigest().encode() + b":%d:Sig-%d" % (i, i) for i in range(20_000)]
    old = b"\n".join(lines) + b"\n"
    kept = [line for i, line in enumerate(lines) if i % 100]
    new = b"\n".join([*kept, b"ffff:1:New-1", b"eeee:2:New-2"]) + b"\n"
    data = make_cdiff({"a.hdb": old}, {"a.hdb": new}, 2)
    assert len(data) < len(gzip.compress(new)) / 10
    assert apply_cdiff({"a.hdb": old}, parse_cdiff(data, key=None)) == {"a.hdb": new}


_LINES = st.lists(st.sampled_from([b"a", b"b", b"c 1", b"d:2", b"e", b"f f", b"\xc3\xa9"]), max_size=12)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(old=st.dictionaries(st.sampled_from(["a.hdb", "b.ndb", "c.fp"]), _LINES), new=st.dictionaries(
    st.sampled_from(["a.hdb", "b.ndb", "d.ldb"]), _LINES.filter(bool)))  # fmt: skip
def test_round_trip_property(old: dict[str, list[bytes]], new: dict[str, list[bytes]]) -> None:
    before = {name: b"".join(line + b"\n" for line in lines) for name, lines in old.items()}
    after = {name: b"".join(line + b"\n" for line in lines) for name, lines in new.items()}
    assert apply_cdiff(before, parse_cdiff(make_cdiff(before, after, 9), key=None)) == after


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=400))
def test_garbage_raises_only_database_error(junk: bytes, declared: int) -> None:
    for data in (junk, b"ClamAV-Diff:2:%d:" % declared + junk, wrap(junk, declared=declared)):
        with contextlib.suppress(DatabaseError):
            apply_cdiff({"a.hdb": b"a\nb\n"}, parse_cdiff(data, key=None))


def test_signature_scheme_matches_cli_versig2(keys: dict[str, RsaPrivateKey]) -> None:
    # The dsig covers everything before the last ':' (header and compressed script), as cdiff_apply hashes it.
    data = make_cdiff(OLD, NEW, 3)
    signed = data[: data.rfind(b":")]
    dsig = sign_info_digest(hashlib.sha256(signed).digest(), keys["cdiff"])
    assert parse_cdiff(signed + b":" + dsig.encode(), key=keys["cdiff"].public).signed


SIGTOOL = shutil.which("sigtool")


@pytest.mark.skipif(SIGTOOL is None, reason="sigtool (Debian package clamav) is not installed")
def test_sigtool_applies_our_scripts_the_same_way(tmp_path: Path) -> None:
    # sigtool --run-cdiff runs a plain script in the current directory (and then fails to verify it against a
    # .cvd, which does not matter here): the files it leaves must be those Garrison computes.
    old = OLD | {"big.hdb": b"".join(b"%032x:%d:Sig-%d\n" % (i, i, i) for i in range(500))}
    new = NEW | {"big.hdb": b"".join(b"%032x:%d:Sig-%d\n" % (i, i, i) for i in range(500) if i % 7) + b"f:1:N\n"}
    data = make_cdiff(old, new, 2)
    script = gzip.decompress(data[data.index(b":", 14) + 1 : data.rfind(b":")])
    for name, content in old.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "update.script").write_bytes(script)
    assert SIGTOOL is not None
    subprocess.run([SIGTOOL, "--run-cdiff=update.script"], cwd=tmp_path, capture_output=True, check=False)
    (tmp_path / "update.script").unlink()
    on_disk = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert on_disk == new == apply_cdiff(old, parse_cdiff(data, key=None))
