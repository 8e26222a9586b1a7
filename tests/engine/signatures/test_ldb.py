"""``.ldb`` parsing and translation, cross-checked against clamscan."""

from __future__ import annotations

from pathlib import Path

import pytest

from garrison.engine.errors import SignatureError
from garrison.engine.signatures.ldb import parse_ldb_line

from .helpers import compile_rules, cross_check, needs_clamscan, yara_names

E = "Engine:81-255,Target:0"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("A;Target:0;0;616263", "$s0"),
        ("A;Target:0;0&1;616263;646566", "($s0 and $s1)"),
        ("A;Target:0;0|1&2;616263;646566;676869", "($s0 or ($s1 and $s2))"),
        ("A;Target:0;0=2;616263", "#s0 == 2"),
        ("A;Target:0;0>2;616263", "#s0 > 2"),
        ("A;Target:0;(0|1)>3,2;616263;646566", "2 of ($s0, $s1)"),
        ("A;Target:0;0;10:616263", "$s0 at 10"),
        ("A;Target:0;0=2;10,5:616263", "for 2 i in (1..#s0)"),
        (f"A;{E};0;616263::i", "[\\x41\\x61]"),
        (f"A;{E};0;616263::wa", "$s0w = { 61 00 62 00 63 00 }"),
        (f"A;{E};0&1;616263;0/ab[cd]/i", "$s1 = /(?i)ab[cd]/"),
        (f"A;{E};0&1;616263;0(>>3#ib2#>0x10,<0x20)", "uint16be(@s0[#s0] + 3) > 16"),
        ("A;Engine:51-255,Target:0,FileSize:10-20;0;616263", "filesize >= 10 and filesize <= 20"),
        ("A;Engine:51-255,Target:0,Container:CL_TYPE_ZIP;0;616263", 'garrison_container == "CL_TYPE_ZIP"'),
        ("A;Engine:51-255,Target:0,Container:CL_TYPE_ANY;0;616263", 'garrison_container == ""'),
        (
            "A;Engine:51-255,Target:0,Intermediates:CL_TYPE_ZIP>CL_TYPE_ANY;0;616263",
            "garrison_intermediates matches /(^|>)CL_TYPE_ZIP>[^>]+$/",
        ),
        ("A;Engine:51-255,Target:1,EntryPoint:0-4096;0;EP+0:616263", "pe.entry_point >= 0"),
        ("A;Engine:51-255,Target:6,NumberOfSections:2-9;0;616263", "elf.number_of_sections >= 2"),
    ],
)
def test_translate(line: str, fragment: str) -> None:
    sig = parse_ldb_line(line, "t.ldb", 5)
    text = sig.to_yara("r_5")
    assert fragment in text
    assert 'kind = "logical"' in text and "line = 5" in text
    compile_rules([(text, sig.imports)])


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("A;Target:0;0", "expected Name;"),
        ("A;Target:0;0&1;616263", "up to 1 but 1 are given"),
        ("A;Target:0;0;616263;646566", "up to 0 but 2"),
        ("A;Engine:51-255;0;616263", "no Target"),
        ("A;Target:0,FileSize:1-9;0;616263", "need an Engine"),
        ("A;Target:0,Engine:51-255;0;616263", "Engine must come first"),
        ("A;Engine:51-255,Target:0,FileSize:9;0;616263", "FileSize wants a range"),
        ("A;Engine:51-255,Target:0,Colour:red;0;616263", "unknown target description key"),
        ("A;Engine:51-255,Target:0,IconGroup1:x;0;616263", "unsupported: IconGroup1"),
        ("A;Engine:51-255,Target:0,HandlerType:CL_TYPE_MSEXE;0;616263", "unsupported: HandlerType"),
        ("A;Engine:51-255,Target:0,EntryPoint:0-9;0;616263", "unsupported: EntryPoint"),
        ("A;Engine:51-255,Target:0,Container:zip;0;616263", "bad Container"),
        ("A;Target:0;(0&1;616263;646566", "unbalanced"),
        ("A;Target:0;0&;616263", "expected a number"),
        ("A;Target:0;0;616263::q", "unknown subsignature modifier"),
        ("A;Target:0;0&1;616263;${1-2}12$", "unsupported: macro"),
        ("A;Target:0;0;fuzzy_img#af2ad01ed42993c7", "unsupported: fuzzy"),
        (f"A;{E};0&1;616263;1/abc/", "earlier subsignatures"),
        (f"A;{E};0&1;616263;0/(a)\\1/", "unsupported PCRE"),
        (f"A;{E};0&1;616263;0/ab(?=c)/", "unsupported PCRE"),
        (f"A;{E};0&1;616263;0/abc/q", "unknown PCRE flags"),
        (f"A;{E};0&1>1;616263;0/abc/g", "unsupported: a match count"),
        (f"A;{E};0&1;616263;0(>>3#hb2#=12)", "unsupported: byte compare of text"),
        (f"A;{E};0&1;616263;0(>>3#ib8#=12)", "unsupported: byte compare of 8 bytes"),
        (f"A;{E};0&1;616263;0(>>3#i2#=12)", "bad byte-compare options"),
        ("A;Target:0;((0>1)|1)=2;616263;646566", "unsupported: a match-count modifier inside"),
        ("A;Target:0;0;aa??bb", "two consecutive static bytes"),
        ("A;Target:0;0;$1:616263", "unsupported: macro"),
    ],
)
def test_rejects(line: str, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason.replace("(", r"\(").replace("$", r"\$")) as info:
        parse_ldb_line(line, "bad.ldb", 9)
    assert str(info.value).startswith("bad.ldb:9: ")


