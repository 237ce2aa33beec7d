"""Ingest workers (`bureau ingest-worker`) as real processes on a real mosquitto, handing their
bureau's receipts to its node over the worker link: the receipts split among them, each
committed once on every bureau and acked once, a SIGKILLed worker losing nothing, a bad
receipt rejected through the worker that took it, and the broker logins that may take a share."""

import json
import threading
import time
from dataclasses import replace

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey

from bureau.ledger.genesis import Genesis
from bureau.receipts.ack import verify_ack
from bureau.receipts.codec import decode, seal
from bureau.receipts.reject import verify_reject
from bureau.storage import Repository
from bureau.tools.mosquitto import Mosquitto
from bureau.tools.stack import Stack
from tests.support.fleet import Fleet, fleet_receipts, setup_actions
from tests.support.workers import WorkerProcess, worker_node_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow
WORKERS = ["w1", "w2", "w3"]


def _wait(predicate, timeout, what):
    wait_for(predicate, f"timed out waiting for {what}", timeout, poll=0.2)


class CountingFleet(Fleet):
    """The fleet, counting the acks and sends of each receipt and checking every reply's signature."""

    def __init__(self, broker, receipts, genesis: Genesis, **kw) -> None:
        self.acked: dict[str, int] = {}
        self.sends: dict[str, int] = {}
        self.keys = {v.id: v.public_key for v in genesis.validators}
        self.chain_id = genesis.chain_id
        super().__init__(broker, receipts, **kw)

    def _on_message(self, client, userdata, msg) -> None:
        reply = json.loads(msg.payload)
        if reply.get("type") == "ack":
            verify_ack(msg.payload, self.chain_id, self.keys)
            with self._lock:
                self.acked[reply["receipt"]] = self.acked.get(reply["receipt"], 0) + 1
        elif reply.get("type") == "reject":
            verify_reject(msg.payload, self.chain_id, self.keys)
        super()._on_message(client, userdata, msg)

    def pump(self, limit=None) -> int:
        before = dict(self.sent_at)
        n = super().pump(limit)
        for rid, at in self.sent_at.items():
            if before.get(rid) != at:
                self.sends[rid] = self.sends.get(rid, 0) + 1
        return n


def _start_workers(stack: Stack, node_id: str, node_env: dict, keys: dict) -> list[WorkerProcess]:
    return [WorkerProcess(stack, node_id, w, node_env["BUREAU_WORKER_LISTEN"], keys[w]).start() for w in WORKERS]


def _linked(stack: Stack, node_id: str) -> None:
    """Wait until the node says each worker logged in, and a moment for their subscriptions."""
    log = stack.root / f"{node_id}.log"
    _wait(lambda: all(f"ingest worker {w} logged in" in log.read_text() for w in WORKERS), 60, "the workers' logins")
    time.sleep(1.0)


def _receipts_stored(url: str) -> tuple[int, int]:
    repo = Repository(url)
    try:
        with repo.engine.connect() as conn:
            return tuple(conn.execute(sa.text("select count(*), count(distinct receipt_id) from receipts")).one())
    finally:
        repo.close()


def test_three_workers_split_the_receipts_each_committed_once_everywhere_and_acked_once(tmp_path, postgres_cluster):
    keys, receipts, _ = fleet_receipts(chargers=30, per_charger=8)
    stack = Stack(tmp_path, nodes_count=2).prepare()
    stack.db_urls = {v["id"]: postgres_cluster.database("workers_" + v["id"].replace("-", "_"))
                     for v in stack.genesis["validators"]}
    env1, worker_keys = worker_node_env(stack, "bureau-1", WORKERS)
    # bureau-2 too takes receipts only through workers, and runs none: every receipt reaches it
    # over the peer links, so each charger hears from one bureau
    env2, _ = worker_node_env(stack, "bureau-2", [])
    workers, fleet = [], None
    try:
        stack.launch(node_env={"bureau-1": env1, "bureau-2": env2})
        workers = _start_workers(stack, "bureau-1", env1, worker_keys)
        stack.operator(setup_actions(keys))
        genesis = Genesis.load(stack.genesis_path)
        # one receipt signed with a key the registry does not hold for its charger
        cid, good = receipts[0]
        r, _, _ = decode(good)
        forged = seal(replace(r, seq=999), SigningKey.generate())
        fleet = CountingFleet(stack.broker, receipts, genesis, resend_s=120.0)
        _linked(stack, "bureau-1")
        fleet.client.publish(f"ev/v1/charger/{cid}/receipt", forged, qos=1)
        assert fleet.drain(120), f"{len(fleet.unacked)} receipts never acked"
        _wait(lambda: fleet.rejects, 30, "the forged receipt's reject")
        assert [(x["seq"], x["reason"], x["bureau"]) for x in fleet.rejects] == [(999, "bad_signature", "bureau-1")]
        # every receipt was sent once and acked once, by a signed ack of bureau-1
        assert set(fleet.sends.values()) == {1}
        assert fleet.acked == dict.fromkeys(fleet.receipts, 1)
        _wait(lambda: sum(w.stats()["replies"] for w in workers) >= len(fleet.receipts) + 1, 30, "the stats lines")
        stats = {w.worker_id: w.stats() for w in workers}
        assert all(s["handed"] > 0 for s in stats.values()), stats  # the shared subscription split them
        assert sum(s["handed"] for s in stats.values()) == len(fleet.receipts), stats
        assert [s["refused"] for s in stats.values()].count(1) == 1, stats  # one worker took the forged one
        took_forged = next(w for w, s in stats.items() if s["refused"] == 1)
        assert stats[took_forged]["replies"] == stats[took_forged]["handed"] + 1, stats  # and sent its reject
        _wait(lambda: len(set(stack.heights())) == 1, 60, "both bureaus at one height")
        for node in stack.nodes:  # committed once on every bureau
            assert _receipts_stored(node.env["BUREAU_DB_URL"]) == (len(fleet.receipts),) * 2, node.node_id
    finally:
        for w in workers:
            w.stop()
        if fleet:
            fleet.close()
        stack.stop()


