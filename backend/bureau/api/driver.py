"""Dependencies of the driver-signed routes: the wallet a request is signed by (api/auth.py)."""

from __future__ import annotations

from litestar import Request
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from ..node import Node
from . import auth
from .errors import ApiError



def provide_signer(request: Request, node: NamedDependency[Node]) -> str:
    """The wallet whose key signed this request, for this bureau and only once."""
    wallets = node.chain.state.wallets
    path_qs = request.url.path + (f"?{request.url.query}" if request.url.query else "")

    def key_of(wallet_id: str) -> bytes | None:
        w = wallets.get(wallet_id)
        return w.public_key if w else None
    return auth.check(request.headers.get("authorization"), request.method, path_qs, key_of, node.replay_guard,
                      node.settings.node_id)


def provide_own_wallet(wallet_id: FromPath[str], signer: NamedDependency[str]) -> str:
    """The wallet of the path, when its own driver signed the request."""
    if signer != wallet_id:
        raise ApiError("not_your_wallet", "a driver reads only their own wallet")
    return wallet_id


# a few microseconds of Ed25519 and dict lookups: answered on the event loop
DRIVER_DEPENDENCIES = {"signer": Provide(provide_signer, sync_to_thread=False)}
OWN_WALLET_DEPENDENCIES = {**DRIVER_DEPENDENCIES, "own_wallet": Provide(provide_own_wallet, sync_to_thread=False)}
