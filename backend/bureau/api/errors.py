"""Refusals and their one mapping to HTTP: a table from reason to status, read by one handler.

Every refusal body is `{"error": reason, "detail": human text}` (`Refusal`). A handler refuses by
raising `ApiError(reason, detail)`, or lets a domain error (`ReasonedError`: TxError,
AuthzError...) pass through; its status is `STATUS_OF_REASON[reason]`, 400 for any other reason.
A refused driver signature (`Unauthorized`, api/auth.py) is a 401 whatever its reason: its
`bad_signature` is the request's, where an operator action's `bad_signature` is a bad input.
"""

from __future__ import annotations

import logging

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from ..errors import ReasonedError

log = logging.getLogger(__name__)


class Refusal(msgspec.Struct):
    """Why the node refused a request."""
    error: str  # short machine reason
    detail: str  # human detail


class ApiError(ReasonedError):
    """A refusal raised by the API itself (lookups, the node's own limits)."""


class Unauthorized(ApiError):
    """The request's driver or operator credentials are missing, malformed, stale, replayed or wrong."""


UNAUTHORIZED_STATUS = 401


STATUS_OF_REASON: dict[str, int] = {
    "not_your_wallet": 403,
    "no_block": 404, "no_receipt": 404, "unknown_tx": 404, "unknown_wallet": 404, "unknown_charger": 404,
    "unknown_tariff": 404, "no_binding_code": 404, "not_found": 404,
    "not_kept": 410,  # a height before the snapshot a node joined from, or a snapshot it no longer keeps
    "method_not_allowed": 405,
    # not_served_here: the detail names the bureau that serves it. Not 421 (misdirected): a
    # browser sends a request answered 421 again on a new connection, and the replay guard
    # refuses that copy of a signed request, so the page would read "replayed".
    "duplicate": 409, "insufficient_balance": 409, "in_debt": 409, "not_served_here": 409,
    "too_large": 413,
    "too_many_requests": 429,  # one wallet's or operator's signed requests beyond its share of the replay guard
    "busy": 503, "charger_unreachable": 503,
}
DEFAULT_STATUS = 400  # malformed, invalid_request, too_deep, bad_cap, expired...


def status_of(exc: ReasonedError) -> int:
    return UNAUTHORIZED_STATUS if isinstance(exc, Unauthorized) else STATUS_OF_REASON.get(exc.reason, DEFAULT_STATUS)


# what api/auth.py refuses a driver's signature with
UNAUTHORIZED_REASONS = ("missing_auth", "bad_auth", "wrong_node", "stale_request", "bad_signature", "replayed")
# what api/operator_auth.py refuses a request to an operator-only endpoint with
OPERATOR_UNAUTHORIZED_REASONS = ("operator_auth_required", "bad_token", *UNAUTHORIZED_REASONS[1:])


def refusals(*reasons: str, driver_signed: bool = False, takes_input: bool = True,
             operator_only: bool = False) -> dict[int, ResponseSpec]:
    """The OpenAPI error responses of an operation that may refuse with `reasons` (and with a
    driver signature's, when `driver_signed`; an operator's credentials', when `operator_only`), besides a failure of the node (500), which every
    operation may answer, and an invalid parameter or body (400), when it `takes_input`."""
    by_status: dict[int, list[str]] = {500: ["internal_error"]}
    if takes_input:
        by_status[DEFAULT_STATUS] = ["invalid_request"]
    if driver_signed:
        by_status[UNAUTHORIZED_STATUS] = list(UNAUTHORIZED_REASONS)
    if operator_only:
        by_status[UNAUTHORIZED_STATUS] = list(OPERATOR_UNAUTHORIZED_REASONS)
    if driver_signed or operator_only:  # the replay guard is full, or holds the caller's share (api/auth.py)
        by_status[STATUS_OF_REASON["busy"]] = ["busy"]
        by_status[STATUS_OF_REASON["too_many_requests"]] = ["too_many_requests"]
    for reason in reasons:
        by_status.setdefault(STATUS_OF_REASON.get(reason, DEFAULT_STATUS), []).append(reason)
    return {status: ResponseSpec(Refusal, description="Refused: " + ", ".join(sorted(set(names))),
                                 generate_examples=False)
            for status, names in sorted(by_status.items())}


def _refuse(reason: str, detail: str, status: int) -> Response[Refusal]:
    return Response(Refusal(error=reason, detail=detail), status_code=status)


def refusal_handler(request: Request, exc: ReasonedError) -> Response[Refusal]:
    return _refuse(exc.reason, exc.detail, status_of(exc))


_REASON_OF_HTTP_STATUS = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def http_error_handler(request: Request, exc: HTTPException) -> Response[Refusal]:
    """Litestar's own refusals (no route, a parameter out of range...) in the same shape."""
    if isinstance(exc, ValidationException):
        detail = f"{exc.detail}: {exc.extra}" if exc.extra else str(exc.detail)
        return _refuse("invalid_request", detail, exc.status_code)
    return _refuse(_REASON_OF_HTTP_STATUS.get(exc.status_code, "http_error"), str(exc.detail), exc.status_code)


def internal_error_handler(request: Request, exc: Exception) -> Response[Refusal]:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _refuse("internal_error", "the node failed to answer; it is logged", 500)


HANDLERS = {ReasonedError: refusal_handler, HTTPException: http_error_handler, Exception: internal_error_handler}
