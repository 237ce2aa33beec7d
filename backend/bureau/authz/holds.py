"""Open authorizations ("holds"): what each wallet has promised to running sessions.

A wallet may authorize at most its balance minus what its other open holds reserve, so two
chargers cannot both spend the same money. A hold ends when the receipt naming its auth_ref
commits (released in the transaction that writes the block), when the charger releases it (the
session never started), or when it expires.

Holds are kept in memory for O(1) decisions and written to the node's database before a
decision leaves the node, so a restart neither forgets a promise nor makes it twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ..storage.tables import authz_holds as holds_table


@dataclass
class Hold:
    auth_ref: str
    wallet_id: str
    charger_id: str
    method: str  # card | app
    token: str
    amount_fen: int
    created_s: int
    expires_s: int

    def as_json(self) -> dict:
        return {"auth_ref": self.auth_ref, "charger_id": self.charger_id, "method": self.method,
                "amount_fen": self.amount_fen, "created": self.created_s, "expires": self.expires_s}


class HoldBook:
    """Not thread-safe: the authorization service calls it under its lock."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine  # the node's database: its migrations made the table
        self._by_ref: dict[str, Hold] = {}
        self._by_wallet: dict[str, dict[str, Hold]] = {}
        self._by_charger: dict[str, set[str]] = {}

    def load(self, now: int) -> int:
        """Open holds from the database (after a restart); returns how many."""
        q = sa.select(holds_table).where(holds_table.c.released_s.is_(None), holds_table.c.expires_s > now)
        with self.engine.connect() as conn:
            rows = list(conn.execute(q))
        for r in rows:
            self._index(Hold(r.auth_ref, r.wallet_id, r.charger_id, r.method, r.token, r.amount_fen,
                             r.created_s, r.expires_s))
        return len(rows)

    def _index(self, h: Hold) -> None:
        self._by_ref[h.auth_ref] = h
        self._by_wallet.setdefault(h.wallet_id, {})[h.auth_ref] = h
        self._by_charger.setdefault(h.charger_id, set()).add(h.auth_ref)

    def _unindex(self, h: Hold) -> None:
        self._by_ref.pop(h.auth_ref, None)
        w = self._by_wallet.get(h.wallet_id)
        if w is not None:
            w.pop(h.auth_ref, None)
            if not w:
                del self._by_wallet[h.wallet_id]
        c = self._by_charger.get(h.charger_id)
        if c is not None:
            c.discard(h.auth_ref)
            if not c:
                del self._by_charger[h.charger_id]

    # ---- reading -------------------------------------------------------------------------

    def get(self, auth_ref: str) -> Hold | None:
        return self._by_ref.get(auth_ref)

    def held_fen(self, wallet_id: str, now: int) -> int:
        return sum(h.amount_fen for h in self._by_wallet.get(wallet_id, {}).values() if h.expires_s > now)

    def of_wallet(self, wallet_id: str, now: int) -> list[Hold]:
        return sorted((h for h in self._by_wallet.get(wallet_id, {}).values() if h.expires_s > now),
                      key=lambda h: h.created_s)

    def wallets_held(self, now: int) -> dict[str, int]:
        return {w: s for w in self._by_wallet if (s := self.held_fen(w, now))}

    def has_charger(self, charger_id: str) -> bool:
        return charger_id in self._by_charger

    def __len__(self) -> int:
        return len(self._by_ref)

    # ---- writing -------------------------------------------------------------------------

    def add(self, h: Hold) -> None:
        """Durable before it returns: the decision that promises the amount is sent after."""
        with self.engine.begin() as conn:
            conn.execute(holds_table.insert(), {
                "auth_ref": h.auth_ref, "wallet_id": h.wallet_id, "charger_id": h.charger_id, "method": h.method,
                "token": h.token, "amount_fen": h.amount_fen, "created_s": h.created_s, "expires_s": h.expires_s})
        self._index(h)

    def release(self, refs: list[str], now: int, reason: str) -> list[Hold]:
        """End the named holds (those still open); returns the ones ended."""
        ended = [self._by_ref[r] for r in refs if r in self._by_ref]
        if not ended:
            return []
        with self.engine.begin() as conn:
            conn.execute(holds_table.update().where(holds_table.c.auth_ref == sa.bindparam("ref"))
                         .values(released_s=now, release_reason=reason),
                         [{"ref": h.auth_ref} for h in ended])
        for h in ended:
            self._unindex(h)
        return ended

    def settled(self, refs: list[tuple[str, str]]) -> list[Hold]:
        """Forget the holds (auth_ref, charger) that a committed block's receipts settled: the
        block's own database transaction released them (storage/repository.py)."""
        ended = [h for ref, charger in refs if (h := self._by_ref.get(ref)) is not None and h.charger_id == charger]
        for h in ended:
            self._unindex(h)
        return ended

    def expire(self, now: int) -> list[Hold]:
        return self.release([r for r, h in self._by_ref.items() if h.expires_s <= now], now, "expired")
