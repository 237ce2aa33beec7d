"""The node's view of the chain: the ledger state, its storage, and what happens at commit.

Block production (the consensus replica, for one validator or many) asks it to build and to check
blocks and hands it committed blocks; it writes each one with its state in one transaction,
then tells listeners (acks to chargers, API caches).
"""

from __future__ import annotations

import threading
from typing import Callable

from .ledger import certificate, merkle
from .ledger.block import Block, Header
from .ledger.genesis import Genesis
from .ledger.state import Execution, LedgerState
from .storage import Repository

CommitListener = Callable[[Block, Execution], None]


class ChainError(ValueError):
    """A block that does not extend the chain or does not validate."""


class Chain:
    def __init__(self, genesis: Genesis, repo: Repository) -> None:
        self.genesis = genesis
        self.repo = repo
        self.state = LedgerState(genesis)
        repo.load_state(self.state)
        self.lock = threading.RLock()
        self._listeners: list[CommitListener] = []

    def on_commit(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    @property
    def height(self) -> int:
        return self.state.height

    def build(self, txs: list[bytes], proposer: str, time_ms: int, verified=frozenset()) -> tuple[Block, Execution]:
        """A block on top of the head holding those of `txs` that are valid, in order."""
        with self.lock:
            time_ms = max(time_ms, self.state.last_time_ms + 1)
            ex = self.state.execute(txs, time_ms, verified)
            header = Header(self.genesis.chain_id, self.state.height + 1, self.state.last_hash, time_ms,
                            merkle.root(ex.txs), ex.state_root, proposer, len(ex.txs))
            return Block(header, tuple(ex.txs)), ex

    def check(self, block: Block, verified=frozenset()) -> Execution:
        """Full re-validation of someone else's block; raises ChainError, else its execution."""
        with self.lock:
            h = block.header
            if h.chain_id != self.genesis.chain_id:
                raise ChainError("block of another chain")
            if h.height != self.state.height + 1 or h.prev_hash != self.state.last_hash:
                raise ChainError(f"block {h.height} does not extend head {self.state.height}")
            if h.time_ms <= self.state.last_time_ms:
                raise ChainError("block time does not advance")
            if h.tx_count != len(block.txs) or not block.check_tx_root():
                raise ChainError("Merkle root does not match the transactions")
            ex = self.state.execute(list(block.txs), h.time_ms, verified)
            if ex.refused:
                bad = ex.refused[0]
                raise ChainError(f"block holds an invalid transaction: {bad.reason}: {bad.detail}")
            if ex.state_root != h.state_root:
                raise ChainError("state root does not match")
            return ex

    def commit(self, block: Block, cert: bytes, ex: Execution) -> None:
        certificate.verify(self.state.validators_at(block.height), self.genesis.chain_id, block.height, block.hash,
                           cert)
        with self.lock:
            if block.height != self.state.height + 1 or block.header.prev_hash != self.state.last_hash:
                raise ChainError(f"commit of block {block.height} on head {self.state.height}")
            self.repo.commit_block(block, cert, ex, self.state)
            self.state.apply(ex, block.height, block.hash, block.header.time_ms)
        for listener in self._listeners:
            listener(block, ex)
