"""Consensus messages from the peers, one bounded queue per peer, taken round-robin.

A peer that sends faster than the consensus thread takes fills only its own queue: its excess
is refused (`put` returns False, the caller counts it) and never blocks the reader thread of
its link, and an honest peer's next message waits behind at most one message of each other
peer, not behind a noisy peer's backlog.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Hashable


class PeerInbox:
    def __init__(self, max_messages: int = 4096, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self._queues: dict[Hashable, deque[bytes]] = {}
        self._bytes: dict[Hashable, int] = {}
        self._turns: deque[Hashable] = deque()  # peers with something queued, in serving order
        self._cond = threading.Condition()

    def put(self, peer: Hashable, payload: bytes) -> bool:
        with self._cond:
            q = self._queues.setdefault(peer, deque())
            used = self._bytes.get(peer, 0)
            if len(q) >= self.max_messages or used + len(payload) > self.max_bytes:
                return False
            if not q:
                self._turns.append(peer)
            q.append(payload)
            self._bytes[peer] = used + len(payload)
            self._cond.notify()
            return True

    def get(self, timeout: float | None = None) -> tuple[Hashable, bytes] | None:
        """The next message in round-robin order, or None when nothing came within `timeout`."""
        with self._cond:
            if not self._turns and timeout:
                self._cond.wait(timeout)
            if not self._turns:
                return None
            peer = self._turns.popleft()
            q = self._queues[peer]
            payload = q.popleft()
            self._bytes[peer] -= len(payload)
            if q:
                self._turns.append(peer)
            return peer, payload

    def queued(self, peer: Hashable) -> int:
        with self._cond:
            return len(self._queues.get(peer, ()))

    def __len__(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())
