"""Request dependencies: the database session, the caller and their scope, CSRF for browser sessions.

Endpoints declare what they need with the ``Annotated`` aliases at the bottom; the session is committed when the
endpoint returns without error and rolled back otherwise (the request edge owns the transaction).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy.orm import Session

from garrison.server.audit.service import Actor
from garrison.server.auth import service as auth
from garrison.server.auth.models import User
from garrison.server.auth.scope import Scope
from garrison.server.db import Database
from garrison.server.errors import Forbidden, Unauthorized
from garrison.server.settings import ServerSettings

SESSION_COOKIE = "garrison_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def set_session_cookie(response: Response, request: Request, token: str, settings: ServerSettings) -> None:
    """The console session cookie: not readable by scripts, never sent cross-site, HTTPS-only under HTTPS."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
        max_age=int(settings.session_hours * 3600),
    )


def get_session(request: Request) -> Iterator[Session]:
    database: Database = request.app.state.database
    with database.session() as session:
        yield session


def get_settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


# scope="function": the session commits when the endpoint returns, *before* the answer is sent. With FastAPI's
# default ("request") the commit would come after the answer: an agent could be told its events are stored (and
# delete them) before a commit that then fails, or use a credential before it exists.
DbSession = Annotated[Session, Depends(get_session, scope="function")]
Settings = Annotated[ServerSettings, Depends(get_settings)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated person (or API token) behind a request."""

    user: User
    scope: Scope
    actor: Actor


def get_caller(request: Request, session: DbSession, settings: Settings) -> Caller:
    authorization = request.headers.get("Authorization", "")
    address = client_address(request)
    if authorization.startswith("Bearer "):
        user = auth.api_token_user(session, authorization.removeprefix("Bearer ").strip())
    else:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise Unauthorized("not logged in")
        user, console_session = auth.session_user(session, token, timedelta(hours=settings.session_hours))
        # Browsers send cookies with cross-site requests; a changing request must also prove it came from our
        # own pages by echoing the session's CSRF token in a header.
        if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != console_session.csrf_token:
            raise Forbidden("missing or wrong CSRF token; reload the page")
    return Caller(user, auth.scope_of(session, user), Actor(user.id, user.username, address))


CurrentCaller = Annotated[Caller, Depends(get_caller)]


def require_admin(caller: CurrentCaller) -> Caller:
    if not caller.scope.everything or not caller.scope.writable:
        raise Forbidden("administrators only")
    return caller


AdminCaller = Annotated[Caller, Depends(require_admin)]
