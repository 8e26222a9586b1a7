"""The signature database: loads ClamAV-format databases and YARA rules, compiles them, caches the result.

Loading dispatches on file extensions like ClamAV (a directory, single files, or CVD/CLD/CUD containers).
Body and logical signatures are translated to YARA and compiled, together with the YARA rules, into one yara-x
ruleset, so every object is matched by one pass of a compiled engine. Hash signatures go into compact sorted
arrays (:mod:`.hashdb`). The compiled form is cached on disk, keyed by the sources' names, sizes and
modification times, so a later load is a memory map and a deserialisation.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yara_x

from garrison import __version__
from garrison.engine.errors import DatabaseError, SignatureError
from garrison.engine.filetype import TARGET_HTML, TARGET_TEXT
from garrison.engine.results import Detection, DetectionKind
from garrison.engine.signatures import cvd
from garrison.engine.signatures.hashdb import HashTable, HashTableBuilder, parse_hash_line
from garrison.engine.signatures.ignore import IgnoreList
from garrison.engine.signatures.ldb import LogicalSignature, parse_ldb_line
from garrison.engine.signatures.ndb import GLOBALS, BodySignature, Placement, parse_ndb_line, target_gate

logger = logging.getLogger(__name__)

#: The ClamAV functionality level this engine claims: signatures that need a newer engine are skipped.
ENGINE_FLEVEL = 216

HASH_EXTENSIONS = {".hdb", ".hsb"}
PUA_HASH_EXTENSIONS = {".hdu", ".hsu"}
ALLOW_EXTENSIONS = {".fp", ".sfp"}
IGNORE_EXTENSIONS = {".ign", ".ign2"}
BODY_EXTENSIONS = {".ndb"}
LOGICAL_EXTENSIONS = {".ldb"}
PUA_BODY_EXTENSIONS = {".ndu"}
PUA_LOGICAL_EXTENSIONS = {".ldu"}
YARA_EXTENSIONS = {".yar", ".yara"}
CONTAINER_EXTENSIONS = {".cvd", ".cld", ".cud"}
#: ClamAV formats recognised but not (yet) matched; loading them gives one warning per file.
UNSUPPORTED_EXTENSIONS = {
    ".mdb", ".msb", ".mdu", ".msu", ".imp", ".cdb", ".cbc", ".pdb", ".gdb", ".wdb", ".ftm", ".crb", ".cat",
    ".idb", ".pwdb", ".db", ".zmd", ".rmd", ".hdbx", ".ndbx",
}  # fmt: skip
#: Files that travel with databases and carry no signatures.
QUIET_EXTENSIONS = {".info", ".cfg", ".sign", ""}
KNOWN_EXTENSIONS = (
    HASH_EXTENSIONS | PUA_HASH_EXTENSIONS | ALLOW_EXTENSIONS | IGNORE_EXTENSIONS | BODY_EXTENSIONS
    | LOGICAL_EXTENSIONS | PUA_BODY_EXTENSIONS | PUA_LOGICAL_EXTENSIONS | YARA_EXTENSIONS | CONTAINER_EXTENSIONS
)  # fmt: skip

CACHE_FORMAT = 4
#: Body signatures checkable from match offsets alone share YARA rules, this many patterns per rule.
BUCKET_SIZE = 1000


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """One database file or container as loaded: what ``garrison db info`` shows."""

    name: str
    kind: str
    signatures: int
    version: int | None = None
    build_time: str | None = None
    functionality_level: int | None = None
    signed: bool | None = None


@dataclass(frozen=True, slots=True)
class BucketEntry:
    """A body signature that shares a YARA rule with others: who it is, and where its match must start."""

    name: str
    source: str
    line: int
    placement: Placement


@dataclass
class LoadReport:
    """What a load found: signature counts per kind, the sources, and every warning."""

    counts: Counter[str] = field(default_factory=Counter)
    sources: list[SourceInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    from_cache: bool = False

    @property
    def signatures(self) -> int:
        return sum(v for k, v in self.counts.items() if k in ("hash", "body", "logical", "yara"))


class Database:
    """Compiled signatures, ready to match objects.

    A Database may be shared by forked processes; each process creates its own yara-x scanner on first use.
    """

    def __init__(
        self,
        hashes: HashTable,
        allow: HashTable,
        rules: yara_x.Rules | None,
        report: LoadReport,
        yara_sources: dict[str, str],
        normalized_targets: frozenset[int],
        buckets: list[BucketEntry] | None = None,
        logical: SecondStage | None = None,
    ) -> None:
        self.hashes = hashes
        self._buckets = buckets or []
        self._logical = logical
        self.allow = allow
        self.rules = rules
        self.report = report
        self._yara_sources = yara_sources
        self.normalized_targets = normalized_targets
        self.hash_algorithms = tuple(sorted(set(hashes.algorithms) | set(allow.algorithms)))
        self._hash_tables = (hashes, allow)
        self._scanners: dict[tuple[int, int], yara_x.Scanner] = {}

    @classmethod
    def empty(cls) -> Database:
        """A database with no signatures: only the built-in checks (EICAR) apply."""
        empty = HashTableBuilder().build()
        return cls(empty, empty, None, LoadReport(), {}, frozenset())

    # -- matching -----------------------------------------------------------------------------------------

    def algorithms_for(self, size: int) -> tuple[str, ...]:
        """The digests worth computing for an object of this size (none, for most sizes)."""
        return tuple(a for a in self.hash_algorithms if any(t.needs(a, size) for t in self._hash_tables))

    def lookup_hashes(self, digests: dict[str, bytes], size: int) -> list[Detection]:
        found = []
        for algorithm in self.hashes.algorithms:
            if algorithm not in digests:
                continue
            for hit in self.hashes.lookup(algorithm, digests[algorithm], size):
                found.append(Detection(hit.name, DetectionKind.HASH, hit.source, f"line {hit.line}"))
        return found

    def allowed(self, digests: dict[str, bytes], size: int) -> bool:
        """True when the object is on an allow-list (``.fp``/``.sfp``) and must be treated as clean."""
        return any(self.allow.lookup(a, digests[a], size) for a in self.allow.algorithms if a in digests)

    def match(
        self,
        data: bytes,
        *,
        target: int,
        file_type: str,
        container: str = "",
        intermediates: str = "",
        normalized: bool = False,
        timeout: float | None = None,
    ) -> list[Detection]:
        """Body, logical and YARA signatures matching ``data``, an object of the given type and context."""
        if self.rules is None:
            return []
        context = (target, normalized, file_type, container, intermediates, timeout)
        scanner = _prepared(self._get_scanner(), *context)
        found: list[Detection] = []
        prefiltered = False
        for rule in scanner.scan(data).matching_rules:
            if rule.namespace == "bucket":
                found.extend(self._bucket_detections(rule, len(data)))
            elif rule.namespace == "prefilter":
                prefiltered = True
            else:
                found.append(self._detection(rule))
        if prefiltered and self._logical is not None:
            second = _prepared(self._logical.scanner(), *context)
            found.extend(self._detection(rule) for rule in second.scan(data).matching_rules)
        return found

    def _bucket_detections(self, rule: yara_x.Rule, size: int) -> list[Detection]:
        found = []
        for pattern in rule.patterns:
            matches = pattern.matches
            if not matches:
                continue
            entry = self._buckets[int(pattern.identifier[2:])]
            if any(entry.placement.accepts(match.offset, size) for match in matches):
                found.append(Detection(entry.name, DetectionKind.BODY, entry.source, f"line {entry.line}"))
        return found

    def _get_scanner(self) -> yara_x.Scanner:
        if self.rules is None:
            raise RuntimeError("no rules to scan with")
        return _scanner_for(self._scanners, self.rules)

    def _detection(self, rule: yara_x.Rule) -> Detection:
        if rule.namespace == "clamav":
            meta: dict[str, Any] = dict(rule.metadata)
            return Detection(str(meta["name"]), DetectionKind(meta["kind"]), str(meta["db"]), f"line {meta['line']}")
        return Detection(
            f"YARA.{rule.identifier}",
            DetectionKind.YARA,
            self._yara_sources.get(rule.namespace),
            rule.identifier,
        )


def _prepared(
    scanner: yara_x.Scanner,
    target: int,
    normalized: bool,
    file_type: str,
    container: str,
    intermediates: str,
    timeout: float | None,
) -> yara_x.Scanner:
    """The scanner with the globals describing the object set (translated signatures gate on them)."""
    scanner.set_global("garrison_target", target)
    scanner.set_global("garrison_normalized", normalized)
    scanner.set_global("garrison_type", file_type)
    scanner.set_global("garrison_container", container)
    scanner.set_global("garrison_intermediates", intermediates)
    if timeout is not None:
        scanner.set_timeout(max(1, int(timeout)))
    return scanner


class SecondStage:
    """Logical signatures checked only for objects where a shared prefilter found one of their patterns.

    yara-x evaluates every rule's condition for every object (about 70 ns per logical signature), and
    recompiles the conditions each time compiled rules are loaded. A logical signature that cannot match without
    one of its patterns (nearly all of them) therefore lives here instead: its patterns go into a few shared
    prefilter rules, and these rules run only when one of those patterns was found. They are deserialised on
    first use, in each process, so loading a database does not pay for them.
    """

    def __init__(self, rules: yara_x.Rules | None = None, serialized: bytes | None = None) -> None:
        self._rules = rules
        self.serialized = serialized
        self._scanners: dict[tuple[int, int], yara_x.Scanner] = {}

    def rules(self) -> yara_x.Rules:
        if self._rules is None:
            if self.serialized is None:
                raise RuntimeError("second-stage rules without a compiled form")
            self._rules = yara_x.Rules.deserialize_from(io.BytesIO(self.serialized))
        return self._rules

    def serialize(self) -> bytes:
        if self.serialized is None:
            buffer = io.BytesIO()
            self.rules().serialize_into(buffer)
            self.serialized = buffer.getvalue()
        return self.serialized

    def scanner(self) -> yara_x.Scanner:
        return _scanner_for(self._scanners, self.rules())


def _scanner_for(scanners: dict[tuple[int, int], yara_x.Scanner], rules: yara_x.Rules) -> yara_x.Scanner:
    """One scanner per process and thread: a scanner holds the state of the scan in progress, so two threads (the
    agent's real-time worker and a scheduled scan, say) must not share one; a forked worker makes its own."""
    key = (os.getpid(), threading.get_ident())
    scanner = scanners.get(key)
    if scanner is None:
        scanner = scanners[key] = yara_x.Scanner(rules)
    return scanner


# -- loading ------------------------------------------------------------------------------------------------


def load_database(
    paths: Sequence[Path | str],
    *,
    strict: bool = False,
    pua: bool = False,
    flevel: int = ENGINE_FLEVEL,
    cache_dir: Path | None = None,
) -> Database:
    """Load signature databases from files and directories.

    Args:
        paths: database files (any supported extension, or a CVD/CLD/CUD container) and directories of them.
        strict: refuse the whole database on the first malformed signature, instead of skipping it with a
            warning in ``Database.report.warnings``.
        pua: also load the PUA databases (extensions ending in ``u``: ``.hdu``, ``.ndu``...).
        flevel: the functionality level to gate signatures with.
        cache_dir: where to keep the compiled form; None disables caching.

    Raises:
        DatabaseError: a path is missing or unreadable, a container fails verification, ``strict`` is set and a
            signature is malformed, or nothing loadable was found.
    """
    files = _collect_files([Path(p) for p in paths])
    key = _cache_key(files, strict=strict, pua=pua, flevel=flevel)
    if cache_dir is not None:
        cached = _load_cached(cache_dir / key)
        if cached is not None:
            return cached
    database = _Loader(strict=strict, pua=pua, flevel=flevel).load(files)
    if cache_dir is not None:
        _save_cached(database, cache_dir, key)
    return database


def _collect_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            try:
                entries = sorted(p for p in path.iterdir() if p.is_file())
            except OSError as exc:
                raise DatabaseError(f"{path}: cannot list the directory: {exc.strerror}") from None
            files.extend(p for p in entries if p.suffix.lower() in KNOWN_EXTENSIONS | UNSUPPORTED_EXTENSIONS)
        elif path.is_file():
            if path.suffix.lower() not in KNOWN_EXTENSIONS | UNSUPPORTED_EXTENSIONS:
                raise DatabaseError(f"{path}: not a signature database (unknown extension {path.suffix!r})")
            files.append(path)
        else:
            raise DatabaseError(f"{path}: no such file or directory")
    if not files:
        raise DatabaseError("no signature database files found in " + ", ".join(str(p) for p in paths))
    return files


def _cache_key(files: list[Path], **options: object) -> str:
    digest = hashlib.sha256(f"{__version__}:{CACHE_FORMAT}:{sorted(options.items())}".encode())
    for path in files:
        try:
            stat = path.stat()
        except OSError as exc:
            raise DatabaseError(f"{path}: {exc.strerror}") from None
        digest.update(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


class _Loader:
    def __init__(self, *, strict: bool, pua: bool, flevel: int) -> None:
        self.strict = strict
        self.pua = pua
        self.flevel = flevel
        self.report = LoadReport()
        self.hashes = HashTableBuilder()
        self.allow = HashTableBuilder()
        self.ignore = IgnoreList()
        self.rules: list[str] = []
        self.imports: set[str] = set()
        self.yara_files: list[tuple[str, str]] = []
        self.normalized_targets: set[int] = set()
        self.buckets: list[BucketEntry] = []
        self.bucket_patterns: dict[int, list[tuple[int, str]]] = {}
        self.logical_rules: list[str] = []
        self.logical_imports: set[str] = set()
        self.prefilter_patterns: list[str] = []

    def load(self, files: list[Path]) -> Database:
        documents = list(self._documents(files))
        # Ignore lists apply to every other file, whatever order they come in.
        for name, ext, text in documents:
            if ext in IGNORE_EXTENSIONS:
                self._lines(
                    name,
                    text,
                    lambda line, n, src=name, e=ext: self.ignore.add_line(line, src, n, e == ".ign"),
                )
                self.report.counts["ignore"] = len(self.ignore)
        for name, ext, text in documents:
            if ext not in IGNORE_EXTENSIONS:
                self._document(name, ext, text)
        rules, yara_sources = self._compile()
        logical = self._compile_second_stage()
        counts = self.report.counts
        if not (self.report.signatures or len(self.allow) or counts["disabled"] or counts["gated"]):
            raise DatabaseError("no usable signatures were found in the database")
        return Database(
            self.hashes.build(),
            self.allow.build(),
            rules,
            self.report,
            yara_sources,
            frozenset(self.normalized_targets),
            self.buckets,
            logical,
        )

    def _warn(self, error: SignatureError | str) -> None:
        if self.strict and isinstance(error, SignatureError):
            raise error
        self.report.warnings.append(str(error))
        self.report.counts["skipped"] += 1

    def _documents(self, files: list[Path]) -> Iterator[tuple[str, str, str]]:
        """(source name, extension, text) for every signature file, containers opened in memory."""
        for path in files:
            ext = path.suffix.lower()
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise DatabaseError(f"{path}: cannot read: {exc.strerror}") from None
            if ext in CONTAINER_EXTENSIONS:
                container = cvd.read_container(data, str(path))
                header = container.header
                self.report.sources.append(
                    SourceInfo(
                        str(path),
                        ext.lstrip("."),
                        header.signatures,
                        header.version,
                        header.build_time_text,
                        header.functionality_level,
                        container.signed,
                    )
                )
                for member, content in sorted(container.files.items()):
                    member_ext = Path(member).suffix.lower()
                    if member_ext in UNSUPPORTED_EXTENSIONS:
                        self.report.warnings.append(
                            f"{path}//{member}: this signature format is not supported; skipped"
                        )
                    elif member_ext in KNOWN_EXTENSIONS - CONTAINER_EXTENSIONS:
                        yield f"{path}//{member}", member_ext, content.decode("utf-8", "surrogateescape")
            elif ext in UNSUPPORTED_EXTENSIONS:
                self.report.warnings.append(f"{path}: this signature format is not supported; skipped")
            else:
                yield str(path), ext, data.decode("utf-8", "surrogateescape")

    def _lines(self, source: str, text: str, handle: Any) -> int:
        count = 0
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for lineno, raw in enumerate(lines, 1):
            line = raw.rstrip("\r")
            if not line.strip():
                self._warn(SignatureError(source, lineno, "blank line"))
                continue
            try:
                if handle(line, lineno) is not False:
                    count += 1
            except SignatureError as exc:
                self._warn(exc)
        return count

    def _document(self, source: str, ext: str, text: str) -> None:
        if ext in YARA_EXTENSIONS:
            self.yara_files.append((source, text))
            return
        pua_only = ext in PUA_HASH_EXTENSIONS | PUA_BODY_EXTENSIONS | PUA_LOGICAL_EXTENSIONS
        if pua_only and not self.pua:
            return
        if ext in HASH_EXTENSIONS | PUA_HASH_EXTENSIONS:
            kind, count = (
                "hash",
                self._lines(source, text, lambda line, n: self._hash(self.hashes, line, source, n)),
            )
        elif ext in ALLOW_EXTENSIONS:
            kind, count = (
                "allow",
                self._lines(source, text, lambda line, n: self._hash(self.allow, line, source, n)),
            )
        elif ext in BODY_EXTENSIONS | PUA_BODY_EXTENSIONS:
            kind, count = (
                "body",
                self._lines(source, text, lambda line, n: self._rule(parse_ndb_line, line, source, n)),
            )
        else:
            kind, count = (
                "logical",
                self._lines(source, text, lambda line, n: self._rule(parse_ldb_line, line, source, n)),
            )
        self.report.counts[kind] += count
        if "//" not in source:
            self.report.sources.append(SourceInfo(source, ext.lstrip("."), count))

    def _excluded(self, name: str, line: str, min_flevel: int | None, max_flevel: int | None) -> bool:
        """True (and counted) when a valid signature is not loaded: too new or old for us, or ignored."""
        if (min_flevel or 0) > self.flevel or (max_flevel is not None and max_flevel < self.flevel):
            self.report.counts["gated"] += 1
            return True
        if self.ignore.ignores(name, line):
            self.report.counts["disabled"] += 1
            return True
        return False

    def _hash(self, builder: HashTableBuilder, line: str, source: str, lineno: int) -> bool:
        sig = parse_hash_line(line, source, lineno)
        if self._excluded(sig.name, line, sig.min_flevel, sig.max_flevel):
            return False
        builder.add(sig)
        return True

    def _rule(self, parse: Any, line: str, source: str, lineno: int) -> bool:
        sig = parse(line, source, lineno)
        if self._excluded(sig.name, line, sig.min_flevel, sig.max_flevel):
            return False
        placement = sig.placement() if isinstance(sig, BodySignature) else None
        if placement is not None:
            self.bucket_patterns.setdefault(sig.target, []).append((len(self.buckets), sig.pattern))
            self.buckets.append(BucketEntry(sig.name, sig.source, sig.line, placement))
        elif isinstance(sig, LogicalSignature) and sig.needs_a_match:
            self.logical_rules.append(sig.to_yara(f"l{len(self.logical_rules)}"))
            self.logical_imports.update(sig.imports)
            self.prefilter_patterns.extend(sig.patterns)
        else:
            self.rules.append(sig.to_yara(f"c{len(self.rules)}"))
            self.imports.update(sig.imports)
        if sig.target in (TARGET_HTML, TARGET_TEXT):
            self.normalized_targets.add(sig.target)
        return True

    def _compile(self) -> tuple[yara_x.Rules | None, dict[str, str]]:
        if not self.rules and not self.yara_files and not self.buckets and not self.logical_rules:
            return None, {}
        compiler = yara_x.Compiler()
        for name, value in GLOBALS.items():
            compiler.define_global(name, value)
        yara_sources: dict[str, str] = {}
        if self.buckets:
            compiler.new_namespace("bucket")
            compiler.add_source(_bucket_rules(self.bucket_patterns), origin="translated ClamAV body signatures")
        if self.prefilter_patterns:
            compiler.new_namespace("prefilter")
            compiler.add_source(_prefilter_rules(self.prefilter_patterns), origin="logical signature patterns")
        if self.rules:
            compiler.new_namespace("clamav")
            header = "".join(f'import "{module}"\n' for module in sorted(self.imports))
            compiler.add_source(header + "\n".join(self.rules), origin="translated ClamAV signatures")
        for index, (source, text) in enumerate(self.yara_files):
            namespace = f"yara{index}"
            compiler.new_namespace(namespace)
            try:
                compiler.add_source(text, origin=source)
            except yara_x.CompileError as exc:
                self._warn(SignatureError(source, 0, f"YARA rules do not compile: {_first_line(exc)}"))
                continue
            yara_sources[namespace] = source
        rules = compiler.build()
        per_namespace = Counter(rule.namespace for rule in rules)
        for namespace, source in yara_sources.items():
            self.report.counts["yara"] += per_namespace[namespace]
            self.report.sources.append(SourceInfo(source, "yara", per_namespace[namespace]))
        return rules, yara_sources

    def _compile_second_stage(self) -> SecondStage | None:
        if not self.logical_rules:
            return None
        compiler = yara_x.Compiler()
        for name, value in GLOBALS.items():
            compiler.define_global(name, value)
        compiler.new_namespace("clamav")
        header = "".join(f'import "{module}"\n' for module in sorted(self.logical_imports))
        compiler.add_source(header + "\n".join(self.logical_rules), origin="translated ClamAV logical signatures")
        return SecondStage(compiler.build())


def _prefilter_rules(patterns: list[str]) -> str:
    """Rules matching when any pattern of any second-stage logical signature is found."""
    rules = []
    for start in range(0, len(patterns), BUCKET_SIZE):
        strings = "".join(
            f"    $q{start + i} = {text}\n" for i, text in enumerate(patterns[start : start + BUCKET_SIZE])
        )
        rules.append(f"rule p{start // BUCKET_SIZE} {{\n  strings:\n{strings}  condition:\n    any of them\n}}\n")
    return "\n".join(rules)


def _bucket_rules(patterns: dict[int, list[tuple[int, str]]]) -> str:
    """Rules of up to BUCKET_SIZE patterns each, per target type; ``$p<n>`` is entry n of the bucket table."""
    rules = []
    for target, entries in sorted(patterns.items()):
        for start in range(0, len(entries), BUCKET_SIZE):
            strings = "".join(f"    $p{index} = {text}\n" for index, text in entries[start : start + BUCKET_SIZE])
            rules.append(
                f"rule b{target}_{start // BUCKET_SIZE} {{\n  strings:\n{strings}"
                f"  condition:\n    {target_gate(target)} and any of them\n}}\n"
            )
    return "\n".join(rules)


def _first_line(exc: Exception) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


# -- cache ----------------------------------------------------------------------------------------------------


def _save_cached(database: Database, cache_dir: Path, key: str) -> None:
    """Write the compiled database atomically; a cache that cannot be written is only a warning."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
        database.hashes.save(work, "hash_")
        database.allow.save(work, "allow_")
        if database.rules is not None:
            buffer = io.BytesIO()
            database.rules.serialize_into(buffer)
            (work / "rules.yarx").write_bytes(buffer.getvalue())
        if database._logical is not None:
            (work / "logical.yarx").write_bytes(database._logical.serialize())
        meta = {
            "format": CACHE_FORMAT,
            "counts": dict(database.report.counts),
            "sources": [asdict(s) for s in database.report.sources],
            "warnings": database.report.warnings,
            "yara_sources": database._yara_sources,
            "normalized_targets": sorted(database.normalized_targets),
            "buckets": [
                [e.name, e.source, e.line, e.placement.kind, e.placement.value, e.placement.shift]
                for e in database._buckets
            ],
        }
        (work / "meta.json").write_text(json.dumps(meta))
        target = cache_dir / key
        if target.exists():
            shutil.rmtree(work)
        else:
            work.rename(target)
    except OSError as exc:
        logger.warning("cannot write the database cache in %s: %s", cache_dir, exc)


def _load_cached(directory: Path) -> Database | None:
    try:
        meta = json.loads((directory / "meta.json").read_text())
        if meta.get("format") != CACHE_FORMAT:
            return None
        rules = None
        rules_path = directory / "rules.yarx"
        if rules_path.exists():
            with rules_path.open("rb") as handle:
                rules = yara_x.Rules.deserialize_from(handle)
        logical_path = directory / "logical.yarx"
        logical = SecondStage(serialized=logical_path.read_bytes()) if logical_path.exists() else None
        report = LoadReport(
            counts=Counter(meta["counts"]),
            sources=[SourceInfo(**s) for s in meta["sources"]],
            warnings=list(meta["warnings"]),
            from_cache=True,
        )
        return Database(
            HashTable.load(directory, "hash_"),
            HashTable.load(directory, "allow_"),
            rules,
            report,
            dict(meta["yara_sources"]),
            frozenset(meta["normalized_targets"]),
            [
                BucketEntry(n, src, line, Placement(kind, value, shift))
                for n, src, line, kind, value, shift in meta["buckets"]
            ],
            logical,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if directory.exists():
            logger.warning("ignoring an unreadable database cache in %s: %s", directory, exc)
        return None
