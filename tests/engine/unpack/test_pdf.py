"""PDF: decoded streams, embedded files by name, /JS strings, encryption, bombs. Documents built with pikepdf."""

from __future__ import annotations

import io
import zlib

import pikepdf
import pytest

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType, detect
from garrison.engine.unpack.pdf import unpack_pdf

from .helpers import EICAR, HOSTILE_NAMES, by_name, make_ctx


def document(attachments: dict[str, bytes] | None = None, **streams: pikepdf.Stream | bytes) -> pikepdf.Pdf:
    pdf = pikepdf.new()
    pdf.add_blank_page()
    pdf.Root.OpenAction = pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert('X5O')"))
    for key, value in streams.items():
        stream = value if isinstance(value, pikepdf.Stream) else pikepdf.Stream(pdf, value)
        pdf.Root[f"/{key}"] = pdf.make_indirect(stream)
    for name, data in (attachments or {}).items():
        pdf.attachments[name] = pikepdf.AttachedFileSpec(pdf, data, filename=name)
    return pdf


def save(pdf: pikepdf.Pdf, **options: object) -> bytes:
    out = io.BytesIO()
    pdf.save(out, **options)  # type: ignore[arg-type]
    return out.getvalue()


def test_streams_attachments_and_javascript() -> None:
    data = save(document({"invoice.com": EICAR}, Payload=EICAR * 3), compress_streams=True)
    assert detect(data) is FileType.PDF
    members = list(unpack_pdf(data, make_ctx()))
    named = by_name(members)
    assert named["invoice.com"].data == EICAR
    assert EICAR * 3 in [m.data for m in members if m.name.startswith("obj")]
    scripts = [m for m in members if m.name.endswith("/JS")]
    assert [m.data for m in scripts] == [b"app.alert('X5O')"]


def test_filter_chains_are_decoded() -> None:
    pdf = pikepdf.new()
    chained = pikepdf.Stream(pdf, zlib.compress(zlib.compress(EICAR)).hex().encode() + b">")
    chained.Filter = pikepdf.Array([pikepdf.Name.ASCIIHexDecode, pikepdf.Name.FlateDecode, pikepdf.Name.FlateDecode])
    pdf.Root.Chained = pdf.make_indirect(chained)
    members = list(unpack_pdf(save(pdf), make_ctx()))
    assert EICAR in [m.data for m in members]


def test_encrypted_with_empty_user_password_is_read() -> None:
    data = save(document(Payload=EICAR), encryption=pikepdf.Encryption(owner="owner", user=""))
    members = list(unpack_pdf(data, make_ctx()))
    assert EICAR in [m.data for m in members]
    assert not any(m.encrypted for m in members)


def test_encrypted_with_user_password_is_reported() -> None:
    data = save(document(Payload=EICAR), encryption=pikepdf.Encryption(owner="owner", user="secret"))
    (member,) = unpack_pdf(data, make_ctx())
    assert member.encrypted
    assert member.data is None


@pytest.mark.parametrize("size", [200_000, 3_000_000])
def test_flate_bomb_is_refused(size: int) -> None:
    pdf = pikepdf.new()
    bomb = pikepdf.Stream(pdf, zlib.compress(b"\0" * size, 9))
    bomb.Filter = pikepdf.Name.FlateDecode
    pdf.Root.Bomb = pdf.make_indirect(bomb)
    pdf.Root.Small = pdf.make_indirect(pikepdf.Stream(pdf, EICAR))
    members = list(unpack_pdf(save(pdf), make_ctx(max_member_size=100_000)))
    assert EICAR in [m.data for m in members]
    refused = [m for m in members if m.limit]
    assert len(refused) == 1
    assert refused[0].limit == "max_file_size"


def test_large_stream_under_the_limit_is_decoded_in_full() -> None:
    pdf = pikepdf.new()
    big = pikepdf.Stream(pdf, zlib.compress(b"\0" * 90_000 + EICAR, 9))
    big.Filter = pikepdf.Name.FlateDecode
    pdf.Root.Big = pdf.make_indirect(big)
    members = list(unpack_pdf(save(pdf), make_ctx(max_member_size=100_000)))
    assert b"\0" * 90_000 + EICAR in [m.data for m in members]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_attachment_names(name: str) -> None:
    members = list(unpack_pdf(save(document({name: EICAR})), make_ctx()))
    attached = [m for m in members if m.data == EICAR]
    assert len(attached) == 1
    attached[0].name.encode("utf-8")


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda d: d[: len(d) // 2], id="truncated"),
        pytest.param(lambda d: d[:20], id="header-only"),
        pytest.param(lambda d: b"%PDF-1.7\n" + b"garbage " * 50, id="garbage"),
        pytest.param(lambda d: d.replace(b"/Length", b"/Lxngth"), id="broken-lengths"),
        pytest.param(lambda d: d.replace(b"xref", b"xxxx"), id="no-xref"),
    ],
)
def test_corrupt_documents_fail_cleanly(mangle: object) -> None:
    data = mangle(save(document({"a.com": EICAR}, Payload=b"P" * 500)))  # type: ignore[operator]
    try:
        members = list(unpack_pdf(data, make_ctx()))
    except UnpackError:
        return
    assert all(isinstance(m.data, bytes) or m.skipped or m.encrypted for m in members)
