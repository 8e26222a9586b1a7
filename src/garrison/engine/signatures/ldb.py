"""ClamAV logical signatures (``.ldb``) parsed and translated into YARA rules.

A line is ``Name;TargetDescriptionBlock;LogicalExpression;Subsig0;Subsig1;...``. ``parse_ldb_line`` checks it
and returns a ``LogicalSignature``; ``LogicalSignature.to_yara`` writes one YARA rule (without ``import`` lines:
see ``LogicalSignature.imports``). Subsignatures become YARA patterns ``$s0``, ``$s1``...; the logical expression,
match counts, PCRE triggers and binary byte compares become the rule's condition.

Semantics follow what ClamAV 1.4 does (checked with clamscan): ``a op b op c`` groups to the right; a counted
block ``(A)op X`` counts the matches of all its subsignatures when the block itself is true and 0 otherwise;
``,Y`` also wants at least Y distinct subsignatures of the block matched. Constructs YARA cannot express raise
``SignatureError("... unsupported: ...")`` at parse time. Nothing here compiles rules except PCRE subsignatures,
which are test-compiled once so that a regex yara-x refuses is reported against its line.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import yara_x

from garrison.engine.errors import SignatureError
from garrison.engine.filetype import TARGET_ELF, TARGET_MACHO, TARGET_PE
from garrison.engine.signatures.hexsig import YaraPattern, parse_hexsig
from garrison.engine.signatures.ndb import (
    SubjectString,
    check_name,
    guard_undefined,
    meta_block,
    parse_offset,
    parse_target,
    render_pattern,
    target_gate,
    yara_string_literal,
)

MAX_SUBSIGS = 64
_CL_TYPE_RE = re.compile(r"CL_TYPE_[A-Z0-9_]+\Z")
_RANGE_RE = re.compile(r"(\d+)-(\d+)\Z")
_COMPARE: dict[str, Callable[[int, int], bool]] = {"=": operator.eq, ">": operator.gt, "<": operator.lt}
_EXEC_MODULES = {TARGET_PE: "pe", TARGET_ELF: "elf", TARGET_MACHO: "macho"}


class _Unsupported(Exception):
    """Internal: a construct YARA cannot express; becomes SignatureError with the caller's line."""


# -- subsignature terms ---------------------------------------------------------------------------------------


@dataclass
class _Term:
    """What the logical expression needs from one subsignature."""

    strings: list[SubjectString] = field(default_factory=list)
    # For terms whose count is only ever 0 or 1 (PCRE without g, byte compare) or whose count is unreliable
    # beyond presence (PCRE with g): an explicit presence expression and how counts may be used.
    presence: str | None = None
    binary: bool = False
    presence_only: bool = False
    module: str | None = None

    def present(self) -> str:
        if self.presence is not None:
            return self.presence
        expr = " or ".join(s.present() for s in self.strings)
        expr = f"({expr})" if len(self.strings) > 1 else expr
        return guard_undefined(expr, self.module)

    def count(self) -> str | None:
        if self.presence is not None:
            return None
        counts = [s.count() for s in self.strings]
        if any(c is None for c in counts):
            return None
        return "(" + " + ".join(c for c in counts if c) + ")" if len(counts) > 1 else counts[0]

    def compare(self, op: str, value: int) -> str:
        """YARA condition: this subsignature's match count ``op`` ``value``."""
        cmp = _COMPARE[op]
        if self.presence is not None:
            when_absent = cmp(0, value)
            when_present = cmp(1, value)
            if self.presence_only and any(cmp(n, value) != when_present for n in range(2, value + 3)):
                raise _Unsupported("unsupported: a match count other than presence on a PCRE with the g flag")
            return _truth(when_absent, when_present, self.present())
        count = self.count()
        if count is not None:
            return f"{count} {'==' if op == '=' else op} {value}"
        if len(self.strings) != 1:
            raise _Unsupported("unsupported: a match count on an anchored subsignature with both ascii and wide")
        subject = self.strings[0]
        if op == ">":
            expr = subject.at_least(value + 1)
        elif op == "<":
            expr = "false" if value == 0 else f"not ({subject.at_least(value)})"
        else:
            expr = (
                f"not ({subject.present()})"
                if value == 0
                else f"{subject.at_least(value)} and not ({subject.at_least(value + 1)})"
            )
        return guard_undefined(f"({expr})", self.module) if self.module else f"({expr})"


