"""The shell that runs the consensus core inside a bureau node, for a genesis of one validator
or many: a write-ahead log on disk, the peer links, the ledger that answers the core's
questions, and the order of a Ready:
persist (fsync) -> send -> commit blocks with their state -> serve sync -> build the asked-for
proposal from the mempool (wall clock; the refusals met while building are published then, from
this thread, never from the core) and validate asked-for blocks, answering the core -> advance.

One thread owns the core. Consensus messages from peers wait in a per-peer inbox taken
round-robin; a peer whose queue is full loses the excess (counted), never blocking a link's
reader. Sync requests skip the core: a `SyncServer` thread answers them from the block store,
rate-limited per peer. A peer that keeps overflowing its limits is disconnected
(`peer_disconnected{reason=flood}`) and refused for a while. Transactions relayed by peers go
to the ingest workers for admission, never through this thread.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Callable

from ..chain import Chain, ChainError
from ..ingest.mempool import Mempool
from ..ledger import evidence
from ..ledger.block import Block, BlockError, block_hash
from ..ledger.state import Execution, Refusal
from ..ledger.tx import tx_hash
from ..metrics import Metrics
from ..peers.gossip import GossipError, decode_batch, encode_batch
from ..peers.handshake import CH_CONSENSUS, CH_TXS
from ..peers.inbox import PeerInbox
from ..peers.limits import FloodMeter
from ..peers.transport import PeerTransport
from ..supervisor import Supervisor
from .core import Config, Core, Timeouts
from .sync_server import SyncServer
from .types import (PROTOCOL_VERSION, WIRE_MAGIC, DecodeError, LastSigned, MsgType, Proposal, SyncRequest,
                    SyncResponse, Vote, decode_message, decode_record, encode_message, encode_record)

SYNC_REQUEST_PREFIX = WIRE_MAGIC + bytes([PROTOCOL_VERSION, MsgType.SYNC_REQUEST])
FLOOD_BAN_S = 30.0

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


class LedgerBlocks:
    """The shell's answers to the core: proposals built from the mempool on the applied chain,
    others' blocks re-validated in full; both keep their execution for the commit."""

    def __init__(self, chain: Chain, mempool: Mempool, node_id: str, max_txs: int) -> None:
        self.chain, self.mempool, self.node_id, self.max_txs = chain, mempool, node_id, max_txs
        self._executions: dict[bytes, tuple[Block, Execution]] = {}
        self.invalid_blocks = 0

    def build(self, publish_refused: Callable[[list[Refusal]], None]) -> bytes:
        """A block on the head, stamped with the wall clock. The transactions it refused are
        handed to `publish_refused` and only then dropped from the mempool, so that whoever
        asks after one (mempool first, then the refusals) always finds it in one or the other."""
        txs, verified = self.mempool.candidates(self.max_txs)
        block, ex = self.chain.build(txs, self.node_id, int(time.time() * 1000), verified)
        if ex.refused:
            publish_refused(list(ex.refused))
            self.mempool.remove(tx_hash(r.tx) for r in ex.refused)
        self._remember(block, ex)
        return block.encode()

    def validate(self, height: int, raw: bytes) -> bool:
        try:
            block = Block.decode(raw)
            if block.height != height:
                return False
            known = self._executions.get(block.hash)
            if known is not None:
                return True
            verified = self.mempool.checked(map(tx_hash, block.txs))
            ex = self.chain.check(block, verified)
        except (BlockError, ChainError, ValueError) as e:
            self.invalid_blocks += 1
            log.warning("refused block at height %d: %s", height, e)
            return False
        self._remember(block, ex)
        return True

    def execution(self, block: Block) -> Execution:
        known = self._executions.get(block.hash)
        if known is not None:
            return known[1]
        return self.chain.check(block)  # a block reached by sync: check it in full

    def forget_below(self, height: int) -> None:
        self._executions = {h: v for h, v in self._executions.items() if v[0].height >= height}

    def _remember(self, block: Block, ex: Execution) -> None:
        self._executions[block.hash] = (block, ex)


