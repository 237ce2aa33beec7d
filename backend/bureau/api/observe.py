"""What a node shows of itself: /metrics (operator only, Prometheus text format) and its
public status (height, round, peers), which the dashboard of any bureau reads from its peers."""

from __future__ import annotations

import msgspec
from litestar import Request, Response, get

from ..metrics import CONTENT_TYPE
from .errors import refusals
from .operator_auth import require_operator

NODE_STATUS_VERSION = 1


class NodeStatus(msgspec.Struct):
    v: int  # 1
    node_id: str
    chain_id: str
    height: int  # of the last committed block
    round: int  # consensus round at the height being decided
    peers_connected: int


@get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response[bytes]:
    require_operator(request)
    return Response(request.app.state.node.metrics.exposition(), media_type=CONTENT_TYPE)


def node_status(node) -> NodeStatus:
    view = node.consensus_view()
    return NodeStatus(v=NODE_STATUS_VERSION, node_id=node.settings.node_id, chain_id=node.chain.genesis.chain_id,
                      height=node.chain.height, round=view["round"], peers_connected=view["peers_connected"])


@get("/v1/node/status", summary="This bureau's head height, consensus round and connected peers", tags=["node"],
     responses=refusals(takes_input=False))
async def status(request: Request) -> NodeStatus:
    return node_status(request.app.state.node)


HANDLERS = [metrics, status]
