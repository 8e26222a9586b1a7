"""ClamAV signature containers (``.cvd``, ``.cld``, ``.cud``): verify, unpack and build them in memory.

A container is a 512-byte ASCII header followed by a tar archive, gzip-compressed or plain::

    ClamAV-VDB:<build time>:<version>:<sigs>:<flevel>:<MD5 of body>:<dsig of the MD5>:<builder>:<unixtime>

and the archive holds ``COPYING``, the ``<db>.info`` manifest (the header line with ``X`` for MD5 and dsig,
one ``name:size:sha256`` line per file, then ``DSIG:<signature>``) and the database files.

The three kinds are told apart by the file name's extension, like libclamav (``cl_cvdverify`` in
``libclamav/cvd.c``) does, and are checked the way libclamav checks them:

* ``.cvd``: the MD5 in the header must match the body and the header's dsig must be a valid signature of that
  MD5 under Talos's 1024-bit key (``cli_versig``); the manifest must carry a valid ``DSIG`` under Talos's
  2048-bit manifest key (``cli_versig2`` via ``cli_loadinfo``).
* ``.cld``: the local copy freshclam rebuilds after applying cdiffs (``buildcld``). Its header is the
  manifest's first line, so MD5 and dsig are ``X``: libclamav skips the header check and relies on the
  manifest ``DSIG`` (which the cdiff carries over from Talos) plus the manifest's per-file sizes and SHA-256.
* ``.cud``: built with ``sigtool --build=NAME.cud --unsigned``; no signature is required. Garrison still
  checks the header MD5 (libclamav does not), and a manifest ``DSIG`` if one is present.

Everything happens in memory; nothing here touches the disk, the network or a logger. Every problem with the
data raises :class:`~garrison.engine.errors.DatabaseError` naming the file and what is wrong; ``ValueError``
is only raised for caller mistakes in the *building* functions.

Signatures use plain RSA arithmetic (Python ints and ``pow``), so no crypto library is needed. The
``.cvd.sign`` detached PKCS#7 signatures of ClamAV 1.5 are not verified here (see docs/signatures-cvd.md).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import secrets
import tarfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from garrison.engine.errors import DatabaseError

__all__ = [
    "CLAMAV_CVD_KEY",
    "CLAMAV_INFO_KEY",
    "ContainerKind",
    "CvdContainer",
    "CvdHeader",
    "CvdLimits",
    "ManifestEntry",
    "RsaPrivateKey",
    "RsaPublicKey",
    "build_cld",
    "build_cvd",
    "decode_dsig",
    "encode_dsig",
    "info_signer",
    "md5_signer",
    "parse_header",
    "read_container",
    "sign_info_digest",
    "sign_md5_digest",
    "verify_info_dsig",
    "verify_md5_dsig",
]

HEADER_SIZE = 512
GiB = 1024 * 1024 * 1024
_TAR_BLOCK = 512


@dataclass(frozen=True, slots=True)
class RsaPublicKey:
    """An RSA public key as ClamAV writes it: modulus and public exponent."""

    n: int
    e: int


@dataclass(frozen=True, slots=True)
class RsaPrivateKey:
    """An RSA private key (modulus, public and private exponent), for signing in ClamAV's scheme."""

    n: int
    e: int
    d: int

    @property
    def public(self) -> RsaPublicKey:
        return RsaPublicKey(self.n, self.e)


#: Talos's key for the header dsig of official CVDs: ``CLI_NSTR`` and ``CLI_ESTR`` in libclamav/dsig.c
#: (Cisco-Talos/clamav). 1024 bits; the signature is the raw RSA of the 16-byte MD5 (no padding).
CLAMAV_CVD_KEY = RsaPublicKey(
    n=int(
        "118640995551645342603070001658453189751527774412027743746599405743243142607464144767361060640655844749"
        "760788890022283424922762488917565551002467771109669598189410434699034532232228621591089508178591428456"
        "220796841621637175567590476666928698770143328137383952820383197532047771780196576957695822641224262693037"
    ),
    e=100001027,
)

