"""Simulated RFID card reader: a queue of card UIDs that the charger polls.

`tap(uid)` puts a card in front of the reader (ISO 14443 UIDs are 4, 7 or 10 bytes; given as
bytes or a hex string); `poll()` returns the next UID as bytes, or None when no card is waiting.
`poll_hex()` gives the upper-case hex form the receipt's `id_token` uses. Thread-safe, so a test
or a demo console can tap cards while the charger loop polls.
"""

from __future__ import annotations

import threading
from collections import deque

UID_LENGTHS = (4, 7, 10)


def _uid_bytes(uid: bytes | bytearray | str) -> bytes:
    if isinstance(uid, str):
        try:
            raw = bytes.fromhex(uid)
        except ValueError:
            raise ValueError(f"card UID {uid!r} is not hex") from None
    else:
        raw = bytes(uid)
    if len(raw) not in UID_LENGTHS:
        raise ValueError(f"card UID must be 4, 7 or 10 bytes, got {len(raw)}")
    return raw


class CardReaderSim:
    def __init__(self) -> None:
        self._queue: deque[bytes] = deque()
        self._lock = threading.Lock()
        self.polls = 0

    def tap(self, uid: bytes | bytearray | str) -> None:
        raw = _uid_bytes(uid)
        with self._lock:
            self._queue.append(raw)

    def poll(self) -> bytes | None:
        with self._lock:
            self.polls += 1
            return self._queue.popleft() if self._queue else None

    def poll_hex(self) -> str | None:
        uid = self.poll()
        return None if uid is None else uid.hex().upper()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)
