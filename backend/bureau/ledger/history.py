"""What the ledger remembers of the receipts it committed, in memory bounded by the chargers.

A charger's seqs never repeat and arrive nearly in order, so a node keeps per charger only the
highest committed seq H and a bitmap of the committed seqs in (H - SEQ_WINDOW, H]
(`SeqWindows`): a receipt above H, or in the window with its bit clear, is new without any
lookup, and one at or below H - SEQ_WINDOW is refused (`seq_too_old`) whatever was committed
there. Only a set bit asks the `History` for the receipt's id (`duplicate` or `seq_reused`).
Session ids are random, so no bounded memory can say a session is new: a block asks for all of
its sessions in one batch, counting only the bills of blocks since the billing horizon
(ledger/state.py `billed_horizon_ms`): older sessions are refused by the staleness bound anyway.

The history is a node's storage (storage/repository.py `StoredHistory`), or `MemoryHistory` for
a state without storage (an audit replaying a chain, tests). Either gives the same answers, so
every node decides the same; a node that joined from a snapshot holds the ids of the receipts
committed since the horizon only, which decides the same too (docs/ledger.md, Memory).
"""

from __future__ import annotations

from typing import Protocol

# Seqs per charger the window answers from memory (docs/ledger.md, Memory): a bitmap of this many
# bits per charger. Seqs at or below the highest minus this are refused `seq_too_old`.
SEQ_WINDOW = 1024


class History(Protocol):
    """The committed receipts and billed sessions, up to the state's height."""

    def receipt_id(self, charger_id: str, seq: int) -> str | None:
        """The id of the committed receipt (charger_id, seq); None when none is held (no receipt,
        or one a joined node's snapshot left out: committed before the billing horizon)."""

    def billed_sessions(self, sessions: set[tuple[str, bytes]], since_ms: int) -> set[tuple[str, bytes]]:
        """Those of `sessions` ((charger id, session id) pairs) that a receipt committed in a block
        of time `since_ms` or later bills."""

    def record(self, receipts: dict[tuple[str, int], str], sessions: set[tuple[str, bytes]], time_ms: int) -> None:
        """A block of time `time_ms` committed these (called by `LedgerState.apply`)."""


class MemoryHistory:
    """Every committed receipt id and billed session (with its block's time), in memory:
    O(receipts), for a state that has no storage behind it."""

    def __init__(self) -> None:
        self.receipts: dict[tuple[str, int], str] = {}
        self.sessions: dict[tuple[str, bytes], int] = {}  # -> time (ms) of the block that billed it

    def receipt_id(self, charger_id: str, seq: int) -> str | None:
        return self.receipts.get((charger_id, seq))

    def billed_sessions(self, sessions: set[tuple[str, bytes]], since_ms: int) -> set[tuple[str, bytes]]:
        return {s for s in sessions if s in self.sessions and self.sessions[s] >= since_ms}

    def record(self, receipts: dict[tuple[str, int], str], sessions: set[tuple[str, bytes]], time_ms: int) -> None:
        self.receipts.update(receipts)
        self.sessions.update(dict.fromkeys(sessions, time_ms))


class SeqWindows:
    """Per charger: the highest committed seq and which of the `width` seqs up to it are committed.

    Bit i of a charger's bitmap stands for seq `high - i`. Memory: one int and one `width`-bit int
    per charger that has committed a receipt, whatever the number of receipts. The windows of a
    set of committed seqs do not depend on the order they were added in, so a snapshot's windows
    plus the receipts of the blocks after it make the windows of a node that replayed the chain.
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
        """False: seq is not committed. True: it is. None: it lies at or below the floor (refused)."""
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
        """Seq `seq` of `charger_id` is committed; one below the window changes nothing."""
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

    def merge(self, charger_id: str, high: int, bits: int) -> None:
        """Add every seq a window (`high`, `bits`) holds (a snapshot's, or storage's)."""
        if charger_id not in self._windows:
            self._windows[charger_id] = (high, bits & self._mask | 1)
            return
        self.add(charger_id, high)
        for i in range(1, self.width):
            if bits >> i & 1:
                self.add(charger_id, high - i)

    def items(self) -> list[tuple[str, int, int]]:
        """(charger, high, bitmap) of every charger, sorted by charger."""
        return [(c, high, bits) for c, (high, bits) in sorted(self._windows.items())]

    # The wire form of a window (docs/consensus.md, snapshot v2): the seqs of the window that are
    # NOT committed, as a bitmap in hex; seqs start at 1 (docs/receipt-v1.md), so a charger that
    # committed every seq up to its highest has gaps "0" whatever its age.
    def gaps(self, high: int, bits: int) -> str:
        span = (1 << min(self.width, high)) - 1
        return format(~bits & span, "x")

    def from_gaps(self, high: int, gaps: str) -> int:
        if high < 1:
            raise ValueError(f"highest seq {high} is not a seq")
        span = (1 << min(self.width, high)) - 1
        g = int(gaps, 16)
        if g & ~span or g & 1 or gaps != format(g, "x"):
            raise ValueError(f"gaps {gaps[:40]!r} do not fit a window of highest seq {high}")
        return ~g & span
