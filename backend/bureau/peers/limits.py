"""Per-peer limits on what an authenticated peer may ask of us, pure (the caller passes the
clock). A validator's key proves who sends, not that it behaves."""

from __future__ import annotations

import threading
from typing import Hashable


class SyncLimiter:
    """Sync requests of one peer: a token bucket (`rate_per_s`, `burst`) and de-duplication
    (one from_height is served once per `dedup_ms`)."""

    def __init__(self, rate_per_s: float = 20.0, burst: int = 40, dedup_ms: int = 500) -> None:
        self.rate_per_ms, self.burst, self.dedup_ms = rate_per_s / 1000, burst, dedup_ms
        self._tokens: dict[Hashable, tuple[float, int]] = {}  # peer -> (tokens, at ms)
        self._recent: dict[Hashable, dict[int, int]] = {}      # peer -> from_height -> served at ms
        self._lock = threading.Lock()

    def admit(self, peer: Hashable, from_height: int, now_ms: int) -> str:
        """"ok", "duplicate" or "rate"."""
        with self._lock:
            recent = self._recent.setdefault(peer, {})
            if now_ms - recent.get(from_height, -self.dedup_ms) < self.dedup_ms:
                return "duplicate"
            tokens, at = self._tokens.get(peer, (float(self.burst), now_ms))
            tokens = min(float(self.burst), tokens + (now_ms - at) * self.rate_per_ms)
            if tokens < 1:
                self._tokens[peer] = (tokens, now_ms)
                return "rate"
            self._tokens[peer] = (tokens - 1, now_ms)
            if len(recent) > 4 * self.burst:
                for h in [h for h, t in recent.items() if now_ms - t >= self.dedup_ms]:
                    del recent[h]
            recent[from_height] = now_ms
            return "ok"


class FloodMeter:
    """Refused messages per peer in fixed windows of `window_ms`; `note` says when a peer went
    over `limit` in one window (and starts its count again)."""

    def __init__(self, limit: int = 2000, window_ms: int = 10_000) -> None:
        self.limit, self.window_ms = limit, window_ms
        self._counts: dict[Hashable, tuple[int, int]] = {}  # peer -> (window start ms, count)
        self._lock = threading.Lock()

    def note(self, peer: Hashable, now_ms: int, n: int = 1) -> bool:
        with self._lock:
            start, count = self._counts.get(peer, (now_ms, 0))
            if now_ms - start >= self.window_ms:
                start, count = now_ms, 0
            count += n
            if count > self.limit:
                self._counts.pop(peer, None)
                return True
            self._counts[peer] = (start, count)
            return False
