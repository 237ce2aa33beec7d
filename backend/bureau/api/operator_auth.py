"""Who may reach the operator-only endpoints (/metrics, operator action status, the dashboard):
an operator of the genesis with a signed request (EV-Sig operator=..., api/auth.py), or the
holder of the node's operator token (setting operator_token_file) as `Authorization: Bearer`,
for a Prometheus scraper, or in the dashboard's session cookie that a login with the token
sets. docs/observability.md describes all three."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

from . import auth
from .errors import Unauthorized

MIN_TOKEN_CHARS = 32
COOKIE = "bureau_dashboard"
SESSION_S = 12 * 3600


def load_token(path: Path | None) -> str | None:
    """The operator token in `path` (surrounding whitespace dropped); None without a path."""
    if path is None:
        return None
    token = Path(path).read_text().strip()
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise RuntimeError(f"{path}: the operator token must be one word of at least {MIN_TOKEN_CHARS} characters")
    return token


def _cookie_mac(token: str, node_id: str, expires: int) -> str:
    key = hashlib.sha256(b"bureau-dashboard-session/v1\n" + token.encode()).digest()
    return hmac.new(key, f"{node_id}\n{expires}".encode(), hashlib.sha256).hexdigest()


def session_cookie(token: str, node_id: str, now: int | None = None) -> str:
    """`<expiry unix s>.<HMAC>`: valid on this node until it expires or the token changes."""
    expires = (int(time.time()) if now is None else now) + SESSION_S
    return f"{expires}.{_cookie_mac(token, node_id, expires)}"


def session_valid(cookie: str | None, token: str | None, node_id: str, now: int | None = None) -> bool:
    if not cookie or not token or "." not in cookie:
        return False
    expires, mac = cookie.split(".", 1)
    if not expires.isdigit() or int(expires) < (int(time.time()) if now is None else now):
        return False
    return hmac.compare_digest(mac, _cookie_mac(token, node_id, int(expires)))


def token_matches(given: str, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(given.encode(), token.encode())


def require_operator(request) -> str:
    """Who the request speaks for: "operator:<id>" (signed) or "token" (bearer or session
    cookie); raises Unauthorized (401) with the reason otherwise."""
    node = request.app.state.node
    token = node.operator_token
    header = request.headers.get("authorization")
    if header and header.startswith("Bearer "):
        if token_matches(header[len("Bearer "):], token):
            return "token"
        raise Unauthorized("bad_token", "the bearer token is not this node's operator token"
                           if token else "this node has no operator token (BUREAU_HTTP_OPERATOR_TOKEN_FILE)")
    if not header and session_valid(request.cookies.get(COOKIE), token, node.settings.node_id):
        return "token"
    if not header:
        raise Unauthorized("operator_auth_required",
                           "operator only: sign the request (EV-Sig operator=..,node=..,ts=..,nonce=..,sig=..) "
                           "or send Authorization: Bearer <operator token>")
    path_qs = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    operators = node.chain.state.operators
    who = auth.check(header, request.method, path_qs, operators.get, node.replay_guard, node.settings.node_id,
                     principal="operator")
    return "operator:" + who
