"""Domain errors and their one mapping to HTTP responses."""

from __future__ import annotations

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException


class ApiError(Exception):
    status = 400

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Busy(ApiError):
    status = 503


def api_error_handler(request: Request, exc: ApiError) -> Response:
    return Response({"error": exc.reason, "detail": exc.detail}, status_code=exc.status)


def http_error_handler(request: Request, exc: HTTPException) -> Response:
    reason = "invalid_request" if isinstance(exc, ValidationException) else "http_error"
    detail = exc.detail
    if isinstance(exc, ValidationException) and exc.extra:
        detail = f"{exc.detail}: {exc.extra}"
    return Response({"error": reason, "detail": str(detail)}, status_code=exc.status_code)


HANDLERS = {ApiError: api_error_handler, HTTPException: http_error_handler}
