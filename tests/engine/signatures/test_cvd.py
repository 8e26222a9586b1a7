"""CVD / CLD / CUD containers: verification, unpacking, building, and interoperability with ClamAV's tools."""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import random
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from garrison.engine.errors import DatabaseError
from garrison.engine.signatures import cvd
from garrison.engine.signatures.cvd import (
    CLAMAV_CVD_KEY,
    CLAMAV_INFO_KEY,
    ContainerKind,
    CvdContainer,
    CvdLimits,
    RsaPrivateKey,
    build_cld,
    build_cvd,
    decode_dsig,
    encode_dsig,
    info_signer,
    md5_signer,
    parse_header,
    read_container,
    sign_info_digest,
    sign_md5_digest,
    verify_info_dsig,
    verify_md5_dsig,
)

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
FILES = {
    "test.hdb": b"44d88612fea8a8f36de82e1278abb02f:68:Garrison.Test.EICAR-1\n",
    "test.ndb": b"Garrison.Test.Body-1:0:*:414243444546\n",
}
STAMP = 1_700_000_000

# A real header of Talos's daily.cvd version 25784 (16 Apr 2020), as quoted in public test suites: the MD5 of
# the body and its signature under the key in libclamav/dsig.c, an independent vector for cli_versig's scheme.
REAL_HEADER = (
    "ClamAV-VDB:16 Apr 2020 07-58 -0400:25784:2267600:63:92baacd59fd26e6bcf03077add78d209:"
    "4Jp9JtGJY6nUk8JHDQQpQeBwlfXqskvhXL+vesDNqAeWCmjbudU+Hy/Nj4/BH2vl70c/R5B/VYY+eqqCQo6o7VGLqLJr/E+19gejqMp"
    "/iRcuHrtnLw6V/x3UjO3/qYVSlcJvAjtMI7FK32wjB+Sp8kaS/ZbfaFQp6trRQhisjqf:raynman:1587038339"
)


# ------------------------------------------------------------------------------------------------------------
# Test keys: plain RSA key generation (Miller-Rabin), no crypto library needed.

_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % q for q in range(3, int(p**0.5) + 1, 2))]


# Seeded, so that every run generates the same test keys.
_RANDOM = random.Random(20261125)


def _probably_prime(n: int, rounds: int = 32) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(_RANDOM.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int, e: int) -> int:
    while True:
        candidate = _RANDOM.getrandbits(bits) | (3 << (bits - 2)) | 1
        # e need not be prime (ClamAV's is not): p - 1 must share no factor with it at all.
        if math.gcd(candidate - 1, e) == 1 and _probably_prime(candidate):
            return candidate


def generate_key(bits: int, e: int = 65537) -> RsaPrivateKey:
    while True:
        p, q = _prime(bits // 2, e), _prime(bits - bits // 2, e)
        n = p * q
        if p != q and n.bit_length() == bits:
            return RsaPrivateKey(n=n, e=e, d=pow(e, -1, (p - 1) * (q - 1)))


@pytest.fixture(scope="session")
def cvd_key() -> RsaPrivateKey:
    # ClamAV's own CVD key is 1024 bits with an unusual public exponent; mimic both.
    return generate_key(1024, CLAMAV_CVD_KEY.e)


@pytest.fixture(scope="session")
def info_key() -> RsaPrivateKey:
    return generate_key(2048)


def build_signed(cvd_key: RsaPrivateKey, info_key: RsaPrivateKey, **kwargs: object) -> bytes:
    options: dict[str, object] = {"flevel": 90, "builder": "tester", "build_time": STAMP}
    options.update(kwargs)
    return build_cvd(
        "test",
        5,
        FILES,
        sign=md5_signer(cvd_key),
        info_sign=info_signer(info_key),
        **options,  # type: ignore[arg-type]
    )


def read_signed(data: bytes, cvd_key: RsaPrivateKey, info_key: RsaPrivateKey, name: str = "test.cvd") -> CvdContainer:
    return read_container(data, name, key=cvd_key.public, info_key=info_key.public)


def unsigned(files: dict[str, bytes] = FILES, **kwargs: object) -> bytes:
    options: dict[str, object] = {"flevel": 90, "builder": "tester", "build_time": STAMP}
    options.update(kwargs)
    return build_cvd("test", 3, files, sign=None, **options)  # type: ignore[arg-type]


def repack(data: bytes, mutate: Callable[[list[tuple[tarfile.TarInfo, bytes]]], None]) -> bytes:
    """Unpack a compressed container, let ``mutate`` change its members, and repack it with a fresh MD5."""
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data[512:]))) as archive:
        for info in archive.getmembers():
            extracted = archive.extractfile(info)
            members.append((info, extracted.read() if extracted else b""))
    mutate(members)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for info, content in members:
            info.size = len(content) if info.isfile() else 0
            archive.addfile(info, io.BytesIO(content) if info.isfile() else None)
    return with_body(data, gzip.compress(buffer.getvalue()))


