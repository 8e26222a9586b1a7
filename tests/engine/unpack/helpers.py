"""Builders for the unpacker tests: every sample is made here at run time, nothing binary is checked in.

Where no Python library writes a format (OLE2/CFB, CAB, RAR), a minimal writer that follows the format
specification just far enough for readers to accept it lives here.
"""

from __future__ import annotations

import itertools
import struct
import time
import zlib
from collections.abc import Iterable

from garrison.engine.limits import ScanLimits
from garrison.engine.unpack.registry import Member, UnpackContext

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

HOSTILE_NAMES = ("../../etc/passwd", "line\nbreak.txt", "nul\x00byte.txt")


def make_ctx(max_member_size: int = 10 * 1024 * 1024, **limits: object) -> UnpackContext:
    return UnpackContext(ScanLimits(**limits), max_member_size, time.monotonic() + 60)  # type: ignore[arg-type]


def by_name(members: Iterable[Member]) -> dict[str, Member]:
    return {m.name: m for m in members}


# --- OLE2 / Compound File Binary (MS-CFB), version 3, 512-byte sectors --------------------------------------

_FREE = 0xFFFFFFFF
_END = 0xFFFFFFFE
_FAT = 0xFFFFFFFD
_NOSTREAM = 0xFFFFFFFF
_MINI_CUTOFF = 4096


def _cfb_name_key(name: str) -> tuple[int, str]:
    return (len(name), name.upper())


