"""Plain text: the normalised view."""

from __future__ import annotations

from garrison.engine.filetype import FileType
from garrison.engine.unpack.registry import UnpackContext
from garrison.engine.unpack.text import unpack_text

from .helpers import make_ctx


def test_lowercase_and_collapsed_whitespace() -> None:
    (view,) = unpack_text(b"Hello   WORLD\r\n\tSecond  Line\n", make_ctx())
    assert view.data == b"hello world second line "
    assert view.normalized
    assert view.file_type is FileType.TEXT


def test_nothing_when_already_normal_too_large_or_disabled() -> None:
    assert list(unpack_text(b"already normal", make_ctx())) == []
    assert list(unpack_text(b"Too  Large", make_ctx(max_html_normalize=5))) == []
    off = UnpackContext(make_ctx().limits, 1 << 20, make_ctx().deadline, normalize=False)
    assert list(unpack_text(b"Some  Text", off)) == []
