"""The Litestar application of a bureau node. OpenAPI at /schema."""

from __future__ import annotations

from litestar import Litestar, MediaType, Request, Response, get
from litestar.openapi import OpenAPIConfig

from ..authz.api import AuthzController
from ..ledger.canonical import MAX_DEPTH, nesting_depth
from .errors import HANDLERS, ApiError
from .routes import ChainController, OperatorController, ReceiptController, WalletController


@get("/metrics", media_type=MediaType.TEXT, include_in_schema=False)
async def metrics(request: Request) -> str:
    node = request.app.state.node
    return node.metrics.prometheus({"height": node.chain.height, "mempool": len(node.mempool)})


@get("/healthz", summary="Liveness, the node's head and whether consensus makes progress")
async def healthz(request: Request) -> Response[dict]:
    node = request.app.state.node
    body = {"ok": True, "node_id": node.settings.node_id, "height": node.chain.height}
    body.update(node.producer.health())
    body["ok"] = body["consensus"] == "ok"
    if node.supervisor.reason is not None:   # a background loop failed: the process is going down
        body.update(ok=False, reason=node.supervisor.reason)
    return Response(body, status_code=200 if body["ok"] else 503)


@get("/readyz", summary="Readiness: up, taking receipts and consensus progressing; else 503 with the reason")
async def readyz(request: Request) -> Response[dict]:
    body = request.app.state.node.readiness()
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
                        metrics, healthz, readyz],
        exception_handlers=HANDLERS,
        before_request=refuse_deep_json,
        request_max_body_size=MAX_BODY,
        openapi_config=OpenAPIConfig(title="Bureau node API", version="1.0.0", path="/schema"),
        debug=False,
    )
    app.state.node = node
    return app
