"""The Litestar application of a bureau node. OpenAPI at /schema."""

from __future__ import annotations

from litestar import Litestar, MediaType, Request, get
from litestar.openapi import OpenAPIConfig

from ..authz.api import AuthzController
from .errors import HANDLERS
from .routes import ChainController, OperatorController, ReceiptController, WalletController


@get("/metrics", media_type=MediaType.TEXT, include_in_schema=False)
async def metrics(request: Request) -> str:
    node = request.app.state.node
    return node.metrics.prometheus({"height": node.chain.height, "mempool": len(node.mempool)})


@get("/healthz", summary="Liveness and the node's head")
async def healthz(request: Request) -> dict:
    node = request.app.state.node
    return {"ok": True, "node_id": node.settings.node_id, "height": node.chain.height}


def create_app(node) -> Litestar:
    app = Litestar(
        route_handlers=[ChainController, WalletController, ReceiptController, OperatorController, AuthzController,
                        metrics, healthz],
        exception_handlers=HANDLERS,
        openapi_config=OpenAPIConfig(title="Bureau node API", version="1.0.0", path="/schema"),
        debug=False,
    )
    app.state.node = node
    return app
