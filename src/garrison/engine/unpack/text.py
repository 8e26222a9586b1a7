"""Plain text: a normalised view (ASCII lowercased, whitespace runs collapsed to one space).

This is what ClamAV's TargetType 7 ("normalised ASCII") signatures are written against. The view is yielded
with ``normalized=True`` (it is the file itself, not a child) and only when it differs from the text, when
the text is under ``ScanLimits.max_html_normalize``, and when a loaded signature targets normalised content.
Both steps run in C (:meth:`bytes.lower`, one regular expression), so the cost is one pass over the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from garrison.engine.filetype import FileType
from garrison.engine.unpack.registry import Member, UnpackContext, register

_WHITESPACE = re.compile(rb"\s+")


@register(FileType.TEXT)
def unpack_text(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    if not ctx.normalize or len(data) > ctx.limits.max_html_normalize:
        return
    view = _WHITESPACE.sub(b" ", data.lower())
    if view != data:
        yield Member("text-normalized", data=view, file_type=FileType.TEXT, normalized=True)
