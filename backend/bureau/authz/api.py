"""Driver-facing authorization API: a phone start at a charger, and the wallet's open holds.

Both are signed like every driver request (docs/ledger.md, `EV-Sig`). The start's arguments
travel in the query string, so the signature (over method, path and query) covers them.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, QueryParameter

from ..api.errors import ApiError, Busy, Conflict, Misdirected, NotFound
from ..api.routes import _own_wallet
from .service import AuthzError

_STATUS = {"unknown_charger": NotFound, "insufficient_balance": Conflict}


def _authz(request: Request):
    authz = request.app.state.node.authz
    if not authz.enabled:
        raise Misdirected("not_served_here", f"chargers are authorized by {authz.served_by}; ask that node")
    return authz


class AuthzController(Controller):
    path = "/v1/wallets"
    tags = ["authorization (driver-signed)"]

    @post("/{wallet_id:str}/start", status_code=202,
          summary="Start charging from the phone: a one-time token the charger redeems for an authorization")
    async def start(self, request: Request, wallet_id: FromPath[str],
                    charger_id: Annotated[str, QueryParameter(min_length=1, max_length=32)],
                    cap_fen: Annotated[int, QueryParameter(ge=1)]) -> dict[str, Any]:
        _own_wallet(request, wallet_id)
        authz = _authz(request)
        try:
            start, command = authz.service.app_start(wallet_id, charger_id, cap_fen)
        except AuthzError as e:
            raise _STATUS.get(e.reason, ApiError)(e.reason, e.detail) from None
        if not authz.shell.send_start(charger_id, command):
            raise Busy("charger_unreachable", "the node cannot reach the MQTT broker now; try again")
        return {"wallet_id": wallet_id, **start.as_json()}

    @get("/{wallet_id:str}/authorizations", summary="Open authorizations (holds) of the caller's wallet")
    async def authorizations(self, request: Request, wallet_id: FromPath[str]) -> dict[str, Any]:
        _own_wallet(request, wallet_id)
        return _authz(request).service.wallet_view(wallet_id)