def with_body(data: bytes, body: bytes) -> bytes:
    """Replace a container's body, keeping its header except for a fresh MD5."""
    fields = data[:512].decode().rstrip().split(":")
    fields[5] = hashlib.md5(body).hexdigest()
    return ":".join(fields).encode().ljust(512, b" ") + body


def set_member(name: str, content: bytes) -> Callable[[list[tuple[tarfile.TarInfo, bytes]]], None]:
    def mutate(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        for i, (info, _) in enumerate(members):
            if info.name == name:
                members[i] = (info, content)

    return mutate


# ------------------------------------------------------------------------------------------------------------
# ClamAV's signature scheme, against an independent vector


def test_real_talos_signature_verifies_with_the_published_key() -> None:
    header = parse_header(REAL_HEADER.encode().ljust(512, b" "), "daily.cvd")
    assert header.version == 25784
    assert header.signatures == 2267600
    assert header.functionality_level == 63
    assert header.builder == "raynman"
    assert header.build_time == 1587038339
    assert header.build_time_text == "16 Apr 2020 07-58 -0400"
    assert header.md5 is not None and header.dsig is not None
    assert verify_md5_dsig(bytes.fromhex(header.md5), header.dsig, CLAMAV_CVD_KEY)
    # One bit of the MD5 changed: the signature no longer matches.
    other = bytearray.fromhex(header.md5)
    other[-1] ^= 1
    assert not verify_md5_dsig(bytes(other), header.dsig, CLAMAV_CVD_KEY)
    # Decoding and re-encoding at ClamAV's length (171 characters for a 1024-bit key) gives the text back.
    assert len(header.dsig) == 171
    assert encode_dsig(decode_dsig(header.dsig), 171) == header.dsig


def test_dsig_encoding_is_little_endian_base64() -> None:
    assert decode_dsig("b") == 1
    assert decode_dsig("ab") == 64
    assert decode_dsig("ba") == 1
    assert decode_dsig("aa/") == 63 << 12
    assert encode_dsig(64, 3) == "aba"
    for bad in ("", "a-b", "é"):
        with pytest.raises(ValueError):
            decode_dsig(bad)
    with pytest.raises(ValueError):
        encode_dsig(64, 1)


def test_md5_signatures_round_trip(cvd_key: RsaPrivateKey) -> None:
    digest = hashlib.md5(b"body").digest()
    dsig = sign_md5_digest(digest, cvd_key)
    assert len(dsig) == 171
    assert verify_md5_dsig(digest, dsig, cvd_key.public)
    assert not verify_md5_dsig(digest, dsig, CLAMAV_CVD_KEY)
    assert not verify_md5_dsig(hashlib.md5(b"other").digest(), dsig, cvd_key.public)
    assert not verify_md5_dsig(digest, "a" * 171, cvd_key.public)
    assert not verify_md5_dsig(digest, "/" * 200, cvd_key.public)  # larger than the modulus


def test_info_signatures_round_trip(info_key: RsaPrivateKey) -> None:
    digest = hashlib.sha256(b"manifest").digest()
    dsig = sign_info_digest(digest, info_key)
    assert verify_info_dsig(digest, dsig, info_key.public)
    assert not verify_info_dsig(hashlib.sha256(b"other").digest(), dsig, info_key.public)
    assert not verify_info_dsig(digest, dsig, CLAMAV_INFO_KEY)
    with pytest.raises(ValueError, match="2048"):
        sign_info_digest(digest, generate_key(1024))


def test_info_signature_scheme_matches_standard_pss() -> None:
    """cli_versig2 is EMSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt): cross-check with another library."""
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = private.private_numbers()
    key = RsaPrivateKey(n=numbers.public_numbers.n, e=numbers.public_numbers.e, d=numbers.d)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    digest = hashlib.sha256(b"ClamAV-VDB:...:X:X:builder:0\n").digest()

    ours = decode_dsig(sign_info_digest(digest, key)).to_bytes(256, "big")
    private.public_key().verify(ours, digest, pss, utils.Prehashed(hashes.SHA256()))

    theirs = private.sign(digest, pss, utils.Prehashed(hashes.SHA256()))
    assert verify_info_dsig(digest, encode_dsig(int.from_bytes(theirs, "big"), 342), key.public)


# ------------------------------------------------------------------------------------------------------------
# Round trips


def test_signed_cvd_round_trip(cvd_key: RsaPrivateKey, info_key: RsaPrivateKey) -> None:
    data = build_signed(cvd_key, info_key)
    container = read_signed(data, cvd_key, info_key)
    assert container.signed
    assert container.kind is ContainerKind.CVD
    assert container.compressed
    header = container.header
    assert (header.version, header.signatures, header.functionality_level) == (5, 2, 90)
    assert (header.builder, header.build_time) == ("tester", STAMP)
    assert header.build_time_text == "14 Nov 2023 22-13 +0000"
    assert header.md5 == hashlib.md5(data[512:]).hexdigest()
    assert {name: container.files[name] for name in FILES} == FILES
    assert set(container.files) == {"COPYING", "test.info", *FILES}
    assert container.files["test.info"].startswith(b"ClamAV-VDB:14 Nov 2023 22-13 +0000:5:2:90:X:X:tester:")
    assert [(e.name, e.size) for e in container.manifest] == [(n, len(c)) for n, c in FILES.items()]


def test_uncompressed_cvd_round_trip(cvd_key: RsaPrivateKey, info_key: RsaPrivateKey) -> None:
    data = build_signed(cvd_key, info_key, compress=False)
    assert data[512:519] == b"COPYING"
    container = read_signed(data, cvd_key, info_key)
    assert not container.compressed
    assert container.signed


def test_our_cvd_is_refused_under_talos_keys(cvd_key: RsaPrivateKey, info_key: RsaPrivateKey) -> None:
    data = build_signed(cvd_key, info_key)
    with pytest.raises(DatabaseError, match=r"^test\.cvd: bad signature: the header's digital signature"):
        read_container(data, "test.cvd")
    with pytest.raises(DatabaseError, match=r"bad signature: the DSIG line of test\.info does not verify"):
        read_container(data, "test.cvd", key=cvd_key.public)


def test_unsigned_cud_round_trip() -> None:
    container = read_container(unsigned(), "/db/test.cud")
    assert not container.signed
    assert container.kind is ContainerKind.CUD
    assert container.header.dsig is None
    assert {name: container.files[name] for name in FILES} == FILES


def test_cld_is_trusted_through_its_manifest_signature(info_key: RsaPrivateKey) -> None:
    data = build_cld("daily", 9, FILES, flevel=90, builder="tester", info_sign=info_signer(info_key))
    assert data[512:519] == b"COPYING"
    container = read_container(data, "daily.cld", info_key=info_key.public)
    assert container.signed
    assert container.kind is ContainerKind.CLD
    assert container.header.md5 is None and container.header.dsig is None
    assert not container.compressed
    compressed = build_cld("daily", 9, FILES, flevel=90, builder="t", info_sign=info_signer(info_key), compress=True)
    assert read_container(compressed, "daily.cld", info_key=info_key.public).compressed


def test_cld_without_manifest_signature_is_refused() -> None:
    data = build_cld("daily", 9, FILES, flevel=90, builder="tester", info_sign=None)
    with pytest.raises(DatabaseError, match=r"daily\.info has no DSIG line \(required in a \.cld\)"):
        read_container(data, "daily.cld")


def test_cvd_without_manifest_signature_is_refused(cvd_key: RsaPrivateKey) -> None:
    data = build_cvd("test", 1, FILES, flevel=90, builder="tester", sign=md5_signer(cvd_key))
    with pytest.raises(DatabaseError, match=r"has no DSIG line \(required in a \.cvd\)"):
        read_container(data, "test.cvd", key=cvd_key.public)


def test_cud_with_a_manifest_signature_has_it_checked(info_key: RsaPrivateKey) -> None:
    data = build_cvd("test", 1, FILES, flevel=90, builder="tester", sign=None, info_sign=info_signer(info_key))
    assert not read_container(data, "test.cud", info_key=info_key.public).signed
    with pytest.raises(DatabaseError, match="bad signature: the DSIG line"):
        read_container(data, "test.cud")


# ------------------------------------------------------------------------------------------------------------
# Tampering and damage


def test_tampered_body_is_an_md5_mismatch(cvd_key: RsaPrivateKey, info_key: RsaPrivateKey) -> None:
    data = bytearray(build_signed(cvd_key, info_key))
    data[600] ^= 0xFF
    with pytest.raises(DatabaseError, match=r"^test\.cvd: MD5 mismatch: the body's MD5 is [0-9a-f]{32}"):
        read_signed(bytes(data), cvd_key, info_key)


def test_tampered_dsig_is_a_signature_error(cvd_key: RsaPrivateKey, info_key: RsaPrivateKey) -> None:
    data = build_signed(cvd_key, info_key)
    header = parse_header(data)
    assert header.dsig is not None
    first = header.dsig[0]
    # Another letter and another of the alphabet's last digits: never the character it has (which would forge
    # nothing, one run in 64).
    for replacement in ("b" if first != "b" else "c", "/" if first != "/" else "+"):
        forged = data.replace(header.dsig.encode(), (replacement + header.dsig[1:]).encode(), 1)
        with pytest.raises(DatabaseError, match="bad signature: the header's digital signature does not match"):
            read_signed(forged, cvd_key, info_key)


def test_tampered_manifest_signature_is_refused(cvd_key: RsaPrivateKey, info_key: RsaPrivateKey) -> None:
    original = build_signed(cvd_key, info_key)
    manifest = read_signed(original, cvd_key, info_key).files["test.info"]
    forged = manifest.replace(b"DSIG:", b"DSIG:b", 1)
    # Re-sign the header so only the manifest DSIG is wrong.
    data = repack(original, set_member("test.info", forged))
    body = data[512:]
    fields = data[:512].decode().rstrip().split(":")
    fields[6] = sign_md5_digest(hashlib.md5(body).digest(), cvd_key)
    data = ":".join(fields).encode().ljust(512, b" ") + body
    with pytest.raises(DatabaseError, match=r"^test\.cvd: bad signature: the DSIG line of test\.info"):
        read_signed(data, cvd_key, info_key)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"bad header: truncated \(0 bytes"),
        (REAL_HEADER.encode()[:100], r"bad header: truncated \(100 bytes"),
        (REAL_HEADER.encode().ljust(512, b" "), "nothing after the header"),
        (b"ClamAV-VDX:" + REAL_HEADER.encode()[11:].ljust(501, b" ") + b"x", "does not start with 'ClamAV-VDB:'"),
        (REAL_HEADER.replace(":25784:", ":2578a:").encode().ljust(512, b" ") + b"x", "version '2578a'"),
        (REAL_HEADER.replace(":raynman", "").encode().ljust(512, b" ") + b"x", "expected 9 .* found 8"),
        (REAL_HEADER.replace(":63:92ba", ":63:zzba").encode().ljust(512, b" ") + b"x", "MD5 field"),
        (REAL_HEADER.replace("4Jp9", "4J-9").encode().ljust(512, b" ") + b"x", "outside a-z A-Z"),
        (REAL_HEADER.replace("raynman", "raynmän").encode().ljust(512, b" ") + b"x", "not ASCII"),
        (REAL_HEADER.replace(":1587038339", ":soon").encode().ljust(512, b" ") + b"x", "build time 'soon'"),
    ],
)
def test_bad_headers(data: bytes, message: str) -> None:
    with pytest.raises(DatabaseError, match=r"^daily\.cvd: .*" + message):
        read_container(data, "daily.cvd")


