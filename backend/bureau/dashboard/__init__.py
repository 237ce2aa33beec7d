"""The operator dashboard at /dashboard: a page of plain HTML, JS and CSS in this package (no
CDN), and the JSON it polls. Operator only (api/operator_auth.py): the page is behind a login
with the node's operator token that sets a session cookie (HttpOnly, SameSite=Strict); the data
also answers a bearer token or a signed operator request. docs/observability.md."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath

from ..api.errors import Unauthorized
from ..api.observe import node_status
from ..api.operator_auth import COOKIE, SESSION_S, require_operator, session_cookie, token_matches

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
            "This node has no operator token: set operator_token_file (BUREAU_OPERATOR_TOKEN_FILE)."
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


async def _peer_status(client: httpx.AsyncClient, validator) -> dict[str, Any]:
    out: dict[str, Any] = {"node_id": validator.id, "api": validator.api}
    if not validator.api.startswith(("http://", "https://")):
        return {**out, "ok": False, "error": "no API address in the genesis"}
    try:
        resp = await client.get(validator.api.rstrip("/") + "/v1/node/status")
        body = resp.json()
        if resp.status_code != 200 or body.get("node_id") != validator.id:
            return {**out, "ok": False, "error": f"answered {resp.status_code} for {body.get('node_id')}"}
        return {**out, "ok": True, "height": int(body["height"]), "round": int(body["round"]),
                "peers_connected": int(body["peers_connected"])}
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as e:
        return {**out, "ok": False, "error": type(e).__name__}


async def network_view(node) -> list[dict[str, Any]]:
    """Every validator of the genesis: this node from itself, the others from their APIs."""
    me = node.settings.node_id
    async with httpx.AsyncClient(timeout=PEER_TIMEOUT_S) as client:
        others = await asyncio.gather(*(_peer_status(client, v) for v in node.genesis.validators if v.id != me))
    mine = {**node_status(node), "api": node.genesis.validator(me).api, "ok": True}
    del mine["v"], mine["chain_id"]
    by_id = {n["node_id"]: n for n in [mine, *others]}
    return [by_id[v.id] for v in node.genesis.validators]


@get("/dashboard/data", summary="Dashboard data: this node's head, peers, chargers, counters; every validator's "
                                "head (operator only)", tags=["operator (signed actions)"])
async def data(request: Request) -> dict[str, Any]:
    require_operator(request)
    node = request.app.state.node
    view = node.consensus_view()
    m = node.metrics
    return {"v": DATA_VERSION, "node_id": node.settings.node_id, "chain_id": node.chain.genesis.chain_id,
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "height": node.chain.height, "round": view["round"], "peers": view["peers"],
            "mempool_size": len(node.mempool), "chargers_online": node.ingest.presence.online(),
            "chargers_known": node.ingest.presence.known(), "receipts_received": m.get("received"),
            "receipts_committed": m.get("committed"), "rejects": m.by_reason("rejected"),
            "nodes": await network_view(node)}


HANDLERS = [page, login, logout, asset, data]