def _truth(when_absent: bool, when_present: bool, present: str) -> str:
    if when_absent and when_present:
        return "true"
    if not when_absent and not when_present:
        return "false"
    return present if when_present else f"not {present}"


# -- logical expression ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Leaf:
    index: int


@dataclass(frozen=True)
class _Op:
    op: str  # "&" or "|"
    left: _Expr
    right: _Expr


@dataclass(frozen=True)
class _Count:
    child: _Expr
    op: str
    value: int
    distinct: int | None


_Expr = _Leaf | _Op | _Count


class _ExprParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> _Expr:
        if not self.text:
            raise _Unsupported("empty logical expression")
        expr = self._sequence()
        if self.pos != len(self.text):
            raise _Unsupported(f"unexpected {self.text[self.pos]!r} at position {self.pos} of the expression")
        return expr

    def _sequence(self) -> _Expr:
        # ClamAV groups "a op b op c" as "a op (b op c)".
        first = self._counted()
        if self.pos < len(self.text) and self.text[self.pos] in "&|":
            op = self.text[self.pos]
            self.pos += 1
            return _Op(op, first, self._sequence())
        return first

    def _number(self) -> int:
        m = re.compile(r"\d+").match(self.text, self.pos)
        if not m:
            raise _Unsupported(f"expected a number at position {self.pos} of the expression")
        self.pos = m.end()
        return int(m[0])

    def _counted(self) -> _Expr:
        atom = self._atom()
        if self.pos < len(self.text) and self.text[self.pos] in "=<>":
            op = self.text[self.pos]
            self.pos += 1
            value = self._number()
            distinct = None
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
                distinct = self._number()
            return _Count(atom, op, value, distinct)
        return atom

    def _atom(self) -> _Expr:
        if self.pos < len(self.text) and self.text[self.pos] == "(":
            self.pos += 1
            inner = self._sequence()
            if self.pos >= len(self.text) or self.text[self.pos] != ")":
                raise _Unsupported("unbalanced parentheses in the logical expression")
            self.pos += 1
            return inner
        return _Leaf(self._number())


def _leaves(expr: _Expr) -> list[int]:
    if isinstance(expr, _Leaf):
        return [expr.index]
    if isinstance(expr, _Op):
        return _leaves(expr.left) + _leaves(expr.right)
    return _leaves(expr.child)


def _has_count(expr: _Expr) -> bool:
    if isinstance(expr, _Count):
        return True
    if isinstance(expr, _Op):
        return _has_count(expr.left) or _has_count(expr.right)
    return False


def _holds_without_matches(expr: _Expr) -> bool:
    """Whether the expression is true when no subsignature matched at all (``0=0``, ``0<2``, ``(0|1)=0``...).

    A counted block counts 0 when nothing in it matched, and a ``,Y`` distinct count then fails.
    """
    if isinstance(expr, _Leaf):
        return False
    if isinstance(expr, _Op):
        left, right = _holds_without_matches(expr.left), _holds_without_matches(expr.right)
        return (left and right) if expr.op == "&" else (left or right)
    return _COMPARE[expr.op](0, expr.value) and not expr.distinct


def _condition(expr: _Expr, terms: list[_Term]) -> str:
    if isinstance(expr, _Leaf):
        return terms[expr.index].present()
    if isinstance(expr, _Op):
        joiner = " and " if expr.op == "&" else " or "
        return f"({_condition(expr.left, terms)}{joiner}{_condition(expr.right, terms)})"
    return _count_condition(expr, terms)


def _count_condition(expr: _Count, terms: list[_Term]) -> str:
    child = expr.child
    distinct = expr.distinct or 0
    if isinstance(child, _Leaf):
        term = terms[child.index]
        out = term.compare(expr.op, expr.value)
        if distinct > 1:
            return "false"
        return f"({out} and {term.present()})" if distinct == 1 else out
    if _has_count(child):
        raise _Unsupported("unsupported: a match-count modifier inside a counted block")
    indices = sorted(set(_leaves(child)))
    value = _condition(child, terms)
    cmp = _COMPARE[expr.op]
    counts = [terms[i].count() for i in indices]
    any_present = "(" + " or ".join(terms[i].present() for i in indices) + ")"
    if all(c is not None for c in counts):
        total = "(" + " + ".join(c for c in counts if c) + ")"
        sum_cmp = f"{total} {'==' if expr.op == '=' else expr.op} {expr.value}"
    elif all(cmp(n, expr.value) == cmp(1, expr.value) for n in range(2, expr.value + 3)):
        sum_cmp = _truth(cmp(0, expr.value), cmp(1, expr.value), any_present)
    else:
        raise _Unsupported("unsupported: counting matches of a block holding anchored, PCRE or byte-compare subsigs")
    zero_passes = cmp(0, expr.value) and distinct == 0
    out = f"(not {value} or {sum_cmp})" if zero_passes else f"({value} and {sum_cmp})"
    if distinct > len(indices):
        return "false"
    if distinct > 0:
        out = f"({out} and {distinct} of ({', '.join(terms[i].present() for i in indices)}))"
    return out


