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


class TooManyRequests(ServerError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
