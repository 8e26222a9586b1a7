"""The server application: ``create_app(settings)`` builds it; nothing is configured at import time."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from garrison import __version__
from garrison.server.agents.api import agent_router
from garrison.server.agents.api import router as agents_router
from garrison.server.alerts import service as alerts
from garrison.server.alerts.api import router as alerts_router
from garrison.server.audit.api import router as audit_router
from garrison.server.auth import passwords
from garrison.server.auth.api import router as auth_router
from garrison.server.console import STATIC as CONSOLE_STATIC
from garrison.server.console import router as console_router
from garrison.server.db import Database, make_engine, migrate
from garrison.server.detections.api import router as detections_router
from garrison.server.errors import ServerError, TooManyRequests, http_error
from garrison.server.federation import child as federation_child
from garrison.server.federation.api import router as federation_router
from garrison.server.operations.logging import RequestContextMiddleware
from garrison.server.operations.metrics import Metrics, MetricsMiddleware
from garrison.server.operations.shedding import AgentLoadShedding
from garrison.server.policies.api import router as policies_router
from garrison.server.reports import history
from garrison.server.reports.api import router as reports_router
from garrison.server.reports.calendar_api import router as reporting_router
from garrison.server.settings import ServerSettings
from garrison.server.sharing import outbox
from garrison.server.sharing.api import router as sharing_router
from garrison.server.sharing.outbox_api import router as outbox_router
from garrison.server.signatures.api import router as signatures_router
from garrison.server.signatures.importers import ContainerKeys
from garrison.server.tasks.api import agent_router as tasks_agent_router
from garrison.server.tasks.api import router as tasks_router
from garrison.server.units.api import router as units_router
from garrison.server.updates import service as updates
from garrison.server.updates.api import agent_router as updates_agent_router
from garrison.server.updates.api import router as updates_router
from garrison.server.updates.rollout import OfferCache

logger = logging.getLogger(__name__)


def create_app(settings: ServerSettings, database: Database | None = None, *, run_migrations: bool = True) -> FastAPI:
    """The FastAPI application over ``database`` (by default the one ``settings`` name, migrated on start)."""
    if database is None:
        database = Database(make_engine(settings.resolved_database_url()))
    if run_migrations:
        migrate(database.engine)
    passwords.configure(settings.password_time_cost, settings.password_memory_kib)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Endpoints run in anyio's thread pool, and a sync endpoint's answer is serialised in it too, *after* the
        # endpoint returned but *before* its transaction commits. Requests waiting for a row lock hold a thread
        # each; if they took every thread, the lock holder could never get one to finish its answer and commit:
        # the server would hang (64 agents enrolling at once did it with anyio's default of 40 threads). Agent
        # requests in flight are capped by load shedding, so more threads than that cap, with room for people,
        # keep a thread free for the holder.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.agent_max_inflight + 64
        async with anyio.create_task_group() as housekeeping:
            # Background work, each in a worker thread every so many seconds (0 turns it off; tests do).
            if settings.updates_check_seconds > 0:
                housekeeping.start_soon(
                    periodically, settings.updates_check_seconds, updates.maintain, database, repository, settings
                )
            if settings.statistics_record_seconds > 0:
                housekeeping.start_soon(
                    periodically, settings.statistics_record_seconds, history.record_pass, database, settings
                )
            # The national outbox: nothing to do (nor to touch in the database) without an endpoint.
            if settings.national_outbox_seconds > 0 and settings.national_endpoint_url:
                housekeeping.start_soon(
                    periodically, settings.national_outbox_seconds, outbox.maintain, database, settings
                )
            # Federation: pushes to the parent; nothing (not even the database) when this server has none.
            if settings.federation_push_seconds > 0:
                housekeeping.start_soon(
                    periodically, settings.federation_push_seconds, federation_child.push_if_joined, database, settings
                )
            if settings.alerts_check_seconds > 0:
                housekeeping.start_soon(
                    periodically, settings.alerts_check_seconds, alerts.run, database, settings, repository
                )
            yield
            housekeeping.cancel_scope.cancel()

    app = FastAPI(
        title="Garrison",
        version=__version__,
        description="Central management of Garrison anti-malware: organisation tree, users, endpoints, detections.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    repository = updates.repository_for(settings)
    with database.session() as session:
        repository.initialise(session)
        session.commit()
    app.state.update_repository = repository
    app.state.signature_keys = ContainerKeys(allow_unsigned=settings.updates_accept_cud)
    app.state.offers = OfferCache()
    metrics = Metrics(database, settings)
    app.state.metrics = metrics
    # Added innermost first: request id and access log, then metrics, then load shedding, then the routes.
    app.add_middleware(
        AgentLoadShedding,
        max_inflight=settings.agent_max_inflight,
        retry_after_seconds=settings.agent_retry_after_seconds,
        on_shed=metrics.count_shed,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestContextMiddleware)

    @app.exception_handler(ServerError)
    def _server_error(request: Request, exc: ServerError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status, headers=headers)

    app.add_exception_handler(HTTPException, http_error)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"where": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()]
        return JSONResponse(
            {"error": "invalid_request", "message": "the request is not valid", "problems": problems}, status_code=422
        )

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        return metrics.response(request)

    app.include_router(auth_router)
    app.include_router(units_router)
    app.include_router(audit_router)
    app.include_router(agent_router)
    app.include_router(agents_router)
    app.include_router(detections_router)
    app.include_router(policies_router)
    app.include_router(reports_router)
    app.include_router(reporting_router)
    app.include_router(tasks_router)
    app.include_router(tasks_agent_router)
    app.include_router(signatures_router)
    app.include_router(updates_agent_router)
    app.include_router(updates_router)
    app.include_router(sharing_router)
    app.include_router(federation_router)
    app.include_router(outbox_router)
    app.include_router(alerts_router)
    app.include_router(console_router)
    app.mount("/static", StaticFiles(directory=CONSOLE_STATIC), name="static")
    return app


async def periodically(seconds: float, work: Callable[..., object], *args: object) -> None:
    """Run ``work(*args)`` in a worker thread every ``seconds`` (the first time soon after start) until cancelled.

    A failure is logged and the loop goes on: one bad pass must not stop the server's housekeeping for good."""
    await anyio.sleep(min(5.0, seconds))
    while True:
        try:
            await anyio.to_thread.run_sync(work, *args)
        except Exception:
            logger.exception("background work %s failed; it runs again in %s s", work.__qualname__, seconds)
        await anyio.sleep(seconds)
