"""ClamAV hex signatures (the body of ``.ndb`` lines and ``.ldb`` subsignatures) parsed and turned into YARA.

``parse_hexsig`` checks a hex signature the way ClamAV's loader does and returns a ``HexPattern`` (a small tree
of bytes, gaps, alternatives and character classes). ``HexPattern.render`` turns it into one YARA pattern: a hex
string when YARA's hex syntax can say it, otherwise a byte regex. ClamAV's ``(B)``, ``(L)`` and ``(W)`` classes
consume one byte in the middle of a pattern but are zero-width tests at its ends; a trailing test is written into
the regex (``($|[...])``), a leading one is returned as a ``LeftCheck`` the caller turns into a condition on the
byte before each match.

This module only translates text; it does not compile or scan anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from garrison.engine.errors import SignatureError

# ClamAV's boundary table (matcher-ac.c): bytes that may sit before a "(B)" at the start of a pattern, bytes
# that may follow a "(B)" at its end, and bytes a "(B)" matches in the middle of a pattern.
_BOUNDARY_BEFORE = frozenset({0x20, 0x2D, 0x2E, 0x2F, 0x3C, 0x40, 0x5F})
_BOUNDARY_AFTER = frozenset({0x0A, 0x0D, 0x20, 0x22, 0x27, 0x2D, 0x2F, 0x3D, 0x3E, 0x5F})
_BOUNDARY_ANY = _BOUNDARY_BEFORE | _BOUNDARY_AFTER
_ALNUM = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_NON_ALNUM = frozenset(range(256)) - _ALNUM

# `{n}` below this size becomes n single-byte wildcards and does not split the signature (ClamAV's rule).
SMALL_GAP = 128
# `aa[x-y]HEXSIG`: y may not exceed this.
MAX_SIDE_RANGE = 32


@dataclass(frozen=True)
class Byte:
    """One byte; ``mask`` says which bits must equal ``value`` (0xff exact, 0xf0/0x0f a nibble, 0 any)."""

    value: int
    mask: int = 0xFF

    @property
    def static(self) -> bool:
        return self.mask == 0xFF


@dataclass(frozen=True)
class Gap:
    """``max`` None means unbounded. ``side`` marks ClamAV's ``[x-y]`` single-byte side range."""

    min: int
    max: int | None
    side: bool = False

    @property
    def splits(self) -> bool:
        """Whether ClamAV treats this gap as cutting the signature into separately matched parts."""
        return not self.side and not (self.max == self.min and self.min < SMALL_GAP)


@dataclass(frozen=True)
class Alt:
    options: tuple[tuple[Node, ...], ...]
    negated: bool = False


@dataclass(frozen=True)
class Special:
    """ClamAV character class: ``B`` boundary, ``L`` line end, ``W`` non-alphanumeric."""

    kind: str


Node = Byte | Gap | Alt | Special


@dataclass(frozen=True)
class LeftCheck:
    """A zero-width test on the byte before a match (or the start of the data)."""

    kind: str  # "B", "L" or "W"
    wide: bool = False

    def condition(self, start: str) -> str:
        """YARA condition saying the match starting at ``start`` passes the test."""
        prev = f"uint8({start} - 1)"
        if self.kind == "B":
            return f"({start} == 0 or {_byte_in(prev, _BOUNDARY_BEFORE)})"
        if self.kind == "L":
            return f"({start} == 0 or {prev} == 0x0a)"
        if self.wide:
            prev2 = f"uint8({start} - 2)"
            return f"({start} < 2 or not ({_byte_in(prev2, _ALNUM)} and {prev} == 0))"
        return f"({start} == 0 or not {_byte_in(prev, _ALNUM)})"


@dataclass(frozen=True)
class YaraPattern:
    """A YARA pattern body (``{ ... }`` or ``/.../s``) and the leading tests its matches must also pass."""

    text: str
    left: tuple[LeftCheck, ...] = ()


