"""The Litestar application of a bureau node. OpenAPI at /schema."""

from __future__ import annotations

from litestar import Litestar, MediaType, Request, Response, get
from litestar.openapi import OpenAPIConfig

from ..authz.api import AuthzController
from .errors import HANDLERS
from .routes import ChainController, OperatorController, ReceiptController, WalletController


@get("/metrics", media_type=MediaType.TEXT, include_in_schema=False)
async def metrics(request: Request) -> str:
    node = request.app.state.node
    return node.metrics.prometheus({"height": node.chain.height, "mempool": len(node.mempool)})


@get("/healthz", summary="Liveness, the node's head and whether consensus makes progress")
async def healthz(request: Request) -> Response[dict]:
    node = request.app.state.node
    body = {"ok": True, "node_id": node.settings.node_id, "height": node.chain.height}
    health = getattr(node.producer, "health", None)  # a consensus replica says whether it progresses
    if health is not None:
        body.update(health())
        body["ok"] = body["consensus"] == "ok"
    return Response(body, status_code=200 if body["ok"] else 503)


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
