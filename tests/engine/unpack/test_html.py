"""HTML: the normalised view, inline scripts and data: URIs."""

from __future__ import annotations

import base64

import pytest

from garrison.engine.filetype import FileType, detect
from garrison.engine.unpack.html import unpack_html
from garrison.engine.unpack.registry import UnpackContext

from .helpers import EICAR, by_name, make_ctx

PAGE = (
    b"<!DOCTYPE html>\n<HTML>\n<Head><TITLE>Hi</TITLE></Head>\n"
    b"<BODY   onLoad = 'Run()'>\n  Caf&eacute;   &amp;\t&#x41;&#66;C  <!-- hidden comment -->\n"
    b'<IMG SRC="data:application/octet-stream;base64,' + base64.b64encode(EICAR) + b'">\n'
    b'<a href="data:text/plain,hello%20world">x</a>\n'
    b"<SCRIPT type=text/javascript>var A = 'X5O!P';\n  eval(A);</SCRIPT>\n</BODY></HTML>\n"
)


def test_normalised_view_scripts_and_data_uris() -> None:
    assert detect(PAGE) is FileType.HTML
    members = by_name(unpack_html(PAGE, make_ctx()))
    view = members["html-normalized"]
    assert view.normalized
    assert view.file_type is FileType.HTML
    assert view.data is not None
    text = view.data.decode()
    assert '<body onload="run()">' in text
    assert "café & abc" in text
    assert "hidden comment" not in text
    assert "  " not in text and "\n" not in text
    assert text == text.lower()
    assert members["javascript"].data == b"var A = 'X5O!P';\n  eval(A);"
    assert not members["javascript"].normalized
    assert members["data-uri1"].data == EICAR
    assert members["data-uri2"].data == b"hello world"


def test_no_view_when_normalisation_is_off() -> None:
    ctx = UnpackContext(make_ctx().limits, 1 << 20, make_ctx().deadline, normalize=False)
    members = by_name(unpack_html(PAGE, ctx))
    assert "html-normalized" not in members
    # Without a view to build, scripts and data: URIs are still extracted, the same as with one.
    assert members["javascript"].data == b"var A = 'X5O!P';\n  eval(A);"
    assert members["data-uri1"].data == EICAR
    assert members["data-uri2"].data == b"hello world"


def test_pages_over_the_normalisation_limit_are_left_alone() -> None:
    assert list(unpack_html(PAGE, make_ctx(max_html_normalize=100))) == []


def test_oversized_data_uri() -> None:
    page = b'<html><img src="data:;base64,' + base64.b64encode(b"\0" * 6000) + b'"></html>'
    members = by_name(unpack_html(page, make_ctx(max_member_size=4096)))
    assert members["data-uri1"].limit == "max_file_size"


@pytest.mark.parametrize(
    "page",
    [
        b"<html><script>never closed",
        b"<html><" + b"<" * 1000 + b"a href='",
        b"<html>\xff\xfe\x00 broken utf-8 <b>bold",
        b"<html><![CDATA[ x <!-- <img src='data:;base64,!!!'>",
        b'<html><a b="data:text/plain;base64,%%%">',
    ],
)
def test_malformed_html(page: bytes) -> None:
    members = list(unpack_html(page, make_ctx()))
    assert members[0].name == "html-normalized"
    assert all(isinstance(m.data, bytes) or m.skipped for m in members)


def test_all_scripts_of_a_page_are_one_member() -> None:
    page = b"<html><body>" + b"".join(b"<script>f%d()</script>" % i for i in range(30)) + b"</body></html>"
    for normalize in (True, False):
        ctx = UnpackContext(make_ctx().limits, 1 << 20, make_ctx().deadline, normalize=normalize)
        scripts = [m for m in unpack_html(page, ctx) if m.name == "javascript"]
        assert len(scripts) == 1
        assert scripts[0].data == b"\n".join(b"f%d()" % i for i in range(30))