def _byte_in(expr: str, values: frozenset[int]) -> str:
    """YARA condition: the byte ``expr`` is one of ``values`` (written as ranges)."""
    parts = []
    for low, high in _ranges(values):
        parts.append(f"{expr} == 0x{low:02x}" if low == high else f"({expr} >= 0x{low:02x} and {expr} <= 0x{high:02x})")
    return "(" + " or ".join(parts) + ")"


def _ranges(values: frozenset[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in sorted(values):
        if out and out[-1][1] == v - 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


class _Fail(Exception):
    """Internal: a syntax problem, turned into SignatureError with the caller's source and line."""


_HEX = "0123456789abcdef"
_RANGE_RE = re.compile(r"(\d*)(-?)(\d*)\Z")


@dataclass(frozen=True)
class HexPattern:
    """A parsed ClamAV hex signature."""

    nodes: tuple[Node, ...]
    nocase: bool = False
    wide: bool = False

    # -- transformations for .ldb modifiers ------------------------------------------------------------------

    def fullword(self) -> HexPattern:
        """``::f``: ClamAV wraps the pattern in ``(W)`` and turns side ranges into plain gaps."""
        nodes = tuple(replace(n, side=False) if isinstance(n, Gap) else n for n in self.nodes)
        return replace(self, nodes=(Special("W"), *nodes, Special("W")))

    def widened(self) -> HexPattern:
        """``::w``: every byte (wildcards too) is followed by a NUL; gaps keep their byte counts."""
        return replace(self, nodes=_widen(self.nodes), wide=True)

    def with_nocase(self) -> HexPattern:
        return replace(self, nocase=True)

    @property
    def is_plain(self) -> bool:
        """True when every node is a fully static byte (ClamAV loads these into its Boyer-Moore matcher)."""
        return all(isinstance(n, Byte) and n.static for n in self.nodes)

    # -- rendering ---------------------------------------------------------------------------------------------

    def render(self) -> YaraPattern:
        """The YARA pattern for this signature; raises ``ValueError`` for constructs that cannot be expressed."""
        nodes = list(self.nodes)
        left: list[LeftCheck] = []
        right: list[str] = []
        first = nodes[0] if nodes else None
        if isinstance(first, Special):
            nodes.pop(0)
            left.append(LeftCheck(first.kind, self.wide))
        last = nodes[-1] if nodes else None
        if isinstance(last, Special):
            nodes.pop()
            right.append(_right_edge_regex(last.kind, self.wide))
        for i, node in enumerate(nodes):
            if isinstance(node, Special):
                neighbours = nodes[max(i - 1, 0) : i + 2]
                if any(isinstance(n, Gap) and n.splits for n in neighbours) or i in (0, len(nodes) - 1):
                    raise ValueError(f"unsupported: ({node.kind}) next to a variable gap or another class")
        if not right and not self.nocase and _hex_expressible(nodes):
            return YaraPattern("{ " + _hex(nodes) + " }", tuple(left))
        body = _regex(nodes, self.nocase) + "".join(right)
        return YaraPattern(f"/{body}/s", tuple(left))


def parse_hexsig(text: str, source: str = "<hexsig>", lineno: int = 0, *, plain_min: int = 0) -> HexPattern:
    """Parse and check a ClamAV hex signature.

    Args:
        text: the hex signature (lowercase hex is the norm; uppercase is accepted).
        source, lineno: where the signature came from, for error messages.
        plain_min: minimum length of a signature made only of static bytes (ClamAV's ``.ndb`` loader wants 3).

    Raises:
        SignatureError: the signature is malformed or breaks one of ClamAV's loading rules.
    """
    try:
        nodes = _Parser(text).parse_sequence(top=True)
        _validate(nodes)
        pattern = HexPattern(nodes)
        if plain_min and pattern.is_plain and len(nodes) < plain_min:
            raise _Fail(f"a signature of static bytes needs at least {plain_min} bytes")
    except _Fail as exc:
        raise SignatureError(source, lineno, f"bad hex signature {_clip(text)!r}: {exc}") from None
    return pattern


def _clip(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse_sequence(self, *, top: bool) -> tuple[Node, ...]:
        text = self.text
        nodes: list[Node] = []
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in "|)":
                if top:
                    raise _Fail(f"unexpected {ch!r} at position {self.pos}")
                break
            if ch == "*":
                nodes.append(Gap(0, None))
                self.pos += 1
            elif ch == "{":
                nodes.append(self._brace())
            elif ch == "[":
                nodes.append(self._side_range())
            elif ch == "!":
                if text[self.pos + 1 : self.pos + 2] != "(":
                    raise _Fail(f"'!' must be followed by '(' at position {self.pos}")
                self.pos += 1
                nodes.append(self._group(negated=True, top=top))
            elif ch == "(":
                nodes.append(self._group(negated=False, top=top))
            else:
                nodes.append(self._byte())
        return tuple(nodes)

    def _byte(self) -> Byte:
        pair = self.text[self.pos : self.pos + 2].lower()
        if len(pair) < 2 or any(c not in _HEX + "?" for c in pair):
            raise _Fail(f"expected a hex byte at position {self.pos}, found {self.text[self.pos : self.pos + 2]!r}")
        self.pos += 2
        hi, lo = pair[0], pair[1]
        if hi == "?" and lo == "?":
            return Byte(0, 0)
        if hi == "?":
            return Byte(int(lo, 16), 0x0F)
        if lo == "?":
            return Byte(int(hi, 16) << 4, 0xF0)
        return Byte(int(pair, 16))

    def _closing(self, closer: str) -> str:
        end = self.text.find(closer, self.pos)
        if end < 0:
            raise _Fail(f"unclosed {self.text[self.pos]!r} at position {self.pos}")
        inner = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return inner

    def _brace(self) -> Gap:
        inner = self._closing("}")
        m = _RANGE_RE.match(inner)
        if not m or not inner:
            raise _Fail(f"bad range {{{inner}}}")
        low, dash, high = m.groups()
        if not dash:
            if not low:
                raise _Fail(f"bad range {{{inner}}}")
            return Gap(int(low), int(low))
        lo = int(low) if low else 0
        hi = int(high) if high else None
        if hi is not None and hi < lo:
            raise _Fail(f"range {{{inner}}} has its maximum below its minimum")
        return Gap(lo, hi)

    def _side_range(self) -> Gap:
        inner = self._closing("]")
        m = re.fullmatch(r"(\d+)-(\d+)", inner)
        if not m:
            raise _Fail(f"bad side range [{inner}]")
        lo, hi = int(m[1]), int(m[2])
        if hi < lo or hi > MAX_SIDE_RANGE:
            raise _Fail(f"side range [{inner}] must have min <= max <= {MAX_SIDE_RANGE}")
        return Gap(lo, hi, side=True)

    def _group(self, *, negated: bool, top: bool) -> Node:
        start = self.pos
        rest = self.text[self.pos + 1 : self.pos + 3]
        if rest in ("B)", "L)", "W)"):
            self.pos += 3
            if negated:
                raise _Fail(f"unsupported: negated class !({rest[0]}) at position {start}")
            return Special(rest[0])
        if not top:
            raise _Fail(f"unsupported: nested alternatives at position {start}")
        self.pos += 1
        options: list[tuple[Node, ...]] = []
        while True:
            options.append(self.parse_sequence(top=False))
            if self.pos >= len(self.text):
                raise _Fail(f"unclosed '(' at position {start}")
            closer = self.text[self.pos]
            self.pos += 1
            if closer == ")":
                break
        if any(not option for option in options):
            raise _Fail(f"empty alternative in the group at position {start}")
        for option in options:
            for node in option:
                if isinstance(node, Special):
                    raise _Fail(f"character classes are not allowed inside alternatives (position {start})")
                if isinstance(node, Gap) and (node.max != node.min or node.side):
                    raise _Fail(f"alternatives may only contain fixed {{n}} gaps (position {start})")
        if negated:
            lengths = {len(o) for o in options}
            if len(lengths) != 1 or not all(isinstance(n, Byte) and n.static for o in options for n in o):
                raise _Fail(f"a negated alternative must list static byte strings of one length (position {start})")
        return Alt(tuple(options), negated)


def _validate(nodes: tuple[Node, ...]) -> None:
    if not nodes:
        raise _Fail("empty signature")
    if any(isinstance(n, Gap) and n.splits for n in (nodes[0], nodes[-1])):
        raise _Fail("a signature cannot start or end with '*' or a range gap")
    parts: list[list[Node]] = [[]]
    for node in nodes:
        if isinstance(node, Gap) and node.splits:
            if not parts[-1]:
                raise _Fail("two gaps in a row")
            parts.append([])
        else:
            parts[-1].append(node)
    for part in parts:
        if not _has_static_pair(part):
            raise _Fail("each part between '*' or range gaps needs two consecutive static bytes")
        for i, node in enumerate(part):
            if isinstance(node, Gap) and node.side:
                before, after = part[:i], part[i + 1 :]
                if not (_single_byte(before) or _single_byte(after)):
                    raise _Fail("a [x-y] side range needs a single byte on one side")


def _single_byte(nodes: list[Node]) -> bool:
    return len(nodes) == 1 and isinstance(nodes[0], Byte)


def _has_static_pair(nodes: list[Node]) -> bool:
    run = 0
    for node in nodes:
        run = run + 1 if isinstance(node, Byte) and node.static else 0
        if run >= 2:
            return True
    return False


def _widen(nodes: tuple[Node, ...]) -> tuple[Node, ...]:
    out: list[Node] = []
    for node in nodes:
        if isinstance(node, Byte):
            out += [node, Byte(0)]
        elif isinstance(node, Alt):
            out.append(Alt(tuple(_widen(o) for o in node.options), node.negated))
        else:
            out.append(node)
    return tuple(out)


# -- hex string rendering -------------------------------------------------------------------------------------


def _hex_expressible(nodes: list[Node]) -> bool:
    for node in nodes:
        if isinstance(node, Special):
            return False
        if isinstance(node, Alt) and node.negated and not (len(node.options) == 1 and len(node.options[0]) == 1):
            return False
    return True


def _hex_byte(node: Byte) -> str:
    if node.mask == 0xFF:
        return f"{node.value:02x}"
    if node.mask == 0xF0:
        return f"{node.value >> 4:x}?"
    if node.mask == 0x0F:
        return f"?{node.value & 0xF:x}"
    return "??"


def _hex(nodes: list[Node] | tuple[Node, ...], *, inside_alt: bool = False) -> str:
    out: list[str] = []
    last = len(nodes) - 1
    for i, node in enumerate(nodes):
        if isinstance(node, Byte):
            out.append(_hex_byte(node))
        elif isinstance(node, Gap):
            if node.max is None:
                out.append(f"[{node.min}-]")
            elif inside_alt or i in (0, last):
                # YARA forbids jumps at the ends of a hex string; only small fixed gaps get here.
                out.append(" ".join(["??"] * node.min))
            elif node.min == node.max:
                out.append(f"[{node.min}]")
            else:
                out.append(f"[{node.min}-{node.max}]")
        elif isinstance(node, Alt):
            if node.negated:
                byte = node.options[0][0]
                assert isinstance(byte, Byte)  # noqa: S101 - guaranteed by _hex_expressible
                out.append(f"~{byte.value:02x}")
            else:
                out.append("(" + " | ".join(_hex(o, inside_alt=True) for o in node.options) + ")")
    return " ".join(t for t in out if t)


# -- regex rendering ------------------------------------------------------------------------------------------


def _class(values: frozenset[int] | set[int]) -> str:
    if len(values) == 256:
        return "."
    if len(values) == 1:
        return f"\\x{next(iter(values)):02x}"
    body = "".join(f"\\x{lo:02x}" if lo == hi else f"\\x{lo:02x}-\\x{hi:02x}" for lo, hi in _ranges(frozenset(values)))
    return f"[{body}]"


def _byte_values(node: Byte, nocase: bool) -> set[int]:
    values = {b for b in range(256) if b & node.mask == node.value & node.mask}
    if nocase and node.mask == 0xFF:
        ch = node.value
        if 0x41 <= ch <= 0x5A or 0x61 <= ch <= 0x7A:
            values = {ch | 0x20, ch & ~0x20}
    return values


def _regex(nodes: list[Node] | tuple[Node, ...], nocase: bool) -> str:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Byte):
            out.append(_class(_byte_values(node, nocase)))
        elif isinstance(node, Gap):
            if node.max is None:
                out.append(".*" if node.min == 0 else f".{{{node.min},}}")
            elif node.min == node.max:
                out.append(f".{{{node.min}}}")
            else:
                out.append(f".{{{node.min},{node.max}}}")
        elif isinstance(node, Special):
            out.append(_middle_class(node.kind))
        elif node.negated:
            out.append(_negated_regex(node, nocase))
        else:
            out.append("(?:" + "|".join(_regex(o, nocase) for o in node.options) + ")")
    return "".join(out)


def _middle_class(kind: str) -> str:
    if kind == "B":
        return _class(_BOUNDARY_ANY)
    if kind == "W":
        return _class(_NON_ALNUM)
    return "(?:\\x0a|\\x0d\\x0a)"


def _right_edge_regex(kind: str, wide: bool) -> str:
    if kind == "B":
        return f"(?:$|{_class(_BOUNDARY_AFTER)})"
    if kind == "L":
        return "(?:$|\\x0a|\\x0d\\x0a)"
    if wide:
        return f"(?:$|{_class(_NON_ALNUM)}|{_class(_ALNUM)}[\\x01-\\xff])"
    return f"(?:$|{_class(_NON_ALNUM)})"


def _negated_regex(node: Alt, nocase: bool) -> str:
    strings: set[tuple[frozenset[int], ...]] = set()
    for option in node.options:
        seq: list[frozenset[int]] = []
        for b in option:
            assert isinstance(b, Byte)  # noqa: S101 - checked by the parser
            seq.append(frozenset(_byte_values(b, nocase)))
        strings.add(tuple(seq))
    concrete: set[bytes] = set()
    for s in strings:
        concrete |= _expand(s)
    length = len(next(iter(concrete)))
    result = _complement(concrete, length)
    if result is None:
        raise ValueError("unsupported: the negated alternative excludes every byte string")
    return result


def _expand(seq: tuple[frozenset[int], ...]) -> set[bytes]:
    out: set[bytes] = {b""}
    for values in seq:
        out = {prefix + bytes([v]) for prefix in out for v in values}
    return out


def _complement(strings: set[bytes], length: int) -> str | None:
    """Regex for every byte string of ``length`` not in ``strings``; None when there is none."""
    if length == 0:
        return None
    by_first: dict[int, set[bytes]] = {}
    for s in strings:
        by_first.setdefault(s[0], set()).add(s[1:])
    branches: list[str] = []
    others = frozenset(range(256)) - frozenset(by_first)
    if others:
        tail = f".{{{length - 1}}}" if length > 1 else ""
        branches.append(_class(others) + tail)
    for first in sorted(by_first):
        rest = _complement(by_first[first], length - 1)
        if rest is not None:
            branches.append(f"\\x{first:02x}" + rest)
    if not branches:
        return None
    return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
