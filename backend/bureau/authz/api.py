"""Driver-facing authorization API: a phone start at a charger, and the wallet's open holds.

Both are signed like every driver request (docs/ledger.md, `EV-Sig`). The start's arguments
travel in the query string, so the signature (over method, path and query) covers them. Both
read and write the holds in storage: they are answered on a worker thread.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter

from ..api.driver import OWN_WALLET_DEPENDENCIES
from ..api.errors import ApiError, refusals
from ..node import Node
from ..ocpp.service import CsmsUnavailable
from . import Authz


class PhoneStart(msgspec.Struct):
    """A one-time token the charger redeems for an authorization (docs/authorization.md)."""
    token: str
    charger_id: str
    cap_fen: int
    expires: int  # unix seconds
    used: bool


class StartOut(PhoneStart):
    wallet_id: str


class HoldOut(msgspec.Struct):
    auth_ref: str
    charger_id: str
    method: str  # card | app
    amount_fen: int
    created: int  # unix seconds
    expires: int


class WalletAuthorizations(msgspec.Struct):
    wallet_id: str
    balance_fen: int
    held_fen: int
    available_fen: int  # balance less the holds: what a new authorization may take
    holds: list[HoldOut]
    pending_starts: list[PhoneStart]  # tokens sent to a charger and not redeemed yet


class AuthzDesk:
    """The phone side of the authorization service, on the bureau that serves chargers (for an
    OCPP charge point: the bureau it is connected to, which sends it the RemoteStart)."""

    def __init__(self, authz: Authz, csms=None) -> None:
        self.authz = authz
        self.csms = csms

    def _served_here(self) -> None:
        if not self.authz.enabled:
            raise ApiError("not_served_here", f"chargers are authorized by {self.authz.served_by}; ask that node")

    def start(self, wallet_id: str, charger_id: str, cap_fen: int) -> StartOut:
        if self.csms is not None and charger_id in self.csms.chain.state.ocpp_chargers:
            return self._ocpp_start(wallet_id, charger_id, cap_fen)
        self._served_here()
        start, command = self.authz.service.app_start(wallet_id, charger_id, cap_fen)  # an AuthzError refuses
        if not self.authz.shell.send_start(charger_id, command):
            raise ApiError("charger_unreachable", "the node cannot reach the MQTT broker now; try again")
        return StartOut(wallet_id=wallet_id, token=start.token, charger_id=start.charger_id, cap_fen=start.cap_fen,
                        expires=start.expires_s, used=start.used)

    def _ocpp_start(self, wallet_id: str, charger_id: str, cap_fen: int) -> StartOut:
        """The one-time token goes to the charge point as the RemoteStart's idTag; its
        Authorize or transaction start redeems it like a charger's app request."""
        if charger_id not in self.csms.stations:
            raise ApiError("charger_unreachable", f"charge point {charger_id} is not connected to this bureau")
        start, _ = self.authz.service.app_start(wallet_id, charger_id, cap_fen)
        try:
            status = self.csms.request(charger_id, "remote_start", start.token)
        except CsmsUnavailable as e:
            raise ApiError(e.reason, e.detail) from None
        if status != "Accepted":
            raise ApiError("charger_unreachable", f"charge point {charger_id} answered the start with {status}")
        return StartOut(wallet_id=wallet_id, token=start.token, charger_id=start.charger_id, cap_fen=start.cap_fen,
                        expires=start.expires_s, used=start.used)

    def authorizations(self, wallet_id: str) -> WalletAuthorizations:
        self._served_here()
        return msgspec.convert(self.authz.service.wallet_view(wallet_id), WalletAuthorizations)


def provide_authz_desk(node: NamedDependency[Node]) -> AuthzDesk:
    return AuthzDesk(node.authz, node.ocpp)


class AuthzController(Controller):
    path = "/v1/wallets"
    tags = ["authorization (driver-signed)"]
    dependencies = {**OWN_WALLET_DEPENDENCIES, "desk": Provide(provide_authz_desk, sync_to_thread=False)}

    @post("/{wallet_id:str}/start", status_code=202, sync_to_thread=True,
          summary="Start charging from the phone: a one-time token the charger redeems for an authorization",
          responses=refusals("not_your_wallet", "not_served_here", "unknown_charger", "charger_retired",
                             "bad_cap", "insufficient_balance", "in_debt", "charger_unreachable",
                             driver_signed=True))
    def start(self, desk: NamedDependency[AuthzDesk], own_wallet: NamedDependency[str],
              charger_id: Annotated[str, QueryParameter(min_length=1, max_length=32)],
              cap_fen: Annotated[int, QueryParameter(ge=1)]) -> StartOut:
        return desk.start(own_wallet, charger_id, cap_fen)

    @get("/{wallet_id:str}/authorizations", summary="Open authorizations (holds) of the caller's wallet",
         sync_to_thread=True, responses=refusals("not_your_wallet", "not_served_here", driver_signed=True))
    def authorizations(self, desk: NamedDependency[AuthzDesk], own_wallet: NamedDependency[str]) -> WalletAuthorizations:
        return desk.authorizations(own_wallet)
