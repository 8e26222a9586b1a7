"""Load shedding for the agent protocol: past a number of agent requests in flight, answer 503 with Retry-After.

Only agent requests (``/api/v1/agent/...``) are counted and refused; people using the console or the API are never
turned away by this. Agents honour ``Retry-After``, and the jitter added here spreads their retries out so that a
refused crowd does not come back all at once.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

AGENT_PREFIX = "/api/v1/agent/"
JITTER = 0.2  # Retry-After varies by ±20 %


def retry_after(seconds: float, jitter: float = JITTER) -> int:
    """Whole seconds to tell a refused agent: ``seconds`` ±``jitter``, at least 1."""
    return max(1, round(seconds * random.uniform(1 - jitter, 1 + jitter)))  # noqa: S311 - spreading, not secrecy


def is_agent_request(scope: Scope) -> bool:
    return scope["type"] == "http" and str(scope.get("path", "")).startswith(AGENT_PREFIX)


class AgentLoadShedding:
    """ASGI middleware: at most ``max_inflight`` agent requests at a time; the rest get 503 and Retry-After.

    The count lives in the event loop (one per server process), so no lock is needed.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_inflight: int,
        retry_after_seconds: float,
        on_shed: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.retry_after_seconds = retry_after_seconds
        self.on_shed = on_shed
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_agent_request(scope):
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            await self._refuse(send)
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1

    async def _refuse(self, send: Send) -> None:
        if self.on_shed is not None:
            self.on_shed()
        wait = retry_after(self.retry_after_seconds)
        body = json.dumps(
            {"error": "busy", "message": f"the server is busy; try again in {wait} seconds"}, ensure_ascii=False
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(wait).encode()),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
