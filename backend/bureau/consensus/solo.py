"""Single-bureau block production: this node proposes every block and its own precommit is the
whole commit certificate (a validator set of one). BFT consensus replaces it when the genesis
names more than one bureau; both sit behind the same `BlockProducer` shape: `start()`,
`stop()`, and blocks reach the chain through `Chain.commit`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from ..chain import Chain
from ..ingest.mempool import Mempool
from ..ledger import certificate
from ..ledger.state import Refusal
from ..ledger.tx import tx_hash

log = logging.getLogger(__name__)


class SoloProducer:
    def __init__(self, chain: Chain, mempool: Mempool, node_id: str, signing_key, *, max_txs: int = 5000,
                 interval_s: float = 0.2, on_refused: Callable[[list[Refusal]], None] | None = None) -> None:
        if len(chain.genesis.validators) != 1 or chain.genesis.validators[0].id != node_id:
            raise ValueError("single-bureau production needs a genesis whose only validator is this node")
        self.chain, self.mempool, self.node_id, self.key = chain, mempool, node_id, signing_key
        self.max_txs, self.interval_s = max_txs, interval_s
        self.on_refused = on_refused or (lambda refusals: None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def produce_once(self, now_ms: int) -> int:
        """Commit one block of what waits in the mempool; returns how many txs it held."""
        txs, verified = self.mempool.candidates(self.max_txs)
        if not txs:
            return 0
        block, ex = self.chain.build(txs, self.node_id, now_ms, verified)
        if ex.refused:
            self.on_refused(ex.refused)
        if block.txs:
            genesis = self.chain.genesis
            sig = certificate.sign_commit(self.key, self.node_id, genesis.chain_id, block.height, 0, block.hash)
            cert = certificate.encode(block.height, 0, block.hash, {self.node_id: sig})
            self.chain.commit(block, cert, ex)
        self.mempool.remove(map(tx_hash, txs))
        return len(block.txs)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.mempool.not_empty.wait(0.5):
                continue
            # Let a batch gather: one block per interval keeps the per-block costs (fsync,
            # certificate) off each receipt.
            self._stop.wait(self.interval_s)
            try:
                self.produce_once(int(time.time() * 1000))
            except Exception:  # a storage error must not end block production silently
                log.exception("block production failed; retrying")
                self._stop.wait(1.0)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="solo-producer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
