"""Driver request signatures: a driver reads only their own wallet, and a signed request
cannot be replayed.

Header:  Authorization: EV-Sig wallet=<id>,ts=<unix s>,nonce=<16-64 hex>,sig=<128 hex>
Signed:  "EV-QUERY/v1\n" + METHOD + "\n" + path?query + "\n" + ts + "\n" + nonce   (UTF-8)
with the Ed25519 key the wallet was opened with. A request is accepted once: the nonce is
remembered until its timestamp leaves the accepted window.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict

from .. import crypto
from .errors import Unauthorized

_HEADER = re.compile(r"EV-Sig wallet=([A-Za-z0-9._-]{1,32}),ts=(\d{1,12}),nonce=([0-9a-f]{16,64}),sig=([0-9a-f]{128})\Z")


def signing_string(method: str, path_qs: str, ts: int, nonce: str) -> bytes:
    return f"EV-QUERY/v1\n{method.upper()}\n{path_qs}\n{ts}\n{nonce}".encode()


def authorization_header(signing_key, wallet_id: str, method: str, path_qs: str, ts: int | None = None,
                         nonce: str | None = None) -> str:
    """What a driver's app sends (used by tests, the demo and the load generator)."""
    import secrets
    ts = int(time.time()) if ts is None else ts
    nonce = nonce or secrets.token_hex(16)
    sig = signing_key.sign(signing_string(method, path_qs, ts, nonce)).signature.hex()
    return f"EV-Sig wallet={wallet_id},ts={ts},nonce={nonce},sig={sig}"


class ReplayGuard:
    """Nonces seen within the window, forgotten once they could no longer be accepted."""

    def __init__(self, window_s: int, limit: int = 1_000_000) -> None:
        self.window_s, self.limit = window_s, limit
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, wallet_id: str, nonce: str, ts: int, now: int) -> bool:
        with self._lock:
            while self._seen:
                (_, expires) = next(iter(self._seen.items()))
                if expires >= now and len(self._seen) < self.limit:
                    break
                self._seen.popitem(last=False)
            key = (wallet_id, nonce)
            if key in self._seen:
                return False
            self._seen[key] = ts + self.window_s
            return True


def check(header: str | None, method: str, path_qs: str, public_key_of, guard: ReplayGuard,
          now: int | None = None) -> str:
    """The wallet id a valid request speaks for; raises Unauthorized with the reason."""
    if not header:
        raise Unauthorized("missing_auth", "sign the request: Authorization: EV-Sig wallet=..,ts=..,nonce=..,sig=..")
    m = _HEADER.match(header)
    if not m:
        raise Unauthorized("bad_auth", "Authorization header is not EV-Sig wallet=..,ts=..,nonce=..,sig=..")
    wallet_id, ts, nonce, sig = m.group(1), int(m.group(2)), m.group(3), bytes.fromhex(m.group(4))
    now = int(time.time()) if now is None else now
    if abs(now - ts) > guard.window_s:
        raise Unauthorized("stale_request", f"timestamp is {now - ts} s off the node's clock (window {guard.window_s} s)")
    key = public_key_of(wallet_id)
    if key is None or not crypto.verify(key, signing_string(method, path_qs, ts, nonce), sig):
        raise Unauthorized("bad_signature", "request signature does not verify for this wallet")
    if not guard.first_use(wallet_id, nonce, ts, now):
        raise Unauthorized("replayed", "this signed request was already used")
    return wallet_id
