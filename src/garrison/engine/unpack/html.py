"""HTML: a normalised view of the page, plus the scripts and ``data:`` URI payloads it carries.

The normalised view follows ClamAV's HTML normaliser closely enough for signatures written against it:
comments dropped, tags rewritten as ``<tag attr="value">``, character references decoded, ASCII letters
lowercased and every whitespace run collapsed to one space. It is yielded with ``normalized=True``: it is
the page itself seen differently, not a child, and the scanner must not unpack it again.

Inline ``<script>`` bodies (together, one member named ``javascript``) and ``data:`` URI payloads
(``data-uri<N>``, base64 or percent-encoded) are real members. Pages larger than
``ScanLimits.max_html_normalize`` are left alone (the raw bytes are still matched), and the view is not built
when no loaded signature targets normalised content.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import unquote_to_bytes

from garrison.engine.filetype import FileType
from garrison.engine.unpack.registry import Member, UnpackContext, register

_WHITESPACE = re.compile(r"\s+")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_DATA_URI = re.compile(r"data:([a-z0-9!#$&^_.+/-]*)((?:;[a-z0-9!#$&^_.+=-]*)*),([^\"'\s)<>]*)", re.IGNORECASE)
_RAW_TEXT = frozenset({"script", "style"})
# All inline scripts of a page form one member, as ClamAV collects them into one "javascript" file: a page
# with dozens of small scripts is then one more object to scan, not dozens.
SCRIPTS_MEMBER = "javascript"
# Without a normalised view to build, a full parse is wasted work (html.parser runs at a few MB/s): scripts
# and data: URIs are found with expressions instead.
_DATA_URI_BYTES = re.compile(_DATA_URI.pattern.encode(), re.IGNORECASE)


def _normalise_text(text: str) -> str:
    return _WHITESPACE.sub(" ", text.translate(_ASCII_LOWER))


class _Normaliser(HTMLParser):
    def __init__(self, build_view: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.build_view = build_view
        self.view: list[str] = []
        self.scripts: list[str] = []
        self.uris: list[str] = []
        self._in_script = False
        self._script: list[str] = []

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], close: str) -> None:
        if self.build_view:
            parts = [tag]
            for key, value in attrs:
                parts.append(key if value is None else f'{key}="{_normalise_text(value).strip()}"')
            self.view.append(f"<{' '.join(parts)}{close}>")
        for _, value in attrs:
            if value and "data:" in value.lower():
                self.uris.extend(m.group(0) for m in _DATA_URI.finditer(value))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, "")
        if tag == "script":
            self._in_script = True
            self._script = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, " /")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in_script:
            self._in_script = False
            body = "".join(self._script)
            if body.strip():
                self.scripts.append(body)
        if self.build_view:
            self.view.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self._script.append(data)
        if self.build_view:
            self.view.append(_normalise_text(data))
        if "data:" in data.lower() and (self._in_script or self.lasttag in _RAW_TEXT):
            self.uris.extend(m.group(0) for m in _DATA_URI.finditer(data))


def _decode_uri(uri: str) -> bytes | None:
    match = _DATA_URI.fullmatch(uri)
    if match is None:
        return None
    params, payload = match.group(2).lower(), match.group(3)
    if ";base64" in params:
        compact = re.sub(r"[^A-Za-z0-9+/_-]", "", payload)
        try:
            return base64.urlsafe_b64decode(compact.replace("+", "-").replace("/", "_") + "=" * (-len(compact) % 4))
        except (binascii.Error, ValueError):
            return None
    return unquote_to_bytes(payload)


def _bounded(name: str, payload: bytes, ctx: UnpackContext) -> Member:
    if len(payload) > ctx.max_member_size:
        return ctx.too_large(name, len(payload))
    return Member(name, data=payload)


@register(FileType.HTML)
def unpack_html(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    if len(data) > ctx.limits.max_html_normalize:
        return
    if not ctx.normalize:
        yield from _scripts_and_uris(data, ctx)
        return
    text = data.decode("utf-8", "surrogateescape")
    parser = _Normaliser(build_view=ctx.normalize)
    try:
        parser.feed(text)
        parser.close()
    except Exception:  # noqa: S110 - html.parser is lenient; keep whatever was parsed before it gave up
        pass
    if parser.build_view:
        view = _WHITESPACE.sub(" ", "".join(parser.view)).strip().encode("utf-8", "surrogateescape")
        yield Member("html-normalized", data=view, file_type=FileType.HTML, normalized=True)
    if parser.scripts:
        yield _bounded(SCRIPTS_MEMBER, "\n".join(parser.scripts).encode("utf-8", "surrogateescape"), ctx)
    for index, uri in enumerate(parser.uris, 1):
        payload = _decode_uri(uri)
        if payload:
            yield _bounded(f"data-uri{index}", payload, ctx)


def _scripts_and_uris(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    # Plain substring searches on a lowercased copy: several times faster than a DOTALL regex on big pages.
    low = data.lower()
    scripts = []
    pos = low.find(b"<script")
    while pos >= 0:
        open_end = low.find(b">", pos)
        if open_end < 0:
            break
        close = low.find(b"</script", open_end)
        body = data[open_end + 1 : close if close >= 0 else len(data)]
        if body.strip():
            scripts.append(body)
        if close < 0:
            break
        pos = low.find(b"<script", close)
    if scripts:
        yield _bounded(SCRIPTS_MEMBER, b"\n".join(scripts), ctx)
    if b"data:" not in low:
        return
    for index, match in enumerate(_DATA_URI_BYTES.finditer(data), 1):
        payload = _decode_uri(match.group(0).decode("latin-1"))
        if payload:
            yield _bounded(f"data-uri{index}", payload, ctx)
