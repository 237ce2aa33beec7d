"""A receipt relayed by another bureau after its block committed here, or while a copy already
waits here, is dropped before its signature is verified: under a backlog the relayed copies
queue behind the chargers' receipts, and verifying them again doubled a node's signature work."""

from __future__ import annotations

import time

from bureau import crypto
from bureau.chain import Chain
from bureau.ingest.mempool import Mempool
from bureau.ingest.mqtt import MqttIngest
from bureau.ledger.certificate import Certificate, precommit_bytes
from bureau.ledger.tx import receipt_tx
from bureau.metrics import Metrics
from bureau.storage import Repository
from bureau.tools.network import DEFAULT_TARIFF
from tests.support.fleet import fleet_receipts
from tests.unit.test_operator_actions import NODE, T0_MS, _action, _genesis


def _commit(chain: Chain, txs: list[bytes], time_ms: int) -> None:
    block, ex = chain.build(txs, "bureau-1", time_ms)
    assert not ex.refused, ex.refused
    sig = NODE.sign(precommit_bytes(chain.genesis.chain_id, block.height, 0, block.hash)).signature
    chain.commit(block, Certificate(block.height, 0, block.hash, (("bureau-1", sig),)).encode(), ex)


def test_a_late_or_waiting_relayed_receipt_is_not_verified_again(tmp_path, monkeypatch):
    keys, receipts, _ = fleet_receipts(1, 3)
    (cid, key), = keys.items()
    chain = Chain(_genesis((DEFAULT_TARIFF,)), Repository(f"sqlite:///{tmp_path / 'node.db'}"))
    _commit(chain, [_action("enroll_charger", {"charger_id": cid, "public_key": key.verify_key.encode().hex()}),
                    _action("open_wallet", {"wallet_id": "W-FLEET", "public_key": "ab" * 32})], T0_MS)
    committed, waiting, new = (receipt_tx(env) for _, env in receipts)
    _commit(chain, [committed], T0_MS + 1000)
    mempool, metrics = Mempool(), Metrics()
    ingest = MqttIngest(chain, mempool, metrics, node_id="bureau-1", signing_key=NODE, host="127.0.0.1", port=1,
                        client_id="bureau-1.ingest")
    ingest.handle_relayed(waiting)
    ingest.handle_relayed(new)
    assert len(mempool) == 2

    def no_verify(*_):
        raise AssertionError("a relayed receipt that cannot be admitted was verified")
    monkeypatch.setattr(crypto, "verify", no_verify)
    ingest.handle_relayed(committed)  # its block committed here first
    ingest.handle_relayed(waiting)  # a second copy of one that waits
    assert len(mempool) == 2
    text = metrics.exposition().decode()
    assert 'relayed_rejected_total{reason="duplicate"} 1.0' in text and 'reason="waiting"} 1.0' in text, text


def test_relayed_actions_wait_in_the_order_their_peer_sent_them(tmp_path):
    """A wallet opened and topped up at once at another bureau: the top-up must not wait ahead
    of the opening here (a block proposed here would refuse it unknown_wallet, for good)."""
    chain = Chain(_genesis((DEFAULT_TARIFF,)), Repository(f"sqlite:///{tmp_path / 'node.db'}"))
    mempool = Mempool()
    ingest = MqttIngest(chain, mempool, Metrics(), node_id="bureau-1", signing_key=NODE, host="127.0.0.1", port=1,
                        client_id="bureau-1.ingest")  # its admission threads are not started
    now_ms = int(time.time() * 1000)  # admission checks an action's time against the clock
    actions = [_action("open_wallet", {"wallet_id": "W-NEW", "public_key": "ab" * 32}, now_ms),
               _action("top_up", {"wallet_id": "W-NEW", "amount_fen": 100, "reference": "bank:relay"}, now_ms)]
    ingest.submit_relayed(actions)
    assert [tx for _, tx in mempool.peek(10)] == actions
    block, ex = chain.build([tx for _, tx in mempool.peek(10)], "bureau-1", now_ms)
    assert not ex.refused, ex.refused
