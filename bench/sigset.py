"""Deterministic benchmark signatures, written in ClamAV's formats and as YARA.

Every signature is generated from its own seeded RNG (``seed/kind/index``), so the first N signatures are the same
whatever the size of the set: the ``--large`` set only adds signatures, and the corpus (which plants samples for
the first few signatures of each kind) is shared by both sets.

Body (``.ndb``) and logical (``.ldb``) signatures are also rewritten as YARA hex rules with the same logic, so that
the ``yara`` CLI can run the same detections. Hash signatures have no YARA counterpart (a YARA rule per hash would
make ``yara`` evaluate 100,000 conditions per file); files planted for hash signatures are left out of the YARA
comparison.

Canonical names (see :func:`canonical_name`) make the names of all tools comparable: ClamAV's ``.UNOFFICIAL``
suffix and ``YARA.`` prefix are dropped and dots become underscores (YARA identifiers cannot contain dots).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# A pattern is a tuple of tokens:
#   ("b", bytes)            static bytes
#   ("any", n)              n × ??
#   ("nib", "hi"|"lo", v)   a? (high nibble fixed) or ?a (low nibble fixed); v is the fixed nibble
#   ("alt", (bytes, ...))   (aa|bb) alternatives of equal length
#   ("range", lo, hi)       {lo-hi}; hi None means {lo-}; lo 0 means {-hi}; lo == hi means {n}
#   ("star",)               *
Token = tuple[object, ...]
Pattern = tuple[Token, ...]


@dataclass(frozen=True)
class SetSize:
    md5: int
    sha256: int
    ndb: int
    ldb: int
    yara: int

    @property
    def hashes(self) -> int:
        return self.md5 + self.sha256


NORMAL = SetSize(md5=60_000, sha256=40_000, ndb=5_000, ldb=500, yara=1_000)
LARGE = SetSize(md5=600_000, sha256=400_000, ndb=50_000, ldb=5_000, yara=5_000)

# Offsets of body signatures and how often each is drawn.
OFFSET_KINDS = ("any", "any", "any", "any", "abs", "shift", "eof")
# Target types: 0 any (mostly), 1 PE, 6 ELF.
TARGETS = (0, 0, 0, 0, 0, 0, 0, 0, 1, 6)

TOKEN_WORDS = (
    "payload",
    "inject",
    "dropper",
    "beacon",
    "stager",
    "keylog",
    "exfil",
    "loader",
    "implant",
    "shellc",
)


def _rng(seed: int, kind: str, index: int) -> random.Random:
    return random.Random(f"{seed}/{kind}/{index}")


def _static(rng: random.Random, lo: int, hi: int) -> Token:
    return ("b", rng.randbytes(rng.randint(lo, hi)))


def _segment(rng: random.Random, fixed: bool) -> list[Token]:
    # At least 8 static bytes up front: random data must not hit a signature by chance (2 GB, 50,000 sigs).
    out: list[Token] = [_static(rng, 8, 12)]
    for _ in range(rng.choice((0, 1, 1, 2))):
        kind = rng.choice(("any", "nib", "alt", "alt2"))
        if kind == "any":
            out.append(("any", rng.randint(1, 3)))
        elif kind == "nib":
            out.append(("nib", rng.choice(("hi", "lo")), rng.randrange(16)))
        elif kind == "alt":
            out.append(("alt", tuple(rng.randbytes(1) for _ in range(rng.randint(2, 3)))))
        else:
            out.append(("alt", tuple(rng.randbytes(2) for _ in range(2))))
        out.append(_static(rng, 3, 6))
    del fixed
    return out


def gen_pattern(rng: random.Random, fixed: bool = False, max_segments: int = 3) -> Pattern:
    """A random body pattern; ``fixed`` keeps its length constant (no ``*`` nor variable ranges)."""
    segments = 1 + rng.choice((0, 0, 1, 1, 2)) if max_segments > 1 else 1
    segments = min(segments, max_segments)
    out: list[Token] = []
    for i in range(segments):
        if i:
            if fixed:
                n = rng.randint(1, 24)
                out.append(("range", n, n))
            else:
                form = rng.choice(("star", "star", "nm", "nm", "-m", "n-", "n"))
                if form == "star":
                    out.append(("star",))
                elif form == "nm":
                    lo = rng.randint(0, 16)
                    out.append(("range", lo, lo + rng.randint(1, 32)))
                elif form == "-m":
                    out.append(("range", 0, rng.randint(1, 32)))
                elif form == "n-":
                    out.append(("range", rng.randint(1, 16), None))
                else:
                    n = rng.randint(1, 32)
                    out.append(("range", n, n))
        out.extend(_segment(rng, fixed))
    return tuple(out)


def to_clamav(pattern: Pattern) -> str:
    parts: list[str] = []
    for tok in pattern:
        kind = tok[0]
        if kind == "b":
            parts.append(bytes(tok[1]).hex())  # type: ignore[arg-type]
        elif kind == "any":
            parts.append("??" * int(tok[1]))  # type: ignore[call-overload]
        elif kind == "nib":
            v = f"{int(tok[2]):x}"  # type: ignore[call-overload]
            parts.append(f"{v}?" if tok[1] == "hi" else f"?{v}")
        elif kind == "alt":
            parts.append("(" + "|".join(b.hex() for b in tok[1]) + ")")  # type: ignore[attr-defined]
        elif kind == "range":
            lo, hi = tok[1], tok[2]
            if hi is None:
                parts.append(f"{{{lo}-}}")
            elif lo == hi:
                parts.append(f"{{{lo}}}")
            elif lo == 0:
                parts.append(f"{{-{hi}}}")
            else:
                parts.append(f"{{{lo}-{hi}}}")
        else:
            parts.append("*")
    return "".join(parts)


def to_yara_hex(pattern: Pattern) -> str:
    parts: list[str] = []
    for tok in pattern:
        kind = tok[0]
        if kind == "b":
            parts.append(" ".join(f"{c:02X}" for c in bytes(tok[1])))  # type: ignore[arg-type]
        elif kind == "any":
            parts.append(" ".join(["??"] * int(tok[1])))  # type: ignore[call-overload]
        elif kind == "nib":
            v = f"{int(tok[2]):X}"  # type: ignore[call-overload]
            parts.append(f"{v}?" if tok[1] == "hi" else f"?{v}")
        elif kind == "alt":
            alts = [" ".join(f"{c:02X}" for c in b) for b in tok[1]]  # type: ignore[attr-defined]
            parts.append("( " + " | ".join(alts) + " )")
        elif kind == "range":
            lo, hi = tok[1], tok[2]
            if hi is None:
                parts.append(f"[{lo}-]")
            elif lo == hi:
                parts.append(f"[{lo}]")
            else:
                parts.append(f"[{lo}-{hi}]")
        else:
            parts.append("[-]")
    return "{ " + " ".join(parts) + " }"


def instance(pattern: Pattern, rng: random.Random) -> bytes:
    """Bytes that match ``pattern`` (wildcards filled at random)."""
    out = bytearray()
    for tok in pattern:
        kind = tok[0]
        if kind == "b":
            out += bytes(tok[1])  # type: ignore[arg-type]
        elif kind == "any":
            out += rng.randbytes(int(tok[1]))  # type: ignore[call-overload]
        elif kind == "nib":
            v = int(tok[2])  # type: ignore[call-overload]
            r = rng.randrange(16)
            out.append((v << 4 | r) if tok[1] == "hi" else (r << 4 | v))
        elif kind == "alt":
            out += rng.choice(tok[1])  # type: ignore[arg-type]
        elif kind == "range":
            lo = int(tok[1])  # type: ignore[call-overload]
            hi = lo + 40 if tok[2] is None else int(tok[2])  # type: ignore[call-overload]
            out += rng.randbytes(rng.randint(lo, hi))
        else:
            out += rng.randbytes(rng.randint(1, 64))
    return bytes(out)


def fixed_length(pattern: Pattern) -> int:
    n = 0
    for tok in pattern:
        kind = tok[0]
        if kind == "b":
            n += len(bytes(tok[1]))  # type: ignore[arg-type]
        elif kind == "any":
            n += int(tok[1])  # type: ignore[call-overload]
        elif kind == "nib":
            n += 1
        elif kind == "alt":
            n += len(tok[1][0])  # type: ignore[index]
        elif kind == "range" and tok[1] == tok[2]:
            n += int(tok[1])  # type: ignore[call-overload]
        else:
            raise ValueError("pattern has no fixed length")
    return n


# ---------------------------------------------------------------------------------------------------------------
# Body signatures


@dataclass(frozen=True)
class BodySig:
    index: int
    name: str
    target: int
    offset_kind: str  # any | abs | shift | eof
    offset: int
    shift: int
    pattern: Pattern

    def clamav_line(self) -> str:
        if self.offset_kind == "any":
            off = "*"
        elif self.offset_kind == "abs":
            off = str(self.offset)
        elif self.offset_kind == "shift":
            off = f"{self.offset},{self.shift}"
        else:
            off = f"EOF-{self.offset}"
        return f"{self.name}:{self.target}:{off}:{to_clamav(self.pattern)}"

    def yara_rule(self) -> str:
        cond = "$a"
        if self.offset_kind == "abs":
            cond = f"$a at {self.offset}"
        elif self.offset_kind == "shift":
            cond = f"$a in ({self.offset}..{self.offset + self.shift})"
        elif self.offset_kind == "eof":
            cond = f"$a at filesize - {self.offset}"
        cond = _target_condition(self.target) + cond
        return (
            f"rule {yara_ident(self.name)} {{\n  strings:\n    $a = {to_yara_hex(self.pattern)}\n"
            f"  condition:\n    {cond}\n}}\n"
        )

    def plant_bytes(self, rng: random.Random) -> bytes:
        return instance(self.pattern, rng)


def _target_condition(target: int) -> str:
    if target == 1:
        return "uint16(0) == 0x5A4D and uint32(uint32(0x3C)) == 0x00004550 and "
    if target == 6:
        return "uint32(0) == 0x464C457F and "
    return ""


def body_sig(seed: int, index: int) -> BodySig:
    rng = _rng(seed, "ndb", index)
    target = rng.choice(TARGETS)
    okind = rng.choice(OFFSET_KINDS)
    offset = shift = 0
    if okind == "eof":
        pattern = gen_pattern(rng, fixed=True)
        offset = fixed_length(pattern) + rng.randint(0, 256)
    else:
        pattern = gen_pattern(rng)
        if okind == "abs":
            offset = rng.randint(0x400, 0x3000)
        elif okind == "shift":
            offset = rng.randint(0x400, 0x3000)
            shift = rng.randint(1, 512)
    return BodySig(index, f"Bench.Ndb.S{index:06d}", target, okind, offset, shift, pattern)


# ---------------------------------------------------------------------------------------------------------------
# Logical signatures

# (number of subsigs, ClamAV expression, YARA condition, how many copies of each subsig to plant)
LDB_FORMS: tuple[tuple[int, str, str, tuple[int, ...]], ...] = (
    (2, "0&1", "$s0 and $s1", (1, 1)),
    (2, "0|1", "$s0 or $s1", (1, 0)),
    (2, "(0=2)&1", "#s0 == 2 and $s1", (2, 1)),
    (2, "(0>1)|1", "#s0 > 1 or $s1", (2, 0)),
    (2, "0&(1=0)", "$s0 and not $s1", (1, 0)),
    (3, "(0|1)&2", "($s0 or $s1) and $s2", (0, 1, 1)),
    (3, "0&1&2", "$s0 and $s1 and $s2", (1, 1, 1)),
    (3, "((0|1|2)>3,2)", "(#s0 + #s1 + #s2) > 3 and 2 of ($s0, $s1, $s2)", (2, 2, 0)),
    (3, "(0<3)&1&2", "#s0 < 3 and $s1 and $s2", (2, 1, 1)),
    (4, "(0&1)|(2&3)", "($s0 and $s1) or ($s2 and $s3)", (0, 0, 1, 1)),
    (4, "0&1&(2|3)", "$s0 and $s1 and ($s2 or $s3)", (1, 1, 0, 1)),
    (4, "((0|1|2|3)=2)&0", "(#s0 + #s1 + #s2 + #s3) == 2 and $s0", (1, 0, 1, 0)),
)


@dataclass(frozen=True)
class LogicalSig:
    index: int
    name: str
    target: int
    form: int
    subsigs: tuple[Pattern, ...]

    def clamav_line(self) -> str:
        _, expr, _, _ = LDB_FORMS[self.form]
        subs = ";".join(to_clamav(p) for p in self.subsigs)
        return f"{self.name};Engine:51-255,Target:{self.target};{expr};{subs}"

    def yara_rule(self) -> str:
        _, _, cond, _ = LDB_FORMS[self.form]
        strings = "".join(f"    $s{i} = {to_yara_hex(p)}\n" for i, p in enumerate(self.subsigs))
        cond = _target_condition(self.target) + "(" + cond + ")"
        return f"rule {yara_ident(self.name)} {{\n  strings:\n{strings}  condition:\n    {cond}\n}}\n"

    def plant_chunks(self, rng: random.Random) -> list[bytes]:
        """Byte strings to scatter through a file so that the expression is true (and stays exact)."""
        _, _, _, copies = LDB_FORMS[self.form]
        chunks = []
        for pat, n in zip(self.subsigs, copies, strict=True):
            chunks.extend(instance(pat, rng) for _ in range(n))
        rng.shuffle(chunks)
        return chunks


def logical_sig(seed: int, index: int) -> LogicalSig:
    rng = _rng(seed, "ldb", index)
    form = rng.randrange(len(LDB_FORMS))
    n = LDB_FORMS[form][0]
    subsigs = tuple(gen_pattern(rng, max_segments=2) for _ in range(n))
    target = rng.choice((0, 0, 0, 0, 1))
    return LogicalSig(index, f"Bench.Ldb.L{index:05d}", target, form, subsigs)


# ---------------------------------------------------------------------------------------------------------------
# Native YARA rules (the ClamAV-compatible subset: no modules; ClamAV loads them from the .yar file too)


@dataclass(frozen=True)
class YaraString:
    kind: str  # text | hex
    text: str = ""
    modifiers: tuple[str, ...] = ()
    pattern: Pattern = ()

    def render(self) -> str:
        if self.kind == "hex":
            return to_yara_hex(self.pattern)
        mods = (" " + " ".join(self.modifiers)) if self.modifiers else ""
        return f'"{self.text}"{mods}'

    def plant(self, rng: random.Random) -> bytes:
        if self.kind == "hex":
            return instance(self.pattern, rng)
        text = self.text
        if "nocase" in self.modifiers:
            text = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)
        if "wide" in self.modifiers and ("ascii" not in self.modifiers or rng.random() < 0.5):
            return text.encode("utf-16-le")
        return text.encode()


YARA_FORMS: tuple[str, ...] = ("any", "all", "2of", "andor", "at", "count", "filesize", "in")


@dataclass(frozen=True)
class YaraRule:
    index: int
    name: str
    form: str
    strings: tuple[YaraString, ...]
    offset: int = 0

    def condition(self) -> str:
        if self.form == "any":
            return "any of them"
        if self.form == "all":
            return "all of them"
        if self.form == "2of":
            return "2 of them"
        if self.form == "andor":
            return "$s0 and ($s1 or $s2)"
        if self.form == "at":
            return f"$s0 at {self.offset}"
        if self.form == "count":
            return "#s0 > 2"
        if self.form == "filesize":
            return "filesize < 8MB and all of them"
        return f"$s0 in ({self.offset}..{self.offset + 256})"

    def rule(self) -> str:
        strings = "".join(f"    $s{i} = {s.render()}\n" for i, s in enumerate(self.strings))
        return (
            f'rule {self.name} {{\n  meta:\n    source = "garrison-bench"\n  strings:\n{strings}'
            f"  condition:\n    {self.condition()}\n}}\n"
        )

    def plant_chunks(self, rng: random.Random) -> list[bytes]:
        """Chunks to scatter anywhere (the positional forms are planted by the corpus builder)."""
        if self.form in ("any",):
            return [self.strings[rng.randrange(len(self.strings))].plant(rng)]
        if self.form in ("all", "filesize"):
            return [s.plant(rng) for s in self.strings]
        if self.form == "2of":
            picks = rng.sample(range(len(self.strings)), 2)
            return [self.strings[i].plant(rng) for i in picks]
        if self.form == "andor":
            return [self.strings[0].plant(rng), self.strings[rng.choice((1, 2))].plant(rng)]
        if self.form == "count":
            return [self.strings[0].plant(rng) for _ in range(3)]
        return []  # "at" / "in": positional


def yara_rule(seed: int, index: int) -> YaraRule:
    rng = _rng(seed, "yar", index)
    form = rng.choice(YARA_FORMS)
    n = {"any": rng.randint(1, 4), "all": rng.randint(2, 3), "2of": 3, "andor": 3}.get(form, 1)
    if form == "filesize":
        n = rng.randint(1, 2)
    strings = []
    for _ in range(n):
        if form in ("at", "in") or rng.random() < 0.4:
            strings.append(YaraString("hex", pattern=gen_pattern(rng, fixed=form in ("at", "in"), max_segments=2)))
        else:
            word = rng.choice(TOKEN_WORDS)
            tail = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10))
            mods = rng.choice(((), (), ("nocase",), ("wide",), ("ascii", "wide")))
            if form == "count":
                mods = ()
            strings.append(YaraString("text", text=f"{word}_{tail}", modifiers=mods))
    offset = rng.randint(0x400, 0x3000) if form in ("at", "in") else 0
    return YaraRule(index, f"bench_yara_{index:05d}", form, tuple(strings), offset)


# ---------------------------------------------------------------------------------------------------------------
# Names


def yara_ident(name: str) -> str:
    return name.replace(".", "_").replace("-", "_")


def canonical_name(name: str) -> str:
    """Tool-independent name: no ``.UNOFFICIAL``, no ``YARA.`` prefix, dots as underscores."""
    if name.endswith(".UNOFFICIAL"):
        name = name[: -len(".UNOFFICIAL")]
    if name.startswith("YARA."):
        name = name[len("YARA.") :]
    return yara_ident(name)


# ---------------------------------------------------------------------------------------------------------------
# Writing the set


@dataclass
class PlantedHash:
    """A hash signature for a planted file (filled in by the corpus builder)."""

    kind: str  # md5 | sha256
    digest: str
    size: int | None  # None: the ``*`` wildcard size
    name: str


@dataclass
class SigsetInfo:
    db_dir: Path
    yara_dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    names_in_yara: int = 0


def hash_name(kind: str, index: int) -> str:
    return f"Bench.{'Hdb' if kind == 'md5' else 'Hsb'}.H{index:07d}"


def _random_hash_lines(seed: int, kind: str, count: int, planted: Sequence[PlantedHash]) -> Iterator[str]:
    """``count`` hash lines; the planted ones are spread evenly among random ones."""
    nbytes = 16 if kind == "md5" else 32
    gen = np.random.default_rng([seed, 0x4A5, nbytes])
    digests = gen.integers(0, 256, size=(count, nbytes), dtype=np.uint8)
    sizes = gen.integers(1024, 10 * 1024 * 1024, size=count)
    wild = gen.random(count) < 0.01
    step = max(1, count // (len(planted) + 1))
    slots = {step * (i + 1): p for i, p in enumerate(planted)}
    for i in range(count):
        p = slots.get(i)
        if p is not None:
            size = "*" if p.size is None else str(p.size)
            yield f"{p.digest}:{size}:{p.name}" + (":73" if p.size is None else "")
            continue
        name = hash_name(kind, i)
        hexd = digests[i].tobytes().hex()
        if wild[i]:
            yield f"{hexd}:*:{name}:73"
        else:
            yield f"{hexd}:{int(sizes[i])}:{name}"


def write_sigset(
    seed: int,
    size: SetSize,
    out_dir: Path,
    planted_hashes: Sequence[PlantedHash],
    progress: object = None,
) -> SigsetInfo:
    """Write ``out_dir/db`` (ClamAV formats + native .yar) and ``out_dir/yara/{ndb,ldb,yara}.yar`` (as YARA)."""
    db = out_dir / "db"
    ydir = out_dir / "yara"
    db.mkdir(parents=True, exist_ok=True)
    ydir.mkdir(parents=True, exist_ok=True)
    info = SigsetInfo(db, ydir)
    for kind, count, ext in (("md5", size.md5, "hdb"), ("sha256", size.sha256, "hsb")):
        planted = [p for p in planted_hashes if p.kind == kind]
        with (db / f"bench.{ext}").open("w") as fh:
            fh.writelines(line + "\n" for line in _random_hash_lines(seed, kind, count, planted))
        info.counts[ext] = count
    header = "// Garrison benchmark ({}): the same detection logic as bench.{} in the ClamAV database.\n\n"
    with (db / "bench.ndb").open("w") as ndb, (ydir / "ndb.yar").open("w") as yndb:
        yndb.write(header.format("body signatures as YARA hex rules", "ndb"))
        for i in range(size.ndb):
            sig = body_sig(seed, i)
            ndb.write(sig.clamav_line() + "\n")
            yndb.write(sig.yara_rule())
    with (db / "bench.ldb").open("w") as ldb, (ydir / "ldb.yar").open("w") as yldb:
        yldb.write(header.format("logical signatures as YARA rules", "ldb"))
        for i in range(size.ldb):
            lsig = logical_sig(seed, i)
            ldb.write(lsig.clamav_line() + "\n")
            yldb.write(lsig.yara_rule())
    with (db / "bench.yar").open("w") as yfile, (ydir / "yara.yar").open("w") as ynat:
        ynat.write(header.format("native YARA rules", "yar"))
        for i in range(size.yara):
            text = yara_rule(seed, i).rule()
            yfile.write(text)
            ynat.write(text)
    info.counts.update(ndb=size.ndb, ldb=size.ldb, yar=size.yara)
    info.names_in_yara = size.ndb + size.ldb + size.yara
    (out_dir / "sigset.json").write_text(
        json.dumps({"seed": seed, "counts": info.counts, "planted_hashes": len(planted_hashes)}, indent=1)
    )
    return info


def file_digest(kind: str, data: bytes) -> str:
    return hashlib.md5(data).hexdigest() if kind == "md5" else hashlib.sha256(data).hexdigest()