# -- target description block ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetDescription:
    """The parsed target description block."""

    target: int
    engine: tuple[int, int] | None = None
    file_size: tuple[int, int] | None = None
    entry_point: tuple[int, int] | None = None
    number_of_sections: tuple[int, int] | None = None
    container: str | None = None
    intermediates: tuple[str, ...] | None = None


def _parse_range(key: str, value: str) -> tuple[int, int]:
    m = _RANGE_RE.match(value)
    if not m or int(m[1]) > int(m[2]):
        raise _Unsupported(f"{key} wants a range min-max, got {value!r}")
    return int(m[1]), int(m[2])


def _parse_tdb(text: str, source: str, lineno: int) -> TargetDescription:
    values: dict[str, str] = {}
    for i, item in enumerate(text.split(",")):
        key, sep, value = item.partition(":")
        if key in values:
            raise _Unsupported(f"{key} given twice in the target description block")
        if key == "Engine" and i != 0:
            raise _Unsupported("Engine must come first in the target description block")
        if key in ("IconGroup1", "IconGroup2"):
            raise _Unsupported(f"unsupported: {key} (icon matching needs .idb icon signatures)")
        if key == "HandlerType":
            raise _Unsupported("unsupported: HandlerType (re-scanning a file as another type)")
        if key not in ("Engine", "Target", "FileSize", "EntryPoint", "NumberOfSections", "Container", "Intermediates"):
            raise _Unsupported(f"unknown target description key {key!r}")
        if not sep or not value:
            raise _Unsupported(f"{key} needs a value")
        values[key] = value
    if "Target" not in values:
        raise _Unsupported("no Target in the target description block")
    if set(values) - {"Target", "Engine"} and "Engine" not in values:
        raise _Unsupported("attributes other than Target need an Engine range first (ClamAV's compatibility rule)")
    target = parse_target(values["Target"], source, lineno)
    container = values.get("Container")
    if container is not None and not _CL_TYPE_RE.match(container):
        raise _Unsupported(f"bad Container type {container!r}")
    intermediates = None
    if "Intermediates" in values:
        intermediates = tuple(values["Intermediates"].split(">"))
        if len(intermediates) > 16 or not all(_CL_TYPE_RE.match(t) for t in intermediates):
            raise _Unsupported(f"bad Intermediates {values['Intermediates']!r} (up to 16 CL_TYPE_* joined by '>')")
    ranges = {
        k: _parse_range(k, values[k]) for k in ("Engine", "FileSize", "EntryPoint", "NumberOfSections") if k in values
    }
    if ("EntryPoint" in ranges or "NumberOfSections" in ranges) and target not in (TARGET_PE, TARGET_ELF):
        raise _Unsupported("unsupported: EntryPoint/NumberOfSections need Target:1 (PE) or Target:6 (ELF)")
    return TargetDescription(
        target=target,
        engine=ranges.get("Engine"),
        file_size=ranges.get("FileSize"),
        entry_point=ranges.get("EntryPoint"),
        number_of_sections=ranges.get("NumberOfSections"),
        container=container,
        intermediates=intermediates,
    )


def _tdb_conditions(tdb: TargetDescription) -> tuple[list[str], set[str]]:
    conds = [target_gate(tdb.target)]
    modules: set[str] = set()
    if tdb.file_size:
        conds.append(f"filesize >= {tdb.file_size[0]} and filesize <= {tdb.file_size[1]}")
    module = _EXEC_MODULES.get(tdb.target)
    if tdb.entry_point and module:
        modules.add(module)
        low, high = tdb.entry_point
        conds.append(f"{module}.entry_point >= {low} and {module}.entry_point <= {high}")
    if tdb.number_of_sections and module:
        modules.add(module)
        low, high = tdb.number_of_sections
        conds.append(f"{module}.number_of_sections >= {low} and {module}.number_of_sections <= {high}")
    if tdb.container == "CL_TYPE_ANY":
        conds.append('garrison_container == ""')
    elif tdb.container:
        conds.append(f"garrison_container == {yara_string_literal(tdb.container)}")
    if tdb.intermediates:
        layers = ">".join("[^>]+" if t == "CL_TYPE_ANY" else t for t in tdb.intermediates)
        conds.append(f"garrison_intermediates matches /(^|>){layers}$/")
    return conds, modules


