"""MQTT shell of ingest: subscribes to every charger's receipt topic, admits receipts into the
mempool, and answers on the charger's reply topic: acks only after commit, and rejects, both
signed with this node's key (receipts/ack.py, receipts/reject.py)."""

from __future__ import annotations

import logging
import queue
import threading
import time

from .. import topics
from ..brokerlink import BrokerLink
from ..chain import Chain
from ..ledger.block import Block
from ..ledger.state import Execution, Refusal, receipt_ids
from ..lograte import ThrottledLog
from ..metrics import Metrics
from ..ledger.tx import KIND_RECEIPT, TxError, tx_hash
from ..receipts.ack import ack_message
from ..receipts.codec import receipt_id
from ..receipts.reject import reject_message
from ..supervisor import Supervisor
from .admission import Admitted, AlreadyCommitted, Refused, admit, admit_receipt, admit_signed
from .mempool import Mempool, MempoolFull
from .origins import Origins
from .quarantine import Quarantine, counter
from .presence import STATUS_TOPICS, ChargerPresence, StatusRefused

# While this many transactions wait in the mempool (four full blocks), admission pauses. Once
# it is paused, or this many receipts wait here to be admitted, receipts are PUBACKed only when
# admitted: the broker's in-flight limit per client (max_inflight_messages) then stops it sending
# more, so a burst queues at the broker, in its bounded, logged queues, instead of in this
# process, and consensus keeps the CPU it needs to commit. Otherwise paho acks on arrival, in its
# own thread: an ack from an admission thread costs a wake-up of paho's loop per receipt.
MEMPOOL_PAUSE_AT = 20_000
HOLD_ACKS_AT = 2_000

log = logging.getLogger(__name__)


