"""Deterministic benchmark corpus: text, logs, source, HTML, binaries, PE/ELF, zip, tar.gz, PDF and OOXML files.

The plan (kind, size, planted sample of every file) is drawn in the parent process from ``seed``; the contents are
generated in worker processes from per-file RNGs (``seed/file/index``), so the result does not depend on how the
work is split. Planted samples (``Plant``) hit one signature each: a hash (.hdb/.hsb), a body signature (.ndb), a
logical signature (.ldb) or a native YARA rule, in plain files, inside archive members (sometimes a zip inside a
zip), inside PDF FlateDecode streams and inside OOXML parts. Exactly one sample per top-level file, so that a tool
that stops at the first detection (clamscan, clamd) and one that reports all of them name the same signature.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import random
import struct
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing import Pool
from pathlib import Path

from sigset import (
    NORMAL,
    BodySig,
    LogicalSig,
    PlantedHash,
    YaraRule,
    body_sig,
    canonical_name,
    file_digest,
    logical_sig,
    yara_rule,
)

CORPUS_VERSION = 5
MIN_SIZE = 1024
MAX_SIZE = 10 * 1024 * 1024
FILES_AT_SCALE_1 = 20_000
BYTES_AT_SCALE_1 = 2_100_000_000
FILES_PER_DIR = 250

KIND_WEIGHTS = {
    "text": 10,
    "log": 10,
    "src": 10,
    "html": 10,
    "bin": 18,
    "pe": 10,
    "elf": 8,
    "zip": 8,
    "targz": 6,
    "pdf": 5,
    "ooxml": 5,
}
CONTAINERS = frozenset({"zip", "targz", "pdf", "ooxml"})
MEMBER_KINDS = ("text", "log", "src", "html", "bin", "pe", "elf")
EXTENSIONS = {
    "text": (".txt", ".md", ".csv"),
    "log": (".log",),
    "src": (".py", ".c", ".js", ".java"),
    "html": (".html", ".htm"),
    "bin": (".bin", ".dat", ".db"),
    "pe": (".exe", ".dll"),
    "elf": (".so", ".elf"),
    "zip": (".zip",),
    "targz": (".tar.gz",),
    "pdf": (".pdf",),
    "ooxml": (".docx", ".xlsx"),
}


@dataclass(frozen=True)
class Plant:
    sig: str  # md5 | sha256 | ndb | ldb | yara
    index: int  # signature index (hash plants: planted-hash number)
    wildcard_size: bool = False  # hash plants: the ``*`` size form
    nested: bool = False  # archive plants: inside a zip inside the archive

    @property
    def name(self) -> str:
        if self.sig == "md5":
            return f"Bench.Hdb.P{self.index:05d}"
        if self.sig == "sha256":
            return f"Bench.Hsb.P{self.index:05d}"
        if self.sig == "ndb":
            return f"Bench.Ndb.S{self.index:06d}"
        if self.sig == "ldb":
            return f"Bench.Ldb.L{self.index:05d}"
        return f"bench_yara_{self.index:05d}"


@dataclass(frozen=True)
class FileSpec:
    index: int
    rel: str
    kind: str
    size: int
    plant: Plant | None


@dataclass
class Built:
    index: int
    size: int
    hashes: list[tuple[str, str, int | None, str]]  # (kind, digest, size or None, name)
    obj: str  # object chain of the planted sample, "" when none or top level


# ---------------------------------------------------------------------------------------------------------------
# Plan


def corpus_shape(scale: float) -> tuple[int, int]:
    return max(100, round(FILES_AT_SCALE_1 * scale)), round(BYTES_AT_SCALE_1 * scale)


def _sizes(rng: random.Random, n: int, total: int) -> list[int]:
    """Sizes 1 KiB..10 MiB, most of them small, summing to about ``total``."""
    us = [rng.random() for _ in range(n)]
    span = math.log10(MAX_SIZE / MIN_SIZE)

    def draw(k: float) -> list[int]:
        return [min(MAX_SIZE, int(MIN_SIZE * 10 ** (span * u**k))) for u in us]

    lo, hi = 0.2, 20.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if sum(draw(mid)) > total:
            lo = mid
        else:
            hi = mid
    return draw((lo + hi) / 2)


def plan(seed: int, scale: float) -> list[FileSpec]:
    rng = random.Random(f"{seed}/plan")
    n, total = corpus_shape(scale)
    sizes = _sizes(rng, n, total)
    kinds = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()), k=n)

    # How many samples of each sort to plant (scaled, with a floor so small runs still cover every sort).
    def count(at_scale_1: int) -> int:
        return max(3, round(at_scale_1 * scale))

    wanted = [
        ("plain", "md5", count(40)),
        ("plain", "sha256", count(40)),
        ("plain", "ndb", count(60)),
        ("plain", "ldb", count(40)),
        ("plain", "yara", count(40)),
        ("archive", "md5", count(10)),
        ("archive", "sha256", count(8)),
        ("archive", "ndb", count(12)),
        ("archive", "ldb", count(6)),
        ("archive", "yara", count(6)),
        ("pdf", "ndb", count(10)),
        ("ooxml", "ndb", count(6)),
        ("ooxml", "yara", count(4)),
    ]
    used: dict[str, set[int]] = {"ndb": set(), "ldb": set(), "yara": set()}
    limits = {"ndb": NORMAL.ndb, "ldb": NORMAL.ldb, "yara": NORMAL.yara}
    hash_no = {"md5": 0, "sha256": 0}
    plants: dict[int, Plant] = {}
    free = list(range(n))
    rng.shuffle(free)
    pos = 0
    for where, sig, k in wanted:
        for _ in range(k):
            if sig in ("md5", "sha256"):
                hash_no[sig] += 1
                plant = Plant(sig, hash_no[sig], wildcard_size=rng.random() < 0.25)
                target = 0
            else:
                while True:
                    idx = rng.randrange(limits[sig])
                    if idx not in used[sig]:
                        used[sig].add(idx)
                        break
                plant = Plant(sig, idx, nested=where == "archive" and rng.random() < 0.3)
                target = _target_of(sig, plant.index, seed)
            fi = free[pos]
            pos += 1
            if where == "plain":
                kinds[fi] = "pe" if target == 1 else "elf" if target == 6 else rng.choice(("bin", "pe", "elf"))
            elif where == "archive":
                kinds[fi] = rng.choice(("zip", "targz"))
            else:
                kinds[fi] = where
            sizes[fi] = max(sizes[fi], 40_000)
            plants[fi] = plant
    for i in range(n):
        if kinds[i] in CONTAINERS:
            sizes[i] = max(sizes[i], 4096)  # compressed, they still come out at about 1 KiB or more
    specs = []
    for i in range(n):
        ext = rng.choice(EXTENSIONS[kinds[i]])
        rel = f"d{i // FILES_PER_DIR:03d}/f{i:06d}{ext}"
        specs.append(FileSpec(i, rel, kinds[i], sizes[i], plants.get(i)))
    return specs


def _target_of(sig: str, index: int, seed: int) -> int:
    if sig == "ndb":
        return body_sig(seed, index).target
    if sig == "ldb":
        return logical_sig(seed, index).target
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Content generators

_WORDS: list[str] = []
_POOLS: dict[str, bytes] = {}
_STATE = {"seed": 0}

COMMON = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "by",
    "this",
    "are",
    "from",
    "at",
    "or",
    "an",
    "have",
    "not",
    "which",
    "but",
    "all",
    "report",
    "agency",
    "system",
    "network",
    "user",
    "file",
    "server",
    "update",
    "security",
    "policy",
    "data",
    "access",
    "service",
    "request",
    "document",
    "office",
    "ministry",
    "province",
    "district",
    "budget",
    "plan",
    "meeting",
    "review",
    "project",
]


def _init_worker(seed: int) -> None:
    _STATE["seed"] = seed
    rng = random.Random(f"{seed}/pools")
    letters = "abcdefghijklmnopqrstuvwxyz"
    _WORDS[:] = COMMON + ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(3000)]
    words = _WORDS

    def sentences(k: int) -> str:
        out = []
        for _ in range(k):
            w = rng.choices(words, k=rng.randint(5, 18))
            out.append(w[0].capitalize() + " " + " ".join(w[1:]) + rng.choice((".", ".", "?", "!")))
        return " ".join(out)

    text = io.StringIO()
    while text.tell() < 1_500_000:
        text.write(sentences(rng.randint(3, 8)) + "\n\n")
    _POOLS["text"] = text.getvalue().encode()

    log = io.StringIO()
    t = 1_700_000_000
    levels = ("INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR")
    svcs = ("sshd", "nginx", "kernel", "cron", "systemd", "postfix", "garrison-agent")
    while log.tell() < 1_500_000:
        t += rng.randint(0, 5)
        ip = ".".join(str(rng.randint(1, 254)) for _ in range(4))
        msg = " ".join(rng.choices(words, k=rng.randint(4, 12)))
        log.write(
            f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(t))}Z host{rng.randint(1, 40)} "
            f"{rng.choice(svcs)}[{rng.randint(100, 65000)}]: {rng.choice(levels)} {msg} src={ip}\n"
        )
    _POOLS["log"] = log.getvalue().encode()

    src = io.StringIO()
    while src.tell() < 1_500_000:
        fn = rng.choice(words) + "_" + rng.choice(words)
        args = ", ".join(rng.sample(words, rng.randint(0, 3)))
        src.write(f'def {fn}({args}):\n    """{sentences(1)}"""\n')
        for _ in range(rng.randint(2, 10)):
            a, b = rng.sample(words, 2)
            src.write(f"    {a} = {b}({rng.randint(0, 999)}) + len({rng.choice(words)!r})\n")
        src.write(f"    return {rng.choice(words)}\n\n\n")
    _POOLS["src"] = src.getvalue().encode()

    html = io.StringIO()
    while html.tell() < 1_500_000:
        tag = rng.choice(("p", "p", "div", "li", "td", "span"))
        html.write(f'<{tag} class="{rng.choice(words)}">{sentences(rng.randint(1, 4))}</{tag}>\n')
        if rng.random() < 0.05:
            html.write(
                f'<script>var {rng.choice(words)} = "{rng.choice(words)}"; init({rng.randint(0, 99)});</script>\n'
            )
        if rng.random() < 0.05:
            html.write(f'<a href="https://{rng.choice(words)}.gov.vn/{rng.choice(words)}">{rng.choice(words)}</a>\n')
    _POOLS["html"] = html.getvalue().encode()


def _from_pool(pool: bytes, size: int, rng: random.Random) -> bytearray:
    out = bytearray()
    while len(out) < size:
        o = rng.randrange(len(pool) - 70_000)
        out += pool[o : o + rng.randint(4096, 65536)]
    del out[size:]
    return out


def _text(kind: str, size: int, rng: random.Random) -> bytearray:
    if kind == "html":
        head = (
            f'<!DOCTYPE html>\n<html lang="vi"><head><meta charset="utf-8"><title>{rng.choice(_WORDS)}</title>'
            "</head>\n<body>\n"
        ).encode()
        tail = b"</body></html>\n"
        body = _from_pool(_POOLS["html"], max(0, size - len(head) - len(tail)), rng)
        return bytearray(head) + body + tail
    return _from_pool(_POOLS[kind], size, rng)


def _binary(size: int, rng: random.Random) -> bytearray:
    """Random blocks mixed with zero runs and repeated records (data files are rarely pure noise)."""
    out = bytearray(rng.randbytes(min(size, 512)))  # every file distinct, whatever follows
    while len(out) < size:
        r = rng.random()
        if r < 0.7:
            out += rng.randbytes(rng.randint(512, 65536))
        elif r < 0.85:
            out += bytes(rng.randint(256, 8192))
        else:
            rec = rng.randbytes(rng.randint(8, 64))
            out += rec * (rng.randint(256, 8192) // len(rec) + 1)
    del out[size:]
    return out


def _pe(size: int, rng: random.Random) -> bytearray:
    fa = 0x200
    size = max(size, 0x1000)
    body = (size - 0x400 + fa - 1) // fa * fa
    text_raw = max(fa, body * 6 // 10 // fa * fa)
    rdata_raw = max(fa, body * 25 // 100 // fa * fa)
    data_raw = max(fa, body - text_raw - rdata_raw)
    total = 0x400 + text_raw + rdata_raw + data_raw

    def align(v: int, a: int) -> int:
        return (v + a - 1) // a * a

    sections = []
    va = 0x1000
    raw = 0x400
    for name, rsz, ch in (
        (b".text", text_raw, 0x60000020),
        (b".rdata", rdata_raw, 0x40000040),
        (b".data", data_raw, 0xC0000040),
    ):
        sections.append((name, rsz, va, rsz, raw, ch))
        va += align(rsz, 0x1000)
        raw += rsz
    size_of_image = va
    out = bytearray(total)
    out[0:2] = b"MZ"
    struct.pack_into("<HHHHHHHHHHHHHH", out, 2, 0x90, 3, 0, 4, 0, 0xFFFF, 0, 0xB8, 0, 0, 0, 0x40, 0, 0)
    struct.pack_into("<I", out, 0x3C, 0x80)
    out[0x40 : 0x40 + 39] = b"This program cannot be run in DOS mode."
    dll = rng.random() < 0.3
    struct.pack_into(
        "<4sHHIIIHH",
        out,
        0x80,
        b"PE\0\0",
        0x14C,
        3,
        rng.randint(1_400_000_000, 1_700_000_000),
        0,
        0,
        0xE0,
        0x2102 if dll else 0x0102,
    )
    struct.pack_into(
        "<HBBIIIIIIIIIHHHHHHIIIIHHIIIIII",
        out,
        0x98,
        0x10B,
        14,
        0,
        text_raw,
        rdata_raw + data_raw,
        0,
        0x1000,
        0x1000,
        0x1000 + align(text_raw, 0x1000),
        0x10000000 if dll else 0x400000,
        0x1000,
        fa,
        6,
        0,
        0,
        0,
        6,
        0,
        0,
        size_of_image,
        0x400,
        0,
        2 if rng.random() < 0.5 else 3,
        0x8140,
        0x100000,
        0x1000,
        0x100000,
        0x1000,
        0,
        16,
    )
    sh = 0x98 + 0xE0
    for i, (name, vsz, sva, rsz, rptr, ch) in enumerate(sections):
        struct.pack_into("<8sIIIIIIHHI", out, sh + 40 * i, name, vsz, sva, rsz, rptr, 0, 0, 0, 0, ch)
    out[0x400 : 0x400 + text_raw] = rng.randbytes(text_raw)
    rd = _from_pool(_POOLS["text"], rdata_raw // 2, rng) + rng.randbytes(rdata_raw - rdata_raw // 2)
    out[0x400 + text_raw : 0x400 + text_raw + rdata_raw] = rd
    start = 0x400 + text_raw + rdata_raw
    out[start : start + data_raw // 2] = rng.randbytes(data_raw // 2)
    return out


def _elf(size: int, rng: random.Random) -> bytearray:
    size = max(size, 0x2000)
    out = _binary(size, rng)
    hdr = struct.pack(
        "<4sBBBBB7sHHIQQQIHHHHHH",
        b"\x7fELF",
        2,
        1,
        1,
        0,
        0,
        bytes(7),
        rng.choice((2, 3)),
        0x3E,
        1,
        0x401000,
        64,
        0,
        0,
        64,
        56,
        1,
        64,
        0,
        0,
    )
    ph = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, size, size, 0x1000)
    out[0 : len(hdr) + len(ph)] = hdr + ph
    return out


def _plain(kind: str, size: int, rng: random.Random) -> bytearray:
    if kind in ("text", "log", "src", "html"):
        return _text(kind, size, rng)
    if kind == "pe":
        return _pe(size, rng)
    if kind == "elf":
        return _elf(size, rng)
    return _binary(size, rng)


def _scatter(buf: bytearray, chunks: list[bytes], start: int, rng: random.Random) -> None:
    """Overwrite ``buf`` with ``chunks`` at random, non-overlapping places after ``start``."""
    if not chunks:
        return
    need = sum(len(c) for c in chunks)
    if len(buf) < start + need * 4 + 64:
        buf.extend(rng.randbytes(start + need * 4 + 64 - len(buf)))
    slot = (len(buf) - start) // len(chunks)
    for i, c in enumerate(chunks):
        lo = start + i * slot
        pos = lo + rng.randrange(max(1, slot - len(c)))
        buf[pos : pos + len(c)] = c


def _planted(kind: str, size: int, rng: random.Random, plant: Plant) -> bytearray:
    """A plain file of ``kind`` carrying ``plant`` (hash plants: just the file; their digest is taken later)."""
    buf = _plain(kind, size, rng)
    start = 0x400 if kind == "pe" else 0x100 if kind == "elf" else 0
    seed = _STATE["seed"]
    if plant.sig == "ndb":
        sig: BodySig = body_sig(seed, plant.index)
        data = sig.plant_bytes(rng)
        if sig.offset_kind == "any":
            _scatter(buf, [data], start, rng)
        elif sig.offset_kind in ("abs", "shift"):
            pos = sig.offset + (rng.randint(0, sig.shift) if sig.offset_kind == "shift" else 0)
            if len(buf) < pos + len(data) + 16:
                buf.extend(rng.randbytes(pos + len(data) + 16 - len(buf)))
            buf[pos : pos + len(data)] = data
        else:
            pos = len(buf) - sig.offset
            buf[pos : pos + len(data)] = data
    elif plant.sig == "ldb":
        lsig: LogicalSig = logical_sig(seed, plant.index)
        _scatter(buf, lsig.plant_chunks(rng), start, rng)
    elif plant.sig == "yara":
        rule: YaraRule = yara_rule(seed, plant.index)
        if rule.form in ("at", "in"):
            data = rule.strings[0].plant(rng)
            pos = rule.offset + (rng.randint(0, 256) if rule.form == "in" else 0)
            if len(buf) < pos + len(data) + 16:
                buf.extend(rng.randbytes(pos + len(data) + 16 - len(buf)))
            buf[pos : pos + len(data)] = data
        else:
            _scatter(buf, rule.plant_chunks(rng), start, rng)
    return buf


def _member_kind_for(plant: Plant, rng: random.Random) -> str:
    if plant.sig in ("ndb", "ldb"):
        target = _target_of(plant.sig, plant.index, _STATE["seed"])
        if target == 1:
            return "pe"
        if target == 6:
            return "elf"
    return rng.choice(("bin", "pe", "elf"))


def _member_name(kind: str, rng: random.Random, i: int) -> str:
    ext = rng.choice(EXTENSIONS[kind])
    folder = rng.choice(("", "", "docs/", "bin/", "lib/", "data/"))
    return f"{folder}{rng.choice(_WORDS)}_{i}{ext}"


def _members(
    size: int, rng: random.Random, plant: Plant | None, hashes: list[tuple[str, str, int | None, str]]
) -> tuple[list[tuple[str, bytes]], str]:
    """Members for an archive of about ``size`` uncompressed bytes; returns them and the planted member's name."""
    n = rng.randint(2, 6)
    weights = [rng.random() + 0.1 for _ in range(n)]
    total = sum(weights)
    members: list[tuple[str, bytes]] = []
    plant_at = rng.randrange(n) if plant is not None else -1
    obj = ""
    for i in range(n):
        msize = max(MIN_SIZE, int(size * weights[i] / total))
        if i == plant_at and plant is not None:
            if plant.nested:
                inner, inner_obj = _members(min(msize, 200_000), rng, Plant(plant.sig, plant.index), hashes)
                name = f"nested_{i}.zip"
                members.append((name, _zip_bytes(inner, rng)))
                obj = f"{name}//{inner_obj}"
                continue
            kind = _member_kind_for(plant, rng)
            data = bytes(_planted(kind, max(msize, 40_000), rng, plant))
            name = _member_name(kind, rng, i)
            _record_hash(plant, data, hashes)
            members.append((name, data))
            obj = name
        else:
            kind = rng.choice(MEMBER_KINDS)
            members.append((_member_name(kind, rng, i), bytes(_plain(kind, msize, rng))))
    return members, obj


