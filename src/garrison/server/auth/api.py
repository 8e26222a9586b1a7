"""REST endpoints for logging in and out, first-time setup, users and API tokens."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from garrison.server.auth import service
from garrison.server.auth.schemas import LoginIn, LoginOut, SetupIn, TokenIn, TokenOut, UserIn, UserOut
from garrison.server.deps import (
    SESSION_COOKIE,
    CurrentCaller,
    DbSession,
    Settings,
    client_address,
    set_session_cookie,
)
from garrison.server.errors import ERROR_RESPONSES

router = APIRouter(prefix="/api/v1", tags=["auth"], responses=ERROR_RESPONSES)


@router.post("/auth/login", response_model=LoginOut, responses={401: {}, 429: {}})
def login(
    body: LoginIn, request: Request, response: Response, session: DbSession, settings: Settings
) -> LoginOut | JSONResponse:
    """Open a console session: sets an HttpOnly cookie; send the returned CSRF token with every change."""
    throttle = service.Throttle(settings.login_attempts, timedelta(minutes=settings.login_window_minutes))
    try:
        user, token, csrf = service.login(
            session, body.username, body.password, body.totp, client_address(request), throttle
        )
    except service.LoginFailed as failed:
        # Answered, not raised, so that the failed attempt is committed and counts towards throttling.
        return JSONResponse({"error": failed.code, "message": failed.message}, status_code=failed.status)
    set_session_cookie(response, request, token, settings)
    return LoginOut(username=user.username, display_name=user.display_name, role=user.role, csrf_token=csrf)


@router.post("/auth/logout", status_code=204)
def logout(request: Request, response: Response, session: DbSession, caller: CurrentCaller) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        service.logout(session, token)
    response.delete_cookie(SESSION_COOKIE)


@router.get("/auth/me", response_model=UserOut)
def me(caller: CurrentCaller) -> UserOut:
    return UserOut.model_validate(caller.user)


@router.post("/setup", response_model=UserOut, status_code=201)
def setup(body: SetupIn, request: Request, session: DbSession) -> UserOut:
    """Create the first administrator with the one-time token printed when the server started."""
    user = service.complete_setup(
        session, body.token, body.username, body.display_name, body.password, client_address(request)
    )
    return UserOut.model_validate(user)


@router.get("/users", response_model=list[UserOut])
def list_users(session: DbSession, caller: CurrentCaller) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in service.list_users(session, caller.scope)]


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: UserIn, session: DbSession, caller: CurrentCaller) -> UserOut:
    new = service.NewUser(body.username, body.display_name, body.password, body.role, body.unit_id)
    return UserOut.model_validate(service.create_user(session, caller.scope, caller.actor, new))


@router.post("/auth/tokens", response_model=TokenOut, status_code=201)
def create_token(body: TokenIn, session: DbSession, caller: CurrentCaller) -> TokenOut:
    """A token for automation acting as the caller (shown once; only its hash is kept)."""
    return TokenOut(token=service.create_api_token(session, caller.actor, caller.user, body.name, body.days))