class Wal:
    """Append-only file of consensus records: u32 length | u32 CRC-32 | record. A torn last
    record (power cut mid-append) is dropped at load. Rewritten smaller once a height is done."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records = self._load()
        self._f = open(self.path, "ab")

    def _load(self) -> list:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        out, i = [], 0
        while i + 8 <= len(data):
            n, crc = struct.unpack_from(">II", data, i)
            body = data[i + 8:i + 8 + n]
            if len(body) < n or zlib.crc32(body) != crc:
                break
            try:
                out.append(decode_record(body))
            except DecodeError:
                break
            i += 8 + n
        if i != len(data):
            log.warning("WAL %s: dropped %d bytes of a torn record", self.path, len(data) - i)
            with open(self.path, "r+b") as f:
                f.truncate(i)
        return out

    def append(self, records: list) -> None:
        if not records:
            return
        buf = bytearray()
        for rec in records:
            body = encode_record(rec)
            buf += struct.pack(">II", len(body), zlib.crc32(body)) + body
        self._f.write(buf)
        self._f.flush()
        os.fsync(self._f.fileno())
        self.records.extend(records)

    def last_signed(self) -> LastSigned | None:
        for rec in reversed(self.records):
            if isinstance(rec, LastSigned):
                return rec
        return None

    def compact(self, height: int) -> None:
        """Keep the newest last-signed record and the records of `height` and above."""
        last = self.last_signed()
        keep = [r for r in self.records if not isinstance(r, LastSigned) and getattr(r, "height", height) >= height]
        if last is not None:
            keep.insert(0, last)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for rec in keep:
                body = encode_record(rec)
                f.write(struct.pack(">II", len(body), zlib.crc32(body)) + body)
            f.flush()
            os.fsync(f.fileno())
        self._f.close()
        os.replace(tmp, self.path)
        dirfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
        self.records = keep
        self._f = open(self.path, "ab")

    def close(self) -> None:
        self._f.close()


class BftReplica:
    """Block production by consensus among the genesis validators (a lone validator's own
    precommit is the whole certificate)."""

    def __init__(self, chain: Chain, mempool: Mempool, metrics: Metrics, node_id: str, signing_key, *,
                 data_dir: Path, listen: str, max_txs: int = 5000, commit_delay_ms: int = 100,
                 empty_block_ms: int = 30_000, timeouts: Timeouts | None = None,
                 on_refused: Callable[[list[Refusal]], None] = lambda r: None,
                 relay: Callable[[list[bytes]], None] = lambda txs: None,
                 peer_addresses: dict[str, str] | None = None, stall_ms: int = 20_000,
                 supervisor: Supervisor | None = None,
                 on_evidence: Callable[[bytes], None] = lambda tx: None) -> None:
        self.supervisor = supervisor or Supervisor()
        self.chain, self.mempool, self.metrics, self.node_id = chain, mempool, metrics, node_id
        self.relay = relay
        self.empty_block_ms = empty_block_ms
        self.blocks = LedgerBlocks(chain, mempool, node_id, max_txs)
        self.on_refused = on_refused
        self.wal = Wal(Path(data_dir) / "consensus.wal")
        config = Config(chain.genesis.chain_id, timeouts=timeouts or Timeouts(), commit_delay_ms=commit_delay_ms)
        # the ledger's schedule of validator sets: apply() extends it, the core reads each height's set from it
        self.core = Core(config, chain.state.schedule, signing_key, block_hash=block_hash,
                         height=chain.height + 1, now_ms=_now_ms(), last_signed=self.wal.last_signed(),
                         wal=self.wal.records)
        self.inbox = PeerInbox()
        self.flood = FloodMeter()
        self.transport = PeerTransport(chain.genesis, node_id, signing_key, listen, self._on_peer_message,
                                       addresses=peer_addresses, metrics=metrics, supervisor=self.supervisor,
                                       peers=chain.state.schedule.peers_from(chain.height + 1))
        self.on_evidence = on_evidence
        self.sync_server = SyncServer(chain.repo, lambda peer, data: self.transport.send(peer, CH_CONSENSUS, data),
                                      metrics, batch=config.sync_batch, on_refused=self._note_excess,
                                      supervisor=self.supervisor)
        self.stall_ms = stall_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outbox_txs: list[bytes] = []
        self._outbox_lock = threading.Lock()
        self._next_height_seen = False
        self._last_commit_ms = _now_ms()
        self._last_poll_ms = 0
        self._loop_ms = _now_ms()
        self.poll_ms = 1000

    # ---- peer traffic (link reader threads) ----------------------------------------------

    def _on_peer_message(self, peer: str, channel: int, payload: bytes) -> None:
        if channel == CH_TXS:
            try:
                self.relay(decode_batch(payload))
            except GossipError as e:
                self.metrics.inc("peer_rejected", e.args[0][:40])
            return
        if channel != CH_CONSENSUS:
            self.metrics.inc("peer_rejected", "unknown_channel")
        elif payload.startswith(SYNC_REQUEST_PREFIX):
            try:
                req = decode_message(payload)
            except DecodeError as e:
                self.metrics.inc("peer_rejected", e.reason)
                return
            self.sync_server.submit(peer, req)
        elif not self.inbox.put(peer, payload):
            self.metrics.inc("peer_dropped", "inbox_full")
            self._note_excess(peer)

    def _note_excess(self, peer: str) -> None:
        """A message of `peer` refused by a limit; too many in a window and it is cut off."""
        if self.flood.note(peer, _now_ms()):
            log.warning("disconnecting %s for flooding", peer)
            self.metrics.inc("peer_disconnected", "flood")
            self.transport.disconnect(peer, ban_s=FLOOD_BAN_S)

    def share(self, txs: list[bytes]) -> None:
        """Transactions this node admitted: relayed to the other bureaus with the next loop."""
        with self._outbox_lock:
            self._outbox_txs.extend(txs)

    # ---- the core's thread ----------------------------------------------------------------

    def _run(self) -> None:
        core = self.core
        while not self._stop.is_set():
            now = self._loop_ms = _now_ms()
            # at least 2 ms: a deadline that is due but held (no transactions yet) must not spin
            wait = min(max(core.next_deadline() - now, 2), 20) / 1000
            item = self.inbox.get(timeout=wait)
            for _ in range(500):
                if item is None:
                    break
                self._step(*item)
                item = self.inbox.get()
            self._flush_txs()
            self._poll_peers()
            sync = core.sync_status()
            # a height whose block came by sync is not held for transactions: a node behind catches up at once
            core.hold_start = not (len(self.mempool) or self._next_height_seen or sync["lagging"]
                                   or core.height in sync["pending_blocks"]
                                   or _now_ms() - self._last_commit_ms >= self.empty_block_ms)
            core.tick(_now_ms())
            while core.has_ready():
                self._handle_ready(core.ready())
                core.advance()

    def _step(self, peer: str, payload: bytes) -> None:
        try:
            msg = decode_message(payload)
        except DecodeError as e:
            self.metrics.inc("peer_rejected", e.reason)
            return
        if isinstance(msg, (Proposal, Vote)) and msg.height == self.core.height:
            self._next_height_seen = True
        verdict = self.core.step(msg, peer)
        if verdict not in ("ok", "duplicate", "nothing_to_serve", "nothing_new"):
            self.metrics.inc("consensus_verdict", verdict)
        if isinstance(msg, SyncResponse) and verdict == "ok":
            self._request_more(peer, msg)

    def _request_more(self, peer: str, resp: SyncResponse) -> None:
        """A full batch came: ask the same peer for the next one right away, as far as the
        core's window of blocks it accepts ahead of its height."""
        nxt = resp.entries[-1].height + 1
        batch = self.core.config.sync_batch
        if len(resp.entries) >= batch and nxt + batch <= self.core.height + 4 * batch:
            self.transport.send(peer, CH_CONSENSUS, encode_message(SyncRequest(nxt, batch)))

    def _poll_peers(self) -> None:
        """Ask the peers once a second for blocks from our height on. An idle network sends no
        consensus messages, so a bureau that missed the last commit would otherwise not learn
        that it is behind; peers at our height answer nothing."""
        now = _now_ms()
        if now - self._last_poll_ms >= self.poll_ms:
            self._last_poll_ms = now
            self.transport.broadcast(CH_CONSENSUS, encode_message(SyncRequest(self.core.height, 16)))

    def _flush_txs(self) -> None:
        with self._outbox_lock:
            txs, self._outbox_txs = self._outbox_txs, []
        for i in range(0, len(txs), 2000):
            self.transport.broadcast(CH_TXS, encode_batch(txs[i:i + 2000]))

    def _handle_ready(self, rd) -> None:
        self.wal.append(rd.persist)  # durable before any message of this Ready leaves
        for out in rd.messages:
            data = encode_message(out.message)
            if out.to is None:
                self.transport.broadcast(CH_CONSENSUS, data)
            else:
                self.transport.send(out.to, CH_CONSENSUS, data)
        for c in rd.committed:
            self._apply(c.height, c.block, c.certificate)
        for req in rd.serve:
            self._serve(req)
        for ev in rd.evidence:
            self.metrics.inc("equivocation_evidence")
            log.warning("validator %d signed two messages at height %d round %d step %d",
                        ev.validator, ev.height, ev.round, ev.step)
            if isinstance(ev.first, Vote) and isinstance(ev.second, Vote) and ev.first.block_hash != ev.second.block_hash:
                self.on_evidence(evidence.encode(ev.first, ev.second))  # recorded on chain (kind 5)
        # the core's questions, about the chain as the commits above left it
        if rd.propose is not None and rd.propose.height == self.chain.height + 1:
            self.core.propose(self.blocks.build(self.on_refused))
        for req in rd.validate:
            self.core.validated(req.block_hash, self.blocks.validate(req.height, req.block))

    def _apply(self, height: int, raw: bytes, certificate: bytes) -> None:
        block = Block.decode(raw)
        ex = self.blocks.execution(block)
        self.chain.commit(block, certificate, ex)  # block and state in one database transaction
        schedule = self.chain.state.schedule
        if ex.epoch is not None or schedule.latest.from_height == height + 1:
            # a validator-set change decided (link with the validators to come) or in force (drop the removed)
            self.transport.set_peers(self.chain.state.schedule.peers_from(height + 1))
        self.mempool.remove(map(tx_hash, block.txs))
        self.blocks.forget_below(height + 1)
        self._next_height_seen = False
        self._last_commit_ms = _now_ms()
        self.metrics.inc("blocks_committed")
        if height % 16 == 0:
            self.wal.compact(height + 1)

    def _serve(self, req) -> None:
        self.sync_server.submit(req.peer, SyncRequest(req.from_height, min(req.max_count, req.below - req.from_height)))

    def health(self) -> dict:
        """What /healthz reports: "stalled" when the consensus thread stopped looping, or when
        there is work (transactions waiting, peers ahead) and nothing committed for `stall_ms`."""
        now = _now_ms()
        loop_age, commit_age = now - self._loop_ms, now - self._last_commit_ms
        sync = self.core.sync_status()
        work = len(self.mempool) > 0 or sync["lagging"]
        stalled = loop_age > 5000 or (work and commit_age > self.stall_ms)
        return {"consensus": "stalled" if stalled else "ok", "consensus_height": sync["height"],
                "loop_age_ms": loop_age, "last_commit_age_ms": commit_age,
                "peers_out": self.transport.connected_peers(), "peers_in": self.transport.inbound_peers()}

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.sync_server.start()
        self.transport.start()
        # the consensus thread is also the commit path: a storage error while committing fails the node
        self._thread = self.supervisor.thread("consensus", self._run)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self.transport.stop()
        self.sync_server.stop()
        self.wal.close()
