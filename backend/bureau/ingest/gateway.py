"""The node's side of its ingest workers (docs/ingest-workers.md): a listener where workers log
in, the registry each is kept up to date with, the receipts they hand over taken into the
mempool as verified, and the signed ack or reject of each sent back to the worker that took it.

The node keeps the signing key: a worker only publishes what the node signed."""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from pathlib import Path

from .. import topics
from ..chain import Chain
from ..ledger.block import Block
from ..ledger.state import Execution, Refusal
from ..ledger.tx import tx_hash
from ..lograte import ThrottledLog
from ..metrics import Metrics
from ..peers.transport import close_socket
from ..peers.handshake import (CH_HELLO, CH_PROOF, MAX_HANDSHAKE_FRAME, FrameReader, HandshakeError, Responder,
                               frame, split_plain)
from ..receipts.ack import ack_message
from ..receipts.codec import receipt_id
from ..receipts.reject import reject_message
from ..supervisor import Supervisor
from .admission import Admitted, AlreadyCommitted, Refused, admit_receipt
from .handoff import (CH_ADMIT, CH_REFUSE, CH_REGISTRY, CH_REPLY, MAX_WORKER_FRAME, ChargerRegistry, HandoffError,
                      decode_admit, decode_refuse, encode_registry, encode_reply)
from .mempool import Mempool, MempoolFull
from .mqtt import MEMPOOL_PAUSE_AT
from .origins import Origins
from .quarantine import Quarantine, counter

log = logging.getLogger(__name__)
HANDSHAKE_TIMEOUT_S = 10.0
REPLIES_QUEUED = 100_000  # replies owed to one worker; past it they are dropped and the chargers resend


def load_worker_keys(path: Path) -> dict[str, bytes]:
    """Worker id -> public key from lines `<worker id> <64 hex digits>` (# comments)."""
    keys: dict[str, bytes] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        try:
            if len(parts) != 2 or len(bytes.fromhex(parts[1])) != 32:
                raise ValueError
        except ValueError:
            raise ValueError(f"{path}:{n}: expected '<worker id> <64 hex digits of its public key>'") from None
        keys[parts[0]] = bytes.fromhex(parts[1])
    return keys


class WorkerLink:
    """One logged-in worker: its replies wait in a bounded queue for the writer thread, so a
    slow worker never holds up a commit."""

    def __init__(self, worker_id: str, sock: socket.socket, session) -> None:
        self.worker_id, self.sock, self.session = worker_id, sock, session
        self.out: queue.Queue = queue.Queue(maxsize=REPLIES_QUEUED)
        self.closed = threading.Event()

    def send(self, channel: int, payload: bytes) -> bool:
        if self.closed.is_set():
            return False
        try:
            self.out.put_nowait((channel, payload))
            return True
        except queue.Full:
            return False

    def write_loop(self) -> None:
        try:
            while not self.closed.is_set():
                try:
                    channel, payload = self.out.get(timeout=0.5)
                except queue.Empty:
                    continue
                self.sock.sendall(self.session.outgoing.seal(channel, payload))
        except OSError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        self.closed.set()
        close_socket(self.sock)