# -- subsignature parsing -------------------------------------------------------------------------------------


_BCOMP_RE = re.compile(r"(\d+)\((<<|>>)(0x[0-9a-fA-F]+|\d+)#([a-z]+)(0x[0-9a-fA-F]+|\d+)#([^)]*)\)\Z")
_BCOMP_CMP_RE = re.compile(r"([<>=])(0x[0-9a-fA-F]+|\d+)\Z")
_PCRE_FLAGS = set("grei smxAEU".replace(" ", ""))
_UINT = {1: "uint8", 2: "uint16", 4: "uint32"}


def _int(text: str) -> int:
    return int(text, 16) if text.lower().startswith("0x") else int(text)


@dataclass
class _Context:
    target: int
    source: str
    lineno: int
    terms: list[_Term] = field(default_factory=list)
    modules: set[str] = field(default_factory=set)


def _hex_term(index: int, text: str, ctx: _Context) -> _Term:
    parts = text.split(":")
    if len(parts) in (1, 3):
        offset_text, hex_text, rest = "*", parts[0], parts[1:]
    elif len(parts) in (2, 4):
        offset_text, hex_text, rest = parts[0], parts[1], parts[2:]
    else:
        raise _Unsupported(f"bad subsignature {text!r}")
    opts = ""
    if rest:
        if rest[0] != "" or not rest[1]:
            raise _Unsupported(f"bad subsignature modifiers in {text!r} (expected ::options)")
        opts = rest[1]
        if set(opts) - set("iwfa"):
            raise _Unsupported(f"unknown subsignature modifier in {opts!r} (i, w, f, a)")
    offset = parse_offset(offset_text, ctx.target, ctx.source, ctx.lineno)
    pattern = parse_hexsig(hex_text, ctx.source, ctx.lineno)
    if "f" in opts:
        pattern = pattern.fullword()
    if "i" in opts:
        pattern = pattern.with_nocase()
    variants: list[YaraPattern] = []
    if "w" in opts:
        variants.append(render_pattern(pattern.widened(), ctx.source, ctx.lineno))
    if "w" not in opts or "a" in opts:
        variants.append(render_pattern(pattern, ctx.source, ctx.lineno))
    module = offset.module(ctx.target)
    if module:
        ctx.modules.add(module)
    bounds = offset.bounds(ctx.target)
    names = [f"s{index}"] if len(variants) == 1 else [f"s{index}w", f"s{index}a"]
    strings = [SubjectString(n, v, bounds) for n, v in zip(names, variants, strict=True)]
    return _Term(strings=strings, module=module)


def _bcomp_term(text: str, index: int, ctx: _Context) -> _Term:
    m = _BCOMP_RE.match(text)
    if not m:
        raise _Unsupported(f"bad byte-compare subsignature {text!r}")
    trigger, direction, off_text, options, size_text, comparisons = m.groups()
    trigger_index = int(trigger)
    if trigger_index >= index:
        raise _Unsupported("a byte-compare subsignature must refer to an earlier subsignature")
    term = ctx.terms[trigger_index]
    if term.presence is not None or len(term.strings) != 1:
        raise _Unsupported("unsupported: byte compare triggered by a PCRE, byte-compare or ascii+wide subsig")
    subject = term.strings[0]
    if subject.bounds is not None or subject.needs_loop:
        raise _Unsupported("unsupported: byte compare triggered by an anchored or class-bounded subsignature")
    kind, endian, exact = options[0], options[1:2], options[2:]
    if kind in "hda" and kind:
        raise _Unsupported(f"unsupported: byte compare of text numbers ({kind!r}); only binary 'i' is translated")
    if kind != "i" or endian not in ("l", "b") or exact not in ("", "e"):
        raise _Unsupported(f"bad byte-compare options {options!r} (binary needs i, then l or b)")
    size = _int(size_text)
    if size not in _UINT:
        raise _Unsupported(f"unsupported: byte compare of {size} bytes (YARA reads 1, 2 or 4)")
    sets = comparisons.split(",")
    if not 1 <= len(sets) <= 2:
        raise _Unsupported("a byte compare takes one or two comparisons")
    sign = "+" if direction == ">>" else "-"
    reader = _UINT[size] + ("be" if endian == "b" and size > 1 else "")
    # ClamAV evaluates the byte compare at the trigger's last match.
    value = f"{reader}(@{subject.ident}[#{subject.ident}] {sign} {_int(off_text)})"
    tests = []
    for item in sets:
        cm = _BCOMP_CMP_RE.match(item)
        if not cm:
            raise _Unsupported(f"bad byte-compare comparison {item!r}")
        tests.append(f"{value} {'==' if cm[1] == '=' else cm[1]} {_int(cm[2])}")
    presence = f"(#{subject.ident} > 0 and (defined ({' and '.join(tests)}) and {' and '.join(tests)}))"
    return _Term(presence=presence, binary=True)


