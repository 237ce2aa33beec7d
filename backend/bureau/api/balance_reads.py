"""A driver's balance read, `GET /v1/wallets/{id}`, answered in front of Litestar.

It is the node's most frequent request (a phone polls it) and its answer is in memory, so
Litestar's routing, dependency injection and response building cost more than the rest of it
(`bench/balance_queries.py --profile`). This ASGI wrapper answers exactly that request with the
route's own parts (the driver's signature check of api/driver.py, `WalletReader`, the refusal
table of api/errors.py), so the answers are the same; every other request, and any path it does
not match exactly, goes on to the Litestar app, whose route of the same path documents it in the
OpenAPI schema.
"""

from __future__ import annotations

import logging

import msgspec

from ..errors import ReasonedError
from ..node import Node
from .driver import own_wallet
from .errors import Refusal, status_of
from .wallets import WalletReader

log = logging.getLogger(__name__)

PREFIX = "/v1/wallets/"
_JSON = [(b"content-type", b"application/json")]
_encode = msgspec.json.Encoder().encode


def balance_wallet_id(scope: dict) -> str | None:
    """The wallet of a balance read this wrapper answers; None for anything else."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
        return None
    path = scope["path"]
    if not path.startswith(PREFIX):
        return None
    wallet_id = path[len(PREFIX):]
    return wallet_id if wallet_id and "/" not in wallet_id else None


def _authorization(scope: dict) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value.decode("latin-1")
    return None


class BalanceReads:
    """ASGI app: balance reads answered here, everything else by `app`."""

    def __init__(self, app, node: Node) -> None:
        self.app, self.node = app, node
        self.reader = WalletReader(node.chain)

    async def __call__(self, scope, receive, send) -> None:
        wallet_id = balance_wallet_id(scope)
        if wallet_id is None:
            await self.app(scope, receive, send)
            return
        status, body = self.answer(scope, wallet_id)
        await send({"type": "http.response.start", "status": status,
                    "headers": _JSON + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def answer(self, scope: dict, wallet_id: str) -> tuple[int, bytes]:
        try:
            query = scope.get("query_string", b"").decode()
            path_qs = scope["path"] + (f"?{query}" if query else "")
            return 200, _encode(self.reader.balance(
                own_wallet(self.node, _authorization(scope), "GET", path_qs, wallet_id)))
        except ReasonedError as e:
            return status_of(e), _encode(Refusal(error=e.reason, detail=e.detail))
        except Exception:  # as api/errors.py's internal_error_handler answers any other failure
            log.exception("GET %s failed", scope["path"])
            return 500, _encode(Refusal(error="internal_error", detail="the node failed to answer; it is logged"))
