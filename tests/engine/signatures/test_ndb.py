"""``.ndb`` parsing and translation, cross-checked against clamscan."""

from __future__ import annotations

from pathlib import Path

import pytest

from garrison.engine.errors import SignatureError
from garrison.engine.signatures.ndb import parse_ndb_line

from .helpers import compile_rules, cross_check, needs_clamscan, yara_names


@pytest.mark.parametrize(
    ("line", "target", "offset", "imports", "condition"),
    [
        ("A:0:*:aabbcc", 0, "*", set(), "not garrison_normalized and $a"),
        ("A:0:12:aabbcc", 0, "12", set(), "$a at 12"),
        ("A:0:12,4:aabbcc", 0, "12,4", set(), "$a in (12..12 + 4)"),
        ("A:0:EOF-8:aabbcc", 0, "EOF-8", set(), "$a at filesize - 8"),
        ("A:0:EOF-8,2:aabbcc", 0, "EOF-8,2", set(), "$a in (filesize - 8..filesize - 8 + 2)"),
        ("A:1:EP+4:aabbcc", 1, "EP+4", {"pe"}, "$a at pe.entry_point + 4"),
        ("A:1:EP-4,8:aabbcc", 1, "EP-4,8", {"pe"}, "$a in (pe.entry_point - 4..pe.entry_point - 4 + 8)"),
        ("A:1:S2+16:aabbcc", 1, "S2+16", {"pe"}, "$a at pe.sections[2].raw_data_offset + 16"),
        ("A:1:SE1:aabbcc", 1, "SE1", {"pe"}, "pe.sections[1].raw_data_offset + pe.sections[1].raw_data_size"),
        ("A:1:SL+0:aabbcc", 1, "SL+0", {"pe"}, "pe.sections[pe.number_of_sections - 1].raw_data_offset + 0"),
        ("A:6:EP+0:aabbcc", 6, "EP+0", {"elf"}, "$a at elf.entry_point + 0"),
        ("A:6:S1+2:aabbcc", 6, "S1+2", {"elf"}, "$a at elf.sections[1].offset + 2"),
        ("A:9:EP+0:aabbcc", 9, "EP+0", {"macho"}, "$a at macho.entry_point + 0"),
        ("A:3:*:aabbcc", 3, "*", set(), "garrison_normalized and garrison_target == 3"),
        ("A:7:*:aabbcc", 7, "*", set(), "garrison_normalized and garrison_target == 7"),
        ("A:2:*:aabbcc", 2, "*", set(), "not garrison_normalized and garrison_target == 2"),
        ("A:0:*:aabbcc:51", 0, "*", set(), "$a"),
    ],
)
def test_translate(line: str, target: int, offset: str, imports: set[str], condition: str) -> None:
    sig = parse_ndb_line(line, "t.ndb", 3)
    assert (sig.target, sig.offset, sig.imports) == (target, offset, frozenset(imports))
    text = sig.to_yara("r_1")
    assert text.startswith("rule r_1 {")
    assert 'name = "A"' in text and 'kind = "body"' in text and 'db = "t.ndb"' in text and "line = 3" in text
    assert condition in text
    compile_rules([(text, sig.imports)])


def test_flevels_kept() -> None:
    sig = parse_ndb_line("A:0:*:aabbcc:51:99", "t.ndb", 1)
    assert (sig.min_flevel, sig.max_flevel) == (51, 99)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("A:0:*", "expected Name:TargetType"),
        ("A:0:*:aabbcc:1:2:3", "expected Name:TargetType"),
        ("A B:0:*:aabbcc", "bad signature name"),
        (":0:*:aabbcc", "bad signature name"),
        ("A:8:*:aabbcc", "unknown target type"),
        ("A:x:*:aabbcc", "unknown target type"),
        ("A:0:EP+4:aabbcc", "needs target 1"),
        ("A:0:S1+4:aabbcc", "needs target 1"),
        ("A:9:S1+4:aabbcc", "unsupported: section offset"),
        ("A:0:$12:aabbcc", "unsupported: macro group"),
        ("A:1:VI:aabbcc", "unsupported: VI"),
        ("A:0:10,x:aabbcc", "bad MaxShift"),
        ("A:0:EOF+3:aabbcc", "bad offset"),
        ("A:1:SE1,3:aabbcc", "no MaxShift"),
        ("A:0:*:aabb", "at least 3 bytes"),
        ("A:0:*:aa??bb", "two consecutive static bytes"),
        ("A:0:*:aabbcc:x", "functionality level"),
        ("A:0:*:aabb*(B)ccdd", "unsupported"),
    ],
)
def test_rejects(line: str, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason) as info:
        parse_ndb_line(line, "bad.ndb", 42)
    assert str(info.value).startswith("bad.ndb:42: ")
    assert info.value.line == 42


