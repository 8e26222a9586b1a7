"""MIME mail messages and mbox mailboxes, read with the standard library's :mod:`email` package.

Each leaf part's decoded payload (base64, quoted-printable, uuencode transfer encodings) is a member named by
its file name, or ``part<N>`` when it has none; attached messages are walked into. Old mailers also put
uuencoded files straight into a text body (``begin 644 name`` ... ``end``): those blocks are decoded with
:func:`binascii.a2b_uu` and yielded under the name on their ``begin`` line.

A mailbox (``From `` separator lines) is split into its messages, each yielded as ``message<N>`` typed
:attr:`FileType.MAIL`, so the scanner parses them one at a time. The ``compat32`` policy is used because it
records defects instead of raising on them: malformed mail is the normal case for a scanner.
"""

from __future__ import annotations

import binascii
import email
import email.policy
import quopri
import re
import warnings
from collections.abc import Iterator
from email.message import Message

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType
from garrison.engine.unpack.registry import Member, UnpackContext, register

# A mailbox separator: a "From " line at the start of the data or after an empty line.
_MBOX_SPLIT = re.compile(rb"\r?\n\r?\n(?=From [^\r\n]*\r?\n)")
_UU_BEGIN = re.compile(rb"^begin(?:-base64)? +[0-7]{3,4} +([^\r\n]+?)\r?$", re.MULTILINE)
_ENCODED = frozenset({"base64", "quoted-printable"})
_UU_END = re.compile(rb"^end\r?$", re.MULTILINE)


def _label(name: object) -> str:
    text = str(name).strip()
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


@register(FileType.MAIL)
def unpack_mail(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    if data.startswith(b"From "):
        messages = _MBOX_SPLIT.split(data)
        if len(messages) > 1:
            for index, message in enumerate(messages, 1):
                yield Member(f"message{index}", data=message, file_type=FileType.MAIL)
            return
    yield from _parts(data, ctx)


def _parts(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            message = email.message_from_bytes(data, policy=email.policy.compat32)
            leaves = _leaves(message)
    except (RecursionError, ValueError, LookupError, TypeError) as exc:
        raise UnpackError(f"malformed mail message: {exc}") from None
    for index, part in enumerate(leaves, 1):
        if ctx.expired():
            yield Member(f"part{index}", skipped="scan time limit reached", limit="max_scan_time")
            return
        name = _part_name(part) or f"part{index}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                payload = _encoded_message(part) if part.is_multipart() else part.get_payload(decode=True)
        except Exception as exc:  # a broken part must not lose the others
            yield Member(name, skipped=f"undecodable part: {exc}")
            continue
        if not isinstance(payload, bytes):
            continue
        if len(payload) > ctx.max_member_size:
            yield ctx.too_large(name, len(payload))
        else:
            yield Member(name, data=payload)
        if part.get_content_maintype() == "text" and b"begin" in payload:
            yield from _uuencoded(payload, ctx)


def _leaves(message: Message) -> list[Message]:
    """Leaf parts in document order, plus attached messages that were (wrongly) base64/QP encoded.

    ``email`` parses the body of a ``message/rfc822`` part as a message even when the part declares a
    transfer encoding, which turns an encoded attached message into gibberish headers; such parts are kept
    whole so that their decoded body becomes one member, which the scanner then types as mail.
    """
    found: list[Message] = []
    stack = [message]
    while stack:
        part = stack.pop()
        encoded_message = part.get_content_maintype() == "message" and _transfer_encoding(part) in _ENCODED
        if not part.is_multipart() or encoded_message:
            found.append(part)
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend(p for p in reversed(payload) if isinstance(p, Message))
    return found


def _transfer_encoding(part: Message) -> str:
    return str(part.get("content-transfer-encoding", "")).strip().lower()


def _encoded_message(part: Message) -> bytes | None:
    payload = part.get_payload()
    if not isinstance(payload, list) or not payload:
        return None
    text = payload[0].as_bytes() if isinstance(payload[0], Message) else b""
    if _transfer_encoding(part) == "base64":
        return binascii.a2b_base64(re.sub(rb"[^A-Za-z0-9+/=]", b"", text) + b"==")
    return quopri.decodestring(text)


def _part_name(part: Message) -> str | None:
    try:
        name = part.get_filename() or part.get_param("name")
    except Exception:  # broken RFC 2231 parameters: fall back to the part number
        return None
    if isinstance(name, tuple):  # an undecoded RFC 2231 (charset, language, value) triple
        name = name[2]
    return _label(name) if name else None


def _uuencoded(text: bytes, ctx: UnpackContext) -> Iterator[Member]:
    """Files uuencoded inline in a text body."""
    pos = 0
    while (begin := _UU_BEGIN.search(text, pos)) is not None:
        end = _UU_END.search(text, begin.end())
        stop = end.start() if end else len(text)
        name = _label(begin.group(1).decode("latin-1")) or "uuencoded"
        pos = end.end() if end else len(text)
        if begin.group(0).startswith(b"begin-base64"):
            continue  # base64 blocks in bodies are rare and not uuencode
        decoded = _decode_uu(text[begin.end() : stop], ctx.max_member_size)
        yield ctx.too_large(name) if decoded is None else Member(name, data=decoded)


def _decode_uu(block: bytes, cap: int) -> bytes | None:
    out: list[bytes] = []
    total = 0
    for line in block.splitlines():
        if not line.strip() or line.strip() == b"`":
            continue
        try:
            piece = binascii.a2b_uu(line)
        except binascii.Error:
            # Lines padded or cut by broken encoders: decode only what the length byte announces.
            length = (((line[0] - 32) & 63) * 4 + 5) // 3
            try:
                piece = binascii.a2b_uu(line[:length])
            except binascii.Error:
                continue
        total += len(piece)
        if total > cap:
            return None
        out.append(piece)
    return b"".join(out)
