"""A Byzantine bureau: holds a real validator key and speaks the real link and consensus
formats (PeerTransport, consensus.types), but lies. It stands in for one bureau of a Stack
(the real node process of that id is not started) and

- proposes, whenever it is the proposer of round 0, a block holding `forged_txs` (a receipt
  whose amount was changed after the charger signed it) on top of the honest head, and a second,
  different such block to the other peers (equivocating proposals);
- prevotes twice for every honest proposal it sees: for the block to some peers, for a made-up
  hash to others (one peer gets both);
- floods every peer with SyncRequests when told to (`flood(seconds)`).

Run in a process of its own: python -m tests.support.byzantine --net DIR --id bureau-4
--forged-tx HEX [--flood-at S --flood-s S] --run-s S; prints its counters as JSON at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from bureau.consensus.types import (Proposal, Step, SyncRequest, Vote, decode_message, encode_message,
                                    proposal_sign_bytes, vote_sign_bytes)
from bureau.crypto import load_or_create_key
from bureau.ledger import merkle
from bureau.ledger.block import Block, Header
from bureau.ledger.genesis import Genesis
from bureau.peers.handshake import CH_CONSENSUS
from bureau.peers.transport import PeerTransport


class ByzantineBureau:
    def __init__(self, genesis: Genesis, node_id: str, key, forged_txs: list[bytes]) -> None:
        self.genesis, self.node_id, self.key, self.forged_txs = genesis, node_id, key, forged_txs
        self.chain_id = genesis.chain_id
        self.vs = genesis.validators
        self.index = self.vs.index_of_id(node_id)
        self.quorum = self.vs.quorum_power
        self.peers = [v.id for v in genesis.validators if v.id != node_id]
        me = genesis.validator(node_id)
        self.transport = PeerTransport(genesis, node_id, key, me.address, self._on_message)
        self.inbox: queue.Queue = queue.Queue(maxsize=100_000)
        self.stats: Counter = Counter()
        self.blocks: dict[bytes, bytes] = {}                  # hash -> block seen in a proposal
        self.precommits: dict[tuple[int, bytes], set] = defaultdict(set)
        self.committed: dict[int, bytes] = {}                 # height -> hash with a commit quorum
        self.forged: dict[int, list[Proposal]] = {}
        self._prevoted: set[tuple[int, int]] = set()
        self._stop = threading.Event()

    # ---- the network -------------------------------------------------------------------

    def _on_message(self, peer: str, channel: int, payload: bytes) -> None:
        if channel == CH_CONSENSUS:
            try:
                self.inbox.put_nowait(payload)
            except queue.Full:
                pass

    def _send(self, peers, msg) -> None:
        data = encode_message(msg)
        for p in peers:
            self.transport.send(p, CH_CONSENSUS, data)

    # ---- lies --------------------------------------------------------------------------

    def _forge(self, height: int) -> list[Proposal]:
        """Two different blocks at `height` on the honest head, holding the forged receipt."""
        prev = Block.decode(self.blocks[self.committed[height - 1]]).header
        out = []
        for skew in (1, 2):
            header = Header(self.chain_id, height, self.committed[height - 1],
                            prev.time_ms + skew, merkle.root(self.forged_txs), prev.state_root, self.node_id,
                            len(self.forged_txs))
            block = Block(header, tuple(self.forged_txs))
            sig = self.key.sign(proposal_sign_bytes(self.chain_id, height, 0, block.hash, -1)).signature
            out.append(Proposal(height, 0, -1, block.encode(), sig))
        return out

    def _on_commit(self, height: int) -> None:
        nxt = height + 1
        if self.vs.proposer(nxt, 0) == self.index and height in self.committed and self.committed[height] in self.blocks:
            self.forged[nxt] = self._forge(nxt)
            self.stats["forged_proposals"] += 2
            self._send_forged(nxt)

    def _send_forged(self, height: int) -> None:
        a, b = self.forged[height]
        self._send(self.peers[:1], a)
        self._send(self.peers[1:], b)

    def _equivocate(self, p: Proposal, block_hash: bytes) -> None:
        if (p.height, p.round) in self._prevoted:
            return
        self._prevoted.add((p.height, p.round))
        votes = []
        for bh in (block_hash, os.urandom(32)):
            sig = self.key.sign(vote_sign_bytes(self.chain_id, Step.PREVOTE, p.height, p.round, bh)).signature
            votes.append(Vote(Step.PREVOTE, p.height, p.round, bh, self.index, sig))
        self._send(self.peers[:2], votes[0])
        self._send(self.peers[1:], votes[1])
        self.stats["equivocating_prevotes"] += 2

    def _handle(self, payload: bytes) -> None:
        try:
            msg = decode_message(payload)
        except ValueError:
            return
        if isinstance(msg, Proposal):
            bh = Block.decode(msg.block).hash
            self.blocks[bh] = msg.block
            self._equivocate(msg, bh)
        elif isinstance(msg, Vote) and msg.kind == Step.PRECOMMIT and any(msg.block_hash):
            voters = self.precommits[(msg.height, msg.block_hash)]
            voters.add(msg.validator)
            if len(voters) >= self.quorum and msg.height not in self.committed:
                self.committed[msg.height] = msg.block_hash
                self._on_commit(msg.height)

    def flood(self, seconds: float) -> None:
        """SyncRequests for the whole chain to every peer, as fast as the links take them."""
        req = encode_message(SyncRequest(1, 64))
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self._stop.is_set():
            sent = sum(self.transport.send(p, CH_CONSENSUS, req) for p in self.peers)
            self.stats["flood_sent"] += sent
            if not sent:
                time.sleep(0.001)

    def run(self, seconds: float, flood_at: float | None = None, flood_s: float = 0.0) -> None:
        self.transport.start()
        if flood_at is not None:
            threading.Timer(flood_at, self.flood, args=(flood_s,)).start()
        end = time.monotonic() + seconds
        resend = time.monotonic() + 1
        while time.monotonic() < end:
            try:
                self._handle(self.inbox.get(timeout=0.1))
            except queue.Empty:
                pass
            if time.monotonic() >= resend:  # keep the lies in front of the honest nodes
                resend = time.monotonic() + 1
                latest = max(self.forged, default=None)
                if latest is not None and latest - 1 == max(self.committed, default=0):
                    self._send_forged(latest)
        self._stop.set()
        self.transport.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", type=Path, required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--forged-tx", default="")
    ap.add_argument("--run-s", type=float, required=True)
    ap.add_argument("--flood-at", type=float)
    ap.add_argument("--flood-s", type=float, default=0.0)
    args = ap.parse_args(argv)
    genesis = Genesis.load(args.net / "genesis.json")
    key = load_or_create_key(args.net / args.id / "node.key")
    forged = [bytes.fromhex(args.forged_tx)] if args.forged_tx else []
    b = ByzantineBureau(genesis, args.id, key, forged)
    b.run(args.run_s, args.flood_at, args.flood_s)
    json.dump(dict(b.stats), sys.stdout)
    print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
