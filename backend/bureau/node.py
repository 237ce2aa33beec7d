"""One bureau node wired together: storage, chain, mempool, MQTT ingest, block production."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from .chain import Chain
from .config import Settings
from .consensus.replica import BftReplica
from .crypto import load_key
from .api.auth import ReplayGuard
from .api.operator_auth import load_token
from .authz import Authz
from .ingest.gateway import WorkerGateway, load_worker_keys
from .ingest.quarantine import Quarantine, counter
from .ingest.mempool import Mempool, MempoolFull
from .ingest.mqtt import MqttIngest
from .ledger.genesis import Genesis
from .ledger.state import Refusal
from .ledger.tx import KIND_OPERATOR, KIND_RECEIPT, TxError, decode_operator, tx_hash
from .metrics import Metrics
from .ocpp.service import Csms
from .storage import Repository, migrate
from .supervisor import Supervisor

log = logging.getLogger(__name__)
REFUSED_OPS_KEPT = 10_000


class NodeKeyMismatch(ValueError):
    """The node's key file holds another key than the genesis gives its id: the wrong file or id."""


class Node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started = False
        # every background loop runs under it: an unexpected exception stops intake, turns
        # /healthz and /readyz to 503 and ends the process (see supervisor.py)
        self.supervisor = Supervisor()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.genesis = Genesis.load(settings.genesis)
        self.key = load_key(settings.node_key_file)
        first = self.genesis.validators.by_id(settings.node_id)
        if first is not None and first.public_key != self.key.verify_key.encode() \
                and not self._has_chain(settings.database_url):
            # no chain yet, so no change could have rotated the genesis key
            raise NodeKeyMismatch(f"{settings.node_key_file} is not the key the genesis names for {settings.node_id}")
        self.repo = Repository(settings.database_url)
        self.chain = Chain(self.genesis, self.repo)
        # a bureau named by the set in force or a coming one; or, with its peer listener set, one
        # that joins before a change names it (it follows the chain until it is a validator)
        me = self.chain.state.schedule.peers_from(self.chain.height + 1).get(settings.node_id)
        if me is None and not settings.consensus.peer_listen:
            me = self.genesis.validator(settings.node_id)  # GenesisError: no validator of that id
        if me is not None and me.public_key != self.key.verify_key.encode():
            raise NodeKeyMismatch(f"{settings.node_key_file} is not the key the chain names for {settings.node_id}")
        self.mempool = Mempool(settings.consensus.mempool_limit)
        self.metrics = Metrics()
        self.replay_guard = ReplayGuard(settings.http.auth_window_s)
        self.operator_token = load_token(settings.http.operator_token_file)
        # Actions this node dropped before any block held them (expired, already decided...), so
        # the status endpoint can say why; refusals recorded in a block are read from storage.
        self.refused_ops: OrderedDict[bytes, tuple[str, str]] = OrderedDict()
        # inputs whose admission check raised: kept for the operator, the node goes on (ingest/quarantine.py)
        self.quarantine = Quarantine(settings.data_dir / "quarantine", counter(self.metrics, "quarantined"),
                                     self.supervisor)
        user, password = settings.mqtt_login("ingest")
        self.ingest = MqttIngest(self.chain, self.mempool, self.metrics, node_id=settings.node_id,
                                 signing_key=self.key, host=settings.mqtt.host, port=settings.mqtt.port,
                                 client_id=user, username=user, password=password, tls=settings.mqtt.tls,
                                 ca_file=settings.mqtt.ca_file, supervisor=self.supervisor,
                                 quarantine=self.quarantine)
        self.supervisor.on_failure(lambda reason: self.ingest.stop_intake())
        blocks = settings.consensus
        # one validator or many: the same consensus (a lone validator has no peers to dial)
        self.producer = BftReplica(self.chain, self.mempool, self.metrics, settings.node_id, self.key,
                                   data_dir=settings.data_dir, listen=blocks.peer_listen or me.address,
                                   on_evidence=self._submit_evidence,
                                   max_txs=blocks.max_block_txs, commit_delay_ms=blocks.block_interval_ms,
                                   on_refused=self._on_refused, relay=self.ingest.submit_relayed,
                                   peer_addresses=blocks.peer_address_map, supervisor=self.supervisor)
        if len(self.genesis.validators) > 1:
            self.mempool.on_local_add.append(lambda tx: self.producer.share([tx]))
            self.ingest.shared_subscription = settings.mqtt.shared_subscription
        self.workers: WorkerGateway | None = None  # ingest workers take the receipts from the broker
        if settings.worker.listen:
            self.workers = WorkerGateway(self.chain, self.mempool, self.metrics, node_id=settings.node_id,
                                         signing_key=self.key, listen=settings.worker.listen,
                                         worker_keys=load_worker_keys(settings.worker.keys_file),
                                         supervisor=self.supervisor, quarantine=self.quarantine)
            self.ingest.take_receipts = False
        self.authz = Authz(self)
        self.ocpp = Csms(self)  # OCPP charge points, when BUREAU_OCPP_PORT is set (docs/ocpp.md)
        self._observe()

    @staticmethod
    def _has_chain(url: str) -> bool:
        peek = Repository(url, create=False)
        try:
            return migrate.current(peek.engine) is not None and peek.head_height() > 0
        finally:
            peek.close()

    def _submit_evidence(self, tx: bytes) -> None:
        """Equivocation this node saw (ledger/evidence.py): into its mempool and, as a local
        transaction, relayed to the other bureaus, which admit it too (ingest/admission.py), so
        whichever proposes next records it."""
        try:
            self.mempool.add(tx_hash(tx), tx, verified=False, local=True)
        except MempoolFull:
            self.metrics.inc("evidence_dropped", "busy")

    def _observe(self) -> None:
        """The node's gauges, read at each scrape; commits are timed and their refusals logged."""
        m = self.metrics
        m.gauge("height", "Height of the last committed block", lambda: self.chain.height)
        m.gauge("mempool_size", "Transactions waiting for a block", lambda: len(self.mempool))
        m.gauge("round", "Consensus round at the height being decided", lambda: self.consensus_view()["round"])
        m.gauge("peers_connected", "Peers this node's outbound links are logged in to",
                lambda: self.consensus_view()["peers_connected"])
        m.gauge("chargers_online", "Chargers whose retained status says online (their last will says offline)",
                self.ingest.presence.online)
        self.chain.on_commit(self._on_commit)

    def consensus_view(self) -> dict:
        """The consensus round at the height being decided and the peers connected (none for a
        lone validator)."""
        peers = sorted(self.producer.transport.connected_peers())
        return {"round": self.producer.core.round, "peers_connected": len(peers), "peers": peers}

    def _on_refused(self, refusals: list[Refusal]) -> None:
        receipts = [r for r in refusals if r.tx and r.tx[0] == KIND_RECEIPT]
        self.ingest.on_refused(receipts)
        if self.workers:
            self.workers.on_refused(receipts)
        for r in refusals:
            if r.tx and r.tx[0] == KIND_OPERATOR:
                h = tx_hash(r.tx)
                self.refused_ops[h] = (r.reason, r.detail)
                while len(self.refused_ops) > REFUSED_OPS_KEPT:
                    self.refused_ops.popitem(last=False)
                self._refused_action(h, r.tx, r.reason, r.detail)

    def _refused_action(self, h: bytes, tx: bytes, reason: str, detail: str) -> None:
        """Counted and logged: which action, by which operator, and why."""
        self.metrics.inc("operator_refused", reason)
        try:
            op = decode_operator(tx)
            action, operator = op.action, op.operator
        except TxError:
            action = operator = None
        log.warning("operator action %s by %s refused: %s: %s", action, operator, reason, detail,
                    extra={"event": "operator_action_refused", "tx_hash": h.hex(), "action": action,
                           "operator": operator, "reason": reason, "detail": detail})

    def _on_commit(self, block, ex) -> None:
        self.metrics.commit_latency.observe(max(0.0, time.time() - block.header.time_ms / 1000))
        refused = [e for e in ex.effects if e.kind == "refused_action"]
        if refused:  # final refusals written into the block (ledger/state.py)
            txs = {tx_hash(t): t for t in block.txs if t and t[0] == KIND_OPERATOR}
            for e in refused:
                self._refused_action(e.tx_hash, txs.get(e.tx_hash, b""), e.detail["reason"], e.detail["detail"])

    def start(self) -> None:
        self.ingest.start()
        if self.workers:
            self.workers.start()
        self.producer.start()
        self.authz.start()
        self.ocpp.start()
        self.started = True
        log.info("node %s up at height %d", self.settings.node_id, self.chain.height)

    def readiness(self) -> dict:
        """What /readyz reports: ready when up, taking receipts, consensus progressing, not failed."""
        if self.supervisor.reason is not None:
            return {"ok": False, "reason": self.supervisor.reason}
        if not self.started:
            return {"ok": False, "reason": "starting"}
        if not (self.ingest.intake.is_set() and self.ingest.connected.is_set()):
            return {"ok": False, "reason": "intake: not connected to the broker"}
        health = self.producer.health()
        if health["consensus"] != "ok":
            return {"ok": False, "reason": f"consensus: {health['consensus']}"}
        return {"ok": True, "height": self.chain.height}

    def stop(self) -> None:
        self.ocpp.stop()
        self.authz.stop()
        self.producer.stop()
        if self.workers:
            self.workers.stop()
        self.ingest.stop()
        self.repo.close()