CROSS_SIGS = [
    "One;Target:0;0;68656c6c6f",
    "And;Target:0;0&1;68656c6c6f;776f726c64",
    "AndMiss;Target:0;0&1;68656c6c6f;7a7a7a7a",
    "RightGroup;Target:0;0&1|2;7a7a7a7a;68656c6c6f;776f726c64",
    "RightGroupMiss;Target:0;0|1&2;7a7a7a7a;68656c6c6f;7a7a7a7b",
    "Count;Target:0;0=4;616161",
    "CountMore;Target:0;0>3;616161",
    "CountLess;Target:0;0<2;616161",
    "Negate;Target:0;0&1=0;68656c6c6f;7a7a7a7a",
    "BlockFalse;Target:0;(0&1)=0;616161;7a7a7a7a",
    "BlockSum;Target:0;(0&1)=5;616161;626262",
    "BlockDistinct;Target:0;(0|1)=5,2;616161;626262",
    "BlockDistinctMiss;Target:0;(0|1)=5,3;616161;626262",
    "BlockMore;Target:0;(0|1)>4,2;616161;7a7a7a7a",
    "Anchored;Target:0;0;8:68656c6c6f",
    "AnchoredMiss;Target:0;0;9:68656c6c6f",
    "Shifted;Target:0;0&1;6:68656c6c6f;EOF-4,3:454e44",
    "AnchoredCount;Target:0;0=2;0,40:636363",
    f"Nocase;{E};0;48454c4c4f::i",
    f"Wide;{E};0;776964::w",
    f"WideAscii;{E};0&1;776964::wa;68656c6c6f",
    f"Fullword;{E};0;776f726c64::f",
    f"FullwordMiss;{E};0;776f726c::f",
    f"FullwordNocase;{E};0;574f524c44::fi",
    f"Pcre;{E};0&1;68656c6c6f;0/wor[a-z]d/",
    f"PcreTriggerMiss;{E};0&1;7a7a7a7a;0/world/",
    f"PcreAnchored;{E};0&1;68656c6c6f;14:0/world/",
    f"PcreAnchoredMiss;{E};0&1;68656c6c6f;15:0/world/",
    f"PcreRolling;{E};0&1;68656c6c6f;9:0/world/r",
    f"PcreCaseless;{E};0&1;68656c6c6f;0/WORLD/i",
    f"PcreGlobal;{E};0&1;68656c6c6f;0/c{{3}}/g",
    "PcreEicarStyle;Engine:81-255,Target:0,FileSize:10-200;0&1;0:0000;0/\\A\\x00+hello[ \\t]/",
    f"ByteCmp;{E};0&1;6161;0(>>3#ib1#=0x20)",
    f"ByteCmpMiss;{E};0&1;6161;0(>>3#ib1#=0x61)",
    f"ByteCmp16;{E};0&1;636363;0(<<2#il2#=0x6261,>0)",
    "Size;Engine:51-255,Target:0,FileSize:10-100;0;68656c6c6f",
    "SizeMiss;Engine:51-255,Target:0,FileSize:100-200;0;68656c6c6f",
]
PREFIX = b"\x00" * 8
SAMPLES = {
    "one.bin": PREFIX + b"hello world aaaaaa bbb ccc ccc END\x00",
    "two.bin": PREFIX + b"w\x00i\x00d\x00 HELLO worlds\x00 aaaaa bb ccc\x00END\x00",
    "three.bin": PREFIX + b"hello  wid wide WORLD. cccccc aa b\x00END",
}


@pytest.mark.clamav
@needs_clamscan
def test_matches_clamscan(tmp_path: Path) -> None:
    got, expected = cross_check(tmp_path, "cross.ldb", CROSS_SIGS, parse_ldb_line, SAMPLES)
    assert got == expected
    assert len(expected) > 25


def test_container_gating() -> None:
    lines = [
        "Root;Engine:51-255,Target:0,Container:CL_TYPE_ANY;0;616263",
        "InZip;Engine:51-255,Target:0,Container:CL_TYPE_ZIP;0;616263",
        "ZipGz;Engine:51-255,Target:0,Intermediates:CL_TYPE_ZIP>CL_TYPE_GZ;0;616263",
    ]
    sigs = [parse_ldb_line(line, "c.ldb", n) for n, line in enumerate(lines, 1)]
    rules = compile_rules((s.to_yara(f"r{n}"), s.imports) for n, s in enumerate(sigs))
    assert yara_names(rules, b"abc") == {"Root"}
    assert yara_names(rules, b"abc", garrison_container="CL_TYPE_ZIP", garrison_intermediates="CL_TYPE_ZIP") == {
        "InZip"
    }
    assert yara_names(
        rules,
        b"abc",
        garrison_container="CL_TYPE_GZ",
        garrison_intermediates="CL_TYPE_TAR>CL_TYPE_ZIP>CL_TYPE_GZ",
    ) == {"ZipGz"}
