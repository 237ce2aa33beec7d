"""Full re-verification of a stored chain from its genesis: every header link, commit
certificate, Merkle root, receipt and operator signature, and the state replayed block by block."""

from __future__ import annotations

from . import certificate
from .genesis import Genesis
from .state import LedgerState


def audit_chain(genesis: Genesis, repo, to_height: int | None = None) -> dict:
    """The chain up to `to_height` (default: all of it); a bound lets a live node be audited at a
    height others are compared at while it keeps committing."""
    state = LedgerState(genesis)
    blocks = receipts = 0
    problem = None
    for block, cert in repo.blocks(1, to_height):
        h = block.header
        try:
            if h.chain_id != genesis.chain_id or h.height != state.height + 1 or h.prev_hash != state.last_hash:
                raise ValueError("header does not link to the previous block")
            certificate.verify(genesis.validators, genesis.chain_id, h.height, h.hash, cert)
            if not block.check_tx_root():
                raise ValueError("Merkle root does not match the transactions")
            ex = state.execute(list(block.txs), h.time_ms)  # every signature checked again
            if ex.refused:
                raise ValueError(f"invalid transaction: {ex.refused[0].reason}: {ex.refused[0].detail}")
            if ex.state_root != h.state_root:
                raise ValueError("replayed state root differs from the header")
        except ValueError as e:
            problem = f"block {h.height}: {e}"
            break
        state.apply(ex, h.height, h.hash, h.time_ms)
        blocks += 1
        receipts += sum(1 for e in ex.effects if e.kind == "receipt")
    return {"chain_valid": problem is None, "blocks": blocks, "receipts": receipts, "height": state.height,
            "state_root": state.state_root.hex(), "problem": problem,
            "balances_fen": sum(w.balance for w in state.wallets.values())}