def build_cfb(streams: dict[str, bytes]) -> bytes:
    """A compound file holding ``streams``, keyed by slash-separated storage paths ("Macros/VBA/dir").

    Streams under 4096 bytes go to the mini stream, as the specification requires. Each storage's children are
    chained through right siblings in the specification's name order (a degenerate but valid red-black tree).
    """
    # Directory tree: storages and streams.
    nodes: list[dict[str, object]] = [{"name": "Root Entry", "type": 5, "children": {}, "data": b""}]
    for path, data in streams.items():
        parent = nodes[0]
        parts = path.split("/")
        for part in parts[:-1]:
            children: dict[str, int] = parent["children"]  # type: ignore[assignment]
            if part not in children:
                nodes.append({"name": part, "type": 1, "children": {}, "data": b""})
                children[part] = len(nodes) - 1
            parent = nodes[children[part]]
        children = parent["children"]  # type: ignore[assignment]
        nodes.append({"name": parts[-1], "type": 2, "children": {}, "data": data})
        children[parts[-1]] = len(nodes) - 1

    # Mini stream for small streams, regular sectors for the rest.
    mini = bytearray()
    mini_fat: list[int] = []
    big: list[tuple[int, bytes]] = []
    starts: dict[int, int] = {}
    for index, node in enumerate(nodes):
        data = node["data"]  # type: ignore[assignment]
        assert isinstance(data, bytes)
        if node["type"] != 2:
            continue
        if len(data) < _MINI_CUTOFF:
            if not data:
                starts[index] = _END
                continue
            first = len(mini_fat)
            count = (len(data) + 63) // 64
            mini_fat.extend(range(first + 1, first + count))
            mini_fat.append(_END)
            mini += data.ljust(count * 64, b"\0")
            starts[index] = first
        else:
            big.append((index, data))

    sectors: list[bytes] = []
    fat: list[int] = []

    def add_chain(blob: bytes) -> int:
        count = max(1, (len(blob) + 511) // 512)
        first = len(sectors)
        for i in range(count):
            sectors.append(blob[i * 512 : (i + 1) * 512].ljust(512, b"\0"))
            fat.append(first + i + 1 if i < count - 1 else _END)
        return first

    for index, data in big:
        starts[index] = add_chain(data)
    mini_start = add_chain(bytes(mini)) if mini else _END
    mini_fat_blob = b"".join(struct.pack("<I", v) for v in mini_fat)
    mini_fat_start = add_chain(mini_fat_blob.ljust(512, b"\xff")) if mini_fat else _END
    mini_fat_count = (len(mini_fat_blob) + 511) // 512 if mini_fat else 0

    # Directory entries (128 bytes each, 4 per sector).
    def sibling_chain(children: dict[str, int]) -> int:
        ordered = sorted(children.items(), key=lambda kv: _cfb_name_key(kv[0]))
        for (_, a), (_, b) in itertools.pairwise(ordered):
            nodes[a]["right"] = b
        return ordered[0][1] if ordered else _NOSTREAM

    entries = bytearray()
    for node in nodes:
        children = node["children"]  # type: ignore[assignment]
        child = sibling_chain(children) if node["type"] in (1, 5) else _NOSTREAM
        node["child"] = child
    for index, node in enumerate(nodes):
        name = str(node["name"]).encode("utf-16-le")[:62]
        data = node["data"]  # type: ignore[assignment]
        assert isinstance(data, bytes)
        if node["type"] == 5:
            start, size = mini_start, len(mini)
        elif node["type"] == 2:
            start, size = starts[index], len(data)
        else:
            start, size = 0, 0
        entries += name.ljust(64, b"\0")
        entries += struct.pack("<HBB", len(name) + 2, int(node["type"]), 1)  # type: ignore[call-overload]
        entries += struct.pack("<III", _NOSTREAM, int(node.get("right", _NOSTREAM)), int(node["child"]))  # type: ignore[call-overload]
        entries += b"\0" * 16 + b"\0" * 4 + b"\0" * 16
        entries += struct.pack("<IQ", start, size)
    while len(entries) % 512:
        entries += b"\0" * 64 + struct.pack("<HBB", 0, 0, 0) + struct.pack("<III", _NOSTREAM, _NOSTREAM, _NOSTREAM)
        entries += b"\0" * 52
    dir_start = add_chain(bytes(entries))

    # FAT sectors, marked as such in the FAT itself.
    fat_count = 1
    while (len(sectors) + fat_count) * 4 > fat_count * 512:
        fat_count += 1
    fat_first = len(sectors)
    fat.extend([_FAT] * fat_count)
    fat_blob = b"".join(struct.pack("<I", v) for v in fat).ljust(fat_count * 512, b"\xff")
    for i in range(fat_count):
        sectors.append(fat_blob[i * 512 : (i + 1) * 512])
    assert fat_count <= 109

    header = bytearray(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 16)
    header += struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
    header += b"\0" * 6
    header += struct.pack(
        "<IIIIIIIII", 0, fat_count, dir_start, 0, _MINI_CUTOFF, mini_fat_start, mini_fat_count, _END, 0
    )
    difat = [fat_first + i for i in range(fat_count)] + [_FREE] * (109 - fat_count)
    header += b"".join(struct.pack("<I", v) for v in difat)
    assert len(header) == 512
    return bytes(header) + b"".join(sectors)


# --- MS-OVBA: VBA source compression and a minimal VBA project -------------------------------------------------


def ovba_compress(data: bytes) -> bytes:
    """A valid compressed container (MS-OVBA 2.4.1) without copy tokens: larger than Office's, but simple.

    Full 4096-byte chunks are stored as uncompressed chunks; the last, shorter chunk as literal tokens.
    """
    out = bytearray(b"\x01")
    for start in range(0, max(len(data), 1), 4096):
        chunk = data[start : start + 4096]
        if len(chunk) == 4096:
            out += struct.pack("<H", 0x3000 | (4096 + 2 - 3)) + chunk
            continue
        body = bytearray()
        for i in range(0, len(chunk), 8):
            body.append(0)  # flag byte: eight literals
            body += chunk[i : i + 8]
        assert len(body) + 2 <= 4098, "a final chunk this long needs copy tokens"
        out += struct.pack("<H", 0xB000 | (len(body) + 2 - 3)) + body
    return bytes(out)


def _record(rid: int, payload: bytes) -> bytes:
    return struct.pack("<HI", rid, len(payload)) + payload


def vba_project(modules: dict[str, str], root: str = "") -> dict[str, bytes]:
    """The streams of a VBA project (PROJECT, VBA/dir, VBA/_VBA_PROJECT, one stream per module)."""
    d = bytearray()
    d += _record(0x0001, struct.pack("<I", 1))  # SYSKIND: 32-bit Windows
    d += _record(0x0002, struct.pack("<I", 0x409))
    d += _record(0x0014, struct.pack("<I", 0x409))
    d += _record(0x0003, struct.pack("<H", 1252))
    d += _record(0x0004, b"Project")
    d += _record(0x0005, b"") + _record(0x0040, b"")
    d += _record(0x0006, b"") + _record(0x003D, b"")
    d += _record(0x0007, struct.pack("<I", 0))
    d += _record(0x0008, struct.pack("<I", 0))
    d += struct.pack("<HIIH", 0x0009, 4, 1, 0)
    d += _record(0x000C, b"") + _record(0x003C, b"")
    d += _record(0x000F, struct.pack("<H", len(modules)))
    d += _record(0x0013, struct.pack("<H", 0xFFFF))
    streams: dict[str, bytes] = {}
    for name, source in modules.items():
        raw = name.encode("cp1252")
        d += _record(0x0019, raw)
        d += _record(0x0047, name.encode("utf-16-le"))
        d += _record(0x001A, raw) + _record(0x0032, name.encode("utf-16-le"))
        d += _record(0x001C, b"") + _record(0x0048, b"")
        d += _record(0x0031, struct.pack("<I", 0))
        d += _record(0x001E, struct.pack("<I", 0))
        d += _record(0x002C, struct.pack("<H", 0xFFFF))
        d += struct.pack("<HI", 0x0021, 0)
        d += struct.pack("<HI", 0x002B, 0)
        streams[f"{root}VBA/{name}"] = ovba_compress(source.encode("cp1252"))
    d += struct.pack("<HI", 0x0010, 0)
    streams[f"{root}VBA/dir"] = ovba_compress(bytes(d))
    streams[f"{root}VBA/_VBA_PROJECT"] = b"\xcc\x61\xff\xff\x00"
    project = 'ID="{00000000-0000-0000-0000-000000000000}"\r\n'
    project += "".join(f"Module={name}\r\n" for name in modules)
    project += 'Name="Project"\r\n'
    streams[f"{root}PROJECT"] = project.encode("cp1252")
    return streams


# --- Microsoft cabinet (MS-CAB), stored (uncompressed) folder ---------------------------------------------------


def build_cab(files: dict[str, bytes]) -> bytes:
    names = [n.encode("utf-8") + b"\0" for n in files]
    payload = b"".join(files.values())
    header_size, folder_size = 36, 8
    files_offset = header_size + folder_size
    cffiles = bytearray()
    offset = 0
    for raw, data in zip(names, files.values(), strict=True):
        attribs = 0x80 if all(b < 0x80 for b in raw) else 0xA0  # _A_NAME_IS_UTF for non-ASCII names
        cffiles += struct.pack("<IIHHHH", len(data), offset, 0, 0x5821, 0, attribs) + raw
        offset += len(data)
    data_offset = files_offset + len(cffiles)
    blocks = bytearray()
    count = 0
    for start in range(0, max(len(payload), 1), 32768):
        piece = payload[start : start + 32768]
        blocks += struct.pack("<IHH", 0, len(piece), len(piece)) + piece
        count += 1
    total = data_offset + len(blocks)
    head = b"MSCF" + struct.pack("<IIIIIBBHHHHH", 0, total, 0, files_offset, 0, 3, 1, 1, len(files), 0, 0x1234, 0)
    folder = struct.pack("<IHH", data_offset, count, 0)
    return head + folder + bytes(cffiles) + bytes(blocks)


# --- RAR 4, stored files ----------------------------------------------------------------------------------------


def _rar_block(kind: int, flags: int, body: bytes) -> bytes:
    rest = struct.pack("<BHH", kind, flags, 7 + len(body)) + body
    return struct.pack("<H", zlib.crc32(rest) & 0xFFFF) + rest


def build_rar4(files: dict[str, bytes], encrypted: Iterable[str] = ()) -> bytes:
    """A RAR 4 archive with stored (method 0x30) files; names in ``encrypted`` carry the password flag."""
    locked = set(encrypted)
    out = bytearray(b"Rar!\x1a\x07\x00")
    out += _rar_block(0x73, 0, b"\0" * 6)
    for name, data in files.items():
        raw = name.encode("utf-8")
        flags = 0x8000 | (0x0004 if name in locked else 0)
        body = struct.pack(
            "<IIBIIBBHI", len(data), len(data), 3, zlib.crc32(data), 0x5821_0000, 20, 0x30, len(raw), 0o100644
        )
        out += _rar_block(0x74, flags, body + raw) + data
    out += _rar_block(0x7B, 0x4000, b"")
    return bytes(out)