def test_real_header_with_a_foreign_body_is_an_md5_mismatch() -> None:
    with pytest.raises(DatabaseError, match="MD5 mismatch"):
        read_container(REAL_HEADER.encode().ljust(512, b" ") + b"not the body", "daily.cvd")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"this is not gzip data", "the body is not valid gzip data", id="not-gzip"),
        pytest.param(
            gzip.compress(b"this is not a tar archive".ljust(1024, b"!")), "bad tar checksum at offset 0", id="text"
        ),
        pytest.param(gzip.compress(b"\0" * 1024), "it holds no files", id="empty-tar"),
        pytest.param(gzip.compress(b"short"), "truncated tar header", id="short"),
        pytest.param(gzip.compress(b"x" * 5000)[:-20], "the compressed body is truncated", id="truncated-gzip"),
        pytest.param(gzip.compress(b"\0" * 1024) + b"junk", "unexpected data after the compressed body", id="junk"),
    ],
)
def test_bodies_that_are_not_tar_archives(body: bytes, message: str) -> None:
    with pytest.raises(DatabaseError, match=r"^x\.cud: corrupt archive: " + message):
        read_container(with_body(unsigned(), body), "x.cud")


def _tar_with(info: tarfile.TarInfo, content: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content) if content else None)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "/etc/passwd"
    return info


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (_member("evil", tarfile.SYMTYPE), "'evil' is a symbolic link"),
        (_member("evil", tarfile.LNKTYPE), "'evil' is a hard link"),
        (_member("dev", tarfile.CHRTYPE), "'dev' is a character device"),
        (_member("dev", tarfile.BLKTYPE), "'dev' is a block device"),
        (_member("dir", tarfile.DIRTYPE), "'dir/' is a directory"),
        (_member("fifo", tarfile.FIFOTYPE), "'fifo' is a FIFO"),
        (_member("sub/test.hdb"), "'sub/test.hdb' is not a plain file name"),
        (_member(".."), "'..' is not a plain file name"),
        (_member("x" * 120 + ".hdb"), "is a GNU long name"),
    ],
)
def test_tar_members_other_than_plain_files_are_refused(info: tarfile.TarInfo, message: str) -> None:
    body = gzip.compress(_tar_with(info, b"data" if info.isfile() else b""))
    with pytest.raises(DatabaseError, match="corrupt archive: .*" + message):
        read_container(with_body(unsigned(), body), "x.cud")