# Signatures and samples for the clamscan cross-check. Samples start with eight NUL bytes: ClamAV then types
# them as binary data (target 0, not normalised); a single leading NUL can make it guess UTF-16 text.
CROSS_SIGS = [
    "Plain:0:*:68656c6c6f20776f726c64",
    "Wild:0:*:68656c??6f",
    "Nibbles:0:*:6865?c6c6f",
    "HighNibble:0:*:68656c6?6f",
    "Star:0:*:6865*776f",
    "Range:0:*:6865{2-6}6f20",
    "RangeMiss:0:*:6865{0-1}6f20",
    "AtMost:0:*:6865{-3}6c6f",
    "AtLeast:0:*:6865{3-}6f20",
    "FixedGap:0:*:6865{3}20",
    "Alt:0:*:68656c6c(6f|79)",
    "AltMulti:0:*:7777(6f72|6f73)6c64",
    "AltGeneric:0:*:776f(72|7272??)6c64",
    "NotAlt:0:*:68656c6c!(79|7a)",
    "NotAltMiss:0:*:68656c6c!(6f|7a)",
    "NotMulti:0:*:68656c!(6c6f|7a7a)",
    "NotMultiMiss:0:*:68656c!(6c6f|6c70)",
    "Side:0:*:68[1-4]6c6c6f",
    "SideRight:0:*:6c6c6f[2-3]6f",
    "Offset:0:8:68656c6c6f",
    "OffsetMiss:0:9:68656c6c6f",
    "Shift:0:6,3:68656c6c6f",
    "EofHit:0:EOF-4:454e4400",
    "EofMiss:0:EOF-5:454e4400",
    "EofShift:0:EOF-6,2:454e4400",
    "BoundL:0:*:(B)776f726c64",
    "BoundR:0:*:68656c6c6f(B)",
    "BoundMid:0:*:68656c6c6f(B)776f",
    "BoundMiss:0:*:(B)656c6c6f",
    "WordMid:0:*:6c6f(W)776f72",
    "WordR:0:*:776f726c64(W)",
    "WordRMiss:0:*:776f726c(W)",
    "LineR:0:*:6c696e6531(L)",
    "LineL:0:*:(L)6c696e6532",
    "LineMid:0:*:6c696e6531(L)6c69",
    "Upper:0:*:48454C4C4F",
]
PREFIX = b"\x00" * 8
SAMPLES = {
    "one.bin": PREFIX + b"hello world\x00 line1\nline2\r\nEND\x00",
    "two.bin": PREFIX + b"HELLO wwosld hexxo yelly hellz\x00END\x00",
    "three.bin": PREFIX + b"hellp word hello_world.x\x00",
}


@pytest.mark.clamav
@needs_clamscan
def test_matches_clamscan(tmp_path: Path) -> None:
    got, expected = cross_check(tmp_path, "cross.ndb", CROSS_SIGS, parse_ndb_line, SAMPLES)
    assert got == expected
    assert len(expected) > 20


def test_target_gating() -> None:
    sigs = [parse_ndb_line(line, "g.ndb", 1) for line in ("Any:0:*:616263", "Html:3:*:616263", "Pdf:10:*:616263")]
    rules = compile_rules((s.to_yara(f"r{n}"), s.imports) for n, s in enumerate(sigs))
    assert yara_names(rules, b"abc") == {"Any"}
    assert yara_names(rules, b"abc", garrison_target=10) == {"Any", "Pdf"}
    assert yara_names(rules, b"abc", garrison_target=3, garrison_normalized=True) == {"Html"}
    assert yara_names(rules, b"abc", garrison_target=7, garrison_normalized=True) == set()