def _translate_pcre(regex: str, flags: str) -> str:
    if not regex:
        raise _Unsupported("empty PCRE")
    if "(*" in regex:
        raise _Unsupported("unsupported: PCRE control verbs such as (*UTF)")
    body: list[str] = []
    escaped = False
    for ch in regex:
        if escaped:
            body.append(ch)
            escaped = False
        elif ch == "\\":
            body.append(ch)
            escaped = True
        elif ch == "/":
            body.append("\\/")
        else:
            body.append(ch)
    inline = "".join(f for f in "ismx" if f in flags)
    prefix = f"(?{inline})" if inline else ""
    return f"/{prefix}{''.join(body)}/"


def _check_regex(pattern: str) -> None:
    compiler = yara_x.Compiler()
    try:
        compiler.add_source(f"rule pcre_check {{ strings: $a = {pattern} condition: $a }}")
    except yara_x.CompileError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = next((ln.split("^", 1)[-1].strip(" ^") for ln in lines if "^" in ln), lines[0] if lines else "")
        raise _Unsupported(f"unsupported PCRE for YARA: {detail or lines[0]}") from None


def _pcre_term(index: int, text: str, ctx: _Context) -> _Term:
    first = text.index("/")
    last = text.rindex("/")
    if first == last:
        raise _Unsupported("PCRE subsignature with mismatched '/' delimiters")
    head, regex, flags = text[:first], text[first + 1 : last], text[last + 1 :]
    offset_text, _, trigger_text = head.rpartition(":")
    if not trigger_text:
        raise _Unsupported("PCRE subsignature must start with a trigger expression")
    if set(flags) - _PCRE_FLAGS:
        raise _Unsupported(f"unknown PCRE flags {flags!r} (g r e i s m x A E U)")
    trigger = _ExprParser(trigger_text).parse()
    if any(i >= index for i in _leaves(trigger)):
        raise _Unsupported("a PCRE trigger may only refer to earlier subsignatures")
    offset = parse_offset(offset_text or "*", ctx.target, ctx.source, ctx.lineno)
    pattern = _translate_pcre(regex, flags)
    _check_regex(pattern)
    module = offset.module(ctx.target)
    if module:
        ctx.modules.add(module)
    bounds = offset.bounds(ctx.target)
    extra: tuple[str, ...] = ()
    if bounds is None and "A" in flags:
        bounds = ("0", None)
    elif bounds is not None and bounds[1] is None and "r" in flags:
        extra, bounds = (f"@@ >= {bounds[0]}",), None
    elif bounds is not None and bounds[1] is not None and "e" in flags:
        extra = (f"@@ + !! <= {bounds[1]}",)
    subject = SubjectString(f"s{index}", YaraPattern(pattern), bounds, extra)
    found = guard_undefined(subject.present(), module)
    presence = f"({_condition(trigger, ctx.terms)} and {found})"
    return _Term(strings=[subject], presence=presence, binary=True, presence_only="g" in flags)


def _subsig_term(index: int, text: str, ctx: _Context) -> _Term:
    if not text:
        raise _Unsupported("empty subsignature")
    if text.startswith("$"):
        raise _Unsupported("unsupported: macro subsignatures (${min-max}id$)")
    if text.startswith("fuzzy_img#"):
        raise _Unsupported("unsupported: fuzzy image hash subsignatures")
    if "/" in text:
        return _pcre_term(index, text, ctx)
    if "(" in text and text.count("#") >= 2:
        return _bcomp_term(text, index, ctx)
    return _hex_term(index, text, ctx)


