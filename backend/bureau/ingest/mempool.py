"""Transactions waiting for a block: de-duplicated, in arrival order, bounded."""

from __future__ import annotations

import threading
from collections import OrderedDict


class MempoolFull(Exception):
    """The mempool is at its limit; the sender should retry later."""


class Mempool:
    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._txs: OrderedDict[bytes, bytes] = OrderedDict()  # tx hash -> tx
        # hashes whose signature this node checked -> the receipt as admission parsed it (None for
        # other kinds): a block's execution reuses both, so each node decodes and verifies once
        self.verified: dict[bytes, tuple | None] = {}
        self._lock = threading.Lock()
        self.not_empty = threading.Event()
        self.drained = threading.Event()  # set by every removal: ingest paused at a full mempool waits on it
        # Told of every transaction admitted here first (not of those relayed by peers), so
        # consensus can relay it to the other bureaus.
        self.on_local_add: list = []

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._txs

    def add(self, tx_hash: bytes, tx: bytes, verified: bool, local: bool = True, decoded: tuple | None = None) -> bool:
        """False when the same transaction already waits; MempoolFull when at the limit.
        `local`: admitted by this node (from a charger or the API), not relayed by a peer.
        `decoded`: a verified receipt's (receipt, body, signature) from admission."""
        with self._lock:
            if tx_hash in self._txs:
                return False
            if len(self._txs) >= self.limit:
                raise MempoolFull(f"{self.limit} transactions wait already")
            self._txs[tx_hash] = tx
            if verified:
                self.verified[tx_hash] = decoded
            self.not_empty.set()
        if local:
            for listener in self.on_local_add:
                listener(tx)
        return True

    def peek(self, n: int) -> list[tuple[bytes, bytes]]:
        with self._lock:
            out = []
            for item in self._txs.items():
                out.append(item)
                if len(out) >= n:
                    break
            return out

    def candidates(self, n: int) -> tuple[list[bytes], dict[bytes, tuple | None]]:
        """The oldest `n` transactions for a block, and those of them this node already verified
        (hash -> admission's parse of a receipt)."""
        items = self.peek(n)
        return [tx for _, tx in items], self.checked(h for h, _ in items)

    def checked(self, hashes) -> dict[bytes, tuple | None]:
        """Which of `hashes` this node verified, each with admission's parse of its receipt."""
        verified = self.verified
        return {h: verified[h] for h in hashes if h in verified}

    def remove(self, hashes) -> None:
        with self._lock:
            for h in hashes:
                self._txs.pop(h, None)
                self.verified.pop(h, None)
            if not self._txs:
                self.not_empty.clear()
        self.drained.set()
        self.drained.clear()
