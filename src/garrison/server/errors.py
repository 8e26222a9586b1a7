"""Server errors: one base carrying its HTTP status, turned into a JSON answer by one handler.

::

    ServerError (500)
    ├── BadRequest (400)       input that passed validation but makes no sense (a unit that would be its own parent)
    ├── Unauthorized (401)     no or bad credentials
    ├── Forbidden (403)        authenticated, but outside the caller's role or subtree
    ├── NotFound (404)         no such object (also for objects outside the caller's subtree: no existence leak)
    ├── Conflict (409)         the change conflicts with what exists (a duplicate name, a unit that still has children)
    └── TooManyRequests (429)  throttled; ``retry_after`` seconds
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match


class ServerError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServerError):
    status = 400
    code = "bad_request"


class Unauthorized(ServerError):
    status = 401
    code = "unauthorized"


class Forbidden(ServerError):
    status = 403
    code = "forbidden"


class NotFound(ServerError):
    status = 404
    code = "not_found"


class Conflict(ServerError):
    status = 409
    code = "conflict"


class Unavailable(ServerError):
    """Something the server needs for this request is missing or failing (a program not installed, say)."""

    status = 503
    code = "unavailable"


class TooManyRequests(ServerError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Problem(BaseModel):
    where: str
    message: str


class ErrorOut(BaseModel):
    """The body of every error answer (``problems`` only for invalid input, 422)."""

    error: str
    message: str
    problems: list[Problem] | None = None


# What any REST endpoint may answer besides its success, for the OpenAPI document.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in (
        (400, "input that makes no sense"),
        (401, "no or bad credentials"),
        (403, "outside the caller's role"),
        (404, "no such object, or outside the caller's subtree"),
        (409, "conflicts with what exists"),
        (422, "invalid input, with the list of problems"),
        (429, "throttled; see Retry-After"),
    )
}


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


def http_error(request: Request, exc: Exception) -> Response:
    """The framework's own refusals (an unparsable body, no such path or method) in the same JSON as ours.

    A 405 lists in ``Allow`` every method of every route with that path, not only those of the first route.
    """
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        raise exc
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        routes = request.app.router.routes
        allowed = [
            method
            for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
        ]
        headers["Allow"] = ", ".join(allowed)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=headers)
    body = {"error": _HTTP_CODES.get(exc.status_code, "http_error"), "message": str(exc.detail)}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)
