"""A driver's own wallet: its balance (in memory) and its entries (from storage). Driver-signed."""

from __future__ import annotations

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import Parameter

from ..chain import Chain
from ..node import Node
from .chain import MAX_I64
from .driver import OWN_WALLET_DEPENDENCIES
from .errors import refusals
from .schemas import iso_utc


class WalletBalance(msgspec.Struct):
    wallet_id: str
    balance_fen: int
    height: int  # the committed height the balance is at


class WalletEntry(msgspec.Struct):
    id: int  # pass as `before` to read the page after this one
    kind: str
    delta_fen: int
    balance_after: int
    height: int
    index: int  # the transaction's index in its block
    tx_hash: str
    charger_id: str | None  # None for entries that are no charge (a top-up)
    seq: int | None
    energy_wh: int
    time: str  # ISO 8601 UTC


class WalletHistory(msgspec.Struct):
    wallet_id: str
    entries: list[WalletEntry]  # newest first


class WalletReader:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    def balance(self, wallet_id: str) -> WalletBalance:
        chain = self.chain
        return WalletBalance(wallet_id=wallet_id, balance_fen=chain.state.wallets[wallet_id].balance,
                             height=chain.height)

    def history(self, wallet_id: str, limit: int, before: int | None) -> WalletHistory:
        rows = self.chain.repo.wallet_history(wallet_id, limit, before)
        return WalletHistory(wallet_id=wallet_id, entries=[WalletEntry(
            id=r.id, kind=r.kind, delta_fen=r.delta_fen, balance_after=r.balance_after, height=r.height,
            index=r.idx, tx_hash=bytes(r.tx_hash).hex(), charger_id=r.charger_id, seq=r.seq,
            energy_wh=r.energy_wh, time=iso_utc(r.time_ms)) for r in rows])


class WalletController(Controller):
    path = "/v1/wallets"
    tags = ["wallets (driver-signed)"]
    dependencies = OWN_WALLET_DEPENDENCIES  # alone: a sibling dependency would cost a task group (api/driver.py)

    @get("/{wallet_id:str}", summary="Balance of the caller's wallet, O(1)", responses=refusals("not_your_wallet", driver_signed=True))
    async def balance(self, node: NamedDependency[Node], own_wallet: NamedDependency[str]) -> WalletBalance:
        # served by api/balance_reads.py in front of Litestar; this route documents it and
        # answers what that does not take (a trailing slash, which Litestar drops; a root path)
        return WalletReader(node.chain).balance(own_wallet)

    @get("/{wallet_id:str}/history", summary="Entries of the caller's wallet, newest first", sync_to_thread=True,
         responses=refusals("not_your_wallet", driver_signed=True))
    def history(self, node: NamedDependency[Node], own_wallet: NamedDependency[str],
                limit: int = Parameter(default=50, ge=1, le=500),
                before: int | None = Parameter(default=None, ge=1, le=MAX_I64,
                                               description="entries with a smaller id only")) -> WalletHistory:
        return WalletReader(node.chain).history(own_wallet, limit, before)
