"""One pooled HTTP client per TLS verification setting, shared by the operator tools, the CLIs,
the benchmarks and the tests' wait loops.

A module-level `httpx.get(...)` builds an `httpx.Client` and throws it away: about 36 ms of CPU
each time with `verify=True` (certifi's CA bundle loaded into a new SSL context), and a new TCP
(and TLS) connection per request. A shared client pays that once and keeps its connections
alive. Requests keep their own `timeout=`; the client's default is httpx's own (5 s), as for
the module-level calls."""

from __future__ import annotations

import atexit
import os
import ssl
import threading
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpcore
import httpx

# Below uvicorn's keep-alive timeout (5 s): a connection idle this long is not reused, so a request
# never meets a node closing it for idleness at that very moment. A node that restarted closed
# its connections, and the pool drops a connection it finds closed before sending on it.
KEEPALIVE_EXPIRY_S = 2.0

_lock = threading.Lock()
_clients: dict[object, httpx.Client] = {}


def shared_client(verify: ssl.SSLContext | bool = True) -> httpx.Client:
    """The process's client for `verify` (httpx's: True for the system's CA bundle, False for
    none, or an SSL context: bureau.tools.pki.http_verify gives one context per CA file, so its
    answers share a client). Thread-safe; closed at interpreter exit."""
    if not isinstance(verify, (bool, ssl.SSLContext)):
        raise TypeError(f"verify must be a bool or an ssl.SSLContext, not {type(verify).__name__}")
    key = verify if isinstance(verify, bool) else ("context", id(verify))  # (the client keeps the context alive)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = httpx.Client(
                verify=verify, limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S),
                # Like the module-level calls, each request stands alone: no cookie kept between them.
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))
    return client


def close_idle_connections(url: str) -> None:
    """Close this process's idle kept-alive connections to `url`'s server, before stopping it: a
    stopping node (uvicorn) waits for each TLS client to answer its close, which an idle pooled
    connection does only when next used (asyncio waits up to 30 s), so the node would not stop
    in time and be killed. A request that takes such a connection meanwhile gets another one."""
    origin = httpcore.URL(url).origin
    with _lock:
        clients = list(_clients.values())
    for client in clients:
        # (httpx's transport keeps its httpcore pool private; httpx is pinned in pyproject.toml)
        for connection in client._transport._pool.connections:
            if connection.is_idle() and connection.can_handle_request(origin):
                connection.close()


def close_shared_clients() -> None:
    """Close every shared client (at interpreter exit); the next call makes a new one."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


def _forget_in_child() -> None:
    # A forked child must not talk on its parent's connections, nor wait on a lock held by a
    # parent thread at the fork: it starts with none.
    global _lock
    _lock = threading.Lock()
    _clients.clear()


atexit.register(close_shared_clients)
os.register_at_fork(after_in_child=_forget_in_child)