#: Talos's key for the ``DSIG:`` line of ``<db>.info`` manifests: ``INFO_NSTR`` and ``INFO_ESTR`` in
#: libclamav/readdb.c (Cisco-Talos/clamav). 2048 bits, EMSA-PSS over SHA-256 with a 32-byte salt
#: (``cli_versig2`` in libclamav/dsig.c).
CLAMAV_INFO_KEY = RsaPublicKey(
    n=int(
        "110888949830485454736595561066271949239289417917950476205916586974135810433227159121724968065253810558"
        "809645206184002243333205346602992339837553417406795028668299096799557343913926683783612215242053966310"
        "901051516412708572770803107343209516537005089417174191687239425078907029047027075874516216910507543078"
        "503833998653464872037984641785373922114027864813598244611972311028954150937703942166663244845939357624"
        "084685168266331921408266679234948220458053478099328484548458869717064243605586678627758760720594377033"
        "65380209101697738577515476935085469455279994113145977994084618328482151013142393373316337519977244732747977"
    ),
    e=100002049,
)


class ContainerKind(StrEnum):
    """The three container kinds, named after their file extensions."""

    CVD = "cvd"
    CLD = "cld"
    CUD = "cud"


@dataclass(frozen=True, slots=True)
class CvdLimits:
    """How much a container may unpack to, checked while unpacking (a compressed body can be a bomb).

    Attributes:
        max_total_size: total bytes of the unpacked tar archive (and so of all members together).
        max_members: number of members in the archive.
    """

    max_total_size: int = 2 * GiB
    max_members: int = 10_000

    def __post_init__(self) -> None:
        if self.max_total_size <= 0 or self.max_members <= 0:
            raise ValueError("CvdLimits values must be positive")


@dataclass(frozen=True, slots=True)
class CvdHeader:
    """The fields of a container header (or of the first line of its ``.info`` manifest).

    Attributes:
        build_time_text: build time as the builder wrote it, e.g. ``"16 Apr 2020 07-58 -0400"``.
        version: database version (``daily`` counts up every update).
        signatures: number of signatures the builder counted.
        functionality_level: minimum engine functionality level the database needs.
        md5: lowercase hex MD5 of everything after the header, or None when absent (``X`` in CLDs).
        dsig: ClamAV-encoded RSA signature of the MD5, or None when absent (``X`` in CLDs and CUDs).
        builder: who built it (``raynman``, ``sigmgr``...).
        build_time: build time in Unix seconds.
    """

    build_time_text: str
    version: int
    signatures: int
    functionality_level: int
    md5: str | None
    dsig: str | None
    builder: str
    build_time: int


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One ``name:size:sha256`` line of a ``.info`` manifest."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class CvdContainer:
    """A verified, unpacked container.

    Attributes:
        header: the parsed 512-byte header.
        files: every archive member by name, ``COPYING`` and the ``.info`` manifest included.
        signed: True when a signature was verified: header dsig and manifest DSIG for a CVD, manifest DSIG for
            a CLD. Always False for a CUD.
        kind: which kind of container it is (from the file name).
        compressed: whether the body was gzip-compressed.
        manifest: the entries of the ``.info`` manifest, in file order.
    """

    header: CvdHeader
    files: dict[str, bytes]
    signed: bool
    kind: ContainerKind = ContainerKind.CVD
    compressed: bool = True
    manifest: tuple[ManifestEntry, ...] = ()


# ------------------------------------------------------------------------------------------------------------
# ClamAV's signature encoding and the two signature schemes (libclamav/dsig.c)

# cli_ndecode's table: character i stands for the value i.
_DSIG_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
_DSIG_VALUES = {c: i for i, c in enumerate(_DSIG_ALPHABET)}
_DSIG_TEXT = re.compile(r"[a-zA-Z0-9+/]+")


def decode_dsig(text: str) -> int:
    """Decode ClamAV's base64-like signature text into the signature integer.

    Unlike base64, the digits are little-endian: the first character holds the lowest 6 bits
    (``cli_decodesig`` adds ``value << 6 * i`` for the i-th character).

    Raises:
        ValueError: empty text, or a character outside ``a-z A-Z 0-9 + /``.
    """
    if not text:
        raise ValueError("empty signature")
    value = 0
    for i, char in enumerate(text):
        digit = _DSIG_VALUES.get(char)
        if digit is None:
            raise ValueError(f"character {char!r} is not in the signature alphabet")
        value |= digit << (6 * i)
    return value