class MqttIngest(BrokerLink):
    def __init__(self, chain: Chain, mempool: Mempool, metrics: Metrics, *, node_id: str, signing_key, host: str,
                 port: int, client_id: str, username: str | None = None, password: str | None = None,
                 workers: int = 2, tls: bool = False, ca_file=None, supervisor: Supervisor | None = None,
                 quarantine: Quarantine | None = None) -> None:
        self.chain, self.mempool, self.metrics = chain, mempool, metrics
        supervisor = supervisor or Supervisor()
        self.quarantine = quarantine or Quarantine(None, counter(metrics, "quarantined"), supervisor)
        self.intake = threading.Event()  # set while receipts are taken from the broker
        self.intake.set()
        self.node_id, self._key = node_id, signing_key  # acks and rejects are signed with this node's key
        self._queue: queue.Queue = queue.Queue(maxsize=100_000)
        super().__init__(host=host, port=port, client_id=client_id, username=username, password=password,
                         clean_session=False, name="ingest", tls=tls, ca_file=ca_file,
                         threads=[supervisor.thread(f"ingest-{i}", self._work) for i in range(workers)])
        # No client-side in-flight limit: with one, paho rescans every unacked message on each
        # PUBACK (its _update_inflight), O(in flight) per ack sent; the broker bounds its queues.
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.pause_at, self.hold_acks_at = MEMPOOL_PAUSE_AT, HOLD_ACKS_AT
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        # receipts admitted here from MQTT, with their arrival (monotonic s): this node acks them
        self._origin: Origins[float] = Origins()
        self.presence = ChargerPresence()
        self._reject_log = ThrottledLog(log)  # one line per reason per 10 s; metrics count them all
        self.shared_subscription = False
        self.take_receipts = True  # False: this bureau's ingest workers take them (ingest/gateway.py)
        chain.on_commit(self._on_commit)

    # ---- MQTT callbacks (paho's network thread) ------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        # With several bureaus on one broker, a shared subscription hands each receipt to one of
        # them; it reaches the others over the peer links.
        receipts = topics.every_charger(topics.RECEIPT)
        if self.take_receipts:
            client.subscribe(("$share/bureaus/" if self.shared_subscription else "") + receipts, qos=1)
        else:  # the persistent session may still hold the subscription of a run without workers
            client.unsubscribe([receipts, "$share/bureaus/" + receipts])
        # every bureau reads every charger's retained status (QoS 0: nothing queued while down;
        # the retained copies say who is online on each subscribe)
        client.subscribe(STATUS_TOPICS, qos=0)
        self.connected.set()

    def stop_intake(self) -> None:
        """Take no more receipts (the node failed): leave the broker, which keeps what arrives
        for this persistent session until the restarted node logs in again. Chargers resend
        whatever was taken but not acked."""
        self.intake.clear()
        self.client.disconnect()

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic.endswith("/" + topics.STATUS):
            try:
                self.presence.seen(msg.topic, bytes(msg.payload))
            except StatusRefused as e:
                self.metrics.inc("status_refused", e.args[0])
            return
        if not self.intake.is_set():
            return  # not acked: the broker keeps it for the restarted node's session
        self.metrics.inc("received")
        # paho reads the flag after this callback: it decides this message's PUBACK
        hold = len(self.mempool) >= self.pause_at or self._queue.qsize() >= self.hold_acks_at
        client.manual_ack_set(hold)
        self._queue.put((msg.topic, bytes(msg.payload), time.monotonic(), msg.mid, msg.qos if hold else 0))

    # ---- admission (worker threads) ------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            if len(self.mempool) >= self.pause_at:
                self.metrics.inc("admission_paused")
                self.mempool.drained.wait(0.5)
                continue
            try:
                topic, payload, arrived, mid, qos = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if not self.intake.is_set():
                continue
            if topic is None:
                self.handle_relayed(payload)
            else:
                self.handle(topic, payload, arrived)  # bad input is refused inside; anything else fails the node
                if qos:  # held: its PUBACK lets the broker send the next
                    self.client.ack(mid, qos)

    def handle(self, topic: str, payload: bytes, arrived: float | None = None) -> None:
        try:
            decision = admit(topic, payload, self.chain.state)
        except Exception as e:  # the checks of one untrusted input failed: keep it, stop nothing
            self.quarantine.hold("receipt", topic, payload, e)
            return
        if isinstance(decision, Admitted):
            try:
                self._origin.remember(decision.tx_hash, time.monotonic() if arrived is None else arrived)
                self.mempool.add(decision.tx_hash, decision.tx, verified=True, decoded=decision.decoded)
                self.metrics.inc("admitted")
            except MempoolFull as e:
                self._origin.take(decision.tx_hash)
                self._reject(decision.charger_id, decision.seq, decision.receipt_id, "busy", str(e))
        elif isinstance(decision, AlreadyCommitted):
            found = self._block_of(decision.charger_id, decision.seq)
            if found is None:
                # committed in the state but not yet readable from storage: the charger resends
                self.metrics.inc("resent_acks_deferred")
                return
            self.metrics.inc("resent_acks")
            self._ack(decision.charger_id, decision.seq, decision.receipt_id, *found)
        else:
            self._reject(decision.charger_id, decision.seq, decision.receipt_id, decision.reason, decision.detail)

    def submit_relayed(self, txs: list[bytes]) -> None:
        """Transactions another bureau admitted: checked here again before they may wait.
        Receipts go to the admission threads, in any order (the ledger takes a charger's receipts
        out of seq order). Other transactions are checked here, in the order the peer sent them:
        actions may depend on one another (a top-up of the wallet opened just before), and two
        admission threads could swap them, so a proposer here would put the top-up first and
        the ledger would refuse it for good."""
        for tx in txs:
            if tx and tx[0] == KIND_RECEIPT:
                self._queue.put((None, tx, None, 0, 0))
            else:
                self.handle_relayed(tx)

    def handle_relayed(self, tx: bytes) -> None:
        try:
            admitted = self._admit_relayed(tx)
        except TxError as e:
            self.metrics.inc("relayed_rejected", e.reason)
            return
        except Exception as e:  # the checks of one input failed: keep it, stop nothing
            self.quarantine.hold("relayed", None, tx, e)
            return
        if admitted is None:
            return
        try:
            self.mempool.add(admitted[0], tx, verified=True, local=False, decoded=admitted[1])
            self.metrics.inc("relayed_admitted")
        except MempoolFull:
            self.metrics.inc("relayed_rejected", "busy")

    def _admit_relayed(self, tx: bytes):
        """(tx hash, decoded receipt or None) of a relayed tx that may wait here, or None."""
        if tx and tx[0] == KIND_RECEIPT:
            if self._known(tx):
                return None
            decision = admit_receipt(tx[1:], self.chain.state)
            if not isinstance(decision, Admitted):
                if isinstance(decision, Refused):
                    self.metrics.inc("relayed_rejected", decision.reason)
                return None
            return decision.tx_hash, decision.decoded
        return admit_signed(tx, self.chain.state), None

    def _known(self, tx: bytes) -> bool:
        """A relayed receipt that waits here already, or names a seq a block already committed:
        neither can be admitted, so neither is verified again. Under a backlog the relayed
        copies queue behind the chargers' receipts and their blocks commit first, so without
        this every node verified most receipts twice (in the block, then its late relay)."""
        if tx_hash(tx) in self.mempool:
            self.metrics.inc("relayed_rejected", "waiting")
            return True
        charger, seq = receipt_ids(tx)
        if charger is not None and self.chain.state.seq_windows.committed(charger, seq):
            self.metrics.inc("relayed_rejected", "duplicate")
            return True
        return False

    def _block_of(self, charger_id: str, seq: int) -> tuple[int, bytes] | None:
        """(height, block hash) of the block that holds a committed receipt."""
        return self.chain.repo.receipt_block(charger_id, seq)

    def _reject(self, charger_id: str | None, seq: int | None, rid: str | None, reason: str, detail: str) -> None:
        self.metrics.inc("rejected", reason)
        self._reject_log.info(reason, "rejected receipt of charger %s seq %s: %s: %s", charger_id, seq, reason,
                              detail, extra={"event": "receipt_rejected", "charger_id": charger_id, "seq": seq,
                                             "reason": reason, "detail": detail})
        if charger_id:
            self._publish(charger_id, reject_message(self.chain.genesis.chain_id, self.node_id, self._key, charger_id,
                                                     seq, rid, reason, detail))

    def on_refused(self, refusals: list[Refusal]) -> None:
        """Receipts refused when a block was built (e.g. the wallet vanished meanwhile). Only the
        bureau that took the receipt from its charger answers, so the charger gets one reply."""
        for r in refusals:
            if self._origin.take(tx_hash(r.tx)) is None:
                self.metrics.inc("relayed_rejected", r.reason)
                continue
            if r.reason == "duplicate":
                continue  # the first copy's ack answers it
            self._reject(r.charger_id, r.seq, receipt_id(r.tx[1:]), r.reason, r.detail)

    # ---- acks after commit ---------------------------------------------------------------

    def _on_commit(self, block: Block, ex: Execution) -> None:
        n = 0
        now = time.monotonic()
        for eff in ex.effects:
            if eff.kind == "receipt":
                n += 1
                arrived = self._origin.take(eff.tx_hash)
                if arrived is not None:
                    self.metrics.receipt_latency.observe(now - arrived)
                    self._ack(eff.charger_id, eff.seq, eff.receipt_id, block.height, block.hash)
        self.metrics.inc("committed", n=n)

    def _ack(self, charger_id: str, seq: int, receipt_id: str, height: int, block_hash: bytes) -> None:
        self._publish(charger_id, ack_message(self.chain.genesis.chain_id, self.node_id, self._key, charger_id, seq,
                                              receipt_id, height, block_hash))

    def _publish(self, charger_id: str, payload: bytes) -> None:
        self.client.publish(topics.reply(charger_id), payload, qos=1)

