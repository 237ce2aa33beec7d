"""`bureau ingest-worker`: takes a share of its bureau's receipts from the broker (the shared
subscription `$share/<bureau id>/ev/v1/charger/+/receipt`), decodes each, verifies its
signature with the charger's key from the node's registry, and hands it to its node over the
worker link (ingest/handoff.py); publishes on the charger's reply topic the ack or reject the
node signed (docs/ingest-workers.md).

A worker holds nothing that matters: what it took and did not see answered, the charger sends
again, and the broker hands that to a worker still running. So it buffers at most
`BUREAU_WORKER_QUEUE_LIMIT` receipts, drops what comes beyond, and takes nothing from the broker
while it has no link to its node."""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time

from .. import topics
from ..brokerlink import BrokerLink
from ..config import Settings
from ..crypto import load_key
from ..ledger.genesis import Genesis
from ..peers.transport import close_socket
from ..peers.handshake import (CH_HELLO, CH_PROOF, MAX_FRAME, MAX_HANDSHAKE_FRAME, FrameReader, HandshakeError,
                               Initiator, frame, split_plain)
from ..supervisor import Supervisor
from .admission import Refused, screen_receipt
from .handoff import (CH_ADMIT, CH_REFUSE, CH_REGISTRY, CH_REPLY, ChargerRegistry, HandoffError, WorkerRefusal,
                      decode_registry, decode_reply, encode_admit, encode_refuse)
from .quarantine import Quarantine

log = logging.getLogger(__name__)
HANDSHAKE_TIMEOUT_S = 10.0
RELINK_S = (0.2, 5.0)  # first and longest wait between attempts to reach the node
STATS_EVERY_S = 2.0


def share_topic(bureau_id: str) -> str:
    """The shared subscription the workers of one bureau split its receipts on."""
    return f"$share/{bureau_id}/{topics.every_charger(topics.RECEIPT)}"


class NodeLink:
    """The worker's logged-in link to its node: sealed frames out (one writer at a time) and a
    reader for the registry and the replies."""

    def __init__(self, address: str, chain_id: str, worker_id: str, node_id: str, key, node_key: bytes) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=HANDSHAKE_TIMEOUT_S)
        try:
            hs = Initiator(chain_id, worker_id, node_id, key, {node_id: node_key})
            reader, pending = FrameReader(MAX_HANDSHAKE_FRAME), []

            def expect(channel: int) -> bytes:
                while not pending:
                    data = self.sock.recv(4096)
                    if not data:
                        raise HandshakeError("the node closed the link during the handshake")
                    pending.extend(reader.feed(data))
                ch, payload = split_plain(pending.pop(0))
                if ch != channel:
                    raise HandshakeError(f"expected channel {channel}, got {ch}")
                return payload

            self.sock.sendall(frame(CH_HELLO, hs.hello()))
            self.sock.sendall(frame(CH_PROOF, hs.on_hello(expect(CH_HELLO))))
            self.session = hs.on_proof(expect(CH_PROOF))
        except BaseException:
            self.sock.close()
            raise
        self.sock.settimeout(None)
        reader.max_frame = MAX_FRAME  # the registry of a large network comes in one frame
        self.reader, self._early = reader, pending
        self._send_lock = threading.Lock()
        self.closed = threading.Event()

    def send(self, channel: int, payload: bytes) -> bool:
        """False when the link is gone (what was being sent is the charger's to resend)."""
        try:
            with self._send_lock:
                self.sock.sendall(self.session.outgoing.seal(channel, payload))
            return True
        except OSError:
            self.close()
            return False

    def frames(self):
        """(channel, payload) of each frame from the node until the link closes."""
        for body in self._early:
            yield self.session.incoming.open(body)
        while True:
            data = self.sock.recv(1 << 16)
            if not data:
                return
            for body in self.reader.feed(data):
                yield self.session.incoming.open(body)

    def close(self) -> None:
        self.closed.set()
        close_socket(self.sock)


