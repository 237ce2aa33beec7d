"""What the ledger remembers of the receipts it committed, in memory bounded by the chargers.

A charger's seqs never repeat and arrive nearly in order, so a node keeps per charger only the
highest committed seq H and a bitmap of the committed seqs in (H - SEQ_WINDOW, H]
(`SeqWindows`): a receipt above H, or in the window with its bit clear, is new without any
lookup. Every other question (the id of a committed seq, a seq below the window) goes to the
`History`, the authority on what is committed: a node's storage (storage/repository.py
`StoredHistory`), or `MemoryHistory` for a state without storage (an audit replaying a chain,
tests). Either gives the same answers, so every node decides the same. Session ids are random, so
no bounded memory can say a session is new: a block asks for all of its sessions in one batch.
"""

from __future__ import annotations

from typing import Protocol

# Seqs per charger the window answers from memory (docs/ledger.md, Memory): a bitmap of this many
# bits per charger. Seqs further below the highest go to storage.
SEQ_WINDOW = 1024


class History(Protocol):
    """The committed receipts and billed sessions, up to the state's height."""

    def receipt_id(self, charger_id: str, seq: int) -> str | None:
        """The id of the committed receipt (charger_id, seq); None when there is none."""

    def billed_sessions(self, sessions: set[tuple[str, bytes]]) -> set[tuple[str, bytes]]:
        """Those of `sessions` ((charger id, session id) pairs) that a committed receipt bills."""

    def record(self, receipts: dict[tuple[str, int], str], sessions: set[tuple[str, bytes]]) -> None:
        """A block committed these (called by `LedgerState.apply`)."""


class MemoryHistory:
    """Every committed receipt id and billed session, in memory: O(receipts), for a state that has
    no storage behind it."""

    def __init__(self) -> None:
        self.receipts: dict[tuple[str, int], str] = {}
        self.sessions: set[tuple[str, bytes]] = set()

    def receipt_id(self, charger_id: str, seq: int) -> str | None:
        return self.receipts.get((charger_id, seq))

    def billed_sessions(self, sessions: set[tuple[str, bytes]]) -> set[tuple[str, bytes]]:
        return sessions & self.sessions

    def record(self, receipts: dict[tuple[str, int], str], sessions: set[tuple[str, bytes]]) -> None:
        self.receipts.update(receipts)
        self.sessions.update(sessions)


class SeqWindows:
    """Per charger: the highest committed seq and which of the `width` seqs up to it are committed.

    Bit i of a charger's bitmap stands for seq `high - i`. Memory: one int and one `width`-bit int
    per charger that has committed a receipt, whatever the number of receipts.
    """

    def __init__(self, width: int = SEQ_WINDOW) -> None:
        self.width = width
        self._mask = (1 << width) - 1
        self._windows: dict[str, tuple[int, int]] = {}  # charger -> (high, bitmap)

    def __len__(self) -> int:
        return len(self._windows)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SeqWindows) and (self.width, self._windows) == (other.width, other._windows)

    def high(self, charger_id: str) -> int | None:
        window = self._windows.get(charger_id)
        return None if window is None else window[0]

    def committed(self, charger_id: str, seq: int) -> bool | None:
        """False: seq is not committed. True: it is. None: it lies below the window; ask the history."""
        window = self._windows.get(charger_id)
        if window is None:
            return False
        high, bits = window
        if seq > high:
            return False
        if seq <= high - self.width:
            return None
        return bool(bits >> (high - seq) & 1)

    def add(self, charger_id: str, seq: int) -> None:
        """Seq `seq` of `charger_id` is committed; one below the window changes nothing (the history has it)."""
        window = self._windows.get(charger_id)
        if window is None:
            self._windows[charger_id] = (seq, 1)
            return
        high, bits = window
        if seq > high:  # (a jump past the whole window leaves only the new seq: no huge shift)
            shifted = bits << (seq - high) & self._mask if seq - high < self.width else 0
            self._windows[charger_id] = (seq, shifted | 1)
        elif seq > high - self.width:
            self._windows[charger_id] = (high, bits | 1 << (high - seq))