# -- the signature --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogicalSignature:
    """One ``.ldb`` signature.

    Attributes:
        name: the ClamAV detection name.
        tdb: the parsed target description block (``tdb.engine`` is the Engine flevel range; not enforced by
            ``to_yara``).
        expression: the logical expression as written.
        subsigs: the subsignatures as written.
        source, line: where the line came from.
    """

    name: str
    tdb: TargetDescription
    expression: str
    subsigs: tuple[str, ...]
    source: str
    line: int
    _strings: tuple[SubjectString, ...] = field(repr=False, compare=False, default=())
    _condition: str = field(repr=False, compare=False, default="false")
    _imports: frozenset[str] = field(repr=False, compare=False, default=frozenset())
    _needs_match: bool = field(repr=False, compare=False, default=True)

    @property
    def target(self) -> int:
        return self.tdb.target

    @property
    def needs_a_match(self) -> bool:
        """True when the signature can only match an object in which one of its patterns was found.

        Such signatures can be checked only for objects where a shared prefilter found one of their patterns,
        instead of evaluating their conditions for every object.
        """
        return self._needs_match

    @property
    def patterns(self) -> tuple[str, ...]:
        """The YARA patterns (hex strings or regexes, with their modifiers) the rule declares."""
        return tuple(s.pattern.text for s in self._strings)

    @property
    def min_flevel(self) -> int:
        """The lowest engine functionality level the ``Engine:`` range admits (0 when there is none)."""
        return self.tdb.engine[0] if self.tdb.engine else 0

    @property
    def max_flevel(self) -> int | None:
        return self.tdb.engine[1] if self.tdb.engine else None

    @property
    def imports(self) -> frozenset[str]:
        """yara-x modules the rule text needs (``import "pe"`` etc. must precede it in the compiled source)."""
        return self._imports

    def to_yara(self, rule_id: str) -> str:
        """One complete YARA rule (without import lines) named ``rule_id``."""
        strings = "".join(
            s.declaration(re.search(rf"[$#@!]{s.ident}\b", self._condition) is not None) for s in self._strings
        )
        return (
            f"rule {rule_id} {{\n{meta_block(self.name, 'logical', self.source, self.line)}"
            f"  strings:\n{strings}"
            f"  condition:\n    {self._condition}\n}}\n"
        )


def parse_ldb_line(line: str, source: str, lineno: int) -> LogicalSignature:
    """Parse one ``.ldb`` line.

    Raises:
        SignatureError: the line is malformed, breaks ClamAV's rules, or uses a construct that cannot be
            translated (the reason then starts with ``unsupported:``); the message starts with ``source:lineno``.
    """
    text = line.rstrip("\r\n")
    fields = text.split(";")
    try:
        if len(fields) < 4:
            raise _Unsupported("expected Name;TargetDescriptionBlock;LogicalExpression;Subsig0[;Subsig1...]")
        name, tdb_text, expr_text, *subsigs = fields
        check_name(name, source, lineno)
        if len(subsigs) > MAX_SUBSIGS:
            raise _Unsupported(f"more than {MAX_SUBSIGS} subsignatures")
        tdb = _parse_tdb(tdb_text, source, lineno)
        expr = _ExprParser(expr_text).parse()
        if max(_leaves(expr)) + 1 != len(subsigs):
            raise _Unsupported(
                f"the expression refers to subsignatures up to {max(_leaves(expr))} but {len(subsigs)} are given"
            )
        ctx = _Context(tdb.target, source, lineno)
        for index, subsig in enumerate(subsigs):
            ctx.terms.append(_subsig_term(index, subsig, ctx))
        conds, modules = _tdb_conditions(tdb)
        conds.append(_condition(expr, ctx.terms))
    except _Unsupported as exc:
        raise SignatureError(source, lineno, str(exc)) from None
    strings = tuple(s for term in ctx.terms for s in term.strings)
    if not strings:
        raise SignatureError(source, lineno, "unsupported: a logical signature without any pattern subsignature")
    return LogicalSignature(
        name=name,
        tdb=tdb,
        expression=expr_text,
        subsigs=tuple(subsigs),
        source=source,
        line=lineno,
        _strings=strings,
        _condition=" and\n    ".join(conds),
        _imports=frozenset(modules | ctx.modules),
        _needs_match=not _holds_without_matches(expr),
    )
