"""Domain errors and their one mapping to HTTP responses."""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from ..errors import ReasonedError

log = logging.getLogger(__name__)


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


class Misdirected(ApiError):
    """421: this bureau does not serve the request; the detail names the one that does."""
    status = 421


class Busy(ApiError):
    status = 503


class PayloadTooLarge(ApiError):
    status = 413


# Domain refusals (`ReasonedError.reason`) that are not plain bad requests.
_STATUS_OF_REASON = {"duplicate": Conflict, "unknown_wallet": NotFound, "unknown_charger": NotFound,
                     "unknown_tariff": NotFound, "busy": Busy}


def domain_error(e: ReasonedError) -> ApiError:
    """The one mapping from a domain refusal to its HTTP error: same reason, same detail."""
    return _STATUS_OF_REASON.get(e.reason, ApiError)(e.reason, e.detail)


def api_error_handler(request: Request, exc: ApiError) -> Response:
    return Response({"error": exc.reason, "detail": exc.detail}, status_code=exc.status)


_REASON_OF_STATUS = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def http_error_handler(request: Request, exc: HTTPException) -> Response:
    if isinstance(exc, ValidationException):
        reason = "invalid_request"
    else:
        reason = _REASON_OF_STATUS.get(exc.status_code, "http_error")
    detail = exc.detail
    if isinstance(exc, ValidationException) and exc.extra:
        detail = f"{exc.detail}: {exc.extra}"
    return Response({"error": reason, "detail": str(detail)}, status_code=exc.status_code)


def internal_error_handler(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return Response({"error": "internal_error", "detail": "the node failed to answer; it is logged"}, status_code=500)


HANDLERS = {ApiError: api_error_handler, HTTPException: http_error_handler, Exception: internal_error_handler}
