"""ClamAV extended body signatures (``.ndb``) parsed and translated into YARA rules.

A line is ``Name:TargetType:Offset:HexSignature[:min_flevel[:max_flevel]]``. ``parse_ndb_line`` checks it and
returns a ``BodySignature``; ``BodySignature.to_yara`` writes one YARA rule for yara-x. The rule text carries no
``import`` lines: ``BodySignature.imports`` names the modules (``pe``, ``elf``, ``macho``) the caller must import
once at the top of the source it compiles.

Rules gate on the object being scanned through globals the caller defines in the compiler and the scanner sets
per object (see ``GLOBALS``). The offset helpers here (``parse_offset``, ``SubjectString``) are shared with the
``.ldb`` translator. Nothing here compiles or scans; flevel gating is left to the database loader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from garrison.engine.errors import SignatureError
from garrison.engine.filetype import (
    KNOWN_TARGETS,
    TARGET_ANY,
    TARGET_ELF,
    TARGET_HTML,
    TARGET_MACHO,
    TARGET_PE,
    TARGET_TEXT,
)
from garrison.engine.signatures.hexsig import HexPattern, YaraPattern, parse_hexsig

#: The yara-x globals every generated rule may read, with the default values to define them with.
GLOBALS: dict[str, bool | int | str] = {
    "garrison_target": 0,
    "garrison_normalized": False,
    "garrison_type": "",
    "garrison_container": "",
    "garrison_intermediates": "",
}

_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+\Z")
_NUM = r"(\d+)"
_OFFSET_RES = (
    ("abs", re.compile(rf"{_NUM}\Z")),
    ("eof", re.compile(rf"EOF-{_NUM}\Z")),
    ("ep", re.compile(r"EP([+-])(\d+)\Z")),
    ("section", re.compile(rf"S{_NUM}\+{_NUM}\Z")),
    ("whole_section", re.compile(rf"SE{_NUM}\Z")),
    ("last_section", re.compile(rf"SL\+{_NUM}\Z")),
)
_EXECUTABLE_TARGETS = {TARGET_PE: "pe", TARGET_ELF: "elf", TARGET_MACHO: "macho"}


@dataclass(frozen=True)
class Offset:
    """Where a (sub)signature must start. ``kind`` is one of any, abs, eof, ep, section, whole_section,
    last_section; ``value`` is n (signed for ep); ``section`` is x for Sx/SEx; ``shift`` is MaxShift."""

    kind: str
    value: int = 0
    section: int = 0
    shift: int | None = None
    text: str = "*"

    def module(self, target: int) -> str | None:
        """The yara-x module this offset reads, if any."""
        return None if self.kind in ("any", "abs", "eof") else _EXECUTABLE_TARGETS[target]

    def bounds(self, target: int) -> tuple[str, str | None] | None:
        """YARA expressions (lowest start, highest start or None when exact); None for ``*``."""
        if self.kind == "any":
            return None
        if self.kind == "abs":
            base = str(self.value)
        elif self.kind == "eof":
            base = f"filesize - {self.value}"
        elif self.kind == "ep":
            mod = _EXECUTABLE_TARGETS[target]
            base = f"{mod}.entry_point {'+' if self.value >= 0 else '-'} {abs(self.value)}"
        elif self.kind == "whole_section":
            start, size = _section_fields(target, str(self.section))
            return start, f"{start} + {size}"
        else:
            index = str(self.section) if self.kind == "section" else _last_section(target)
            start, _ = _section_fields(target, index)
            base = f"{start} + {self.value}"
        return base, (f"{base} + {self.shift}" if self.shift is not None else None)


def _section_fields(target: int, index: str) -> tuple[str, str]:
    if target == TARGET_PE:
        return f"pe.sections[{index}].raw_data_offset", f"pe.sections[{index}].raw_data_size"
    return f"elf.sections[{index}].offset", f"elf.sections[{index}].size"


def _last_section(target: int) -> str:
    return "pe.number_of_sections - 1" if target == TARGET_PE else "elf.number_of_sections - 1"


def parse_offset(text: str, target: int, source: str, lineno: int) -> Offset:
    """Parse a ClamAV offset (``*``, ``n``, ``EOF-n``, ``EP+n``, ``Sx+n``, ``SEx``, ``SL+n``, each but ``*``
    optionally followed by ``,MaxShift``).

    Raises:
        SignatureError: malformed, not allowed for ``target``, or unsupported (``$id`` macro groups, ``VI``).
    """
    if text == "*":
        return Offset("any")
    if text.startswith("$"):
        raise SignatureError(source, lineno, f"unsupported: macro group offset {text!r}")
    if text.startswith("VI"):
        raise SignatureError(source, lineno, "unsupported: VI (PE version information) offsets")
    base, _, shift_text = text.partition(",")
    shift: int | None = None
    if _:
        if not shift_text.isdigit():
            raise SignatureError(source, lineno, f"bad MaxShift in offset {text!r}")
        shift = int(shift_text)
    for kind, pattern in _OFFSET_RES:
        m = pattern.match(base)
        if m is None:
            continue
        if kind in ("abs", "eof"):
            return Offset(kind, int(m[1]), shift=shift, text=text)
        if target not in _EXECUTABLE_TARGETS:
            raise SignatureError(source, lineno, f"offset {text!r} needs target 1 (PE), 6 (ELF) or 9 (Mach-O)")
        if target == TARGET_MACHO and kind != "ep":
            raise SignatureError(source, lineno, f"unsupported: section offset {text!r} for Mach-O")
        if kind == "ep":
            value = int(m[2]) * (1 if m[1] == "+" else -1)
            return Offset("ep", value, shift=shift, text=text)
        if kind == "section":
            return Offset("section", int(m[2]), section=int(m[1]), shift=shift, text=text)
        if kind == "whole_section":
            if shift is not None:
                raise SignatureError(source, lineno, f"SEx offsets take no MaxShift: {text!r}")
            return Offset("whole_section", section=int(m[1]), text=text)
        return Offset("last_section", int(m[1]), shift=shift, text=text)
    raise SignatureError(source, lineno, f"bad offset {text!r}")


def target_gate(target: int) -> str:
    """YARA condition limiting a rule to the objects its ClamAV target type applies to."""
    if target == TARGET_ANY:
        return "not garrison_normalized"
    if target in (TARGET_HTML, TARGET_TEXT):
        return f"garrison_normalized and garrison_target == {target}"
    return f"not garrison_normalized and garrison_target == {target}"


def yara_string_literal(text: str) -> str:
    """``text`` as a double-quoted YARA string."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    return '"' + "".join(out) + '"'


