"""One bureau node wired together: storage, chain, mempool, MQTT ingest, block production."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from .chain import Chain
from .config import Settings
from .consensus.replica import BftReplica
from .consensus.solo import SoloProducer
from .crypto import load_or_create_key
from .api.auth import ReplayGuard
from .api.operator_auth import load_token
from .authz import Authz
from .ingest.mempool import Mempool
from .ingest.mqtt import MqttIngest
from .ledger.genesis import Genesis
from .ledger.state import Refusal
from .ledger.tx import KIND_OPERATOR, TxError, decode_operator, tx_hash
from .metrics import Metrics
from .storage import Repository

log = logging.getLogger(__name__)
REFUSED_OPS_KEPT = 10_000


class Node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.genesis = Genesis.load(settings.genesis)
        self.key = load_or_create_key(settings.node_key_file)
        me = self.genesis.validator(settings.node_id)
        if me.public_key != self.key.verify_key.encode():
            raise RuntimeError(f"{settings.node_key_file} is not the key the genesis names for {settings.node_id}")
        self.repo = Repository(settings.database_url)
        self.chain = Chain(self.genesis, self.repo)
        self.mempool = Mempool(settings.mempool_limit)
        self.metrics = Metrics()
        self.replay_guard = ReplayGuard(settings.auth_window_s)
        self.operator_token = load_token(settings.operator_token_file)
        # Actions this node dropped before any block held them (expired, already decided...), so
        # the status endpoint can say why; refusals recorded in a block are read from storage.
        self.refused_ops: OrderedDict[bytes, tuple[str, str]] = OrderedDict()
        user, password = settings.mqtt_login("ingest")
        self.ingest = MqttIngest(self.chain, self.mempool, self.metrics, node_id=settings.node_id,
                                 signing_key=self.key, host=settings.mqtt_host, port=settings.mqtt_port,
                                 client_id=user, username=user, password=password)
        if len(self.genesis.validators) == 1:
            self.producer = SoloProducer(self.chain, self.mempool, settings.node_id, self.key,
                                         max_txs=settings.max_block_txs, interval_s=settings.block_interval_ms / 1000,
                                         on_refused=self._on_refused)
        else:
            self.producer = BftReplica(self.chain, self.mempool, self.metrics, settings.node_id, self.key,
                                       data_dir=settings.data_dir, listen=settings.peer_listen or me.address,
                                       max_txs=settings.max_block_txs, commit_delay_ms=settings.block_interval_ms,
                                       on_refused=self._on_refused, relay=self.ingest.submit_relayed,
                                       peer_addresses=settings.peer_address_map)
            self.mempool.on_local_add.append(lambda tx: self.producer.share([tx]))
            self.ingest.shared_subscription = settings.shared_subscription
        self.authz = Authz(self)
        self._observe()

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
        """Round and connected peers: a single bureau has neither."""
        core = getattr(self.producer, "core", None)
        if core is None:
            return {"round": 0, "peers_connected": 0, "peers": []}
        peers = sorted(self.producer.transport.connected_peers())
        return {"round": core.round, "peers_connected": len(peers), "peers": peers}

    def _on_refused(self, refusals: list[Refusal]) -> None:
        self.ingest.on_refused([r for r in refusals if not (r.tx and r.tx[0] == KIND_OPERATOR)])
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
        self.producer.start()
        self.authz.start()
        log.info("node %s up at height %d", self.settings.node_id, self.chain.height)

    def stop(self) -> None:
        self.authz.stop()
        self.producer.stop()
        self.ingest.stop()
        self.repo.close()
