"""MIME mail and mbox: decoded parts, inline uuencode, mailbox splitting, malformed input."""

from __future__ import annotations

import base64
import binascii
import quopri
from email import message_from_bytes, policy
from email.message import EmailMessage
from urllib.parse import quote

import pytest

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType, detect
from garrison.engine.unpack.mail import unpack_mail

from .helpers import EICAR, HOSTILE_NAMES, by_name, make_ctx


def message(attachments: dict[str, bytes], body: str = "Please see the attached invoice.\n") -> bytes:
    msg = EmailMessage()
    msg["From"] = "billing@example.com"
    msg["To"] = "victim@example.gov.vn"
    msg["Subject"] = "Invoice"
    msg.set_content(body)
    for name, data in attachments.items():
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return bytes(msg)


def uuencode(data: bytes, name: str) -> bytes:
    lines = [binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45)]
    return b"begin 644 " + name.encode() + b"\n" + b"".join(lines) + b"`\nend\n"


def test_base64_attachment_and_body() -> None:
    data = message({"invoice.com": EICAR})
    assert detect(data) is FileType.MAIL
    members = by_name(unpack_mail(data, make_ctx()))
    assert members["invoice.com"].data == EICAR
    assert members["part1"].data == b"Please see the attached invoice.\n"


def test_quoted_printable_and_hand_written_mime() -> None:
    data = (
        b"From: a@example.com\r\nTo: b@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
        b"--XX\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + quopri.encodestring(EICAR)
        + b'\r\n--XX\r\nContent-Type: application/x-msdownload; name="run.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(EICAR) + b"--XX--\r\n"
    )
    members = by_name(unpack_mail(data, make_ctx()))
    assert members["part1"].data is not None and EICAR in members["part1"].data
    assert members["run.exe"].data == EICAR


def test_uuencode_transfer_encoding_and_inline_blocks() -> None:
    cte = (
        b"From: a@example.com\nTo: b@example.com\nContent-Type: application/octet-stream; name=x.com\n"
        b"Content-Transfer-Encoding: x-uuencode\n\n" + uuencode(EICAR, "x.com")
    )
    assert EICAR in [m.data for m in unpack_mail(cte, make_ctx())]
    inline = b"From: a@example.com\nTo: b@example.com\nSubject: hi\n\nsee below\n\n" + uuencode(EICAR, "eicar.com")
    members = by_name(unpack_mail(inline, make_ctx()))
    assert members["eicar.com"].data == EICAR


def test_attached_message_is_walked() -> None:
    inner = message_from_bytes(message({"inner.com": EICAR}), policy=policy.default)
    outer = EmailMessage()
    outer["From"] = "a@example.com"
    outer["To"] = "b@example.com"
    outer.set_content("forwarded")
    outer.add_attachment(inner)
    assert EICAR in [m.data for m in unpack_mail(bytes(outer), make_ctx())]


def test_base64_encoded_attached_message_is_a_member() -> None:
    # Invalid per RFC 2046 but common: the message comes out as one member, which the scanner types as mail.
    outer = EmailMessage()
    outer["From"] = "a@example.com"
    outer["To"] = "b@example.com"
    outer.set_content("forwarded")
    outer.add_attachment(message({"inner.com": EICAR}), maintype="message", subtype="rfc822")
    inner = [m for m in unpack_mail(bytes(outer), make_ctx()) if m.data and m.data.startswith(b"From:")]
    assert len(inner) == 1
    assert EICAR in [m.data for m in unpack_mail(inner[0].data or b"", make_ctx())]


def test_mbox_is_split_into_messages() -> None:
    first = message({"one.com": EICAR})
    second = message({"two.txt": b"hello"})
    mbox = b"From alice@example.com Mon Jan  1 00:00:00 2024\n" + first + b"\n\n"
    mbox += b"From bob@example.com Tue Jan  2 00:00:00 2024\n" + second + b"\n"
    assert detect(mbox) is FileType.MAIL
    members = list(unpack_mail(mbox, make_ctx()))
    assert [(m.name, m.file_type) for m in members] == [("message1", FileType.MAIL), ("message2", FileType.MAIL)]
    assert by_name(unpack_mail(members[0].data or b"", make_ctx()))["one.com"].data == EICAR


def test_single_message_with_envelope_line() -> None:
    data = b"From alice@example.com Mon Jan  1 00:00:00 2024\n" + message({"one.com": EICAR})
    assert by_name(unpack_mail(data, make_ctx()))["one.com"].data == EICAR


def test_oversized_part() -> None:
    members = by_name(
        unpack_mail(message({"big.bin": b"B" * 8000, "eicar.com": EICAR}), make_ctx(max_member_size=4096))
    )
    assert members["big.bin"].limit == "max_file_size"
    assert members["eicar.com"].data == EICAR


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_attachment_names(name: str) -> None:
    # RFC 2231 lets a file name carry any byte, newlines and NUL included.
    data = (
        b"From: a@example.com\nTo: b@example.com\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="B"\n\n--B\n'
        b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
        b"Content-Disposition: attachment; filename*=utf-8''"
        + quote(name).encode()
        + b"\n\n"
        + base64.encodebytes(EICAR)
        + b"--B--\n"
    )
    members = [m for m in unpack_mail(data, make_ctx()) if m.data == EICAR]
    assert len(members) == 1
    assert members[0].name == name.strip()
    members[0].name.encode("utf-8")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'From: a@b\nTo: c@d\nContent-Type: multipart/mixed; boundary="Q"\n\n--Q\nbroken', id="no-end"),
        pytest.param(b"From: a@b\nTo: c@d\nContent-Transfer-Encoding: base64\n\n!!!not base64***", id="bad-b64"),
        pytest.param(b'From: a@b\nTo: c@d\nContent-Type: text/plain; charset="nope\x00"\n\nx', id="bad-charset"),
        pytest.param(b"From: a@b\nTo: c@d\nContent-Type: multipart/mixed\n\nno boundary", id="no-boundary"),
        pytest.param(b"From: a@b\nTo: c@d\nSubject: x\n\nbegin 644 a.com\n" + b"\xff" * 300 + b"\nend\n", id="bad-uu"),
        pytest.param(
            b"From: a@b\nTo: c@d\nContent-Disposition: attachment; filename*=bogus''%ZZ%\n\nx", id="bad-rfc2231"
        ),
    ],
)
def test_malformed_mail_never_raises_unexpectedly(data: bytes) -> None:
    try:
        members = list(unpack_mail(data, make_ctx()))
    except UnpackError:
        return
    assert all(isinstance(m.data, bytes) or m.skipped for m in members)


def test_deeply_nested_multipart() -> None:
    depth = 2000
    head = b"From: a@b\nTo: c@d\n"
    body = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(depth))
    data = head + body + b"Content-Type: text/plain\n\n" + EICAR + b"\n"
    try:
        members = list(unpack_mail(data, make_ctx()))
    except UnpackError:
        return
    assert EICAR in b"".join(m.data or b"" for m in members)