def encode_dsig(value: int, length: int) -> str:
    """Encode a signature integer as ``length`` ClamAV signature characters (inverse of :func:`decode_dsig`).

    ClamAV's own signatures use ``ceil(bits of the modulus / 6)`` characters (171 for the 1024-bit CVD key).

    Raises:
        ValueError: the value is negative or does not fit in ``length`` characters.
    """
    if value < 0 or value >> (6 * length):
        raise ValueError("value does not fit in the requested signature length")
    return "".join(_DSIG_ALPHABET[(value >> (6 * i)) & 0x3F] for i in range(length))


def _dsig_length(key_n: int) -> int:
    return -(-key_n.bit_length() // 6)


def _rsa_public(dsig: str, key: RsaPublicKey) -> int | None:
    """The signature's value raised to the public exponent, or None when the text cannot be a signature."""
    try:
        value = decode_dsig(dsig)
    except ValueError:
        return None
    if value >= key.n:
        return None
    return pow(value, key.e, key.n)


def verify_md5_dsig(md5_digest: bytes, dsig: str, key: RsaPublicKey = CLAMAV_CVD_KEY) -> bool:
    """Check a CVD header signature: ``dsig ** e mod n`` must equal the 16-byte MD5 (``cli_versig``).

    libclamav compares only the low 16 bytes of the result; a genuine signature yields exactly the digest, so
    Garrison requires the whole value to equal it, which accepts the same genuine signatures.
    """
    if len(md5_digest) != 16:
        return False
    plain = _rsa_public(dsig, key)
    return plain is not None and plain == int.from_bytes(md5_digest, "big")


def sign_md5_digest(md5_digest: bytes, key: RsaPrivateKey) -> str:
    """Sign a 16-byte MD5 the way Talos signs CVD headers: raw RSA, encoded with :func:`encode_dsig`.

    Raises:
        ValueError: the digest is not 16 bytes, or the key is too small to hold it.
    """
    if len(md5_digest) != 16:
        raise ValueError("an MD5 digest has 16 bytes")
    message = int.from_bytes(md5_digest, "big")
    if message >= key.n:
        raise ValueError("the key is too small")
    return encode_dsig(pow(message, key.d, key.n), _dsig_length(key.n))


# EMSA-PSS parameters fixed by cli_versig2: a 2048-bit encoded message, SHA-256, 32-byte salt, trailer 0xbc.
_PSS_EM_LEN = 256
_PSS_HASH_LEN = 32
_PSS_SALT_LEN = 32
_PSS_DB_LEN = _PSS_EM_LEN - _PSS_HASH_LEN - 1


def _mgf1_sha256(seed: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:length])


def _pss_hash(digest: bytes, salt: bytes) -> bytes:
    return hashlib.sha256(bytes(8) + digest + salt).digest()


def verify_info_dsig(sha256_digest: bytes, dsig: str, key: RsaPublicKey = CLAMAV_INFO_KEY) -> bool:
    """Check a manifest ``DSIG:`` line: EMSA-PSS over SHA-256, as ``cli_versig2`` does.

    cdiff files use the same scheme with another key (``PSS_NSTR`` in libclamav_rust/src/cdiff.rs).

    ``sha256_digest`` is the SHA-256 of the manifest bytes before the ``DSIG:`` line.
    """
    if len(sha256_digest) != _PSS_HASH_LEN:
        return False
    plain = _rsa_public(dsig, key)
    if plain is None or plain >> (8 * _PSS_EM_LEN):
        return False
    em = plain.to_bytes(_PSS_EM_LEN, "big")
    if em[-1] != 0xBC:
        return False
    masked_db, h = em[:_PSS_DB_LEN], em[_PSS_DB_LEN : _PSS_DB_LEN + _PSS_HASH_LEN]
    db = bytearray(a ^ b for a, b in zip(masked_db, _mgf1_sha256(h, _PSS_DB_LEN), strict=True))
    db[0] &= 0x7F
    # Like cli_versig2: the salt follows the first 0x01 byte and must be exactly 32 bytes long.
    one = db.find(1)
    if one < 0 or len(db) - (one + 1) != _PSS_SALT_LEN:
        return False
    salt = bytes(db[one + 1 :])
    return secrets.compare_digest(_pss_hash(sha256_digest, salt), h)


