"""Signed requests of drivers and operators: a driver reads only their own wallet, an operator
reaches the operator-only endpoints (api/operator_auth.py), and a signed request cannot be
replayed.

Header:  Authorization: EV-Sig wallet=<id>,node=<bureau id>,ts=<unix s>,nonce=<16-64 hex>,sig=<128 hex>
         (an operator: EV-Sig operator=<id>,node=...; the same fields and signing string)
Signed:  "EV-QUERY/v2\n" + node + "\n" + METHOD + "\n" + path?query + "\n" + ts + "\n" + nonce   (UTF-8)
with the Ed25519 key the wallet was opened with, or the operator's key in the genesis. A request is accepted once, and by one bureau
only: the bureau named in it. Each bureau remembers the nonces it accepted until their timestamp
leaves the window, so a request captured on its way to one bureau is refused by that bureau
(`replayed`) and by every other (`wrong_node`).
"""

from __future__ import annotations

import re
import threading
import time

from .. import crypto
from .errors import ApiError, Unauthorized

_HEADER = re.compile(r"EV-Sig (wallet|operator)=([A-Za-z0-9._-]{1,32}),node=([A-Za-z0-9._-]{1,64}),ts=(\d{1,12}),"
                     r"nonce=([0-9a-f]{16,64}),sig=([0-9a-f]{128})\Z")


def signing_string(node_id: str, method: str, path_qs: str, ts: int, nonce: str) -> bytes:
    return f"EV-QUERY/v2\n{node_id}\n{method.upper()}\n{path_qs}\n{ts}\n{nonce}".encode()


def authorization_header(signing_key, wallet_id: str, method: str, path_qs: str, *, node_id: str,
                         ts: int | None = None, nonce: str | None = None, principal: str = "wallet") -> str:
    """What a driver's app sends to the bureau `node_id` (its id is in /healthz and the genesis);
    with principal="operator" and `wallet_id` an operator id, what an operator's tool sends."""
    import secrets
    ts = int(time.time()) if ts is None else ts
    nonce = nonce or secrets.token_hex(16)
    sig = signing_key.sign(signing_string(node_id, method, path_qs, ts, nonce)).signature.hex()
    return f"EV-Sig {principal}={wallet_id},node={node_id},ts={ts},nonce={nonce},sig={sig}"


class ReplayGuard:
    """Nonces accepted within the window, each kept while its timestamp could still be accepted
    and forgotten then. At most `limit` at once: past it a request is refused as `busy`, never
    accepted by forgetting a nonce whose request could still be replayed. One wallet or operator
    holds at most `per_principal` of them, so a single key signing requests as fast as it can
    (or ahead of the clock, to keep them longer) is refused `too_many_requests` alone, and cannot
    fill the guard for everyone."""

    def __init__(self, window_s: int, limit: int = 1_000_000, per_principal: int = 10_000) -> None:
        self.window_s, self.limit, self.per_principal = window_s, limit, per_principal
        self._seen: set[tuple[str, str]] = set()
        self._held: dict[str, int] = {}  # principal -> its nonces kept
        # by the second after which they expire: a timestamp is within a window of the clock, so
        # these are at most 2 windows of seconds, looked through once a second
        self._expiring: dict[int, list[tuple[str, str]]] = {}
        self._lock = threading.Lock()
        self._swept_at: int | None = None

    def first_use(self, principal: str, nonce: str, ts: int, now: int) -> bool:
        key = (principal, nonce)
        with self._lock:
            if now != self._swept_at:  # within one second, nothing accepted since has expired yet
                self._forget(now)
            if key in self._seen:
                return False
            held = self._held.get(principal, 0)
            if held >= self.per_principal:
                raise ApiError("too_many_requests", f"{self.per_principal} requests of yours were accepted within "
                                                    f"the last {2 * self.window_s} s; wait a minute and send it again")
            if len(self._seen) >= self.limit:
                raise ApiError("busy", f"this bureau holds {self.limit} signed requests that may not be used again "
                                       f"yet; send it again in a few seconds")
            self._seen.add(key)
            self._held[principal] = held + 1
            self._expiring.setdefault(ts + self.window_s, []).append(key)
            return True

    def _forget(self, now: int) -> None:
        for second in [s for s in self._expiring if s < now]:
            keys = self._expiring.pop(second)
            self._seen.difference_update(keys)
            for principal, _ in keys:
                left = self._held[principal] - 1
                if left:
                    self._held[principal] = left
                else:
                    del self._held[principal]
        self._swept_at = now


def check(header: str | None, method: str, path_qs: str, public_key_of, guard: ReplayGuard, node_id: str,
          now: int | None = None, principal: str = "wallet") -> str:
    """The wallet id (or with principal="operator", the operator id) a valid request to bureau
    `node_id` speaks for; raises Unauthorized with the reason."""
    if not header:
        raise Unauthorized("missing_auth",
                           f"sign the request: Authorization: EV-Sig {principal}=..,node=..,ts=..,nonce=..,sig=..")
    m = _HEADER.match(header)
    if not m or m.group(1) != principal:
        raise Unauthorized("bad_auth",
                           f"Authorization header is not EV-Sig {principal}=..,node=..,ts=..,nonce=..,sig=..")
    wallet_id, node, ts, nonce, sig = m.group(2), m.group(3), int(m.group(4)), m.group(5), bytes.fromhex(m.group(6))
    if node != node_id:
        raise Unauthorized("wrong_node", f"the request is signed for {node}; this is {node_id}")
    now = int(time.time()) if now is None else now
    if abs(now - ts) > guard.window_s:
        raise Unauthorized("stale_request", f"timestamp is {now - ts} s off the node's clock (window {guard.window_s} s)")
    key = public_key_of(wallet_id)
    if key is None or not crypto.verify(key, signing_string(node_id, method, path_qs, ts, nonce), sig):
        raise Unauthorized("bad_signature", f"request signature does not verify for this {principal}")
    if not guard.first_use(f"{principal}:{wallet_id}", nonce, ts, now):
        raise Unauthorized("replayed", "this signed request was already used")
    return wallet_id
