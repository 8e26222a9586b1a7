"""ClamAV incremental patches (``.cdiff``): verify, parse, apply to an unpacked database, and build them.

A cdiff moves a database from version N to N + 1 without downloading it whole::

    ClamAV-Diff:<new version>:<script length>:<gzip-compressed script>:<dsig>

The dsig is ClamAV's PSS signature (``cli_versig2``, the scheme of manifest ``DSIG`` lines) of the SHA-256 of
everything before the last ``:``, under Talos's cdiff key. The script edits the unpacked database one file at a
time (``OPEN``, ``ADD``, ``DEL``, ``XCHG``, ``CLOSE``, plus ``MOVE`` and ``UNLINK``); ``DEL`` and ``XCHG`` name
a line of the file as it was when opened and a prefix that line must start with, so a patch applied to the wrong
base fails instead of corrupting it.

The semantics follow ClamAV 1.4 (``libclamav_rust/src/cdiff.rs``) as observed with ``sigtool --run-cdiff``:

* arguments are separated by single spaces; the last argument (the line of ``ADD``, the new line of ``XCHG``,
  the name of ``OPEN``/``UNLINK``) is the rest of the command line, verbatim;
* ``DEL n prefix`` and ``XCHG n prefix new`` compare the original line ``n`` with ``prefix``; edits are applied
  at ``CLOSE``, then the ``ADD`` lines are appended (so ``ADD`` can only append);
* a file rewritten by ``DEL``/``XCHG`` must end with a newline; ``ADD`` appends to a file as it is.

Everything happens in memory: no file system, network or logging. Every problem with the data raises
:class:`~garrison.engine.errors.DatabaseError` with the reason; ``ValueError`` is only raised by
:func:`make_cdiff` for inputs a cdiff cannot express.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from garrison.engine.errors import DatabaseError
from garrison.engine.signatures.cvd import (
    CLAMAV_CVD_KEY,
    CLAMAV_INFO_KEY,
    HEADER_SIZE,
    ContainerKind,
    CvdLimits,
    RsaPublicKey,
    build_cld,
    gunzip_bounded,
    parse_header,
    read_container,
    tar_members,
    verify_info_dsig,
)

__all__ = [
    "CLAMAV_CDIFF_KEY",
    "Cdiff",
    "CdiffCommand",
    "CdiffLimits",
    "apply_cdiff",
    "apply_to_container",
    "make_cdiff",
    "parse_cdiff",
]

MiB = 1024 * 1024

#: Talos's key for cdiff signatures: ``PSS_NSTR`` and ``PSS_ESTR`` in libclamav_rust/src/cdiff.rs
#: (Cisco-Talos/clamav); the scheme is that of manifest ``DSIG`` lines (:func:`cvd.verify_info_dsig`).
CLAMAV_CDIFF_KEY = RsaPublicKey(
    n=int(
        "147839058740774670902622285165579175702545996383762035320319892141055528472696874897719757921234421858"
        "172876949519498009087915275420171156005013033947786185358648452357000415900563182301024496122174585490"
        "160893133065913885907907965158196541023207257123008223563487240112326548375032417361779077841987008344"
        "406811247270605400357546996581058950500965762267530085968816988281856524249019216687583265784620032479"
        "064709820922981067896572119054889862810783463614695244848295595608862271980919954984406766396398304635"
        "932113860550653602884223940539981344586237125406832940349538184124583621981178119900060219898441807210"
        "10947"
    ),
    e=100002053,
)

_MAGIC = b"ClamAV-Diff:"
_NUMBER = re.compile(rb"[0-9]{1,10}")
# ClamAV allows letters, digits and dots in database names (cdiff_cmd_open); a leading dot is refused here too,
# so that "." and ".." cannot name anything outside the database.
_DB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.]{0,254}")
# libclamav's largest line buffer (#LSIZE is capped at 10 MiB); longer lines need a bigger "#LSIZE" request.
_DEFAULT_LINE_SIZE = 32 * 1024
_MAX_LINE_SIZE = 10 * MiB
_WHITESPACE = b" \t\r\x0b\x0c"


@dataclass(frozen=True, slots=True)
class CdiffLimits:
    """How large a cdiff's script may be once decompressed (the compressed script can be a bomb).

    Attributes:
        max_script_size: bytes of decompressed script; the header's declared length must not exceed it.
    """

    max_script_size: int = 256 * MiB

    def __post_init__(self) -> None:
        if self.max_script_size <= 0:
            raise ValueError("CdiffLimits values must be positive")


@dataclass(frozen=True, slots=True)
class CdiffCommand:
    """One parsed script command.

    Attributes:
        op: ``OPEN``, ``ADD``, ``DEL``, ``XCHG``, ``MOVE``, ``CLOSE`` or ``UNLINK``.
        script_line: 1-based line of the command in the decompressed script, for error messages.
        name: the database file of ``OPEN``/``UNLINK``, the source of ``MOVE``.
        target: the destination of ``MOVE``.
        line: the original line number of ``DEL``/``XCHG``, the first line of ``MOVE``.
        prefix: what that line must start with.
        end_line: the last line of ``MOVE``.
        end_prefix: what the last line of ``MOVE`` must start with.
        text: the line of ``ADD``, the new line of ``XCHG``.
    """

    op: str
    script_line: int
    name: str = ""
    target: str = ""
    line: int = 0
    prefix: bytes = b""
    end_line: int = 0
    end_prefix: bytes = b""
    text: bytes = b""


@dataclass(frozen=True, slots=True)
class Cdiff:
    """A parsed (and, when a key was given, verified) cdiff.

    Attributes:
        version: the database version the patch produces.
        commands: the script, parsed.
        script_size: bytes of the decompressed script.
        signed: True when the signature was verified.
    """

    version: int
    commands: tuple[CdiffCommand, ...]
    script_size: int
    signed: bool


def _error(what: str) -> DatabaseError:
    return DatabaseError(f"cdiff: {what}")


# ------------------------------------------------------------------------------------------------------------
# Parsing


def parse_cdiff(
    data: bytes,
    *,
    key: RsaPublicKey | None = CLAMAV_CDIFF_KEY,
    limits: CdiffLimits | None = None,
) -> Cdiff:
    """Verify and parse a ``.cdiff`` file held in memory.

    Args:
        data: the whole file.
        key: the key the signature must verify under (Talos's by default); None skips the check, for trusted
            local files and tests.
        limits: how large the decompressed script may be (:class:`CdiffLimits` defaults: 256 MiB).

    Returns:
        The new version and the parsed script.

    Raises:
        DatabaseError: bad header, bad signature, corrupt or oversized gzip data, a script length that does not
            match, or a malformed command; the message says which.
    """
    limits = limits or CdiffLimits()
    if not data.startswith(_MAGIC):
        raise _error("bad header: it does not start with 'ClamAV-Diff:'")
    fields = data[len(_MAGIC) : len(_MAGIC) + 24].split(b":", 2)
    if len(fields) < 3 or not _NUMBER.fullmatch(fields[0]) or not _NUMBER.fullmatch(fields[1]):
        raise _error("bad header: expected 'ClamAV-Diff:<version>:<script length>:'")
    version, declared = int(fields[0]), int(fields[1])
    body_start = len(_MAGIC) + len(fields[0]) + len(fields[1]) + 2
    # The signature alphabet has no ':', so the last one separates the signed part from the signature.
    footer = data.rfind(b":")
    if footer < body_start:
        raise _error("truncated: there is no ':<signature>' footer after the compressed script")
    dsig = data[footer + 1 :].rstrip(b"\r\n")
    signed = False
    if key is not None:
        try:
            text = dsig.decode("ascii")
        except UnicodeDecodeError:
            raise _error("bad signature: the signature is not ASCII text") from None
        if not verify_info_dsig(hashlib.sha256(data[:footer]).digest(), text, key):
            raise _error("bad signature: the signature does not verify (tampered, truncated or wrong key)")
        signed = True
    if declared > limits.max_script_size:
        raise _error(f"the script would be {declared} bytes, more than the limit of {limits.max_script_size}")
    body = data[body_start:footer]
    if not body:
        raise _error("truncated: there is no compressed script")
    try:
        script = gunzip_bounded(body, "cdiff", declared)
    except DatabaseError as exc:
        # gunzip_bounded names the source itself ("cdiff: corrupt archive: ..."); say what the archive is.
        raise _error(f"bad script: {str(exc).removeprefix('cdiff: ')}") from None
    if len(script) != declared:
        raise _error(f"bad script: the header says {declared} bytes, the script has {len(script)}")
    return Cdiff(version, _parse_script(script), declared, signed)


def _name(value: bytes, op: str, lineno: int) -> str:
    text = value.decode("ascii", "replace")
    if not _DB_NAME.fullmatch(text):
        raise _error(f"script line {lineno}: {op}: refused database name {text[:80]!r} (letters, digits, dots)")
    return text


def _line_number(value: bytes, op: str, lineno: int) -> int:
    if not _NUMBER.fullmatch(value) or int(value) == 0:
        raise _error(f"script line {lineno}: {op}: {value[:20]!r} is not a line number")
    return int(value)


def _parse_script(script: bytes) -> tuple[CdiffCommand, ...]:
    commands: list[CdiffCommand] = []
    for lineno, raw in enumerate(script.split(b"\n"), 1):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line or line.startswith(b"#"):  # comments and libclamav's "#LSIZE" buffer requests
            continue
        if line.startswith(b"ADD "):  # most of a script: test it first
            if len(line) == 4:
                raise _error(f"script line {lineno}: ADD without a line")
            commands.append(CdiffCommand("ADD", lineno, text=line[4:]))
            continue
        op_bytes, _, rest = line.partition(b" ")
        op = op_bytes.decode("ascii", "replace")
        if op == "CLOSE":
            commands.append(CdiffCommand(op, lineno))
        elif op in ("OPEN", "UNLINK"):
            commands.append(CdiffCommand(op, lineno, name=_name(rest, op, lineno)))
        elif op == "ADD":
            raise _error(f"script line {lineno}: ADD without a line")
        elif op == "DEL":
            parts = rest.split(b" ", 2)
            if len(parts) < 2 or not parts[1]:
                raise _error(f"script line {lineno}: DEL needs a line number and a prefix")
            commands.append(CdiffCommand(op, lineno, line=_line_number(parts[0], op, lineno), prefix=parts[1]))
        elif op == "XCHG":
            parts = rest.split(b" ", 2)
            if len(parts) < 3 or not parts[1]:
                raise _error(f"script line {lineno}: XCHG needs a line number, a prefix and a new line")
            number = _line_number(parts[0], op, lineno)
            commands.append(CdiffCommand(op, lineno, line=number, prefix=parts[1], text=parts[2]))
        elif op == "MOVE":
            parts = rest.split(b" ")
            if len(parts) < 6 or not parts[3] or not parts[5]:
                raise _error(f"script line {lineno}: MOVE needs src dst start prefix end prefix")
            first, last = _line_number(parts[2], op, lineno), _line_number(parts[4], op, lineno)
            if last < first:
                raise _error(f"script line {lineno}: MOVE ends (line {last}) before it starts (line {first})")
            commands.append(
                CdiffCommand(
                    op,
                    lineno,
                    name=_name(parts[0], op, lineno),
                    target=_name(parts[1], op, lineno),
                    line=first,
                    prefix=parts[3],
                    end_line=last,
                    end_prefix=parts[5],
                )
            )
        else:
            raise _error(f"script line {lineno}: unknown command {op[:40]!r}")
    return tuple(commands)


# ------------------------------------------------------------------------------------------------------------
# Applying


@dataclass(slots=True)
class _Open:
    """The file between OPEN and CLOSE: edits are collected, then applied at once on CLOSE like ClamAV does."""

    name: str
    script_line: int
    adds: list[bytes] = field(default_factory=list)
    edits: dict[int, CdiffCommand] = field(default_factory=dict)


def _lines_of(content: bytes, name: str, command: CdiffCommand) -> list[bytes]:
    """A file's lines for line-numbered edits; like ClamAV 1.4, a file must end with a newline to be edited."""
    if content and not content.endswith(b"\n"):
        raise _error(f"script line {command.script_line}: {command.op} on {name}: the file has no final newline")
    lines = content.split(b"\n")
    lines.pop()
    return lines


def _check_prefix(lines: list[bytes], number: int, prefix: bytes, name: str, command: CdiffCommand) -> None:
    where = f"script line {command.script_line}: {command.op} at line {number} of {name}"
    if number > len(lines):
        raise _error(f"{where}: the file has only {len(lines)} lines")
    if not lines[number - 1].startswith(prefix):
        raise _error(f"{where}: the line does not start with {prefix[:60]!r} (patch for another version?)")


def _close(files: dict[str, bytes], state: _Open, command: CdiffCommand) -> None:
    content = files.get(state.name)
    if state.edits:
        if content is None:
            raise _error(f"script line {command.script_line}: CLOSE: {state.name} does not exist")
        lines = _lines_of(content, state.name, command)
        kept: list[bytes] = []
        previous = 0
        for number in sorted(state.edits):
            edit = state.edits[number]
            _check_prefix(lines, number, edit.prefix, state.name, edit)
            kept.extend(lines[previous : number - 1])
            if edit.op == "XCHG":
                kept.append(edit.text)
            previous = number
        kept.extend(lines[previous:])
        content = b"\n".join(kept) + b"\n" if kept else b""
    if state.adds:
        # Appended to the file as it is, like ClamAV: a last line without a newline gets the first ADD glued on.
        content = (content or b"") + b"\n".join(state.adds) + b"\n"
    if content is not None:
        files[state.name] = content


def _move(files: dict[str, bytes], command: CdiffCommand) -> None:
    source, target = command.name, command.target
    if source == target:
        raise _error(f"script line {command.script_line}: MOVE from {source} to itself")
    content = files.get(source)
    if content is None:
        raise _error(f"script line {command.script_line}: MOVE: {source} does not exist")
    lines = _lines_of(content, source, command)
    _check_prefix(lines, command.line, command.prefix, source, command)
    _check_prefix(lines, command.end_line, command.end_prefix, source, command)
    moved = lines[command.line - 1 : command.end_line]
    rest = lines[: command.line - 1] + lines[command.end_line :]
    files[source] = b"\n".join(rest) + b"\n" if rest else b""
    files[target] = files.get(target, b"") + b"\n".join(moved) + b"\n"


def apply_cdiff(files: Mapping[str, bytes], cdiff: Cdiff) -> dict[str, bytes]:
    """Run a cdiff's script on an unpacked database (file name to content); the input is not modified.

    ``DEL`` and ``XCHG`` refer to the lines the file had when it was opened; their prefixes are checked before
    anything is changed. A file opened but never given a line stays absent, as with ClamAV.

    Returns:
        The patched database, file name to content.

    Raises:
        DatabaseError: a prefix does not match, a line does not exist, a line is edited twice, a command comes
            at the wrong time (``ADD`` with no file open, ``OPEN`` before ``CLOSE``...), a file to edit, move or
            unlink does not exist, or the script ends with a file open; the message names the command and line.
    """
    result = dict(files)
    state: _Open | None = None
    for command in cdiff.commands:
        where = f"script line {command.script_line}: {command.op}"
        if command.op in ("OPEN", "MOVE", "UNLINK"):
            if state is not None:
                raise _error(f"{where}: {state.name} (opened on script line {state.script_line}) is not closed")
            if command.op == "OPEN":
                state = _Open(command.name, command.script_line)
            elif command.op == "MOVE":
                _move(result, command)
            elif command.name not in result:
                raise _error(f"{where}: {command.name} does not exist")
            else:
                del result[command.name]
        elif state is None:
            raise _error(f"{where}: no file is open")
        elif command.op == "ADD":
            state.adds.append(command.text)
        elif command.op == "CLOSE":
            _close(result, state, command)
            state = None
        else:  # DEL, XCHG
            if command.line in state.edits:
                other = state.edits[command.line]
                raise _error(f"{where}: line {command.line} is already edited on script line {other.script_line}")
            state.edits[command.line] = command
    if state is not None:
        raise _error(f"the script ends with {state.name} (opened on script line {state.script_line}) still open")
    return result


def apply_to_container(
    container: bytes,
    cdiff: bytes,
    *,
    source: str = "daily.cvd",
    key: RsaPublicKey | None = CLAMAV_CDIFF_KEY,
    cvd_key: RsaPublicKey = CLAMAV_CVD_KEY,
    info_key: RsaPublicKey = CLAMAV_INFO_KEY,
    info_sign: Callable[[bytes], str] | None = None,
    build_time: int | None = None,
    limits: CdiffLimits | None = None,
    cvd_limits: CvdLimits | None = None,
) -> bytes:
    """Apply a cdiff to a CVD or CLD and return the new ``.cld``, like freshclam's update with ``buildcld``.

    Without ``info_sign`` the patched ``.info`` manifest is kept as the patch left it (its ``DSIG`` comes from
    Talos with the patch) and the new container is checked like libclamav loads a CLD: manifest signature under
    ``info_key``, every file's size and SHA-256. With ``info_sign`` (Garrison re-signing a database it
    maintains) the manifest is generated afresh for the patched files and signed with it.

    Args:
        container: the current ``.cvd`` or ``.cld``.
        cdiff: the ``.cdiff`` file; its version must be the container's plus one.
        source: the container's name; its extension tells a ``.cvd`` from a ``.cld`` (see ``read_container``).
        key: the cdiff signature key (None skips the check); ``cvd_key``, ``info_key``: the container's keys.
        info_sign: re-sign the manifest (see :func:`cvd.info_signer`).
        build_time: the build time of a re-signed container (now by default).
        limits: cdiff limits; ``cvd_limits``: container limits.

    Raises:
        DatabaseError: the container or the cdiff is invalid, the versions do not follow, the script does not
            apply, or the result is not a valid container (for instance a patch that did not update the
            manifest).
    """
    current = read_container(container, source, key=cvd_key, info_key=info_key, limits=cvd_limits)
    patch = parse_cdiff(cdiff, key=key, limits=limits)
    have = current.header.version
    if patch.version != have + 1:
        raise _error(f"{source}: the patch to version {patch.version} needs version {patch.version - 1}, have {have}")
    files = apply_cdiff(current.files, patch)
    infos = sorted(name for name in files if name.lower().endswith(".info"))
    if len(infos) != 1:
        raise _error(f"{source}: after the patch there must be exactly one .info manifest, found {len(infos)}")
    info_name = infos[0]
    database = info_name[: -len(".info")]

    if info_sign is not None:
        header = current.header
        try:
            patched = parse_header(files[info_name].split(b"\n", 1)[0].ljust(HEADER_SIZE, b" "), info_name)
            if patched.version == patch.version:
                header = patched
        except DatabaseError:
            pass  # a manifest the patch left unusable is regenerated from the old header below
        members = {name: content for name, content in files.items() if name != info_name}
        try:
            return build_cld(
                database,
                patch.version,
                members,
                flevel=header.functionality_level,
                builder=header.builder,
                info_sign=info_sign,
                build_time=build_time,
            )
        except ValueError as exc:
            raise _error(f"{source}: cannot rebuild the container: {exc}") from None

    # freshclam's buildcld: the header is the manifest's first line, the body a plain tar, COPYING first.
    first_line = files[info_name].split(b"\n", 1)[0].rstrip(b"\r")
    if len(first_line) > HEADER_SIZE:
        raise _error(f"{source}: the patched manifest's header line is longer than {HEADER_SIZE} bytes")
    header = parse_header(first_line.ljust(HEADER_SIZE, b" "), f"{source} patched {info_name}")
    if header.version != patch.version:
        raise _error(f"{source}: the patched manifest says version {header.version}, the patch {patch.version}")
    order = ["COPYING", info_name, *sorted(name for name in files if name not in ("COPYING", info_name))]
    try:
        body = tar_members([(name, files[name]) for name in order if name in files], header.build_time)
    except ValueError as exc:  # tarfile refuses names longer than ustar allows
        raise _error(f"{source}: cannot rebuild the container: {exc}") from None
    result = first_line.ljust(HEADER_SIZE, b" ") + body
    kind = ContainerKind.CLD if current.signed else ContainerKind.CUD
    read_container(result, f"{database}.{kind.value}", info_key=info_key, limits=cvd_limits, kind=kind)
    return result


# ------------------------------------------------------------------------------------------------------------
# Building


def _prefix(line: bytes) -> bytes:
    """The part of an original line a DEL/XCHG quotes: up to the first whitespace, read alike by every version."""
    if not line or line[0] in _WHITESPACE:
        return b""
    return line.split(None, 1)[0]


def _addable(line: bytes) -> bool:
    # A script line cannot be empty, ends at "\n" with one "\r" stripped, and libclamav's C code stops at NUL.
    return bool(line) and not line.endswith(b"\r") and b"\0" not in line


def _editable(line: bytes) -> bool:
    prefix = _prefix(line)
    return bool(prefix) and b"\0" not in prefix


def _last_positions(lines: list[bytes]) -> dict[bytes, int]:
    return {line: i for i, line in enumerate(lines)}


def _edit_script(name: str, old: list[bytes], new: list[bytes], budget: int | None) -> list[bytes] | None:
    """OPEN/DEL/XCHG/ADD/CLOSE turning ``old`` into ``new``, or None when some line cannot be quoted.

    A cdiff can only delete or replace lines in place and append at the end, so the new file must be an in-order
    edit of the old one followed by appended lines. A two-pointer walk finds that edit in linear time, using the
    last position of every line on each side to tell a deleted line from an inserted one:

    * equal lines are kept;
    * an old line that never comes again in the new file is deleted, or replaced by the new line when that one
      never comes again in the old file either (an in-place change);
    * a new line that never comes again in the old file, facing an old line still needed later, is an insertion
      in the middle, which a cdiff cannot express: from there on the old lines are deleted and the new ones
      appended. That is exact for every input and small for the usual append-mostly files; a sorted file with
      lines inserted everywhere degrades to rewriting its tail, a limit of the format.

    The walk gives up (None) as soon as the script grows past ``budget`` bytes, when replacing the file is
    cheaper.
    """
    later_in_new = _last_positions(new)
    later_in_old = _last_positions(old)
    edits: list[bytes] = []
    size = 0
    limit = sys.maxsize if budget is None else budget
    i = j = 0
    while i < len(old) and j < len(new):
        a, b = old[i], new[j]
        if a == b:
            i += 1
            j += 1
            continue
        a_later = later_in_new.get(a, -1) > j
        b_later = later_in_old.get(b, -1) > i
        if not a_later and not b_later:
            if not _editable(a) or not _addable(b):
                return None
            edits.append(b"XCHG %d %s %s\n" % (i + 1, _prefix(a), b))
            size += len(edits[-1])
            i += 1
            j += 1
        elif not b_later and a_later:
            break  # an insertion in the middle: rewrite from here
        else:
            # old[i] is gone, or moved (then it comes back as an insertion later): delete it here.
            if not _editable(a):
                return None
            edits.append(b"DEL %d %s\n" % (i + 1, _prefix(a)))
            size += len(edits[-1])
            i += 1
        if size > limit:
            return None
    # A cheap lower bound for the rest (every old line deleted, every new one added) before writing it out.
    if size + 6 * (len(old) - i) + sum(map(len, new[j:])) + 5 * (len(new) - j) > limit:
        return None
    for k in range(i, len(old)):
        if not _editable(old[k]):
            return None
        edits.append(b"DEL %d %s\n" % (k + 1, _prefix(old[k])))
        size += len(edits[-1])
        if size > limit:
            return None
    for line in new[j:]:
        if not _addable(line):
            return None
        edits.append(b"ADD %s\n" % line)
    if not edits:
        return []
    return [b"OPEN %s\n" % name.encode(), *edits, b"CLOSE\n"]


def _lines_or_none(content: bytes) -> list[bytes] | None:
    if content and not content.endswith(b"\n"):
        return None
    lines = content.split(b"\n")
    lines.pop()
    return lines


def _file_script(name: str, old: bytes | None, new: bytes) -> list[bytes]:
    new_lines = _lines_or_none(new)
    if new_lines is None:
        raise ValueError(f"{name}: a cdiff cannot write a file that does not end with a newline")
    bad = next((line for line in new_lines if not _addable(line)), None)
    # Replacing the whole file: always possible for a non-empty file whose lines can all be written.
    replace_size = len(new) + 5 * len(new_lines) + 2 * len(name) + 20 if new_lines and bad is None else None
    edit: list[bytes] | None = None
    if old is not None:
        old_lines = _lines_or_none(old)
        if old_lines is not None:
            edit = _edit_script(name, old_lines, new_lines, replace_size)
    if edit is not None and (replace_size is None or sum(map(len, edit)) <= replace_size):
        return edit  # smaller than a replacement, unless most lines moved (a reordered or rewritten file)
    if replace_size is None:
        what = "create an empty file" if not new_lines else f"write the line {bad!r:.80} (empty, NUL or final CR)"
        raise ValueError(f"{name}: a cdiff cannot {what}")
    # The old file cannot be edited line by line (no final newline, a line with nothing to quote): replace it.
    script = [b"UNLINK %s\n" % name.encode()] if old is not None else []
    return [*script, b"OPEN %s\n" % name.encode(), *(b"ADD %s\n" % line for line in new_lines), b"CLOSE\n"]


def _longest_line(content: bytes) -> int:
    return max(map(len, content.split(b"\n")))


def make_cdiff(
    old: Mapping[str, bytes],
    new: Mapping[str, bytes],
    version: int,
    sign: Callable[[bytes], str] | None = None,
) -> bytes:
    """Build a ``.cdiff`` that turns the unpacked database ``old`` into ``new``.

    Changed files get ``OPEN``/``DEL``/``XCHG``/``ADD``/``CLOSE``, new files ``OPEN``/``ADD``/``CLOSE``,
    removed files ``UNLINK``. The work is linear in the files' lines (see :func:`_edit_script`).

    Args:
        old, new: file name to content.
        version: the version the patch produces (written in the header).
        sign: called with the SHA-256 of header and compressed script, returns the signature text (see
            :func:`cvd.info_signer`); None writes an empty signature, for :func:`parse_cdiff` with ``key=None``.

    Raises:
        ValueError: a negative version, a name ClamAV refuses (letters, digits and dots only), or content a
            cdiff cannot express: a new file that is empty or does not end with a newline, or a line to write
            that is empty, holds a NUL or ends with a CR.
    """
    if version < 0:
        raise ValueError("the version must not be negative")
    script: list[bytes] = []
    longest = 0
    for name in sorted(set(old) | set(new)):
        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"bad database name {name!r} (letters, digits and dots, not starting with a dot)")
        if name not in new:
            script.append(b"UNLINK %s\n" % name.encode())
            continue
        before = old.get(name)
        if before == new[name]:
            continue
        part = _file_script(name, before, new[name])
        if part:
            longest = max(longest, _longest_line(new[name]), _longest_line(before or b""), *map(len, part))
        script.extend(part)
    if longest + 2 >= _DEFAULT_LINE_SIZE:
        # libclamav reads script and file lines into a fixed buffer unless the script asks for a bigger one.
        if longest + 2 > _MAX_LINE_SIZE:
            raise ValueError(f"a line of {longest} bytes is longer than libclamav's largest line buffer")
        script.insert(0, b"#LSIZE %d\n" % min(_MAX_LINE_SIZE, longest + 1024))
    text = b"".join(script)
    signed = f"ClamAV-Diff:{version}:{len(text)}:".encode("ascii") + gzip.compress(text, compresslevel=6, mtime=0)
    dsig = b"" if sign is None else sign(hashlib.sha256(signed).digest()).encode("ascii")
    if b":" in dsig:
        raise ValueError("the sign callback returned text with a ':'")
    return signed + b":" + dsig