def sign_info_digest(sha256_digest: bytes, key: RsaPrivateKey, salt: bytes | None = None) -> str:
    """Sign a manifest's SHA-256 the way Talos signs ``DSIG:`` lines (EMSA-PSS, see :func:`verify_info_dsig`).

    Raises:
        ValueError: the digest is not 32 bytes, the salt not 32 bytes, or the key has fewer than 2048 bits.
    """
    if len(sha256_digest) != _PSS_HASH_LEN:
        raise ValueError("a SHA-256 digest has 32 bytes")
    if key.n.bit_length() < 8 * _PSS_EM_LEN:
        raise ValueError("the manifest signature scheme needs a key of at least 2048 bits")
    salt = secrets.token_bytes(_PSS_SALT_LEN) if salt is None else salt
    if len(salt) != _PSS_SALT_LEN:
        raise ValueError("the salt has 32 bytes")
    h = _pss_hash(sha256_digest, salt)
    db = bytes(_PSS_DB_LEN - _PSS_SALT_LEN - 1) + b"\x01" + salt
    masked = bytearray(a ^ b for a, b in zip(db, _mgf1_sha256(h, _PSS_DB_LEN), strict=True))
    masked[0] &= 0x7F
    em = int.from_bytes(bytes(masked) + h + b"\xbc", "big")
    return encode_dsig(pow(em, key.d, key.n), _dsig_length(key.n))


def md5_signer(key: RsaPrivateKey) -> Callable[[bytes], str]:
    """A ``sign`` callback for :func:`build_cvd`: signs the body's MD5 digest with ``key``."""
    return lambda digest: sign_md5_digest(digest, key)


def info_signer(key: RsaPrivateKey) -> Callable[[bytes], str]:
    """An ``info_sign`` callback for :func:`build_cvd` / :func:`build_cld`: signs the manifest's SHA-256."""
    return lambda digest: sign_info_digest(digest, key)


# ------------------------------------------------------------------------------------------------------------
# Reading

_NUMBER = re.compile(r"[0-9]{1,10}")
_MD5_HEX = re.compile(r"[0-9a-f]{32}")
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def _error(source: str, what: str) -> DatabaseError:
    return DatabaseError(f"{source}: {what}")


def _kind_of(source: str) -> ContainerKind:
    lowered = source.lower()
    for kind in ContainerKind:
        if lowered.endswith("." + kind.value):
            return kind
    raise _error(source, "not a CVD, CLD or CUD file (the name must end in .cvd, .cld or .cud)")


def _parse_header_text(text: str, source: str, what: str) -> CvdHeader:
    fields = text.split(":")
    if fields[0] != "ClamAV-VDB":
        raise _error(source, f"bad {what}: it does not start with 'ClamAV-VDB:'")
    if len(fields) != 9:
        raise _error(source, f"bad {what}: expected 9 colon-separated fields, found {len(fields)}")
    _, time_text, version, sigs, flevel, md5, dsig, builder, stime = fields
    numbers: dict[str, int] = {}
    for label, value in (("version", version), ("signature count", sigs), ("functionality level", flevel)):
        if not _NUMBER.fullmatch(value):
            raise _error(source, f"bad {what}: the {label} {value!r} is not a number")
        numbers[label] = int(value)
    stime = stime.rstrip()
    if not _NUMBER.fullmatch(stime):
        raise _error(source, f"bad {what}: the build time {stime!r} is not a number of seconds")
    if md5 in ("", "X"):
        md5_value = None
    elif _MD5_HEX.fullmatch(md5.lower()):
        md5_value = md5.lower()
    else:
        raise _error(source, f"bad {what}: the MD5 field {md5!r} is not 32 hex digits")
    if dsig in ("", "X"):
        dsig_value = None
    elif _DSIG_TEXT.fullmatch(dsig):
        dsig_value = dsig
    else:
        raise _error(source, f"bad {what}: the digital signature has characters outside a-z A-Z 0-9 + /")
    return CvdHeader(
        build_time_text=time_text,
        version=numbers["version"],
        signatures=numbers["signature count"],
        functionality_level=numbers["functionality level"],
        md5=md5_value,
        dsig=dsig_value,
        builder=builder,
        build_time=int(stime),
    )