def meta_block(name: str, kind: str, source: str, lineno: int) -> str:
    return (
        f"  meta:\n    name = {yara_string_literal(name)}\n    kind = {yara_string_literal(kind)}\n"
        f"    db = {yara_string_literal(source)}\n    line = {lineno}\n"
    )


def check_name(name: str, source: str, lineno: int) -> None:
    if not _NAME_RE.match(name):
        raise SignatureError(source, lineno, f"bad signature name {name!r} (letters, digits, '-', '.', '_')")


def parse_flevels(fields: list[str], source: str, lineno: int) -> tuple[int | None, int | None]:
    values: list[int | None] = [None, None]
    for i, text in enumerate(fields[:2]):
        if not text.isdigit():
            raise SignatureError(source, lineno, f"bad functionality level {text!r}")
        values[i] = int(text)
    return values[0], values[1]


@dataclass(frozen=True)
class SubjectString:
    """One YARA pattern plus the per-match test (offset window, leading class) ClamAV applies to it."""

    ident: str  # without the leading "$"
    pattern: YaraPattern
    bounds: tuple[str, str | None] | None = None
    extra: tuple[str, ...] = field(default=())

    @property
    def needs_loop(self) -> bool:
        return bool(self.pattern.left or self.extra)

    def _predicate(self, i: str) -> str:
        start = f"@{self.ident}[{i}]"
        parts: list[str] = []
        if self.bounds is not None:
            low, high = self.bounds
            parts.append(f"{start} == {low}" if high is None else f"{start} >= {low} and {start} <= {high}")
        parts += [check.condition(start) for check in self.pattern.left]
        parts += [e.replace("@@", start).replace("!!", f"!{self.ident}[{i}]") for e in self.extra]
        return " and ".join(parts)

    def present(self) -> str:
        if not self.needs_loop:
            if self.bounds is None:
                return f"${self.ident}"
            low, high = self.bounds
            return f"${self.ident} at {low}" if high is None else f"${self.ident} in ({low}..{high})"
        return f"for any i in (1..#{self.ident}) : ({self._predicate('i')})"

    def count(self) -> str | None:
        """YARA integer expression for the number of valid matches, or None when only ``at_least`` works."""
        return f"#{self.ident}" if self.bounds is None and not self.needs_loop else None

    def at_least(self, n: int) -> str:
        if n <= 0:
            return "true"
        if n == 1:
            return self.present()
        if self.count() is not None:
            return f"#{self.ident} >= {n}"
        return f"(#{self.ident} >= {n} and for {n} i in (1..#{self.ident}) : ({self._predicate('i')}))"

    def declaration(self, used: bool) -> str:
        prefix = "" if used else "_"
        return f"    ${prefix}{self.ident} = {self.pattern.text}\n"