class IngestWorker:
    def __init__(self, settings: Settings) -> None:
        w = settings.worker
        if not w.id or not w.node:
            raise ValueError("an ingest worker needs BUREAU_WORKER_ID and BUREAU_WORKER_NODE")
        self.settings, self.worker_id, self.bureau_id = settings, w.id, settings.node_id
        genesis = Genesis.load(settings.genesis)
        self.chain_id = genesis.chain_id
        self.node_key = genesis.validator(settings.node_id).public_key  # GenesisError: no such bureau
        self.key = load_key(w.key_file or settings.data_dir / f"{w.id}.key")
        self.registry: ChargerRegistry | None = None
        self.link: NodeLink | None = None
        self.linked = threading.Event()  # set while the link is up and the registry came
        self._queue: queue.Queue = queue.Queue(maxsize=w.queue_limit)
        self._stop = threading.Event()
        self.counts = dict.fromkeys(("received", "dropped", "handed", "refused", "replies", "quarantined"), 0)
        self._counts_lock = threading.Lock()
        # a receipt whose screening raises is kept and left unanswered; a burst of them stops the
        # worker (exit EXIT_FAILED), as a node stops (ingest/quarantine.py)
        self.supervisor = Supervisor()
        self.supervisor.on_failure(lambda reason: self.stop())
        self.quarantine = Quarantine(settings.data_dir / "quarantine" / w.id, lambda source: self._count("quarantined"),
                                     self.supervisor)
        user, password = settings.worker_login()
        mq = settings.mqtt
        self.broker = BrokerLink(host=mq.host, port=mq.port, client_id=user, username=user, password=password,
                                 clean_session=True, name="worker", tls=mq.tls, ca_file=mq.ca_file,
                                 threads=[threading.Thread(target=self._verify_loop, name=f"verify-{i}", daemon=True)
                                          for i in range(w.threads)])
        self.broker.client.max_inflight_messages_set(1000)
        self.broker.client.max_queued_messages_set(0)
        self.broker.client.on_connect = self._on_connect
        self.broker.client.on_message = self._on_message

    def _count(self, name: str, n: int = 1) -> None:
        with self._counts_lock:
            self.counts[name] += n

    # ---- broker (paho's thread) ----------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the worker's login: %s", reason_code)
            return
        if self.linked.is_set():
            client.subscribe(share_topic(self.bureau_id), qos=1)
        self.broker.connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        self._count("received")
        try:
            self._queue.put_nowait((msg.topic, bytes(msg.payload)))
        except queue.Full:
            self._count("dropped")  # beyond the bound: the charger sends it again

    # ---- verification (worker threads) ---------------------------------------------------

    def _verify_loop(self) -> None:
        while not self._stop.is_set():
            try:
                topic, payload = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            link, registry = self.link, self.registry
            if link is None or registry is None or not self.linked.is_set():
                self._count("dropped")
                continue
            self.screen(link, registry, topic, payload)

    def screen(self, link: NodeLink, registry: ChargerRegistry, topic: str, payload: bytes) -> None:
        charger = topics.charger_of(topic, topics.RECEIPT)
        if charger is None:
            self._count("refused")
            return
        try:
            screened = screen_receipt(payload, registry, charger)
        except Exception as e:  # the checks of one untrusted input failed: keep it, stop nothing
            self.quarantine.hold("receipt", topic, payload, e)
            return
        if isinstance(screened, Refused):
            self._count("refused")
            link.send(CH_REFUSE, encode_refuse(WorkerRefusal(charger, screened.seq, screened.receipt_id,
                                                             screened.reason, screened.detail)))
        elif link.send(CH_ADMIT, encode_admit(registry.chargers[charger], charger, payload)):
            self._count("handed")

    # ---- the link to the node ------------------------------------------------------------

    def _serve_link(self, link: NodeLink) -> None:
        """Read the node's frames until the link closes: registry updates and replies."""
        try:
            for channel, payload in link.frames():
                if channel == CH_REGISTRY:
                    self.registry = decode_registry(payload)
                    if not self.linked.is_set():
                        self.linked.set()
                        self._take_receipts(True)
                elif channel == CH_REPLY:
                    charger, message = decode_reply(payload)
                    self.broker.client.publish(topics.reply(charger), message, qos=1)
                    self._count("replies")
                else:
                    raise HandoffError("malformed", f"channel {channel} is not one the node sends on")
        except (OSError, HandshakeError, HandoffError) as e:
            if not self._stop.is_set():
                log.warning("link to node %s lost: %s", self.bureau_id, e)

    def _take_receipts(self, on: bool) -> None:
        if on:
            self.broker.client.subscribe(share_topic(self.bureau_id), qos=1)
        else:  # the broker hands our share to the others meanwhile
            self.broker.client.unsubscribe(share_topic(self.bureau_id))

    def run(self) -> None:
        """Until `stop`: the broker connection, and the node link made again whenever it drops."""
        self.broker.start()
        wait = RELINK_S[0]
        last_stats, stats_at = None, time.monotonic()
        while not self._stop.is_set():
            try:
                self.link = NodeLink(self.settings.worker.node, self.chain_id, self.worker_id, self.bureau_id,
                                     self.key, self.node_key)
            except (OSError, HandshakeError) as e:
                log.warning("cannot reach node %s at %s: %s", self.bureau_id, self.settings.worker.node, e)
                self._stop.wait(wait)
                wait = min(wait * 2, RELINK_S[1])
                continue
            wait = RELINK_S[0]
            log.info("worker %s linked to node %s", self.worker_id, self.bureau_id)
            reader = threading.Thread(target=self._serve_link, args=(self.link,), name="node-link", daemon=True)
            reader.start()
            while reader.is_alive() and not self._stop.is_set():
                reader.join(0.5)
                if time.monotonic() - stats_at >= STATS_EVERY_S:
                    last_stats, stats_at = self._log_stats(last_stats), time.monotonic()
            self.linked.clear()
            self._take_receipts(False)
            self.link.close()
        self._log_stats(None)

    def _log_stats(self, last: dict | None) -> dict:
        with self._counts_lock:
            now = dict(self.counts)
        if now != last:
            log.info("worker %s: received %d handed %d refused %d replies %d dropped %d", self.worker_id,
                     now["received"], now["handed"], now["refused"], now["replies"], now["dropped"],
                     extra={"event": "worker_stats", "worker": self.worker_id, **now})
        return now

    def stop(self) -> None:
        self._stop.set()
        if self.link is not None:
            self.link.close()
        self.broker.stop()