class WorkerGateway:
    def __init__(self, chain: Chain, mempool: Mempool, metrics: Metrics, *, node_id: str, signing_key, listen: str,
                 worker_keys: dict[str, bytes], supervisor: Supervisor | None = None,
                 quarantine: Quarantine | None = None) -> None:
        self.chain, self.mempool, self.metrics = chain, mempool, metrics
        self.node_id, self._key = node_id, signing_key
        self.worker_keys = {w: k for w, k in worker_keys.items() if w != node_id}
        self.supervisor = supervisor or Supervisor()
        self.quarantine = quarantine or Quarantine(None, counter(metrics, "quarantined"), self.supervisor)
        host, _, port = listen.rpartition(":")
        self._server = socket.create_server((host, int(port)), reuse_port=False)
        self.address = f"{host}:{self._server.getsockname()[1]}"
        self._links: dict[str, WorkerLink] = {}
        self._lock = threading.Lock()
        # receipts a worker handed over -> that worker's link, until its ack or reject is sent
        self._origin: Origins[WorkerLink] = Origins()
        self._stop = threading.Event()
        self._reject_log = ThrottledLog(log)
        with chain.lock:
            self._registry = encode_registry(ChargerRegistry.of(chain.state, chain.height))
        chain.on_commit(self._on_commit)

    # ---- links ---------------------------------------------------------------------------

    def start(self) -> None:
        self.supervisor.thread("worker-accept", self._accept).start()

    def stop(self) -> None:
        self._stop.set()
        self._server.close()
        with self._lock:
            links = list(self._links.values())
        for link in links:
            link.close()

    def workers(self) -> list[str]:
        with self._lock:
            return sorted(self._links)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), name="worker-link", daemon=True).start()

    def _login(self, sock: socket.socket) -> tuple[WorkerLink, FrameReader, list[bytes]]:
        hs = Responder(self.chain.genesis.chain_id, self.node_id, self._key, self.worker_keys)
        reader, pending = FrameReader(MAX_HANDSHAKE_FRAME), []
        sock.settimeout(HANDSHAKE_TIMEOUT_S)

        def expect(channel: int) -> bytes:
            while not pending:
                data = sock.recv(4096)
                if not data:
                    raise HandshakeError("worker closed during the handshake")
                pending.extend(reader.feed(data))
            ch, payload = split_plain(pending.pop(0))
            if ch != channel:
                raise HandshakeError(f"expected channel {channel}, got {ch}")
            return payload

        sock.sendall(frame(CH_HELLO, hs.on_hello(expect(CH_HELLO))))
        sock.sendall(frame(CH_PROOF, hs.on_proof(expect(CH_PROOF))))
        sock.settimeout(None)
        reader.max_frame = MAX_WORKER_FRAME
        return WorkerLink(hs.peer, sock, hs.session), reader, pending

    def _serve(self, sock: socket.socket) -> None:
        try:
            link, reader, early = self._login(sock)
        except (OSError, HandshakeError) as e:
            self.metrics.inc("worker_refused", "handshake")
            log.warning("worker login refused: %s", e, extra={"event": "worker_refused", "detail": str(e)})
            sock.close()
            return
        with self._lock:
            old = self._links.get(link.worker_id)
            self._links[link.worker_id] = link
            registry = self._registry
        if old is not None:
            old.close()
        log.info("ingest worker %s logged in", link.worker_id, extra={"event": "worker_up", "worker": link.worker_id})
        link.send(CH_REGISTRY, registry)
        threading.Thread(target=link.write_loop, name="worker-write", daemon=True).start()
        try:
            for body in early:
                self._on_frame(link, *link.session.incoming.open(body))
            while not link.closed.is_set():
                data = sock.recv(1 << 16)
                if not data:
                    break
                for body in reader.feed(data):
                    self._on_frame(link, *link.session.incoming.open(body))
        except (OSError, HandshakeError, HandoffError) as e:
            if not link.closed.is_set():
                self.metrics.inc("worker_disconnected", getattr(e, "reason", "link"))
                log.warning("ingest worker %s dropped: %s", link.worker_id, e,
                            extra={"event": "worker_dropped", "worker": link.worker_id, "detail": str(e)})
        finally:
            link.close()
            with self._lock:
                if self._links.get(link.worker_id) is link:
                    del self._links[link.worker_id]

    # ---- receipts from a worker ----------------------------------------------------------

    def _on_frame(self, link: WorkerLink, channel: int, payload: bytes) -> None:
        if channel == CH_ADMIT:
            self.admit(link, *decode_admit(payload))
        elif channel == CH_REFUSE:
            r = decode_refuse(payload)
            self._reject(link, r.charger_id, r.seq, r.receipt_id, r.reason, r.detail)
        else:
            raise HandoffError("malformed", f"channel {channel} is not one a worker sends on")

    def admit(self, link: WorkerLink, key: bytes, charger_id: str, envelope: bytes) -> None:
        """A receipt the worker verified with `key`: the node's state checks, without the
        signature again unless the charger's key changed since the worker's copy of the registry."""
        self.metrics.inc("worker_received")
        while len(self.mempool) >= MEMPOOL_PAUSE_AT and not link.closed.is_set():
            # as MqttIngest pauses: this link's reads stop, TCP holds the worker's sends, and its
            # bounded buffer drops what the broker keeps sending (the chargers resend)
            self.metrics.inc("admission_paused")
            self.mempool.drained.wait(0.5)
        try:
            decision = admit_receipt(envelope, self.chain.state, charger_id,
                                     signature_checked=self.chain.state.chargers.get(charger_id) == key)
        except Exception as e:  # the checks of one untrusted input failed: keep it, stop nothing
            self.quarantine.hold("receipt", topics.receipt(charger_id), envelope, e)
            return
        if isinstance(decision, Admitted):
            self._origin.remember(decision.tx_hash, link)  # a resend through another worker: that one answers
            try:
                self.mempool.add(decision.tx_hash, decision.tx, verified=True, decoded=decision.decoded)
                self.metrics.inc("worker_admitted")
            except MempoolFull as e:
                self._origin.take(decision.tx_hash)
                self._reject(link, decision.charger_id, decision.seq, decision.receipt_id, "busy", str(e))
        elif isinstance(decision, AlreadyCommitted):
            found = self.chain.repo.receipt_block(decision.charger_id, decision.seq)
            if found is None:
                self.metrics.inc("resent_acks_deferred")  # not yet readable from storage: the charger resends
                return
            self.metrics.inc("resent_acks")
            self._ack(link, decision.charger_id, decision.seq, decision.receipt_id, *found)
        else:
            assert isinstance(decision, Refused)
            self._reject(link, decision.charger_id, decision.seq, decision.receipt_id, decision.reason,
                         decision.detail)

    def _reject(self, link: WorkerLink, charger_id: str | None, seq: int | None, rid: str | None, reason: str,
                detail: str) -> None:
        self.metrics.inc("rejected", reason)
        self._reject_log.info(reason, "rejected receipt of charger %s seq %s: %s: %s", charger_id, seq, reason, detail,
                              extra={"event": "receipt_rejected", "charger_id": charger_id, "seq": seq,
                                     "reason": reason, "detail": detail, "worker": link.worker_id})
        if charger_id:
            self._reply(link, charger_id, reject_message(self.chain.genesis.chain_id, self.node_id, self._key,
                                                         charger_id, seq, rid, reason, detail))

    def _ack(self, link: WorkerLink, charger_id: str, seq: int, rid: str, height: int, block_hash: bytes) -> None:
        self._reply(link, charger_id, ack_message(self.chain.genesis.chain_id, self.node_id, self._key, charger_id,
                                                  seq, rid, height, block_hash))

    def _reply(self, link: WorkerLink, charger_id: str, message: bytes) -> None:
        if not link.send(CH_REPLY, encode_reply(charger_id, message)):
            self.metrics.inc("worker_reply_dropped")  # the worker is gone or behind: the charger resends

    # ---- blocks --------------------------------------------------------------------------

    def on_refused(self, refusals: list[Refusal]) -> None:
        """Receipts refused when a block was built: the worker that took one answers it."""
        for r in refusals:
            link = self._origin.take(tx_hash(r.tx))
            if link is None or r.reason == "duplicate":  # not taken here, or the first copy's ack answers it
                continue
            self._reject(link, r.charger_id, r.seq, receipt_id(r.tx[1:]), r.reason, r.detail)

    def _on_commit(self, block: Block, ex: Execution) -> None:
        if ex.chargers or ex.retired or ex.charger_rekeys:
            with self.chain.lock:
                registry = encode_registry(ChargerRegistry.of(self.chain.state, block.height))
            with self._lock:
                self._registry = registry
                links = list(self._links.values())
            for link in links:
                link.send(CH_REGISTRY, registry)
        for eff in ex.effects:
            if eff.kind == "receipt":
                link = self._origin.take(eff.tx_hash)
                if link is not None:
                    self._ack(link, eff.charger_id, eff.seq, eff.receipt_id, block.height, block.hash)