def test_truncated_member_is_refused() -> None:
    tar = _tar_with(_member("test.hdb"), b"x" * 2000)
    with pytest.raises(DatabaseError, match=r"member 'test\.hdb' is truncated"):
        read_container(with_body(unsigned(), gzip.compress(tar[:1024])), "x.cud")


def test_limits_stop_bombs_and_member_floods() -> None:
    bomb = with_body(unsigned(), gzip.compress(b"\0" * (8 << 20)))
    with pytest.raises(DatabaseError, match="unpacks to more than the limit of 1048576 bytes"):
        read_container(bomb, "x.cud", limits=CvdLimits(max_total_size=1 << 20))
    with pytest.raises(DatabaseError, match="more than 2 members"):
        read_container(unsigned(), "x.cud", limits=CvdLimits(max_members=2))
    plain = unsigned(compress=False)
    with pytest.raises(DatabaseError, match="members exceed 100 bytes"):
        read_container(plain, "x.cud", limits=CvdLimits(max_total_size=100))


# ------------------------------------------------------------------------------------------------------------
# The .info manifest


def test_member_changed_after_the_manifest_was_written() -> None:
    data = repack(unsigned(), set_member("test.hdb", FILES["test.hdb"].replace(b"EICAR", b"OTHER")))
    with pytest.raises(DatabaseError, match=r"manifest mismatch: test\.hdb does not match its SHA-256"):
        read_container(data, "x.cud")
    data = repack(unsigned(), set_member("test.ndb", b"x"))
    with pytest.raises(DatabaseError, match=r"manifest mismatch: test\.ndb has 1 bytes, the manifest says 38"):
        read_container(data, "x.cud")