def parse_header(data: bytes, source: str = "<container>") -> CvdHeader:
    """Parse the 512-byte header at the start of ``data`` (only the header is needed).

    Raises:
        DatabaseError: fewer than 512 bytes, not ASCII, or a field is missing or malformed.
    """
    if len(data) < HEADER_SIZE:
        raise _error(source, f"bad header: truncated ({len(data)} bytes, a header has {HEADER_SIZE})")
    raw = bytes(data[:HEADER_SIZE])
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _error(source, "bad header: it is not ASCII text") from None
    # sigtool and freshclam pad with spaces; tolerate NULs and line ends too (cl_cvdhead stops at a newline).
    text = text.split("\n", 1)[0].split("\r", 1)[0].rstrip(" \0")
    return _parse_header_text(text, source, "header")


def gunzip_bounded(body: bytes | memoryview, source: str, limit: int) -> bytes:
    """Decompress one or more concatenated gzip members, refusing more than ``limit`` bytes of output."""
    out = bytearray()
    rest: bytes | memoryview = body
    while True:
        decompressor = zlib.decompressobj(wbits=31)
        try:
            chunk = decompressor.decompress(rest, limit - len(out) + 1)
        except zlib.error as exc:
            raise _error(source, f"corrupt archive: the body is not valid gzip data ({exc})") from None
        out += chunk
        if len(out) > limit:
            raise _error(source, f"corrupt archive: it unpacks to more than the limit of {limit} bytes")
        if not decompressor.eof:
            raise _error(source, "corrupt archive: the compressed body is truncated")
        rest = decompressor.unused_data
        if not rest or not any(rest):
            return bytes(out)
        if bytes(rest[:2]) != b"\x1f\x8b":
            raise _error(source, "corrupt archive: unexpected data after the compressed body")


_TAR_TYPES = {
    b"1": "a hard link",
    b"2": "a symbolic link",
    b"3": "a character device",
    b"4": "a block device",
    b"5": "a directory",
    b"6": "a FIFO",
    b"7": "a contiguous file",
    b"x": "a pax header",
    b"g": "a pax global header",
    b"L": "a GNU long name",
    b"K": "a GNU long link name",
}


def _tar_number(field: bytes) -> int | None:
    text = field.replace(b"\0", b" ").strip()
    if not text:
        return 0
    if not re.fullmatch(rb"[0-7]+", text):
        return None
    return int(text, 8)


