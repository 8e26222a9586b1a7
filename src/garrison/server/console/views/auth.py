"""Console pages for logging in and out, first-time setup and the language switch.

Logins go through ``auth.service.login`` exactly like the REST API (same throttling, same audit entries, same
session cookie); the first administrator is created by ``auth.service.complete_setup`` with the one-time link.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import Form, Request, Response
from fastapi.responses import HTMLResponse

from garrison.server.auth import service as auth
from garrison.server.console import i18n
from garrison.server.console.web import (
    ConsoleDb,
    WritingViewer,
    console_router,
    gettext,
    local_path,
    redirect,
    render,
)
from garrison.server.deps import SESSION_COOKIE, Settings, client_address, set_session_cookie
from garrison.server.errors import ServerError, TooManyRequests, Unauthorized

router = console_router()

# Before a login there is no session to hold a CSRF token: the login form carries a random value that must
# match a cookie of the same name (another site can make a browser post, but cannot read or set our cookies).
LOGIN_COOKIE = "garrison_login"
LOGIN_FIELD = "login_token"


def _login_form(
    request: Request, *, next_url: str, username: str = "", error: str = "", status_code: int = 200
) -> Response:
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {
            "next_url": next_url,
            "username": username,
            "error": error,
            "login_token": token,
            "login_field": LOGIN_FIELD,
            "setup_done": request.query_params.get("setup") == "done",
        },
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_COOKIE, token, httponly=True, secure=request.url.scheme == "https", samesite="strict", max_age=3600
    )
    return response


@router.get("/login")
def login_page(request: Request, session: ConsoleDb, settings: Settings, next: str = "/") -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            auth.session_user(session, token, timedelta(hours=settings.session_hours))
        except Unauthorized:
            pass
        else:
            return redirect(local_path(next))
    return _login_form(request, next_url=local_path(next))


@router.post("/login")
def login(
    request: Request,
    session: ConsoleDb,
    settings: Settings,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    totp: Annotated[str, Form(max_length=12)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
    login_token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    _ = gettext(request)
    next_url = local_path(next)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), login_token.encode()):
        error = _("This form has expired. Please enter your username and password again.")
        return _login_form(request, next_url=next_url, username=username, error=error, status_code=400)
    if not username.strip() or not password:
        error = _("Enter your username and password.")
        return _login_form(request, next_url=next_url, username=username, error=error, status_code=400)
    throttle = auth.Throttle(settings.login_attempts, timedelta(minutes=settings.login_window_minutes))
    try:
        _user, token, _csrf = auth.login(
            session, username, password, totp.strip() or None, client_address(request), throttle
        )
    except auth.LoginFailed as failed:
        # Answered, not raised: the failed attempt must be committed to count towards throttling.
        return _login_form(
            request, next_url=next_url, username=username, error=i18n.explain_error(failed, _), status_code=401
        )
    except TooManyRequests as throttled:
        response = _login_form(
            request, next_url=next_url, username=username, error=i18n.explain_error(throttled, _), status_code=429
        )
        response.headers["Retry-After"] = str(throttled.retry_after)
        return response
    response = redirect(next_url)
    set_session_cookie(response, request, token, settings)
    response.delete_cookie(LOGIN_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, session: ConsoleDb, viewer: WritingViewer) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        auth.logout(session, token)
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/setup", response_class=HTMLResponse)
def setup_page(request: Request, session: ConsoleDb, token: str = "") -> Response:
    return render(
        request, "setup.html", {"token": token, "done": auth.users_count(session) > 0, "form": {}, "error": ""}
    )


@router.post("/setup")
def setup(
    request: Request,
    session: ConsoleDb,
    token: Annotated[str, Form(max_length=256)] = "",
    username: Annotated[str, Form(max_length=64)] = "",
    display_name: Annotated[str, Form(max_length=255)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    password_again: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    _ = gettext(request)
    form = {"username": username, "display_name": display_name}
    error = ""
    if not username.strip():
        error = _("Enter a username.")
    elif password != password_again:
        error = _("The two passwords are not the same.")
    else:
        try:
            auth.complete_setup(session, token, username, display_name, password, client_address(request))
        except ServerError as failed:
            session.rollback()
            error = i18n.explain_error(failed, _)
        else:
            return redirect("/login?setup=done")
    context = {"token": token, "done": False, "form": form, "error": error}
    return render(request, "setup.html", context, status_code=400)


@router.get("/lang/{code}")
def switch_language(request: Request, code: str, next: str = "/") -> Response:
    response = redirect(local_path(next))
    response.set_cookie(
        i18n.LANGUAGE_COOKIE,
        i18n.language_of(code),
        max_age=365 * 24 * 3600,
        samesite="lax",
        httponly=True,
        secure=request.url.scheme == "https",
    )
    return response
