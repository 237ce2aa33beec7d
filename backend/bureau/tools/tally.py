"""What a bureau's stored ledger holds, tallied against the receipts the chargers issued: each
receipt committed exactly once on every node, and every wallet's balance equal to its top-ups
minus the bills committed to it. Used by the soak after the drain.

`read_ledger` is the I/O (one node's database); `tally` is pure."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa

from ..ledger.audit import audit_chain
from ..ledger.genesis import Genesis
from ..receipts.codec import decode, receipt_id
from ..storage import Repository
from ..storage import tables as t


@dataclass(frozen=True)
class Issued:
    """A receipt as its charger signed it."""
    receipt_id: str
    charger_id: str
    seq: int
    session_id: bytes
    wallet_id: str
    amount_fen: int

    @classmethod
    def of(cls, envelope: bytes) -> "Issued":
        r, _, _ = decode(envelope)
        return cls(receipt_id(envelope), r.charger_id, r.seq, r.session_id, r.wallet_id, r.amount_fen)


@dataclass
class NodeLedger:
    node_id: str
    receipts: Counter = field(default_factory=Counter)  # receipt id -> times committed
    sessions: Counter = field(default_factory=Counter)  # (charger, session id) -> receipts committed
    bills: Counter = field(default_factory=Counter)  # wallet -> fen of committed receipts
    top_ups: Counter = field(default_factory=Counter)  # wallet -> fen topped up
    balances: dict[str, int] = field(default_factory=dict)
    height: int = 0
    chain_valid: bool = False
    chain_problem: str | None = None
    state_root: str | None = None


def read_ledger(node_id: str, db_url: str, genesis: Genesis) -> NodeLedger:
    """Every committed receipt transaction of one node's database (not the receipts index, whose
    key could hide a second commit), its wallets, and a full audit of its chain."""
    repo = Repository(db_url)
    out = NodeLedger(node_id)
    try:
        with repo.engine.connect() as conn:
            for (data,) in conn.execute(sa.select(t.txs.c.data).where(t.txs.c.kind == "receipt")):
                envelope = bytes(data[1:])
                r, _, _ = decode(envelope)
                out.receipts[receipt_id(envelope)] += 1
                out.sessions[(r.charger_id, r.session_id)] += 1
                out.bills[r.wallet_id] += r.amount_fen
            for row in conn.execute(sa.select(t.wallet_entries.c.wallet_id, t.wallet_entries.c.delta_fen)
                                    .where(t.wallet_entries.c.kind == "top_up")):
                out.top_ups[row.wallet_id] += row.delta_fen
            out.balances = {row.wallet_id: row.balance_fen
                            for row in conn.execute(sa.select(t.wallets.c.wallet_id, t.wallets.c.balance_fen))}
        out.height = repo.head_height()
        report = audit_chain(genesis, repo)
        out.chain_valid, out.chain_problem = bool(report["chain_valid"]), report.get("problem")
        out.state_root = report.get("state_root")
    finally:
        repo.close()
    return out


def tally(issued: list[Issued], ledgers: list[NodeLedger], top_ups: dict[str, int]) -> dict:
    """Sent / committed (exactly once on every node) / doubled / lost, and the wallet checks.

    A receipt is doubled if any node holds it, or a second receipt of its session, more than
    once; lost if some node does not hold it at all."""
    ids = {i.receipt_id for i in issued}
    doubled = {rid for led in ledgers for rid, n in led.receipts.items() if n > 1}
    doubled |= {rid for led in ledgers for rid in led.receipts if rid not in ids}  # not from our chargers
    doubled_sessions = {k for led in ledgers for k, n in led.sessions.items() if n > 1}
    doubled |= {i.receipt_id for i in issued if (i.charger_id, i.session_id) in doubled_sessions}
    lost = {rid for rid in ids if any(led.receipts[rid] == 0 for led in ledgers)}
    committed = ids - lost - doubled
    expected_bills = Counter()
    for i in issued:
        expected_bills[i.wallet_id] += i.amount_fen
    wallet_problems = []
    for led in ledgers:
        for wallet, topped in top_ups.items():
            balance, bills = led.balances.get(wallet), led.bills[wallet]
            if led.top_ups[wallet] != topped:
                wallet_problems.append(f"{led.node_id} {wallet}: top-ups {led.top_ups[wallet]}, sent {topped}")
            if balance != topped - bills:
                wallet_problems.append(f"{led.node_id} {wallet}: balance {balance} != top-ups {topped} - bills {bills}")
            if bills != expected_bills[wallet]:
                wallet_problems.append(f"{led.node_id} {wallet}: bills {bills} fen, chargers issued "
                                       f"{expected_bills[wallet]} fen")
    return {
        "receipts_sent": len(ids), "receipts_committed": len(committed), "receipts_doubled": len(doubled),
        "receipts_lost": len(lost), "lost_examples": sorted(lost)[:5], "doubled_examples": sorted(doubled)[:5],
        "wallets_checked": len(top_ups) * len(ledgers), "wallets_consistent": not wallet_problems,
        "wallet_problems": wallet_problems[:10],
        "chains_valid": all(led.chain_valid for led in ledgers),
        "chain_problems": {led.node_id: led.chain_problem for led in ledgers if not led.chain_valid},
        "state_roots_agree": len({led.state_root for led in ledgers}) == 1,
        "heights": {led.node_id: led.height for led in ledgers},
    }