def test_a_worker_killed_mid_stream_loses_nothing(tmp_path):
    keys, receipts, _ = fleet_receipts(chargers=20, per_charger=12)
    stack = Stack(tmp_path, nodes_count=1).prepare()
    env, worker_keys = worker_node_env(stack, "bureau-1", WORKERS)
    workers, fleet = [], None
    try:
        stack.launch(node_env={"bureau-1": env})
        workers = _start_workers(stack, "bureau-1", env, worker_keys)
        stack.operator(setup_actions(keys))
        fleet = CountingFleet(stack.broker, receipts, Genesis.load(stack.genesis_path), resend_s=4.0)
        _linked(stack, "bureau-1")
        fleet.pump(limit=80)
        victim = workers[1]
        _wait(lambda: victim.stats()["handed"] > 0, 30, "the victim to take receipts")
        fleet.pump(limit=80)
        victim.kill()  # SIGKILL, with receipts it took and never saw answered
        assert fleet.drain(120), f"{len(fleet.unacked)} receipts never acked"
        assert not fleet.rejects, fleet.rejects[:3]
        assert set(fleet.acked) == set(fleet.receipts)
        # no charger hears more acks than it sent the receipt (a resend may meet its commit)
        assert all(fleet.acked[rid] <= fleet.sends[rid] for rid in fleet.receipts)
        stored = _receipts_stored(f"sqlite:///{stack.nodes[0].data_dir / 'ledger.db'}")
        assert stored == (len(receipts),) * 2
        survivors = [w.stats()["handed"] for w in workers if w is not victim]
        assert all(n > 0 for n in survivors), survivors
    finally:
        for w in workers:
            w.stop()
        if fleet:
            fleet.close()
        stack.stop()


def test_only_the_bureaus_worker_logins_take_its_share():
    with Mosquitto() as broker:
        share = "$share/bureau-1/ev/v1/charger/+/receipt"
        got: dict[str, list[str]] = {}
        clients = []

        def subscriber(name, user, password):
            got[name] = []
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user)
            c.username_pw_set(user, password)
            c.on_message = lambda cl, ud, msg: got[name].append(msg.topic)
            c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe(share, qos=1)
            c.connect("127.0.0.1", broker.port)
            c.loop_start()
            clients.append(c)

        worker = broker.login_worker("bureau-1", "w1")
        subscriber("worker", *worker)
        subscriber("authz", *broker.login("bureau-1.authz", "authz"))
        subscriber("operator", *broker.login("technician", "operator"))
        subscriber("charger", *broker.login("CH-0001"))
        assert broker.connack(worker[0], "not-its-password") == 5  # not authorized
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-1")
        pub.username_pw_set(*broker.login("fleet-1", "fleet"))
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        try:
            time.sleep(1.0)
            for i in range(30):
                pub.publish(f"ev/v1/charger/CH-{i:04d}/receipt", b"x", qos=1).wait_for_publish(5)
            # mosquitto hands each member of the group its turn; a login that may not read receipts is
            # handed nothing (its turns are dropped: docs/ingest-workers.md, "Broker")
            _wait(lambda: len(got["worker"]) >= 5, 20, "the worker's share")
            time.sleep(1.0)
            assert got["authz"] == got["operator"] == got["charger"] == [], got
        finally:
            pub.loop_stop()
            for c in clients:
                c.loop_stop()