def _read_tar(tar: bytes | memoryview, source: str, limits: CvdLimits) -> dict[str, bytes]:
    """Read a tar archive strictly, like libclamav's ``cli_tgzload``: plain files with flat names only."""
    files: dict[str, bytes] = {}
    view = memoryview(tar)
    total = 0
    offset = 0
    while offset < len(view):
        if offset + _TAR_BLOCK > len(view):
            raise _error(source, "corrupt archive: truncated tar header")
        block = bytes(view[offset : offset + _TAR_BLOCK])
        if block[0] == 0:  # end-of-archive marker; libclamav stops here too
            break
        stored = _tar_number(block[148:156])
        unsigned_sum = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
        signed_sum = unsigned_sum - 2 * sum(b for b in block[:148] + block[156:] if b >= 0x80)
        if stored is None or stored not in (unsigned_sum, signed_sum):
            raise _error(source, f"corrupt archive: bad tar checksum at offset {offset} (not a tar archive?)")
        try:
            name = block[:100].split(b"\0", 1)[0].decode("ascii")
        except UnicodeDecodeError:
            raise _error(source, f"corrupt archive: member name at offset {offset} is not ASCII") from None
        typeflag = block[156:157]
        if typeflag not in (b"0", b"\0"):
            what = _TAR_TYPES.get(typeflag, f"an unknown type {typeflag!r}")
            raise _error(source, f"corrupt archive: member {name!r} is {what}; only plain files are allowed")
        prefix = block[345:500].split(b"\0", 1)[0] if block[257:262] == b"ustar" else b""
        if prefix or "/" in name or "\\" in name or name in ("", ".", "..") or not name.isprintable():
            raise _error(source, f"corrupt archive: member name {name!r} is not a plain file name")
        size = _tar_number(block[124:136])
        if size is None:
            raise _error(source, f"corrupt archive: member {name!r} has an invalid size field")
        start = offset + _TAR_BLOCK
        if start + size > len(view):
            raise _error(source, f"corrupt archive: member {name!r} is truncated")
        total += size
        if total > limits.max_total_size:
            raise _error(source, f"corrupt archive: members exceed {limits.max_total_size} bytes")
        if len(files) >= limits.max_members:
            raise _error(source, f"corrupt archive: more than {limits.max_members} members")
        if name in files:
            raise _error(source, f"corrupt archive: member {name!r} appears twice")
        files[name] = bytes(view[start : start + size])
        offset = start + -(-size // _TAR_BLOCK) * _TAR_BLOCK
    if not files:
        raise _error(source, "corrupt archive: it holds no files")
    return files


def _check_manifest(
    files: Mapping[str, bytes],
    header: CvdHeader,
    kind: ContainerKind,
    source: str,
    info_key: RsaPublicKey,
) -> tuple[tuple[ManifestEntry, ...], bool]:
    """Check the ``.info`` manifest against the header and the members; return its entries, DSIG status."""
    infos = sorted(name for name in files if name.lower().endswith(".info"))
    if not infos:
        raise _error(source, "manifest mismatch: the archive has no .info manifest")
    if len(infos) > 1:
        raise _error(source, f"manifest mismatch: more than one .info manifest ({', '.join(infos)})")
    info_name = infos[0]
    where = f"{source}//{info_name}"
    data = files[info_name]

    info_header: CvdHeader | None = None
    entries: dict[str, ManifestEntry] = {}
    dsig: str | None = None
    signed_length = len(data)
    offset = 0
    lineno = 0
    while offset < len(data):
        end = data.find(b"\n", offset)
        end = len(data) if end < 0 else end
        raw, line_start, offset = data[offset:end], offset, end + 1
        lineno += 1
        try:
            line = raw.rstrip(b"\r").decode("ascii")
        except UnicodeDecodeError:
            raise _error(where, f"line {lineno} is not ASCII text") from None
        if line.startswith("DSIG:"):
            dsig, signed_length = line[5:].strip(), line_start
            break  # libclamav ignores whatever follows the DSIG line
        if line.startswith("ClamAV-VDB:"):
            if info_header is not None or entries:
                raise _error(where, f"line {lineno}: the header line must come first, and only once")
            info_header = _parse_header_text(line, where, "manifest header")
            continue
        if info_header is None:
            raise _error(where, "the manifest does not start with a ClamAV-VDB header line")
        parts = line.split(":")
        if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not _SHA256_HEX.fullmatch(parts[2]):
            raise _error(where, f"line {lineno}: expected name:size:sha256, found {line[:80]!r}")
        if parts[0] in entries:
            raise _error(where, f"line {lineno}: {parts[0]} is listed twice")
        entries[parts[0]] = ManifestEntry(parts[0], int(parts[1]), parts[2].lower())
    if info_header is None:
        raise _error(where, "the manifest does not start with a ClamAV-VDB header line")

    # libclamav: "cli_cvdload: Corrupted CVD header" unless these four agree.
    for label, ours, theirs in (
        ("version", header.version, info_header.version),
        ("signature count", header.signatures, info_header.signatures),
        ("functionality level", header.functionality_level, info_header.functionality_level),
        ("build time", header.build_time, info_header.build_time),
    ):
        if ours != theirs:
            raise _error(source, f"manifest mismatch: header {label} {ours}, manifest says {theirs}")

    info_signed = False
    if dsig is not None:
        digest = hashlib.sha256(data[:signed_length]).digest()
        if not verify_info_dsig(digest, dsig, info_key):
            raise _error(source, f"bad signature: the DSIG line of {info_name} does not verify")
        info_signed = True
    elif kind is not ContainerKind.CUD:
        raise _error(source, f"bad signature: {info_name} has no DSIG line (required in a .{kind.value})")

    problems: list[str] = []
    for entry in entries.values():
        content = files.get(entry.name)
        if content is None:
            problems.append(f"{entry.name} is listed but not in the archive")
        elif len(content) != entry.size:
            problems.append(f"{entry.name} has {len(content)} bytes, the manifest says {entry.size}")
        elif hashlib.sha256(content).hexdigest() != entry.sha256:
            problems.append(f"{entry.name} does not match its SHA-256 in the manifest")
    problems.extend(
        f"{name} is not listed in the manifest"
        for name in files
        if name not in entries and name not in (info_name, "COPYING")
    )
    if problems:
        raise _error(source, "manifest mismatch: " + "; ".join(problems))
    return tuple(entries.values()), info_signed


def read_container(
    data: bytes,
    source: str,
    *,
    key: RsaPublicKey = CLAMAV_CVD_KEY,
    info_key: RsaPublicKey = CLAMAV_INFO_KEY,
    limits: CvdLimits | None = None,
    kind: ContainerKind | None = None,
) -> CvdContainer:
    """Verify and unpack a container held in memory.

    Args:
        data: the whole file.
        source: its name or path, used in error messages and, unless ``kind`` is given, to tell a ``.cvd``
            from a ``.cld`` or ``.cud`` by its extension.
        key: the key for the header dsig of a ``.cvd`` (Talos's by default).
        info_key: the key for the manifest ``DSIG:`` line (Talos's by default).
        limits: unpacking limits (:class:`CvdLimits` defaults: 2 GiB, 10,000 members).
        kind: the container kind, overriding the extension.

    Returns:
        The header, the members by name, and whether a signature was verified.

    Raises:
        DatabaseError: bad header, MD5 mismatch, bad signature, corrupt archive or manifest mismatch; the
            message names ``source`` and the problem.
    """
    limits = limits or CvdLimits()
    kind = kind or _kind_of(source)
    header = parse_header(data, source)
    body = memoryview(data)[HEADER_SIZE:]
    if not body:
        raise _error(source, "corrupt archive: there is nothing after the header")

    # The format prescribes MD5; the RSA signature over it is what carries the trust.
    digest = hashlib.md5(body, usedforsecurity=False).digest()
    if header.md5 is not None and digest.hex() != header.md5:
        raise _error(source, f"MD5 mismatch: the body's MD5 is {digest.hex()}, the header says {header.md5}")
    if kind is ContainerKind.CVD:
        if header.md5 is None or header.dsig is None:
            raise _error(source, "bad signature: a .cvd header must carry an MD5 and a digital signature")
        if not verify_md5_dsig(digest, header.dsig, key):
            raise _error(source, "bad signature: the header's digital signature does not match the MD5")

    compressed = bytes(body[:7]) != b"COPYING"
    tar = gunzip_bounded(body, source, limits.max_total_size) if compressed else body
    files = _read_tar(tar, source, limits)
    manifest, info_signed = _check_manifest(files, header, kind, source, info_key)
    signed = kind is not ContainerKind.CUD and info_signed
    return CvdContainer(header, files, signed, kind, compressed, manifest)


# ------------------------------------------------------------------------------------------------------------
# Building

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BUILDER = re.compile(r"[A-Za-z0-9_.@-]{1,32}")
_DB_NAME = re.compile(r"[A-Za-z0-9_-]{1,24}")
# Extensions whose lines sigtool counts as signatures (the count=1 entries of sigtool.c's dblist).
_COUNTED = {
    "db", "hdb", "hdu", "hsb", "hsu", "mdb", "mdu", "msb", "msu", "ndb", "ndu", "ldb", "ldu",
    "sdb", "zmd", "rmd", "fp", "gdb", "pdb", "crb", "cdb", "imp",
}  # fmt: skip
_DEFAULT_COPYING = b"ClamAV-compatible signature database built by Garrison.\n"


def _time_text(timestamp: int) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    month = _MONTHS[moment.month - 1]
    return f"{moment.day:02d} {month} {moment.year} {moment.hour:02d}-{moment.minute:02d} +0000"


def _count_signatures(files: Mapping[str, bytes]) -> int:
    count = 0
    for name, content in files.items():
        if name.rsplit(".", 1)[-1].lower() in _COUNTED:
            count += sum(1 for line in content.splitlines() if line.strip() and not line.startswith(b"#"))
    return count


def tar_members(members: list[tuple[str, bytes]], mtime: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = mtime
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _check_signature_text(dsig: str, what: str) -> str:
    if not _DSIG_TEXT.fullmatch(dsig):
        raise ValueError(f"the {what} callback returned text outside the signature alphabet")
    return dsig


def _assemble(
    name: str,
    version: int,
    files: Mapping[str, bytes],
    *,
    flevel: int,
    builder: str,
    sign: Callable[[bytes], str] | None,
    info_sign: Callable[[bytes], str] | None,
    signatures: int | None,
    build_time: int | None,
    compress: bool,
    cld: bool,
) -> bytes:
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"bad database name {name!r}")
    if not _BUILDER.fullmatch(builder):
        raise ValueError(f"bad builder name {builder!r} (letters, digits, _ . @ - only)")
    if min(version, flevel) < 0 or (signatures is not None and signatures < 0):
        raise ValueError("version, flevel and signatures must not be negative")
    info_name = f"{name}.info"
    for member in files:
        if not member or "/" in member or "\\" in member or len(member.encode()) > 99 or not member.isascii():
            raise ValueError(f"bad member name {member!r} (short flat ASCII names only)")
        if member.lower().endswith(".info"):
            raise ValueError(f"{member}: the .info manifest is generated, do not pass one")
    stamp = int(datetime.now(UTC).timestamp()) if build_time is None else build_time
    count = _count_signatures(files) if signatures is None else signatures
    head = f"ClamAV-VDB:{_time_text(stamp)}:{version}:{count}:{flevel}:"
    tail = f":{builder}:{stamp}"

    databases = [(member, content) for member, content in files.items() if member != "COPYING"]
    info = (head + "X:X" + tail + "\n").encode("ascii")
    info += b"".join(
        f"{member}:{len(content)}:{hashlib.sha256(content).hexdigest()}\n".encode("ascii")
        for member, content in databases
    )
    if info_sign is not None:
        dsig = _check_signature_text(info_sign(hashlib.sha256(info).digest()), "info_sign")
        info += f"DSIG:{dsig}\n".encode("ascii")

    members = [("COPYING", files.get("COPYING", _DEFAULT_COPYING)), (info_name, info), *databases]
    body = tar_members(members, stamp)
    if compress:
        body = gzip.compress(body, compresslevel=9, mtime=stamp)

    if cld:  # freshclam's buildcld: the manifest's first line is the header
        header = head + "X:X" + tail
    else:
        md5 = hashlib.md5(body, usedforsecurity=False)
        dsig = "X" if sign is None else _check_signature_text(sign(md5.digest()), "sign")
        header = f"{head}{md5.hexdigest()}:{dsig}{tail}"
    if len(header) > HEADER_SIZE:
        raise ValueError("the header does not fit in 512 bytes (signature too long?)")
    return header.encode("ascii").ljust(HEADER_SIZE, b" ") + body


def build_cvd(
    name: str,
    version: int,
    files: Mapping[str, bytes],
    *,
    flevel: int,
    builder: str,
    sign: Callable[[bytes], str] | None,
    info_sign: Callable[[bytes], str] | None = None,
    signatures: int | None = None,
    build_time: int | None = None,
    compress: bool = True,
) -> bytes:
    """Build a ``.cvd`` (``sign`` given) or an unsigned ``.cud`` (``sign`` None), as ``sigtool --build`` does.

    Args:
        name: the database name (``daily``); the manifest becomes ``<name>.info``.
        version: the database version.
        files: member name to content; ``COPYING`` is added when missing and always stored first.
        flevel: the minimum functionality level written in the header.
        builder: the builder name written in the header.
        sign: called with the 16-byte MD5 of the body, returns the header dsig (see :func:`md5_signer`).
        info_sign: called with the 32-byte SHA-256 of the manifest, returns its ``DSIG`` (see
            :func:`info_signer`). libclamav requires it in a ``.cvd``; without it no ``DSIG`` line is written.
        signatures: the header's signature count; by default the non-comment lines of the signature files.
        build_time: Unix time of the build (now by default); the text time is written in UTC.
        compress: gzip the tar archive (sigtool always does).

    Raises:
        ValueError: a bad name, builder, member name, negative number, or a header longer than 512 bytes.
    """
    return _assemble(
        name,
        version,
        files,
        flevel=flevel,
        builder=builder,
        sign=sign,
        info_sign=info_sign,
        signatures=signatures,
        build_time=build_time,
        compress=compress,
        cld=False,
    )


def build_cld(
    name: str,
    version: int,
    files: Mapping[str, bytes],
    *,
    flevel: int,
    builder: str,
    info_sign: Callable[[bytes], str] | None,
    signatures: int | None = None,
    build_time: int | None = None,
    compress: bool = False,
) -> bytes:
    """Build a ``.cld`` like freshclam's ``buildcld``: ``X`` for header MD5 and dsig, plain tar by default.

    The arguments are those of :func:`build_cvd`; only the manifest ``DSIG`` (``info_sign``) protects a CLD.
    """
    return _assemble(
        name,
        version,
        files,
        flevel=flevel,
        builder=builder,
        sign=None,
        info_sign=info_sign,
        signatures=signatures,
        build_time=build_time,
        compress=compress,
        cld=True,
    )