def test_unlisted_and_missing_members() -> None:
    def add(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        members.append((tarfile.TarInfo("extra.ldb"), b"Sig;Engine:51-255,Target:0;0;414243\n"))

    def drop(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        members[:] = [m for m in members if m[0].name != "test.ndb"]

    with pytest.raises(DatabaseError, match=r"manifest mismatch: extra\.ldb is not listed in the manifest"):
        read_container(repack(unsigned(), add), "x.cud")
    with pytest.raises(DatabaseError, match=r"manifest mismatch: test\.ndb is listed but not in the archive"):
        read_container(repack(unsigned(), drop), "x.cud")


def test_problems_are_reported_together() -> None:
    def both(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        set_member("test.hdb", b"a")(members)
        set_member("test.ndb", b"b")(members)

    with pytest.raises(DatabaseError, match=r"test\.hdb has 1 bytes.*; test\.ndb has 1 bytes"):
        read_container(repack(unsigned(), both), "x.cud")


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (None, "the archive has no .info manifest"),
        (b"test.hdb:1:" + b"0" * 64 + b"\n", "does not start with a ClamAV-VDB header line"),
        (b"ClamAV-VDB:14 Nov 2023 22-13 +0000:4:2:90:X:X:tester:1700000000\n", "header version 3, manifest says 4"),
        (b"ClamAV-VDB:14 Nov 2023 22-13 +0000:3:2:90:X:X:tester:1700000001\n", "header build time 1700000000"),
        (b"ClamAV-VDB:14 Nov 2023 22-13 +0000:3:2:90:X:X:tester:1700000000\nbroken line\n", "line 2: expected"),
        (b"ClamAV-VDB:14 Nov 2023 22-13 +0000:3:2:90:X:X:tester:1700000000\n\nx", "line 2: expected"),
    ],
)
def test_bad_manifests(manifest: bytes | None, message: str) -> None:
    def replace(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        if manifest is None:
            members[:] = [m for m in members if m[0].name != "test.info"]
        else:
            set_member("test.info", manifest)(members)

    with pytest.raises(DatabaseError, match=message):
        read_container(repack(unsigned(), replace), "x.cud")


def test_two_manifests_are_refused() -> None:
    def add(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        members.append((tarfile.TarInfo("other.info"), members[1][1]))

    with pytest.raises(DatabaseError, match=r"more than one \.info manifest \(other\.info, test\.info\)"):
        read_container(repack(unsigned(), add), "x.cud")


# ------------------------------------------------------------------------------------------------------------
# Names, building mistakes, robustness


def test_kind_comes_from_the_file_name() -> None:
    data = unsigned()
    with pytest.raises(DatabaseError, match=r"^test\.db: not a CVD, CLD or CUD file"):
        read_container(data, "test.db")
    assert read_container(data, "TEST.CUD").kind is ContainerKind.CUD
    assert read_container(data, "stream", kind=ContainerKind.CUD).kind is ContainerKind.CUD
    with pytest.raises(DatabaseError, match=r"bad signature: a \.cvd header must carry"):
        read_container(data, "test.cvd")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"builder": "a:b"}, "bad builder name"),
        ({"name": "../x"}, "bad database name"),
        ({"files": {"sub/x.hdb": b"x"}}, "bad member name"),
        ({"files": {"test.info": b"x"}}, "the .info manifest is generated"),
        ({"version": -1}, "must not be negative"),
        ({"sign": lambda _: "not:valid"}, "outside the signature alphabet"),
        ({"sign": lambda _: "a" * 600}, "does not fit in 512 bytes"),
    ],
)
def test_building_mistakes_are_value_errors(kwargs: dict[str, object], message: str) -> None:
    options: dict[str, object] = {"name": "test", "version": 1, "files": FILES, "flevel": 90, "builder": "t"}
    options["sign"] = None
    options.update(kwargs)
    with pytest.raises(ValueError, match=message):
        build_cvd(**options)  # type: ignore[arg-type]


