"""A simulated charge point (controller, pilot, meter, card reader from hwsim) talking to a
bureau node through a real mosquitto with the firmware's own MQTT client and uplink: the
enrollment it publishes is what the operator enrolls, its sessions (one ended by a meter
fault while the broker was down) are committed and acknowledged, and the wallet is debited by
exactly the receipts' amounts."""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path

import paho.mqtt.client as paho
from nacl.signing import SigningKey

from bureau.receipts.codec import decode
from bureau.tools.sessiontime import recent
from chargerhost.simcontroller import ControllerSim
from hwsim.meters import FAULT_NO_REPLY
from tests.support.bureau import TestBureau
from tests.support.signer import NaclSigner

TARIFF = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "tariff.json").read_text())["tariff"]
CARD = "04A1B2C3D4E5F6"


class Watcher:
    """paho subscriber to the charger's retained topics."""

    def __init__(self, broker):
        self.messages = queue.Queue()
        user, password = broker.login("watcher", "fleet")
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=user)
        self.c.username_pw_set(user, password)
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, json.loads(m.payload), m.retain))
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()
        self.c.subscribe("ev/v1/charger/+/enroll", qos=1)
        self.c.subscribe("ev/v1/charger/+/status", qos=1)

    def wait(self, pred, sim, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sim.pump()
            try:
                msg = self.messages.get(timeout=0.02)
            except queue.Empty:
                continue
            if pred(msg):
                return msg
        raise AssertionError("no matching message")

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def pump_until(sim, pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sim.pump()
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out; outbox {sim.charger.outbox.pending()}")


def test_sessions_reach_the_ledger_through_mosquitto_including_a_broker_outage(tmp_path, mosquitto):
    bureau = TestBureau(tmp_path / "bureau", mosquitto)
    watcher = Watcher(mosquitto)
    sim = ControllerSim(tmp_path / "flash", charger_id="GZ-TH-0001", tariff=TARIFF, start_time=recent(1_793_491_200),
                        signer=NaclSigner, wallets={CARD: ("W-1001", 50_000)}, genesis=bureau.genesis)
    # a receipt published while the bureau's own client is still reconnecting reaches nobody
    # and goes out again after resend_ms (20 s on the device); 1 s keeps the test short
    sim.charger.resend_ms = 1000
    try:
        user, password = mosquitto.login("GZ-TH-0001")
        sim.attach_mqtt("127.0.0.1", mosquitto.port, username=user, password=password, reconnect_min_ms=50,
                        reconnect_max_ms=400)
        # first boot: the charger announces its key; the operator enrolls what it announced
        _, enroll, retained = watcher.wait(lambda m: m[0].endswith("/enroll"), sim)
        assert enroll["charger_id"] == "GZ-TH-0001" and enroll["v"] == 1
        assert bytes.fromhex(enroll["public_key"]) == sim.charger.public_key()
        driver = SigningKey.generate()
        assert bureau.operator("enroll_charger", {"charger_id": enroll["charger_id"],
                                                  "public_key": enroll["public_key"]})["status"] == "committed"
        assert bureau.operator("open_wallet", {"wallet_id": "W-1001", "public_key": driver.verify_key.encode().hex(),
                                               "cards": [CARD]})["status"] == "committed"
        assert bureau.operator("top_up", {"wallet_id": "W-1001", "amount_fen": 100_000,
                                          "reference": "bank:1"})["status"] == "committed"
        _, st, retained = watcher.wait(lambda m: m[0].endswith("/status"), sim)
        assert st["state"] == "available" and st["v"] == 1 and st["online"] is True

        # a session ended by unplugging
        sim.plug_in()
        sim.tap(CARD)
        sim.run(600_000)
        sim.unplug()
        sim.run(1000)
        assert sim.charger.outbox.pending() == [1]
        envs = {1: sim.charger.outbox.get(1)}
        pump_until(sim, lambda: sim.charger.outbox.pending() == [])

        # the broker goes away; a session ends with a meter fault meanwhile
        mosquitto.stop()
        sim.plug_in()
        sim.tap(CARD)
        sim.run(300_000)
        sim.meter_sim.inject(FAULT_NO_REPLY)
        sim.run(4000)
        sim.meter_sim.clear()
        sim.run(3000)
        sim.unplug()
        sim.run(1000)
        for _ in range(20):
            sim.pump()
            time.sleep(0.01)
        assert sim.charger.outbox.pending() == [2] and not sim.uplink.up
        envs[2] = sim.charger.outbox.get(2)
        mosquitto.start()
        pump_until(sim, lambda: sim.charger.outbox.pending() == [], timeout=30)
        assert sim.uplink.connections >= 2 and sim.uplink.acked == 2

        r1, r2 = decode(envs[1])[0], decode(envs[2])[0]
        assert r1.stop_reason == "U" and r2.stop_reason == "F" and r2.meter_status & 4
        hist = bureau.driver_get(driver, "W-1001", "/v1/wallets/W-1001/history?limit=10").json()["entries"]
        balance = bureau.driver_get(driver, "W-1001", "/v1/wallets/W-1001").json()["balance_fen"]
        billed = sorted(-e["delta_fen"] for e in hist if e["kind"] == "receipt")
        assert billed == sorted([r1.amount_fen, r2.amount_fen])
        assert balance == 100_000 - r1.amount_fen - r2.amount_fen
    finally:
        sim.close()
        watcher.close()
        bureau.close()
