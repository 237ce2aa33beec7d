"""Which receipts this node took in, and from where, until their ack or reject is sent: the
bureau that took a receipt from its charger is the one that answers it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

# At most the mempool's limit wait for an answer: one whose copy is dropped unseen (a full
# mempool, a relayed copy refused elsewhere) cannot pile up; the oldest go first.
ORIGINS_KEPT = 200_000

T = TypeVar("T")


class Origins(Generic[T]):
    """tx hash -> where its receipt came from (its arrival time, the worker link), bounded, for
    admission threads that add and a commit listener that takes."""

    def __init__(self, limit: int = ORIGINS_KEPT) -> None:
        self.limit = limit
        self._by_hash: OrderedDict[bytes, T] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._by_hash)

    def remember(self, h: bytes, origin: T) -> None:
        """A later arrival of the same receipt replaces the earlier one as its origin."""
        with self._lock:
            self._by_hash[h] = origin
            self._by_hash.move_to_end(h)
            while len(self._by_hash) > self.limit:
                self._by_hash.popitem(last=False)

    def take(self, h: bytes) -> T | None:
        """The origin of a receipt taken here, forgotten; None when it was not taken here."""
        with self._lock:
            return self._by_hash.pop(h, None)
