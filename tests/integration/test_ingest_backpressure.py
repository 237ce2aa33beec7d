"""Admission pauses at a full mempool and leaves the rest with the broker: a burst waits in the
broker's bounded queue, not in the node, and nothing of it is lost once blocks drain the mempool."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt

from bureau.chain import Chain
from bureau.ingest.mempool import Mempool
from bureau.ingest.mqtt import MqttIngest
from bureau.metrics import Metrics
from bureau.storage import Repository
from bureau.tools.mosquitto import Mosquitto
from tests.support.fleet import fleet_receipts
from tests.unit.test_operator_actions import NODE, T0_MS, _action, _genesis
from tests.support.waiting import wait_for


def _wait(condition, what: str, timeout: float = 60.0):
    return wait_for(condition, what, timeout, poll=0.05)


def test_a_full_mempool_pauses_admission_and_the_broker_keeps_the_rest(tmp_path):
    keys, receipts, _ = fleet_receipts(2, 15)
    chain = Chain(_genesis(), Repository(f"sqlite:///{tmp_path / 'node.db'}"))
    setup = [_action("enroll_charger", {"charger_id": c, "public_key": k.verify_key.encode().hex()}) for c, k in keys.items()]
    setup.append(_action("open_wallet", {"wallet_id": "W-FLEET", "public_key": "ab" * 32}))
    block, ex = chain.build(setup, "bureau-1", T0_MS)
    chain.state.apply(ex, block.height, block.hash, block.header.time_ms)  # (no storage needed for admission)
    mempool = Mempool()
    with Mosquitto(anonymous=True) as broker:
        ingest = MqttIngest(chain, mempool, Metrics(), node_id="bureau-1", signing_key=NODE, host="127.0.0.1",
                            port=broker.port, client_id="bureau-1.ingest")
        ingest.pause_at, ingest.hold_acks_at = 5, 2
        ingest.start()
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        try:
            for cid, env in receipts:
                pub.publish(f"ev/v1/charger/{cid}/receipt", env, qos=1).wait_for_publish(10)
            _wait(lambda: len(mempool) >= 5, "admission never filled the mempool")
            time.sleep(1.0)  # time for a worker that ignored the limit to take more
            # each of the two workers may finish the receipt it held when the limit was reached
            assert 5 <= len(mempool) <= 7
            taken = set()
            while len(taken) < len(receipts):  # blocks drain the mempool: the broker sends the rest
                waiting = [h for h, _ in mempool.peek(100)]
                taken.update(waiting)
                mempool.remove(waiting)
                time.sleep(0.05)
                _wait(lambda: len(mempool) or len(taken) == len(receipts), "the broker's receipts never came", 30)
            assert len(taken) == len(receipts)
        finally:
            pub.loop_stop()
            ingest.stop()
