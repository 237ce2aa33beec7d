"""A receipt whose admission check raises (a parser bug that one crafted payload reaches) is
kept in the quarantine directory and not answered, and the node goes on admitting the others; its
resends are counted, not written again. Many distinct inputs failing in a short window fail the
node through the supervisor, as any other unexpected failure does."""

from __future__ import annotations

import hashlib
import json

import pytest

from bureau import topics
from bureau.chain import Chain
from bureau.ingest import mqtt as ingest_mqtt
from bureau.ingest.mempool import Mempool
from bureau.ingest.mqtt import MqttIngest
from bureau.ingest.quarantine import Quarantine, counter
from bureau.ledger.tx import receipt_tx, tx_hash
from bureau.metrics import Metrics
from bureau.storage import Repository
from bureau.supervisor import Supervisor
from bureau.tools.network import DEFAULT_TARIFF
from tests.support.fleet import fleet_receipts
from tests.unit.test_operator_actions import T0_MS, _action, _genesis
from tests.unit.test_relayed_receipts import _commit


@pytest.fixture
def node(tmp_path, monkeypatch):
    keys, receipts, _ = fleet_receipts(1, 3)
    (cid, key), = keys.items()
    chain = Chain(_genesis((DEFAULT_TARIFF,)), Repository(f"sqlite:///{tmp_path / 'node.db'}"))
    _commit(chain, [_action("enroll_charger", {"charger_id": cid, "public_key": key.verify_key.encode().hex()}),
                    _action("open_wallet", {"wallet_id": "W-FLEET", "public_key": "ab" * 32})], T0_MS)
    poison = receipts[0][1]
    real_admit = ingest_mqtt.admit

    def admit_with_a_bug(topic, payload, state):
        if payload == poison:
            raise IndexError("a parser bug this payload reaches")
        return real_admit(topic, payload, state)
    monkeypatch.setattr(ingest_mqtt, "admit", admit_with_a_bug)
    mempool, metrics, supervisor = Mempool(), Metrics(), Supervisor()
    quarantine = Quarantine(tmp_path / "quarantine", counter(metrics, "quarantined"), supervisor, burst=3)
    ingest = MqttIngest(chain, mempool, metrics, node_id="bureau-1", signing_key=key, host="127.0.0.1", port=1,
                        client_id="bureau-1.ingest", supervisor=supervisor, quarantine=quarantine)
    sent = []
    monkeypatch.setattr(ingest, "_publish", lambda charger, payload: sent.append(payload))
    return ingest, cid, receipts, tmp_path / "quarantine", supervisor, metrics, sent


def test_a_receipt_whose_check_raises_is_kept_and_the_others_go_on(node):
    ingest, cid, receipts, qdir, supervisor, metrics, sent = node
    poison = receipts[0][1]
    ingest.handle(topics.receipt(cid), poison)
    ingest.handle(topics.receipt(cid), poison)  # the charger's resend
    ingest.handle(topics.receipt(cid), receipts[1][1])
    assert len(ingest.mempool) == 1 and tx_hash(receipt_tx(receipts[1][1])) in ingest.mempool
    assert not sent  # neither answered: the poison one stays in the charger's outbox
    assert not supervisor.failed.is_set()
    kept = sorted(p.name for p in qdir.iterdir())
    assert len(kept) == 2 and kept[0].endswith(".bin") and kept[1].endswith(".json")
    assert (qdir / kept[0]).read_bytes() == poison
    record = json.loads((qdir / kept[1]).read_text())
    assert record["v"] == 1 and record["source"] == "receipt" and record["topic"] == topics.receipt(cid)
    assert record["error"] == "IndexError: a parser bug this payload reaches" and "admit_with_a_bug" in record["traceback"]
    assert record["time"].endswith("Z")
    assert 'quarantined_total{reason="receipt"} 2.0' in metrics.exposition().decode()


def test_many_distinct_inputs_failing_fail_the_node(node, monkeypatch):
    ingest, cid, receipts, _, supervisor, _, _ = node

    def broken(topic, payload, state):
        raise KeyError("state nobody reasoned about")
    monkeypatch.setattr(ingest_mqtt, "admit", broken)
    ingest.handle(topics.receipt(cid), receipts[1][1])
    ingest.handle(topics.receipt(cid), receipts[2][1])
    assert not supervisor.failed.is_set()
    ingest.handle(topics.receipt(cid), receipts[0][1])
    assert supervisor.failed.is_set() and "3 distinct inputs failed admission" in supervisor.reason


def test_the_oldest_kept_inputs_go_first(tmp_path):
    q = Quarantine(tmp_path, lambda source: None, None, kept=2)
    for i in range(4):
        q.hold("relayed", None, b"tx-%d" % i, ValueError(i))
    assert sorted(p.read_bytes() for p in tmp_path.glob("*.bin")) == [b"tx-2", b"tx-3"]
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_an_ingest_workers_screening_that_raises_keeps_the_receipt(tmp_path, monkeypatch):
    """An ingest worker's verify thread does not die on such a receipt (it would, silently, and
    the worker would stop screening once all its threads had): it keeps the input and goes on."""
    import threading

    from bureau.ingest import worker as worker_mod

    def screen_with_a_bug(payload, registry, charger):
        raise IndexError("a parser bug this payload reaches")
    monkeypatch.setattr(worker_mod, "screen_receipt", screen_with_a_bug)
    w = worker_mod.IngestWorker.__new__(worker_mod.IngestWorker)  # its broker and node link are not needed here
    w.counts, w._counts_lock = {"quarantined": 0}, threading.Lock()
    w.quarantine = Quarantine(tmp_path, lambda source: w._count("quarantined"), None)

    class Link:
        sent: list = []

        def send(self, channel, payload):
            self.sent.append(channel)
            return True
    link = Link()
    w.screen(link, None, topics.receipt("CH-1"), b"poison")
    assert w.counts["quarantined"] == 1 and link.sent == []
    assert (tmp_path / (hashlib.sha256(b"poison").hexdigest() + ".bin")).read_bytes() == b"poison"
