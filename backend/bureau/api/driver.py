"""Dependencies of the driver-signed routes: the wallet a request is signed by (api/auth.py).

Each route takes one of them, resolved alone on the event loop (a few microseconds of Ed25519
and dict lookups): Litestar resolves sibling dependencies of one level in an anyio task group,
which costs more than the check itself, so a route's other dependencies hang below them. The
balance read answered in front of Litestar (api/balance_reads.py) makes the same check."""

from __future__ import annotations

from litestar import Request
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from ..node import Node
from . import auth
from .errors import ApiError


def signer(node: Node, authorization: str | None, method: str, path_qs: str) -> str:
    """The wallet whose key signed this request, for this bureau and only once."""
    wallets = node.chain.state.wallets

    def key_of(wallet_id: str) -> bytes | None:
        w = wallets.get(wallet_id)
        return w.public_key if w else None
    return auth.check(authorization, method, path_qs, key_of, node.replay_guard, node.settings.node_id)


def own_wallet(node: Node, authorization: str | None, method: str, path_qs: str, wallet_id: str) -> str:
    """The wallet of the path, when its own driver signed the request (the signature is checked first)."""
    if signer(node, authorization, method, path_qs) != wallet_id:
        raise ApiError("not_your_wallet", "a driver reads only their own wallet")
    return wallet_id


def _signed_parts(request: Request) -> tuple[str | None, str, str]:
    url = request.url
    return request.headers.get("authorization"), request.method, url.path + (f"?{url.query}" if url.query else "")


def provide_signer(request: Request, node: NamedDependency[Node]) -> str:
    return signer(node, *_signed_parts(request))


def provide_own_wallet(request: Request, node: NamedDependency[Node], wallet_id: FromPath[str]) -> str:
    return own_wallet(node, *_signed_parts(request), wallet_id)


DRIVER_DEPENDENCIES = {"signer": Provide(provide_signer, sync_to_thread=False)}
OWN_WALLET_DEPENDENCIES = {"own_wallet": Provide(provide_own_wallet, sync_to_thread=False)}
