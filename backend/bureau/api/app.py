"""The Litestar application of a bureau node. OpenAPI at /schema."""

from __future__ import annotations

from litestar import Litestar, Request, Response, get
from litestar.openapi import OpenAPIConfig

from ..authz.api import AuthzController
from ..dashboard import HANDLERS as DASHBOARD
from ..ledger.canonical import MAX_DEPTH, nesting_depth
from .errors import HANDLERS, ApiError
from .observe import HANDLERS as OBSERVE
from .routes import ChainController, OperatorController, ReceiptController, WalletController


@get("/healthz", summary="Liveness, the node's head and whether consensus makes progress")
async def healthz(request: Request) -> Response[dict]:
    node = request.app.state.node
    body = {"ok": True, "node_id": node.settings.node_id, "height": node.chain.height}
    health = getattr(node.producer, "health", None)  # a consensus replica says whether it progresses
    if health is not None:
        body.update(health())
        body["ok"] = body["consensus"] == "ok"
    return Response(body, status_code=200 if body["ok"] else 503)


MAX_BODY = 64 * 1024  # far above any operator action (4096 bytes of tx, hex-encoded)


async def refuse_deep_json(request: Request) -> None:
    """Bodies nested deeper than any of ours are refused before a parser recurses into them."""
    if request.method in ("POST", "PUT", "PATCH"):
        body = await request.body()  # cached: the handler reads the same bytes
        if nesting_depth(body, MAX_DEPTH) > MAX_DEPTH:
            raise ApiError("too_deep", f"JSON nests deeper than {MAX_DEPTH} levels")


def create_app(node) -> Litestar:
    app = Litestar(
        route_handlers=[ChainController, WalletController, ReceiptController, OperatorController, AuthzController,
                        healthz, *OBSERVE, *DASHBOARD],
        exception_handlers=HANDLERS,
        before_request=refuse_deep_json,
        request_max_body_size=MAX_BODY,
        openapi_config=OpenAPIConfig(title="Bureau node API", version="1.0.0", path="/schema"),
        debug=False,
    )
    app.state.node = node
    return app
