"""The operator dashboard at /dashboard: a page of plain HTML, JS and CSS in this package (no
CDN), and the JSON it polls. Operator only (api/operator_auth.py): the page is behind a login
with the node's operator token that sets a session cookie (HttpOnly, SameSite=Strict); the data
also answers a bearer token or a signed operator request. docs/observability.md."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath

from ..api.errors import Unauthorized, refusals
from ..api.observe import node_status
from ..api.operator_auth import COOKIE, SESSION_S, require_operator, session_cookie, token_matches
from ..tools.pki import http_verify

STATIC = Path(__file__).with_name("static")
DATA_VERSION = 1
PEER_TIMEOUT_S = 2.0
# the page loads only its own script and style and talks only to its own node
SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                                               "connect-src 'self'; img-src 'self'; form-action 'self'; "
                                               "frame-ancestors 'none'",
                    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


def _page(name: str, status: int = 200, message: str = "") -> Response[str]:
    html = (STATIC / name).read_text().replace("{{message}}", message)
    return Response(html, status_code=status, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


def _signed_in(request: Request) -> bool:
    try:
        require_operator(request)
    except Unauthorized:
        return False
    return True


@get("/dashboard", include_in_schema=False)
async def page(request: Request) -> Response[str]:
    """The dashboard, or 401 with the login form."""
    if not _signed_in(request):
        return _page("login.html", 401, "Operator only: sign in with this node's operator token.")
    return _page("dashboard.html")


@post("/dashboard/login", include_in_schema=False, status_code=303)
async def login(request: Request) -> Response[str]:
    node = request.app.state.node
    form = await request.form()
    given = form.get("token", "")
    if not isinstance(given, str) or not token_matches(given.strip(), node.operator_token):
        message = "That is not this node's operator token." if node.operator_token else \
            "This node has no operator token: set BUREAU_HTTP_OPERATOR_TOKEN_FILE."
        return _page("login.html", 401, message)
    cookie = Cookie(key=COOKIE, value=session_cookie(node.operator_token, node.settings.node_id), path="/",
                    httponly=True, samesite="strict", max_age=SESSION_S, secure=request.url.scheme == "https")
    return Response("", status_code=303, headers={"Location": "/dashboard", **SECURITY_HEADERS}, cookies=[cookie])


@post("/dashboard/logout", include_in_schema=False, status_code=303)
async def logout() -> Response[str]:
    return Response("", status_code=303, headers={"Location": "/dashboard", **SECURITY_HEADERS},
                    cookies=[Cookie(key=COOKIE, value="", path="/", max_age=0, httponly=True, samesite="strict")])


@get("/dashboard/assets/{name:str}", include_in_schema=False)
async def asset(name: FromPath[str]) -> Response[str]:
    """The page's script and style: public, they hold no data (the login page uses the style)."""
    if name not in ASSETS:
        return Response({"error": "not_found", "detail": f"no asset {name}"}, status_code=404)
    return Response((STATIC / name).read_text(), media_type=ASSETS[name], headers=SECURITY_HEADERS)


class NodeView(msgspec.Struct):
    """One validator as the dashboard shows it; height, round and peers only when reachable."""
    node_id: str
    api: str  # its API address in the genesis
    ok: bool
    height: int | msgspec.UnsetType = msgspec.UNSET
    round: int | msgspec.UnsetType = msgspec.UNSET
    peers_connected: int | msgspec.UnsetType = msgspec.UNSET
    error: str | msgspec.UnsetType = msgspec.UNSET  # why it could not be read


class DashboardData(msgspec.Struct):
    v: int  # 1
    node_id: str
    chain_id: str
    time: str  # UTC, ISO 8601
    height: int
    round: int
    peers: list[str]  # connected
    mempool_size: int
    chargers_online: int
    chargers_known: int  # with a retained status, online or not
    receipts_received: int
    receipts_committed: int
    rejects: dict[str, int]  # receipts rejected, by reason
    quarantined: int  # distinct inputs whose admission check raised, kept in <data dir>/quarantine
    nodes: list[NodeView]  # every validator of the genesis, in its order


def peer_base_url(genesis_api: str, tls: bool) -> str:
    """Where a peer's API is: the genesis's host and port, in the scheme this node serves (a
    network's bureaus speak one)."""
    parts = urlsplit(genesis_api)
    return f"{'https' if tls else 'http'}://{parts.netloc}"


async def _peer_status(client: httpx.AsyncClient, validator, tls: bool) -> NodeView:
    if not validator.api.startswith(("http://", "https://")):
        return NodeView(validator.id, validator.api, False, error="no API address in the genesis")
    try:
        resp = await client.get(peer_base_url(validator.api, tls) + "/v1/node/status")
        body = resp.json()
        if resp.status_code != 200 or body.get("node_id") != validator.id:
            return NodeView(validator.id, validator.api, False,
                            error=f"answered {resp.status_code} for {body.get('node_id')}")
        return NodeView(validator.id, validator.api, True, height=int(body["height"]), round=int(body["round"]),
                        peers_connected=int(body["peers_connected"]))
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as e:
        return NodeView(validator.id, validator.api, False, error=type(e).__name__)


async def network_view(node) -> list[NodeView]:
    """Every validator of the genesis: this node from itself, the others from their APIs."""
    me = node.settings.node_id
    http = node.settings.http
    tls = http.tls_cert_file is not None
    async with httpx.AsyncClient(timeout=PEER_TIMEOUT_S, verify=http_verify(http.ca_file)) as client:
        others = await asyncio.gather(*(_peer_status(client, v, tls) for v in node.genesis.validators if v.id != me))
    own = node_status(node)
    by_id = {n.node_id: n for n in others}
    by_id[me] = NodeView(me, node.genesis.validator(me).api, True, height=own.height, round=own.round,
                         peers_connected=own.peers_connected)
    return [by_id[v.id] for v in node.genesis.validators]


@get("/dashboard/data", summary="Dashboard data: this node's head, peers, chargers, counters; every validator's "
                                "head (operator only)", tags=["node"], responses=refusals(takes_input=False,
                                                                                         operator_only=True))
async def data(request: Request) -> DashboardData:
    require_operator(request)
    node = request.app.state.node
    view = node.consensus_view()
    m = node.metrics
    return DashboardData(
        v=DATA_VERSION, node_id=node.settings.node_id, chain_id=node.chain.genesis.chain_id,
        time=datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        height=node.chain.height, round=view["round"], peers=view["peers"], mempool_size=len(node.mempool),
        chargers_online=node.ingest.presence.online(), chargers_known=node.ingest.presence.known(),
        receipts_received=m.get("received"), receipts_committed=m.get("committed"), rejects=m.by_reason("rejected"),
        quarantined=node.quarantine.held, nodes=await network_view(node))


HANDLERS = [page, login, logout, asset, data]
