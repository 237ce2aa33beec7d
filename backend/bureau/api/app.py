"""The Litestar application of a bureau node. OpenAPI and its docs UI at /schema."""

from __future__ import annotations

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec

from ..authz.api import AuthzController
from ..dashboard import HANDLERS as DASHBOARD
from ..ledger.canonical import MAX_DEPTH, nesting_depth
from ..node import Node
from ..ocpi.api import HANDLERS as OCPI
from ..ocpp.api import OcppBillController, OcppOperatorController
from ..phone import HANDLERS as PHONE
from .balance_reads import BalanceReads
from .bind import BindController
from .chain import ChainController
from .docs import openapi_config, swagger_ui_asset
from .errors import HANDLERS, ApiError, refusals
from .home import home
from .observe import HANDLERS as OBSERVE
from .operator import OperatorController
from .receipts import ReceiptController
from .snapshot import SnapshotController, SnapshotKeeper
from .state import StateController
from .wallets import WalletController


class Health(msgspec.Struct):
    ok: bool
    node_id: str  # the bureau a driver's request is signed for
    height: int
    consensus: str | msgspec.UnsetType = msgspec.UNSET  # "ok" | "stalled" (docs/consensus.md)
    consensus_height: int | msgspec.UnsetType = msgspec.UNSET
    loop_age_ms: int | msgspec.UnsetType = msgspec.UNSET
    last_commit_age_ms: int | msgspec.UnsetType = msgspec.UNSET
    peers_out: list[str] | msgspec.UnsetType = msgspec.UNSET
    peers_in: list[str] | msgspec.UnsetType = msgspec.UNSET
    reason: str | msgspec.UnsetType = msgspec.UNSET  # why a failed node is going down


class Readiness(msgspec.Struct):
    ok: bool
    height: int | msgspec.UnsetType = msgspec.UNSET
    reason: str | msgspec.UnsetType = msgspec.UNSET  # starting, intake or consensus state, or the failure


@get("/healthz", summary="Liveness, the node's head and whether consensus makes progress", tags=["node"],
     responses={503: ResponseSpec(Health, description="Consensus is stalled or the node failed",
                                  generate_examples=False), **refusals(takes_input=False)})
async def healthz(node: NamedDependency[Node]) -> Response[Health]:
    progress = node.producer.health()
    ok = progress.get("consensus", "ok") == "ok"
    body = Health(ok=ok, node_id=node.settings.node_id, height=node.chain.height, **progress)
    if node.supervisor.reason is not None:  # a background loop failed: the process is going down
        body.ok, body.reason = False, node.supervisor.reason
    return Response(body, status_code=200 if body.ok else 503)


@get("/readyz", summary="Readiness: up, taking receipts and consensus progressing; else 503 with the reason",
     tags=["node"], responses={503: ResponseSpec(Readiness, description="Not ready", generate_examples=False),
                               **refusals(takes_input=False)})
async def readyz(node: NamedDependency[Node]) -> Response[Readiness]:
    body = Readiness(**node.readiness())
    return Response(body, status_code=200 if body.ok else 503)


MAX_BODY = 64 * 1024  # far above any operator action (4096 bytes of tx, hex-encoded)


async def refuse_deep_json(request: Request) -> None:
    """Bodies nested deeper than any of ours are refused before a parser recurses into them."""
    if request.method in ("POST", "PUT", "PATCH"):
        body = await request.body()  # cached: the handler reads the same bytes
        if nesting_depth(body, MAX_DEPTH) > MAX_DEPTH:
            raise ApiError("too_deep", f"JSON nests deeper than {MAX_DEPTH} levels")


ROUTE_HANDLERS = [ChainController, WalletController, ReceiptController, StateController, OperatorController,
                  SnapshotController,
                  BindController, AuthzController, OcppOperatorController, OcppBillController, healthz, readyz, home, swagger_ui_asset, *OBSERVE, *DASHBOARD,
                  *PHONE, *OCPI]


def create_app(node: Node) -> BalanceReads:
    """The node's ASGI app: Litestar, with drivers' balance reads answered in front of it."""
    keeper = SnapshotKeeper(node.chain)  # the snapshot served to joining bureaus
    app = Litestar(
        route_handlers=ROUTE_HANDLERS,
        # every handler and service gets the node through this, not through app.state
        dependencies={"node": Provide(lambda: node, use_cache=True, sync_to_thread=False),
                      "keeper": Provide(lambda: keeper, use_cache=True, sync_to_thread=False)},
        exception_handlers=HANDLERS,
        before_request=refuse_deep_json,
        request_max_body_size=MAX_BODY,
        openapi_config=openapi_config(title="Bureau node API", version="1.0.0"),
        debug=False,
    )
    app.state.node = node  # for hooks and handlers that have no dependency injection
    return BalanceReads(app, node)