def guard_undefined(expr: str, module: str | None) -> str:
    """Module fields are undefined on objects the module cannot parse; make that plain ``false``."""
    return f"(defined ({expr}) and {expr})" if module else expr


def render_pattern(pattern: HexPattern, source: str, lineno: int) -> YaraPattern:
    try:
        return pattern.render()
    except ValueError as exc:
        raise SignatureError(source, lineno, str(exc)) from None


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a bucketed pattern's match must start, checked from its match offsets after the scan.

    ``kind`` is ``any``, ``abs`` (``n``) or ``eof`` (``EOF-n``); ``shift`` is ClamAV's MaxShift.
    """

    kind: str
    value: int = 0
    shift: int = 0

    def accepts(self, start: int, size: int) -> bool:
        if self.kind == "any":
            return True
        base = self.value if self.kind == "abs" else size - self.value
        return base <= start <= base + self.shift


@dataclass(frozen=True)
class BodySignature:
    """One ``.ndb`` signature.

    Attributes:
        name: the ClamAV detection name.
        target: the TargetType number (see ``garrison.engine.filetype``).
        offset: the offset field as written (``*``, ``EP+10,5``...).
        hexsig: the hex signature as written.
        min_flevel, max_flevel: the optional functionality-level range (not enforced by ``to_yara``).
        source, line: where the line came from.
    """

    name: str
    target: int
    offset: str
    hexsig: str
    min_flevel: int | None
    max_flevel: int | None
    source: str
    line: int
    _offset: Offset = field(repr=False, compare=False, default=Offset("any"))
    _pattern: YaraPattern = field(repr=False, compare=False, default=YaraPattern("{ 00 }"))

    @property
    def imports(self) -> frozenset[str]:
        """yara-x modules the rule text needs (``import "pe"`` etc. must precede it in the compiled source)."""
        module = self._offset.module(self.target)
        return frozenset({module}) if module else frozenset()

    @property
    def pattern(self) -> str:
        """The YARA pattern (hex string or regex) the signature's bytes become."""
        return self._pattern.text

    def placement(self) -> Placement | None:
        """The offset check as data when it needs nothing but the match offsets and the object's size.

        Such signatures can share one YARA rule with thousands of others and be told apart afterwards, which
        saves evaluating thousands of rule conditions for every object; None when the check needs a yara-x
        module (entry point, sections) or per-match tests in the rule.
        """
        if self._offset.kind not in ("any", "abs", "eof") or self._pattern.left:
            return None
        return Placement(self._offset.kind, self._offset.value, self._offset.shift or 0)

    def to_yara(self, rule_id: str) -> str:
        """One complete YARA rule (without import lines) named ``rule_id``."""
        subject = SubjectString("a", self._pattern, self._offset.bounds(self.target))
        match = guard_undefined(subject.present(), self._offset.module(self.target))
        return (
            f"rule {rule_id} {{\n{meta_block(self.name, 'body', self.source, self.line)}"
            f"  strings:\n{subject.declaration(True)}"
            f"  condition:\n    {target_gate(self.target)} and {match}\n}}\n"
        )


def parse_target(text: str, source: str, lineno: int) -> int:
    if not text.isdigit() or int(text) not in KNOWN_TARGETS:
        raise SignatureError(source, lineno, f"unknown target type {text!r}")
    return int(text)


def parse_ndb_line(line: str, source: str, lineno: int) -> BodySignature:
    """Parse one ``.ndb`` line.

    Raises:
        SignatureError: the line is malformed, breaks ClamAV's rules, or uses an unsupported feature (``$id``
            macro offsets, ``VI``, negated classes...); the message starts with ``source:lineno``.
    """
    text = line.rstrip("\r\n")
    fields = text.split(":")
    if len(fields) < 4 or len(fields) > 6:
        raise SignatureError(source, lineno, "expected Name:TargetType:Offset:HexSignature[:min_fl[:max_fl]]")
    name, target_text, offset_text, hex_text = fields[:4]
    check_name(name, source, lineno)
    target = parse_target(target_text, source, lineno)
    offset = parse_offset(offset_text, target, source, lineno)
    min_fl, max_fl = parse_flevels(fields[4:], source, lineno)
    pattern = parse_hexsig(hex_text, source, lineno, plain_min=3)
    yara_pattern = render_pattern(pattern, source, lineno)
    return BodySignature(
        name=name,
        target=target,
        offset=offset_text,
        hexsig=hex_text,
        min_flevel=min_fl,
        max_flevel=max_fl,
        source=source,
        line=lineno,
        _offset=offset,
        _pattern=yara_pattern,
    )
