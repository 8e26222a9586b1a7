"""What every console page shares: rendering in the reader's language, the logged-in viewer, CSRF, error pages.

The console authenticates with the same session cookie and services as the REST API (``deps.SESSION_COOKIE``,
``auth.session_user``, ``auth.scope_of``) and passes the caller's :class:`Scope` to the same domain services, so
it can never see or change more than the API allows. Forms carry the session's CSRF token in a hidden field (or
htmx sends it in the ``X-CSRF-Token`` header).

Errors become pages, not JSON: :class:`ConsoleRoute` turns a :class:`ServerError` into a page in the reader's
language (a redirect to the login page when not logged in) after rolling back the request's database work.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.orm import Session

from garrison import __version__
from garrison.server.audit.service import Actor
from garrison.server.auth import service as auth
from garrison.server.auth.models import User
from garrison.server.console import i18n
from garrison.server.deps import CSRF_HEADER, SESSION_COOKIE, Caller, DbSession, Settings, client_address
from garrison.server.errors import BadRequest, Forbidden, NotFound, ServerError, Unauthorized

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
CSRF_FIELD = "csrf_token"


class CsrfRefused(Forbidden):
    """A changing request without the session's CSRF token (an old page, or another site posting to us)."""


@lru_cache(maxsize=len(i18n.LANGUAGES))
def environment(language: str) -> Environment:
    """One template environment per language, each with its own catalog installed (thread-safe rendering)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(i18n.translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.globals.update(
        version=__version__,
        languages=i18n.LANGUAGES,
        moment=i18n.moment,
        role_label=lambda code: i18n.label(i18n.ROLE_LABELS, code, i18n.translations(language).gettext),
        kind_label=lambda code: i18n.label(i18n.KIND_LABELS, code, i18n.translations(language).gettext),
        action_label=lambda code: i18n.label(i18n.ACTION_LABELS, code, i18n.translations(language).gettext),
        state_label=lambda code: i18n.label(i18n.STATE_LABELS, code, i18n.translations(language).gettext),
        triage_label=lambda code: i18n.label(i18n.TRIAGE_LABELS, code, i18n.translations(language).gettext),
        detection_action_label=lambda code: i18n.label(
            i18n.DETECTION_ACTION_LABELS, code, i18n.translations(language).gettext
        ),
    )
    env.filters["number"] = lambda value: i18n.number(value, language)
    return env


def language(request: Request) -> str:
    return i18n.language_of(request.cookies.get(i18n.LANGUAGE_COOKIE))


def gettext(request: Request) -> i18n.Gettext:
    return i18n.translations(language(request)).gettext


@dataclass(frozen=True, slots=True)
class Viewer:
    """A logged-in person looking at the console: the API's :class:`Caller` plus the session's CSRF token."""

    caller: Caller
    csrf: str

    @property
    def user(self) -> User:
        return self.caller.user

    @property
    def can_write(self) -> bool:
        return self.caller.scope.writable

    @property
    def is_admin(self) -> bool:
        return self.caller.scope.everything and self.caller.scope.writable


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    viewer: Viewer | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = language(request)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    page = (
        environment(lang)
        .get_template(template)
        .render(
            {
                "lang": lang,
                "here": here,
                "here_quoted": quote(here, safe=""),
                "viewer": viewer,
                "csrf": viewer.csrf if viewer else "",
                "csrf_field": CSRF_FIELD,
                **(context or {}),
            }
        )
    )
    return HTMLResponse(page, status_code=status_code)


def redirect(url: str) -> RedirectResponse:
    """After a successful form: see the result (303, so that reloading does not post again)."""
    return RedirectResponse(url, status_code=303)


def local_path(target: str | None, default: str = "/") -> str:
    """``target`` when it is a path on this server, else ``default`` (no open redirects)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def _db(request: Request, session: DbSession) -> Session:
    # Remembered so that ConsoleRoute can roll back when a page ends in an error.
    request.state.console_db = session
    return session


ConsoleDb = Annotated[Session, Depends(_db)]


def _viewer(request: Request, session: ConsoleDb, settings: Settings) -> Viewer:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise Unauthorized("not logged in")
    user, console_session = auth.session_user(session, token, timedelta(hours=settings.session_hours))
    caller = Caller(user, auth.scope_of(session, user), Actor(user.id, user.username, client_address(request)))
    return Viewer(caller, console_session.csrf_token)


def _writer(
    request: Request, viewer: Annotated[Viewer, Depends(_viewer)], csrf_token: Annotated[str, Form()] = ""
) -> Viewer:
    sent = csrf_token or request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), viewer.csrf.encode()):
        raise CsrfRefused("missing or wrong CSRF token; reload the page")
    return viewer


def _admin_reader(viewer: Annotated[Viewer, Depends(_viewer)]) -> Viewer:
    if not viewer.is_admin:
        raise Forbidden("administrators only")
    return viewer


def _admin_writer(viewer: Annotated[Viewer, Depends(_writer)]) -> Viewer:
    return _admin_reader(viewer)


CurrentViewer = Annotated[Viewer, Depends(_viewer)]
"""A logged-in person reading a page."""
WritingViewer = Annotated[Viewer, Depends(_writer)]
"""A logged-in person submitting a form: the CSRF token is checked."""
AdminViewer = Annotated[Viewer, Depends(_admin_reader)]
"""A province-wide administrator reading a page only administrators may see (a confirmation, say)."""
AdminWriter = Annotated[Viewer, Depends(_admin_writer)]
"""A province-wide administrator submitting a form (the CSRF token is checked)."""


def error_page(request: Request, error: ServerError) -> Response:
    if isinstance(error, Unauthorized) and error.message in {"not logged in", "the session expired; log in again"}:
        target = "/login" + (f"?next={quote(request.url.path, safe='/')}" if request.url.path != "/" else "")
        if request.headers.get("HX-Request"):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return redirect(target)
    _ = gettext(request)
    if isinstance(error, CsrfRefused):
        message = _("This form has expired or did not come from this console. Reload the page and try again.")
    else:
        message = i18n.explain_error(error, _)
    return render(request, "error.html", {"status": error.status, "message": message}, status_code=error.status)


def _invalid(error: RequestValidationError) -> ServerError:
    # A malformed path (``/units/abc/edit``) names nothing; a malformed form field is the sender's mistake.
    if any(e["loc"][:1] == ("path",) for e in error.errors()):
        return NotFound("no such page")
    return BadRequest("the form is not valid")


class ConsoleRoute(APIRoute):
    """A route whose errors are shown as pages in the reader's language, with the request's changes undone."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except (ServerError, RequestValidationError) as exc:
                session: Session | None = getattr(request.state, "console_db", None)
                if session is not None:
                    await run_in_threadpool(session.rollback)
                error = exc if isinstance(exc, ServerError) else _invalid(exc)
                return error_page(request, error)

        return console_handler


def console_router() -> APIRouter:
    return APIRouter(route_class=ConsoleRoute, include_in_schema=False, default_response_class=HTMLResponse)
