"""Hash indicators of compromise (CSV lists, STIX 2.1 bundles, MISP events) turned into ClamAV hash signatures.

Every produced line is ``hexdigest:size:Name`` (size known) or ``hexdigest:*:Name:73`` (unknown size; ClamAV
needs functionality level 73 for ``*``), ready for a ``.hsb`` file, and parses with
:func:`~garrison.engine.signatures.hashdb.parse_hash_line`. MD5, SHA-1 and SHA-256 are supported (what ClamAV's
hash signatures hold); other hashes, malformed values and the digests of the empty file (a common feed mistake
that would flag every empty file) are skipped with a reason.

Decisions worth knowing:

* STIX: an indicator yields lines only when its pattern says "a file with this hash" on its own: observation
  expressions joined by ``OR`` are fine, ``AND``/``FOLLOWEDBY`` and qualifiers (``WITHIN``, ``REPEATS``,
  ``START``/``STOP``) need more than one file and are skipped. Within an observation, each ``OR`` branch is
  read separately; a branch's ``file:size =`` gives the size, other ``file:`` conditions (name, path) are
  dropped (the hash already pins the content), a branch about other object types is skipped. Revoked and
  expired (``valid_until`` before ``now``) indicators are skipped. The name is that of a malware object the
  indicator ``indicates``, else the indicator's name, else ``Garrison.IOC.<source>``. File SCOs (``type:
  file`` with ``hashes``) in the bundle become lines too.
* MISP: ``to_ids`` marks attributes meant for detection; attributes without it (or deleted ones) are skipped.
  In a ``file`` object, the ``size-in-bytes`` attribute gives the size of its hashes. The name is the event's
  malware galaxy cluster or ``misp-galaxy:`` malware tag when there is one, else the event's ``info``.

The module is pure: text in, lines out; no network, no logging.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stix2patterns.exceptions import ParseException
from stix2patterns.v21.pattern import Pattern

from garrison.engine.errors import DatabaseError, SignatureError
from garrison.engine.signatures.hashdb import UNKNOWN_SIZE_MIN_FLEVEL, parse_hash_line

__all__ = ["DEFAULT_MAX_SIZE", "IocResult", "from_csv", "from_misp", "from_stix"]

DEFAULT_MAX_SIZE = 64 * 1024 * 1024
_MAX_WARNINGS = 10
_MAX_BRANCHES = 256  # OR branches of one STIX pattern, after distributing AND over OR
_HASH_LENGTHS = {32: "md5", 40: "sha1", 64: "sha256"}
_HEX = re.compile(r"[0-9a-fA-F]+")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_.\-]+")
_EMPTY_FILE_DIGESTS = frozenset(
    {
        "d41d8cd98f00b204e9800998ecf8427e",
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    }
)


@dataclass(slots=True)
class IocResult:
    """Hash signature lines made from an IOC source.

    Attributes:
        lines: ``.hsb`` lines, deduplicated and sorted.
        skipped: entries (rows, indicators, attributes) that gave no line.
        warnings: the first few reasons for skipping, in words.
    """

    lines: list[str] = field(default_factory=list)
    skipped: int = 0
    warnings: list[str] = field(default_factory=list)


class _Collector:
    """Validates and deduplicates lines; counts and explains what it skips."""

    def __init__(self, source_name: str) -> None:
        self.source = _sanitise(source_name) or "Unnamed"
        self.default_name = f"Garrison.IOC.{self.source}"
        self.by_key: dict[tuple[str, str], str] = {}
        self.skipped = 0
        self.warnings: list[str] = []

    def warn(self, reason: str) -> None:
        if len(self.warnings) < _MAX_WARNINGS:
            self.warnings.append(reason)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        self.warn(reason)

    def add(self, value: object, name: str | None, size: int | None, where: str) -> bool:
        """Add one hash; False (with a warning) when it is not an MD5, SHA-1 or SHA-256 in hex."""
        text = str(value).strip().lower() if isinstance(value, str) else ""
        if len(text) not in _HASH_LENGTHS or not _HEX.fullmatch(text):
            self.warn(f"{where}: {str(value)[:70]!r} is not an MD5, SHA-1 or SHA-256 in hex")
            return False
        if text in _EMPTY_FILE_DIGESTS:
            self.warn(f"{where}: {text} is the digest of an empty file; refused")
            return False
        label = _sanitise(name or "") or self.default_name
        line = f"{text}:{size}:{label}" if size is not None else f"{text}:*:{label}:{UNKNOWN_SIZE_MIN_FLEVEL}"
        try:
            parse_hash_line(line, self.source, 0)
        except SignatureError as exc:  # cannot happen with the checks above; never emit a line that does not load
            self.warn(f"{where}: {exc.reason}")
            return False
        key = (text, "*" if size is None else str(size))
        if key in self.by_key and self.by_key[key] != line:
            self.warn(f"{where}: {text} is listed twice with different names; the first name is kept")
            return True
        self.by_key[key] = line
        return True

    def result(self, what: str) -> IocResult:
        if not self.by_key:
            reasons = "; ".join(self.warnings[:3]) or "it holds no entries"
            raise DatabaseError(f"{self.source}: no usable hash in the {what} ({reasons})")
        return IocResult(sorted(set(self.by_key.values())), self.skipped, self.warnings)


def _sanitise(name: str) -> str:
    """A ClamAV signature name from free text: ASCII letters, digits, ``_ . -``; accents dropped, max 100."""
    # NFKD splits accents off (ế → e); Vietnamese đ/Đ are letters of their own and need spelling out.
    spelled = name.replace("đ", "d").replace("Đ", "D")
    ascii_text = unicodedata.normalize("NFKD", spelled).encode("ascii", "ignore").decode("ascii")
    cleaned = _NOT_NAME.sub("_", ascii_text.strip()).strip("._-")
    return cleaned[:100].rstrip("._-")


def _size(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        return int(value.strip())
    return None


def _text(data: bytes | str, source: str, max_size: int) -> str:
    if len(data) > max_size:
        raise DatabaseError(f"{source}: the input is larger than the limit of {max_size} bytes")
    if isinstance(data, bytes):
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DatabaseError(f"{source}: the input is not UTF-8 text (byte {exc.start})") from None
    return data.removeprefix("\ufeff")


def _json(data: bytes | str, source: str, max_size: int) -> Any:
    text = _text(data, source, max_size)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise DatabaseError(f"{source}: not valid JSON ({exc})") from None


# ------------------------------------------------------------------------------------------------------------
# CSV

_HASH_COLUMNS = ("sha256", "sha256_hash", "sha-256", "sha1", "sha1_hash", "sha-1", "md5", "md5_hash", "hash",
                 "value", "ioc", "indicator")  # fmt: skip
_NAME_COLUMNS = ("name", "malware", "threat", "signature", "malware_family", "family", "description")
_SIZE_COLUMNS = ("size", "file_size", "filesize", "size_in_bytes")


def _header_index(row: list[str]) -> dict[str, int] | None:
    cells = [cell.strip().strip('"').lower() for cell in row]
    if not any(cell in _HASH_COLUMNS for cell in cells):
        return None
    return {cell: i for i, cell in reversed(list(enumerate(cells)))}


def from_csv(text: str | bytes, source_name: str, *, max_size: int = DEFAULT_MAX_SIZE) -> IocResult:
    """Hash lines from a CSV list of IOCs.

    Columns are recognised by a header row (hash: ``sha256 sha1 md5 hash value``…; name: ``name malware threat
    signature family description``; size: ``size file_size``); every hash column of a row gives a line.
    Without a header the first column is the hash, then an optional name, then an optional size. The
    delimiter is ``,``, or ``;`` / tab when the first line has no comma. Lines starting with ``#`` are comments.

    Raises:
        DatabaseError: larger than ``max_size``, not UTF-8, or no usable hash at all.
    """
    collector = _Collector(source_name)
    content = _text(text, collector.source, max_size)
    rows = [line for line in content.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        return collector.result("CSV list")
    delimiter = "," if "," in rows[0] else ";" if ";" in rows[0] else "\t" if "\t" in rows[0] else ","
    try:
        parsed = list(csv.reader(rows, delimiter=delimiter, skipinitialspace=True))
    except csv.Error as exc:
        raise DatabaseError(f"{collector.source}: not valid CSV ({exc})") from None
    header = _header_index(parsed[0]) if parsed else None
    if header is not None:
        hash_columns = [header[c] for c in _HASH_COLUMNS if c in header]
        name_column = next((header[c] for c in _NAME_COLUMNS if c in header), None)
        size_column = next((header[c] for c in _SIZE_COLUMNS if c in header), None)
        body = parsed[1:]
    else:
        hash_columns, name_column, size_column, body = [0], 1, 2, parsed
    first_row = 2 if header is not None else 1
    for number, row in enumerate(body, first_row):
        cells = [cell.strip() for cell in row]

        def cell(index: int | None, cells: list[str] = cells) -> str:
            return cells[index] if index is not None and index < len(cells) else ""

        size_text = cell(size_column)
        size = _size(size_text)
        if size_text and size is None:
            collector.warn(f"row {number}: size {size_text[:20]!r} is not a number; using '*'")
        values = [cell(i) for i in hash_columns if cell(i)]
        added = [collector.add(value, cell(name_column), size, f"row {number}") for value in values]
        if not values:
            collector.skip(f"row {number}: no hash")
        elif not any(added):
            collector.skipped += 1  # add() said why
    return collector.result("CSV list")


# ------------------------------------------------------------------------------------------------------------
# STIX 2.1


@dataclass(frozen=True, slots=True)
class _Comparison:
    path: tuple[str, ...]
    op: str  # "=" for a plain positive equality; anything else is a condition Garrison cannot use
    value: str


class _Unsupported(Exception):
    """A pattern Garrison does not turn into hash lines (the message says why)."""


class _Root:
    """A visitor that hands back the parse tree (stix2patterns exposes it only to visitors and listeners)."""

    def visit(self, tree: Any) -> Any:
        return tree


def _leaves(ctx: Any) -> Iterator[str]:
    for child in ctx.getChildren():
        if hasattr(child, "symbol"):
            yield child.getText()
        else:
            yield from _leaves(child)


def _unquote(text: str) -> str:
    return text[1:-1].replace("\\'", "'").replace("\\\\", "\\") if text.startswith("'") else text


def _path(ctx: Any) -> tuple[str, ...]:
    # Leaves of an object path: type, ':', first component, then '.', key, or '[', index, ']'.
    return tuple(_unquote(leaf) for leaf in _leaves(ctx) if leaf not in (":", ".", "[", "]"))


def _branches(ctx: Any) -> list[list[_Comparison]]:
    """The comparison expression in disjunctive normal form: a list of AND-ed comparisons per OR branch."""
    kind = type(ctx).__name__
    if kind == "ComparisonExpressionContext":
        if ctx.OR() is not None:
            result = _branches(ctx.comparisonExpression(0)) + _branches(ctx.comparisonExpression(1))
        else:
            result = _branches(ctx.comparisonExpressionAnd())
    elif kind == "ComparisonExpressionAndContext":
        if ctx.AND() is not None:
            left, right = _branches(ctx.comparisonExpressionAnd(0)), _branches(ctx.comparisonExpressionAnd(1))
            if len(left) * len(right) > _MAX_BRANCHES:
                raise _Unsupported("the pattern is too complex")
            result = [a + b for a in left for b in right]
        else:
            result = _branches(ctx.propTest())
    elif kind == "PropTestParenContext":
        result = _branches(ctx.comparisonExpression())
    elif kind == "PropTestEqualContext":
        op = "=" if ctx.EQ() is not None and ctx.NOT() is None else "other"
        result = [[_Comparison(_path(ctx.objectPath()), op, _unquote(ctx.primitiveLiteral().getText()))]]
    else:  # ordering, LIKE, MATCHES, IN, EXISTS...: a condition that is not a plain equality
        path = ctx.objectPath() if hasattr(ctx, "objectPath") else None
        result = [[_Comparison(_path(path) if path is not None else ("?",), "other", "")]]
    if len(result) > _MAX_BRANCHES:
        raise _Unsupported("the pattern is too complex")
    return result


def _observations(ctx: Any) -> list[Any]:
    """The comparison expressions of a pattern whose observations are only OR-ed together."""
    kind = type(ctx).__name__
    if kind == "PatternContext":
        return _observations(ctx.observationExpressions())
    if kind == "ObservationExpressionsContext":
        if ctx.FOLLOWEDBY() is not None:
            raise _Unsupported("FOLLOWEDBY needs more than one observation")
        return _observations(ctx.observationExpressionOr())
    if kind == "ObservationExpressionOrContext":
        if ctx.OR() is not None:
            return _observations(ctx.observationExpressionOr(0)) + _observations(ctx.observationExpressionOr(1))
        return _observations(ctx.observationExpressionAnd())
    if kind == "ObservationExpressionAndContext":
        if ctx.AND() is not None:
            raise _Unsupported("AND between observations needs more than one file")
        return _observations(ctx.observationExpression())
    if kind == "ObservationExpressionSimpleContext":
        return [ctx.comparisonExpression()]
    if kind == "ObservationExpressionCompoundContext":
        return _observations(ctx.observationExpressions())
    raise _Unsupported("qualifiers (WITHIN, REPEATS, START/STOP) are not a single file")


_STIX_HASHES = {"md5": "md5", "sha-1": "sha1", "sha1": "sha1", "sha-256": "sha256", "sha256": "sha256"}


def _files_in_pattern(pattern: str) -> list[tuple[list[str], int | None]]:
    """(hashes, size) for each OR branch of a pattern that identifies a file by hash."""
    try:
        tree = Pattern(pattern).visit(_Root())
    except ParseException as exc:
        raise _Unsupported(f"the pattern does not parse ({str(exc)[:80]})") from None
    files: list[tuple[list[str], int | None]] = []
    for observation in _observations(tree):
        for branch in _branches(observation):
            if any(c.path[0] != "file" for c in branch):
                continue  # another object type in the same branch: not a plain file IOC
            hashes: dict[str, str] = {}
            sizes: set[int] = set()
            possible = True
            for comparison in branch:
                if comparison.op != "=":
                    continue
                if len(comparison.path) == 3 and comparison.path[1] == "hashes":
                    algorithm = _STIX_HASHES.get(comparison.path[2].lower())
                    if algorithm is None:
                        continue
                    if hashes.setdefault(algorithm, comparison.value) != comparison.value:
                        possible = False  # one file cannot have two different digests
                elif comparison.path == ("file", "size"):
                    size = _size(comparison.value)
                    if size is not None:
                        sizes.add(size)
            if possible and hashes and len(sizes) <= 1:
                files.append((list(hashes.values()), next(iter(sizes), None)))
    return files


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def from_stix(
    data: bytes | str, source_name: str, *, now: datetime | None = None, max_size: int = DEFAULT_MAX_SIZE
) -> IocResult:
    """Hash lines from a STIX 2.1 bundle: indicators with STIX patterns on file hashes, and file SCOs.

    Args:
        data: the bundle's JSON.
        source_name: names the feed in default signature names (``Garrison.IOC.<source>``) and messages.
        now: the time expiry is judged at (the current time by default).
        max_size: the largest input accepted.

    Raises:
        DatabaseError: too large, not JSON, not a bundle (``type: bundle`` with an ``objects`` list), or no
            usable hash at all.
    """
    collector = _Collector(source_name)
    bundle = _json(data, collector.source, max_size)
    if not isinstance(bundle, dict) or bundle.get("type") != "bundle" or not isinstance(bundle.get("objects"), list):
        raise DatabaseError(f"{collector.source}: not a STIX bundle (an object with type 'bundle' and 'objects')")
    objects = [obj for obj in bundle["objects"] if isinstance(obj, dict) and isinstance(obj.get("type"), str)]
    if len(objects) != len(bundle["objects"]):
        collector.warn("some bundle entries are not STIX objects; ignored")
    moment = now or datetime.now(UTC)
    malware = {obj.get("id"): obj.get("name") for obj in objects if obj["type"] == "malware"}
    indicated: dict[object, str] = {}
    for obj in objects:
        if obj["type"] == "relationship" and obj.get("relationship_type") == "indicates":
            name = malware.get(obj.get("target_ref"))
            if isinstance(name, str) and name.strip():
                indicated.setdefault(obj.get("source_ref"), name)

    for obj in objects:
        if obj["type"] == "indicator":
            _stix_indicator(obj, collector, indicated, moment)
        elif obj["type"] == "file" and isinstance(obj.get("hashes"), dict):
            where = f"file {str(obj.get('id'))[:60]}"
            hashes = [v for k, v in obj["hashes"].items() if isinstance(k, str) and k.lower() in _STIX_HASHES]
            added = [collector.add(value, None, _size(obj.get("size")), where) for value in hashes]
            if not any(added):
                collector.skip(f"{where}: no MD5, SHA-1 or SHA-256")
    return collector.result("STIX bundle")


def _stix_indicator(obj: dict[str, Any], collector: _Collector, indicated: dict[object, str], now: datetime) -> None:
    where = f"indicator {str(obj.get('id'))[:60]}"
    if obj.get("revoked") is True:
        collector.skip(f"{where}: revoked")
        return
    if "valid_until" in obj:
        until = _timestamp(obj["valid_until"])
        if until is None or until <= now:
            collector.skip(f"{where}: expired" if until else f"{where}: unreadable valid_until")
            return
    if obj.get("pattern_type", "stix") != "stix" or not isinstance(obj.get("pattern"), str):
        collector.skip(f"{where}: not a STIX pattern")
        return
    try:
        files = _files_in_pattern(obj["pattern"])
    except _Unsupported as exc:
        collector.skip(f"{where}: {exc}")
        return
    own = obj.get("name") if isinstance(obj.get("name"), str) else None
    name = indicated.get(obj.get("id")) or own
    added = [collector.add(value, name, size, where) for hashes, size in files for value in hashes]
    if not any(added):
        collector.skip(f"{where}: no usable file hash in the pattern")


# ------------------------------------------------------------------------------------------------------------
# MISP

_MISP_HASHES = {"md5", "sha1", "sha256"}
_MALWARE_GALAXIES = {"malpedia", "mitre-malware", "malware", "ransomware", "banker", "stealer", "rat", "botnet"}


def _events(document: Any) -> Iterator[Any]:
    if isinstance(document, list):
        for item in document:
            yield from _events(item)
    elif isinstance(document, dict):
        if isinstance(document.get("response"), list):
            yield from _events(document["response"])
        elif "Event" in document:
            yield document["Event"]
        else:
            yield document


def _to_ids(value: object) -> bool:
    return value is True or value in (1, "1", "true", "True")


def _malware_name(event: dict[str, Any]) -> str | None:
    for galaxy in event.get("Galaxy") or []:
        if isinstance(galaxy, dict) and galaxy.get("type") in _MALWARE_GALAXIES:
            for cluster in galaxy.get("GalaxyCluster") or []:
                if isinstance(cluster, dict) and isinstance(cluster.get("value"), str):
                    return str(cluster["value"])
    for tag in event.get("Tag") or []:
        name = tag.get("name") if isinstance(tag, dict) else None
        # misp-galaxy:<galaxy>="<cluster>"
        if isinstance(name, str) and name.startswith("misp-galaxy:") and '="' in name:
            galaxy, _, value = name[len("misp-galaxy:") :].partition('="')
            if galaxy in _MALWARE_GALAXIES and value.endswith('"'):
                return value[:-1]
    return None


def _attributes(event: dict[str, Any]) -> Iterable[tuple[dict[str, Any], int | None]]:
    """Every attribute of an event with the size its file object gives, if any."""
    for attribute in event.get("Attribute") or []:
        if isinstance(attribute, dict):
            yield attribute, None
    for obj in event.get("Object") or []:
        if not isinstance(obj, dict):
            continue
        members = [a for a in obj.get("Attribute") or [] if isinstance(a, dict)]
        size = next((_size(a.get("value")) for a in members if a.get("type") == "size-in-bytes"), None)
        for attribute in members:
            yield attribute, size


def from_misp(data: bytes | str, source_name: str, *, max_size: int = DEFAULT_MAX_SIZE) -> IocResult:
    """Hash lines from a MISP JSON export: ``{"Event": …}``, ``{"response": [{"Event": …}]}`` or a list.

    Attributes (and object attributes) of type ``md5``, ``sha1``, ``sha256`` and ``filename|md5`` (etc.)
    with ``to_ids`` set give lines; others are skipped and counted.

    Raises:
        DatabaseError: too large, not JSON, no event, or no usable hash at all.
    """
    collector = _Collector(source_name)
    document = _json(data, collector.source, max_size)
    events = [event for event in _events(document) if isinstance(event, dict)]
    if not events:
        raise DatabaseError(f"{collector.source}: no MISP event in the document")
    for event in events:
        info = event.get("info") if isinstance(event.get("info"), str) else None
        name = _malware_name(event) or info
        for attribute, size in _attributes(event):
            kind = attribute.get("type")
            if not isinstance(kind, str):
                continue
            algorithm = kind.rpartition("|")[2] if kind.startswith("filename|") else kind
            if algorithm not in _MISP_HASHES:
                continue  # not a hash attribute: not counted as skipped
            where = f"attribute {str(attribute.get('uuid') or attribute.get('id'))[:40]}"
            if attribute.get("deleted") is True or attribute.get("deleted") == "1":
                collector.skip(f"{where}: deleted")
                continue
            if not _to_ids(attribute.get("to_ids")):
                collector.skip(f"{where}: to_ids is off (not meant for detection)")
                continue
            value = attribute.get("value")
            if isinstance(value, str) and kind.startswith("filename|"):
                value = value.rpartition("|")[2]
            if not collector.add(value, name, size, where):
                collector.skipped += 1
    return collector.result("MISP export")
