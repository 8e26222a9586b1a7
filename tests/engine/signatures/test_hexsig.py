"""ClamAV hex signature parsing, validation and rendering to YARA patterns."""

from __future__ import annotations

import pytest
import yara_x

from garrison.engine.errors import SignatureError
from garrison.engine.signatures.hexsig import parse_hexsig


def _matches(pattern_text: str, data: bytes) -> list[int]:
    rules = yara_x.compile(f"rule t {{ strings: $a = {pattern_text} condition: $a }}")
    result = yara_x.Scanner(rules).scan(data)
    return [m.offset for rule in result.matching_rules for p in rule.patterns for m in p.matches]


@pytest.mark.parametrize(
    ("sig", "expected"),
    [
        ("aabbcc", "{ aa bb cc }"),
        ("AABBCC", "{ aa bb cc }"),
        ("aabb??cc", "{ aa bb ?? cc }"),
        ("aabba?cc", "{ aa bb a? cc }"),
        ("aabb?acc", "{ aa bb ?a cc }"),
        ("aabb*ccdd", "{ aa bb [0-] cc dd }"),
        ("aabb{5}cc", "{ aa bb [5] cc }"),
        ("aabb{-5}ccdd", "{ aa bb [0-5] cc dd }"),
        ("aabb{5-}ccdd", "{ aa bb [5-] cc dd }"),
        ("aabb{2-7}ccdd", "{ aa bb [2-7] cc dd }"),
        ("aabb{200}ccdd", "{ aa bb [200] cc dd }"),
        ("{2}aabb", "{ ?? ?? aa bb }"),
        ("aabb{2}", "{ aa bb ?? ?? }"),
        ("aa[1-3]bbcc", "{ aa [1-3] bb cc }"),
        ("aabb(cc|dd)", "{ aa bb (cc | dd) }"),
        ("aabb(ccdd|ee??ff|11{2}22)", "{ aa bb (cc dd | ee ?? ff | 11 ?? ?? 22) }"),
        ("aabb!(cc)", "{ aa bb ~cc }"),
        ("aabb!(cc|dd)", "/\\xaa\\xbb[\\x00-\\xcb\\xcd-\\xdc\\xde-\\xff]/s"),
        ("aabb!(ccdd|ccee)", "/\\xaa\\xbb(?:[\\x00-\\xcb\\xcd-\\xff].{1}|\\xcc[\\x00-\\xdc\\xde-\\xed\\xef-\\xff])/s"),
        ("aabb(B)ccdd", "/\\xaa\\xbb[\\x0a\\x0d\\x20\\x22\\x27\\x2d-\\x2f\\x3c-\\x3e\\x40\\x5f]\\xcc\\xdd/s"),
        ("aabb(L)", "/\\xaa\\xbb(?:$|\\x0a|\\x0d\\x0a)/s"),
    ],
)
def test_render(sig: str, expected: str) -> None:
    pattern = parse_hexsig(sig).render()
    assert pattern.text == expected
    yara_x.compile(f"rule t {{ strings: $a = {pattern.text} condition: $a }}")


@pytest.mark.parametrize(
    ("sig", "data", "offsets"),
    [
        ("aabb!(cc|dd)", b"\xaa\xbb\xcc \xaa\xbb\xee", [4]),
        ("aabb!(ccdd|ccee)", b"\xaa\xbb\xcc\xdd \xaa\xbb\xcc\xef \xaa\xbb\x00\x00", [5, 10]),
        ("6162(W)6364", b"ab-cd abecd", [0]),
        ("6162(L)6364", b"ab\ncd ab\r\ncd abxcd", [0, 6]),
        ("6162(B)6364", b"ab cd ab1cd", [0]),
        ("6162(W)", b"abc ab", [4]),
    ],
)
def test_regex_semantics(sig: str, data: bytes, offsets: list[int]) -> None:
    assert _matches(parse_hexsig(sig).render().text, data) == offsets


def test_left_class_becomes_a_check() -> None:
    pattern = parse_hexsig("(B)6162").render()
    assert pattern.text == "{ 61 62 }"
    assert [c.kind for c in pattern.left] == ["B"]
    assert "@a[i] == 0" in pattern.left[0].condition("@a[i]")


@pytest.mark.parametrize(
    ("sig", "expected"),
    [
        ("6162", "{ 61 00 62 00 }"),
        ("6162??6364", "{ 61 00 62 00 ?? 00 63 00 64 00 }"),
        ("6162*6364", "{ 61 00 62 00 [0-] 63 00 64 00 }"),
    ],
)
def test_widened(sig: str, expected: str) -> None:
    assert parse_hexsig(sig).widened().render().text == expected


def test_nocase_and_fullword() -> None:
    text = parse_hexsig("41622e").with_nocase().render().text
    assert text == "/[\\x41\\x61][\\x42\\x62]\\x2e/s"
    assert _matches(text, b"aB. Ab.") == [0, 4]
    full = parse_hexsig("616263").fullword().render()
    assert [c.kind for c in full.left] == ["W"]
    assert full.text.endswith("(?:$|[\\x00-\\x2f\\x3a-\\x40\\x5b-\\x60\\x7b-\\xff])/s")


@pytest.mark.parametrize(
    ("sig", "reason"),
    [
        ("", "empty signature"),
        ("aab", "expected a hex byte"),
        ("aa bb", "expected a hex byte"),
        ("aagg", "expected a hex byte"),
        ("aa??bb", "two consecutive static bytes"),
        ("aa?bcc", "two consecutive static bytes"),
        ("aabb*cc", "two consecutive static bytes"),
        ("aabb{200}cc", "two consecutive static bytes"),
        ("aabb*", "cannot start or end"),
        ("*aabb", "cannot start or end"),
        ("aabb{5-3}ccdd", "maximum below its minimum"),
        ("aabb{x}ccdd", "bad range"),
        ("aabb{3ccdd", "unclosed"),
        ("aabb[1-40]cc", "side range"),
        ("aa[1-2]bb", "two consecutive static bytes"),
        ("aabb[1-2]ccdd", "single byte on one side"),
        ("aabb()", "empty alternative"),
        ("aabb(|cc)", "empty alternative"),
        ("aabb(cc", "unclosed"),
        ("aabb)", "unexpected"),
        ("ccdd!(aabb|cc)", "negated alternative"),
        ("ccdd!(aa??|bbcc)", "negated alternative"),
        ("ccdd(aa*|cc)", "fixed {n} gaps"),
        ("ccdd(aa{1-20}bb|cc)", "fixed {n} gaps"),
        ("ccdd(aa|(bb|cc))", "nested alternatives"),
        ("aabb!ccdd", "must be followed by"),
        ("!(B)ccdd", "negated class"),
    ],
)
def test_rejects(sig: str, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason) as info:
        parse_hexsig(sig, "x.ndb", 7)
    assert str(info.value).startswith("x.ndb:7: ")


def test_plain_minimum() -> None:
    parse_hexsig("aabb")
    with pytest.raises(SignatureError, match="at least 3 bytes"):
        parse_hexsig("aabb", plain_min=3)


def test_class_next_to_gap_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        parse_hexsig("aabb*(B)ccdd").render()