def _record_hash(plant: Plant, data: bytes, hashes: list[tuple[str, str, int | None, str]]) -> None:
    if plant.sig in ("md5", "sha256"):
        hashes.append((plant.sig, file_digest(plant.sig, data), None if plant.wildcard_size else len(data), plant.name))


def _zip_bytes(members: list[tuple[str, bytes]], rng: random.Random) -> bytes:
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w") as zf:
        for name, data in members:
            method = zipfile.ZIP_STORED if rng.random() < 0.15 else zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo(name, date_time=(2024, 5, rng.randint(1, 28), 8, 30, 0))
            info.compress_type = method
            zf.writestr(info, data, compresslevel=6)
    return bio.getvalue()


def _targz_bytes(members: list[tuple[str, bytes]], rng: random.Random) -> bytes:
    tbio = io.BytesIO()
    with tarfile.open(fileobj=tbio, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1_714_000_000 + rng.randint(0, 10_000_000)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
    return gzip.compress(tbio.getvalue(), compresslevel=6, mtime=0)


def _pdf_bytes(size: int, rng: random.Random, plant: Plant | None) -> tuple[bytes, str]:
    objs: list[bytes] = []
    page_ids: list[int] = []
    nstreams = rng.randint(2, 6)
    budget = size
    obj = ""
    # 1: catalog, 2: pages, then page/content pairs and data streams.
    for s in range(nstreams):
        part = budget // (nstreams - s)
        budget -= part
        if s % 2 == 0 or (plant is not None and s == 1):
            text = _text("text", max(200, part // 4), rng)
            lines = b"\n".join(
                b"(" + ln.replace(b"(", b"").replace(b")", b"").replace(b"\\", b"")[:200] + b") Tj"
                for ln in bytes(text).split(b". ")
            )
            content = b"BT /F1 11 Tf 72 720 Td\n" + lines + b"\nET\n"
            data = zlib.compress(content, 6)
            objs.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream")
            content_id = len(objs) + 2
            objs.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R >>" % content_id)
            page_ids.append(len(objs) + 2)
        else:
            data = zlib.compress(bytes(_binary(max(256, part), rng)), 1)
            objs.append(
                b"<< /Type /XObject /Subtype /Image /Width 64 /Height 64 /BitsPerComponent 8 "
                b"/Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"
            )
    if plant is not None:
        payload = bytes(_planted(_member_kind_for(plant, rng), 40_000, rng, plant))
        data = zlib.compress(payload, 6)
        objs.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream")
        obj = f"obj {len(objs) + 2}"
    kids = b" ".join(b"%d 0 R" % p for p in page_ids)
    allobjs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids)),
        *objs,
    ]
    out = bytearray(b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(allobjs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(allobjs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(allobjs) + 1, xref)
    return bytes(out), obj


def _ooxml_bytes(ext: str, size: int, rng: random.Random, plant: Plant | None) -> tuple[bytes, str]:
    words = _WORDS
    paras = bytes(_text("text", max(500, size // 2), rng)).decode().split("\n\n")
    obj = ""
    if ext == ".docx":
        body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paras if p)
        main = (
            "word/document.xml",
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document '
            'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
            f"{body}</w:body></w:document>",
        )
        ctype = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
        rel = "word/document.xml"
        prefix = "word"
    else:
        rows = "".join(
            f'<row r="{i + 1}"><c r="A{i + 1}" t="inlineStr"><is><t>{p[:200]}</t></is></c>'
            f'<c r="B{i + 1}"><v>{rng.randint(0, 10**6)}</v></c></row>'
            for i, p in enumerate(paras)
        )
        main = (
            "xl/worksheets/sheet1.xml",
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet '
            'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
            f"{rows}</sheetData></worksheet>",
        )
        ctype = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
        rel = "xl/workbook.xml"
        prefix = "xl"
    members: list[tuple[str, bytes]] = [
        (
            "[Content_Types].xml",
            (
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Types xmlns="http://schemas.openxmlformats.org/'
                'package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-'
                'package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
                f'<Override PartName="/{main[0]}" ContentType="{ctype}"/></Types>'
            ).encode(),
        ),
        (
            "_rels/.rels",
            (
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns="http://schemas.'
                'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
                'openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
                f'Target="{rel}"/></Relationships>'
            ).encode(),
        ),
        (
            "docProps/core.xml",
            (
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<cp:coreProperties xmlns:cp="http://schemas.'
                'openxmlformats.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/">'
                f"<dc:title>{rng.choice(words)}</dc:title><dc:creator>{rng.choice(words)}</dc:creator>"
                "</cp:coreProperties>"
            ).encode(),
        ),
        (main[0], main[1].encode()),
    ]
    if ext == ".xlsx":
        members.append(
            (
                "xl/workbook.xml",
                b'<?xml version="1.0" encoding="UTF-8"?>\n<workbook xmlns="http://'
                b'schemas.openxmlformats.org/spreadsheetml/2006/main"><sheets><sheet name="Sheet1" '
                b'sheetId="1"/></sheets></workbook>',
            )
        )
    if rng.random() < 0.5 or plant is not None:
        media = _binary(max(1024, size // 3), rng)
        members.append((f"{prefix}/media/image1.emf", bytes(media)))
    if plant is not None:
        name = f"{prefix}/embeddings/oleObject1.bin"
        members.append((name, bytes(_planted(_member_kind_for(plant, rng), 40_000, rng, plant))))
        obj = name
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(
                zipfile.ZipInfo(name, date_time=(2024, 6, 1, 9, 0, 0)), data, compress_type=zipfile.ZIP_DEFLATED
            )
    return bio.getvalue(), obj


def build_one(spec: FileSpec, root: Path) -> Built:
    rng = random.Random(f"{_STATE['seed']}/file/{spec.index}")
    hashes: list[tuple[str, str, int | None, str]] = []
    obj = ""
    plant = spec.plant
    if spec.kind in ("zip", "targz"):
        members, obj = _members(spec.size, rng, plant, hashes)
        data = _zip_bytes(members, rng) if spec.kind == "zip" else _targz_bytes(members, rng)
    elif spec.kind == "pdf":
        data, obj = _pdf_bytes(spec.size, rng, plant)
    elif spec.kind == "ooxml":
        data, obj = _ooxml_bytes(Path(spec.rel).suffix, spec.size, rng, plant)
    elif plant is not None:
        data = bytes(_planted(spec.kind, spec.size, rng, plant))
        _record_hash(plant, data, hashes)
    else:
        data = bytes(_plain(spec.kind, spec.size, rng))
    path = root / spec.rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Built(spec.index, len(data), hashes, obj)


def _build_batch(args: tuple[list[FileSpec], str]) -> list[Built]:
    specs, root = args
    return [build_one(s, Path(root)) for s in specs]


# ---------------------------------------------------------------------------------------------------------------
# Cache and manifest


@dataclass
class Corpus:
    root: Path
    manifest: dict[str, dict[str, object]]  # rel path -> {kind, container, size, expected, obj, plant}
    planted_hashes: list[PlantedHash]
    files: int
    bytes: int


def ensure_corpus(
    work: Path, seed: int, scale: float, workers: int = 2, log: Callable[[str], None] = print, rebuild: bool = False
) -> Corpus:
    """Build the corpus under ``work`` unless an identical one (same seed, scale and version) is there."""
    base = work / f"corpus-seed{seed}-scale{scale:g}"
    root = base / "files"
    stamp = base / "manifest.json"
    key = {"version": CORPUS_VERSION, "seed": seed, "scale": scale}
    if stamp.exists() and not rebuild:
        meta = json.loads(stamp.read_text())
        if meta.get("key") == key:
            log(f"corpus: cached at {root} ({meta['files']} files, {meta['bytes'] / 1e6:,.1f} MB)")
            return _corpus_from(root, meta)
    if base.exists():
        import shutil

        log(f"corpus: removing stale {base}")
        shutil.rmtree(base)
    specs = plan(seed, scale)
    n, total = corpus_shape(scale)
    log(f"corpus: building {n} files (~{total / 1e6:,.0f} MB) under {root} with {workers} processes")
    t0 = time.monotonic()
    root.mkdir(parents=True)
    batches = [(specs[i : i + 50], str(root)) for i in range(0, len(specs), 50)]
    built: list[Built] = []
    done_bytes = 0
    with Pool(workers, initializer=_init_worker, initargs=(seed,)) as pool:
        for k, res in enumerate(pool.imap_unordered(_build_batch, batches), start=1):
            built.extend(res)
            done_bytes += sum(b.size for b in res)
            if k % max(1, len(batches) // 20) == 0 or k == len(batches):
                log(f"corpus: {len(built)}/{n} files, {done_bytes / 1e6:,.0f} MB, {time.monotonic() - t0:,.0f} s")
    by_index = {b.index: b for b in built}
    manifest: dict[str, dict[str, object]] = {}
    hashes: list[PlantedHash] = []
    for s in specs:
        b = by_index[s.index]
        entry: dict[str, object] = {"kind": s.kind, "container": s.kind in CONTAINERS, "size": b.size}
        if s.plant is not None:
            entry["plant"] = asdict(s.plant)
            entry["expected"] = canonical_name(s.plant.name)
            entry["obj"] = b.obj
        manifest[s.rel] = entry
        hashes.extend(PlantedHash(k, d, sz, nm) for k, d, sz, nm in b.hashes)
    meta = {
        "key": key,
        "files": len(specs),
        "bytes": sum(b.size for b in built),
        "build_seconds": round(time.monotonic() - t0, 1),
        "planted_hashes": [asdict(h) for h in hashes],
        "manifest": manifest,
    }
    stamp.write_text(json.dumps(meta, indent=0))
    log(f"corpus: built {meta['files']} files, {int(meta['bytes']) / 1e6:,.1f} MB in {meta['build_seconds']} s")  # type: ignore[call-overload]
    return _corpus_from(root, meta)


def _corpus_from(root: Path, meta: dict[str, object]) -> Corpus:
    hashes = [PlantedHash(**h) for h in meta["planted_hashes"]]  # type: ignore[attr-defined]
    return Corpus(root, meta["manifest"], hashes, int(meta["files"]), int(meta["bytes"]))  # type: ignore[arg-type,call-overload]