def test_signature_count_defaults_to_signature_lines() -> None:
    files = {"a.hdb": b"# comment\nx:1:A\ny:2:B\n\n", "a.ign2": b"Name\n", "a.cfg": b"DOCUMENT:0x0:0:0\n"}
    assert parse_header(unsigned(files)).signatures == 2
    assert parse_header(unsigned(files, signatures=7)).signatures == 7


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_containers_only_ever_raise_database_error(data: st.DataObject) -> None:
    original = data.draw(st.sampled_from([_SAMPLE_COMPRESSED, _SAMPLE_PLAIN]))
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(damaged) - 1))
        damaged[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    kind = data.draw(st.sampled_from(["x.cud", "x.cld", "x.cvd"]))
    try:
        read_container(bytes(damaged[:cut]), kind)
    except DatabaseError as exc:
        assert str(exc).startswith(kind + ": ")


_SAMPLE_COMPRESSED = build_cvd("test", 1, FILES, flevel=90, builder="t", sign=None, build_time=STAMP)
_SAMPLE_PLAIN = build_cvd("test", 1, FILES, flevel=90, builder="t", sign=None, build_time=STAMP, compress=False)


# ------------------------------------------------------------------------------------------------------------
# Interoperability with Debian's ClamAV tools

SIGTOOL = shutil.which("sigtool")
CLAMSCAN = shutil.which("clamscan")


@pytest.mark.clamav
@pytest.mark.skipif(SIGTOOL is None, reason="sigtool (Debian package clamav) is not installed")
def test_reads_a_cud_built_by_sigtool(tmp_path: Path) -> None:
    # sigtool --build runs in a directory holding COPYING and <name>.<ext> files and writes <name>.info
    # itself. --unsigned makes a .cud without asking a signing server, --cvd-version avoids the interactive
    # prompt, and SIGNDUSER gives the builder name (sigtool/sigtool.c, build()).
    (tmp_path / "COPYING").write_bytes(b"test licence\n")
    for name, content in FILES.items():
        (tmp_path / name).write_bytes(content)
    env = {**os.environ, "SIGNDUSER": "garrison"}
    result = subprocess.run(
        [str(SIGTOOL), "--build=test.cud", "--unsigned", "--cvd-version=7"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    path = tmp_path / "test.cud"
    container = read_container(path.read_bytes(), str(path))
    assert not container.signed
    assert container.compressed
    assert container.header.version == 7
    assert container.header.signatures == 2
    assert container.header.builder == "garrison"
    assert container.header.md5 is not None and container.header.dsig is None
    assert container.files["COPYING"] == b"test licence\n"
    assert {name: container.files[name] for name in FILES} == FILES
    assert sorted(entry.name for entry in container.manifest) == sorted(FILES)
    assert container.files["test.info"] == (tmp_path / "test.info").read_bytes()


@pytest.mark.clamav
@pytest.mark.skipif(CLAMSCAN is None, reason="clamscan (Debian package clamav) is not installed")
def test_clamscan_loads_a_cud_we_built(tmp_path: Path) -> None:
    database = tmp_path / "garrison.cud"
    database.write_bytes(build_cvd("garrison", 3, FILES, flevel=90, builder="garrison", sign=None))
    sample = tmp_path / "eicar.com"
    sample.write_bytes(EICAR)
    result = subprocess.run(
        [str(CLAMSCAN), "--no-summary", "-d", str(database), str(sample)],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout.decode() + result.stderr.decode()
    assert b"Garrison.Test.EICAR-1.UNOFFICIAL FOUND" in result.stdout


def test_module_exports_are_documented() -> None:
    for name in cvd.__all__:
        assert getattr(cvd, name).__doc__, name
