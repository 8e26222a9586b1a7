"""Prometheus metrics, in a registry of the application's own (never the process-wide default one).

Counted as requests pass: HTTP requests by route template, method and status, and their latency. Read from the
database at each scrape, for the whole tree and across every server process: agents by state and detections stored.

``/metrics`` is served only to a caller that proves it may read it: with ``GARRISON_METRICS_TOKEN`` set, the
request must carry ``Authorization: Bearer <that token>`` (from anywhere); without it, only requests from the
loopback address (127.0.0.1, ::1) are answered, for a Prometheus or an exporter on the same machine.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import load_only
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from garrison.server.agents.models import Agent
from garrison.server.agents.service import AgentState, state_of
from garrison.server.db import Database
from garrison.server.detections.models import Detection
from garrison.server.errors import Forbidden, Unauthorized
from garrison.server.settings import ServerSettings

LOOPBACK = frozenset({"127.0.0.1", "::1"})
UNMATCHED = "<unmatched>"  # requests no route answered (404s, refused agents): one label, not one per path
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DatabaseCollector(Collector):
    """Agents by state and detections stored, computed from the database when Prometheus scrapes."""

    def __init__(self, database: Database, settings: ServerSettings) -> None:
        self.database = database
        self.settings = settings

    def collect(self) -> Iterator[Any]:
        counts = dict.fromkeys(AgentState, 0)
        with self.database.session() as session:
            query = select(Agent).options(load_only(Agent.revoked, Agent.revoked_at, Agent.last_seen_at))
            for agent in session.scalars(query):
                counts[state_of(agent, self.settings.heartbeat_seconds).state] += 1
            detections = session.scalar(select(func.count()).select_from(Detection)) or 0
        agents = GaugeMetricFamily("garrison_agents", "Enrolled agents by state (whole tree).", labels=["state"])
        for state, count in counts.items():
            agents.add_metric([state.value], count)
        yield agents
        yield CounterMetricFamily(
            "garrison_detections_ingested", "Detections ingested and stored (whole tree, all processes).", detections
        )


class Metrics:
    """The application's registry and the instruments the middleware and load shedding update."""

    def __init__(self, database: Database, settings: ServerSettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "garrison_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "garrison_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.shed = Counter(
            "garrison_agent_requests_shed",
            "Agent requests refused with 503 and Retry-After because too many were in flight.",
            registry=self.registry,
        )
        self.registry.register(DatabaseCollector(database, settings))

    def count_shed(self) -> None:
        self.shed.inc()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def authorize(self, request: Request) -> None:
        """Refuse unless the caller carries the metrics token, or (with no token set) calls from loopback."""
        token = self.settings.metrics_token
        if token:
            given = request.headers.get("Authorization", "")
            if not given.startswith("Bearer ") or not hmac.compare_digest(
                given.removeprefix("Bearer ").strip().encode(), token.encode()
            ):
                raise Unauthorized("metrics need Authorization: Bearer <GARRISON_METRICS_TOKEN>")
        elif (request.client.host if request.client else "") not in LOOPBACK:
            raise Forbidden("metrics are served to 127.0.0.1 only; set GARRISON_METRICS_TOKEN to read them remotely")

    def response(self, request: Request) -> Response:
        self.authorize(request)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/v1/units/{unit_id}``), never the raw path."""
    route = scope.get("route")
    # path_format, not path: a route declared as /units/{unit_id:int} is labelled /units/{unit_id}.
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class MetricsMiddleware:
    """ASGI middleware: count each HTTP request and time it, labelled by route template and status."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.observe(scope["method"], route_template(scope), status, time.perf_counter() - started)
