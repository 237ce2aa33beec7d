"""Card authorization end to end: a simulated charge point (controller, pilot, meter, and the
firmware's RC522 driver reading an emulated MFRC522) runs the firmware's authflow + authz glue
against an in-process bureau node through a real mosquitto. A card tap is accepted online
(the node's hold), the session's receipt names it; with the broker down the signed offline list
decides and the receipt names the list; after the broker is back that receipt commits; an
unknown card is denied and the contactor never closes. A forged accept does not start charging."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from nacl.signing import SigningKey

from bureau.authz import wire
from bureau.receipts.codec import decode
from chargerhost.simcontroller import ControllerSim
from tests.support.bureau import TestBureau
from tests.support.signer import NaclSigner

TARIFF = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "tariff.json").read_text())["tariff"]
CARD = "04A1B2C3D4E5F6"  # 7-byte UID: two cascade levels at the reader
UNKNOWN = "DEADBEEF"


def pump_until(sim, pred, timeout=15.0, what="condition"):
    """Network work only (simulated time stands still)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sim.pump()
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}; outbox {sim.charger.outbox.pending()}, log {sim.flow_log}")


def live(sim, pred, timeout=10.0, what="condition"):
    """Simulated time at about the pace of real time, with the network pumped every step (the
    authorization's timeouts run on the charger's clock, the bureau answers in real time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sim.step()
        sim.pump()
        if pred():
            return
        time.sleep(0.015)
    raise AssertionError(f"timed out waiting for {what}; state {sim.ctl.display_state()} {sim.ctl.error}, "
                         f"log {sim.flow_log}")


@pytest.fixture
def fast_lists(monkeypatch):
    monkeypatch.setenv("BUREAU_AUTHZ_LIST_MIN_INTERVAL_S", "0")


def _sim_start() -> int:
    """The simulated charger clock runs faster than the wall clock: an hour back, the sessions
    it makes end before the bureau's clock (the ledger refuses `from_future`)."""
    return int(time.time()) - 3600


def test_card_online_offline_and_unknown_through_the_firmware(tmp_path, mosquitto, fast_lists):
    bureau = TestBureau(tmp_path / "bureau", mosquitto)
    genesis = bureau.client.get("/v1/genesis").json()
    sim = ControllerSim(tmp_path / "flash", charger_id="GZ-TH-0002", tariff=TARIFF, start_time=_sim_start(),
                        signer=NaclSigner)
    sim.charger.resend_ms = 1000
    driver = SigningKey.generate()
    try:
        sim.enable_authz(genesis)
        user, password = mosquitto.login("GZ-TH-0002")
        sim.attach_mqtt("127.0.0.1", mosquitto.port, username=user, password=password, reconnect_min_ms=50,
                        reconnect_max_ms=400)
        assert bureau.operator("enroll_charger", {"charger_id": "GZ-TH-0002",
                                                  "public_key": sim.charger.public_key().hex()})["status"] == "committed"
        assert bureau.operator("open_wallet", {"wallet_id": "W-1", "public_key": driver.verify_key.encode().hex(),
                                               "cards": [CARD]})["status"] == "committed"
        assert bureau.operator("top_up", {"wallet_id": "W-1", "amount_fen": 20_000,
                                          "reference": "bank:1"})["status"] == "committed"
        # the signed list (with the card, from the topped-up balance) arrives and is installed
        pump_until(sim, lambda: sim.authz.lookup(CARD) == ("W-1", 5_000), what="the offline list")
        first_version = sim.authz.manifest["list_version"]
        sim.run(2000)
        assert sim.ctl.state == "available" and not sim.outputs.closed

        # ---- online: tap, the node accepts and holds; plug in, charge, unplug ----------------
        sim.tap(CARD)
        live(sim, lambda: sim.flow.decisions == 1, what="the online decision")
        d = sim.flow.last
        assert (d["decision"], d["method"], d["id_token"], d["wallet_id"]) == ("accept", 1, CARD, "W-1")
        assert d["authorized_fen"] == 20_000 and d["auth_ref"].startswith("auth:")
        online_ref = d["auth_ref"]
        assert sim.ctl.display_state() == "plug_in" and sim.ctl.auth[4] == online_ref
        assert sim.reader.errors == 0 and sim.client.connected
        sim.run(2000)  # the card stays a moment longer in the field: reported once only
        assert sim.flow.decisions == 1
        sim.plug_in()
        sim.run(300_000)
        assert sim.outputs.closed and sim.ctl.state == "charging"
        sim.unplug()
        sim.run(1000)
        assert sim.charger.outbox.pending() == [1] and not sim.outputs.closed
        env1 = sim.charger.outbox.get(1)
        pump_until(sim, lambda: sim.charger.outbox.pending() == [], what="the first ack")
        r1 = decode(env1)[0]
        assert (r1.auth_method, r1.id_token, r1.wallet_id, r1.auth_ref, r1.authorized_fen) == \
            (1, CARD, "W-1", online_ref, 20_000)
        assert r1.stop_reason == "U" and r1.energy_wh > 250 and 0 < r1.amount_fen < 20_000
        # the receipt ended the hold (the card's offline limit stays at the 5000 fen cap)
        pump_until(sim, lambda: bureau.driver_get(driver, "W-1", "/v1/wallets/W-1/authorizations").json()["held_fen"]
                   == 0, what="the hold to end")
        # a list published during the hold may have left the card off: wait for the one after it
        pump_until(sim, lambda: sim.authz.lookup(CARD) == ("W-1", 5_000), what="the list after the hold")
        version = sim.authz.manifest["list_version"]
        assert version >= first_version

        # ---- offline: the broker is gone; the signed list decides ----------------------------
        mosquitto.stop()
        pump_until(sim, lambda: not sim.client.connected, what="the connection to drop")
        sim.tap(CARD)
        sim.run(1000)
        assert sim.flow.decisions == 2
        d = sim.flow.last
        assert (d["decision"], d["method"], d["auth_ref"], d["authorized_fen"]) == ("accept", 2, f"offline:{version}",
                                                                                    5_000)
        sim.plug_in()
        sim.run(120_000)
        assert sim.outputs.closed
        sim.unplug()
        sim.run(1000)
        assert sim.charger.outbox.pending() == [2]
        env2 = sim.charger.outbox.get(2)
        r2 = decode(env2)[0]
        assert (r2.auth_method, r2.id_token, r2.wallet_id, r2.auth_ref) == (2, CARD, "W-1", f"offline:{version}")
        assert r2.authorized_fen == 5_000 and 0 < r2.amount_fen <= 5_000
        # while offline an unknown card is refused by the list
        sim.tap(UNKNOWN, tap_ms=300)
        sim.run(1000)
        assert sim.flow.last["reason"] == "not_on_list" and sim.ctl.error == "denied:not_on_list"

        # ---- the broker is back: the offline receipt commits ---------------------------------
        mosquitto.start()
        pump_until(sim, lambda: sim.charger.outbox.pending() == [], timeout=30, what="the offline receipt's ack")
        balance = bureau.driver_get(driver, "W-1", "/v1/wallets/W-1").json()["balance_fen"]
        assert balance == 20_000 - r1.amount_fen - r2.amount_fen
        proof = bureau.driver_get(driver, "W-1", "/v1/receipts/GZ-TH-0002/2/proof").json()
        assert decode(bytes.fromhex(proof["receipt"]["envelope"]))[0].auth_ref == f"offline:{version}"

        # ---- online, an unknown card: denied, the contactor never closes ---------------------
        closures = sim.outputs.closures
        decided = sim.flow.decisions
        sim.tap(UNKNOWN)
        live(sim, lambda: sim.flow.decisions > decided, what="the unknown card's decision")
        assert sim.flow.last["decision"] == "reject" and sim.flow.last["reason"] == "unknown_card"
        assert sim.flow.last["method"] == 1  # decided online by the node, not by the list
        assert sim.ctl.error == "denied:unknown_card" and sim.ctl.auth is None
        sim.plug_in()
        sim.run(10_000)
        assert sim.outputs.closures == closures and not sim.outputs.closed
        assert sim.ctl.display_state() == "tap_card" and sim.charger.session is None
        assert sim.charger.outbox.pending() == []
        assert sim.flow.refused == 0 and sim.flow.released == 0
    finally:
        sim.close()
        bureau.close()


def test_a_forged_accept_does_not_start_charging(tmp_path, mosquitto):
    # The attacker holds a leaked authorization login of the broker, so it reads the charger's
    # auth topic and publishes on its reply topic, which the ACL otherwise forbids
    # (docs/broker.md): the charger must take only a reply its bureau signed for its request.
    bureau = TestBureau(tmp_path / "bureau", mosquitto)
    sim = ControllerSim(tmp_path / "flash", charger_id="GZ-TH-0003", tariff=TARIFF, start_time=_sim_start(),
                        signer=NaclSigner)
    requests: queue.Queue = queue.Queue()
    leaked_user, leaked_password = mosquitto.login("leaked.authz", "authz")
    attacker = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=leaked_user)
    attacker.username_pw_set(leaked_user, leaked_password)
    subscribed = threading.Event()
    attacker.on_message = lambda c, u, m: requests.put(json.loads(m.payload))
    attacker.on_subscribe = lambda *a: subscribed.set()
    try:
        sim.enable_authz(bureau.genesis)
        user, password = mosquitto.login("GZ-TH-0003")
        sim.attach_mqtt("127.0.0.1", mosquitto.port, username=user, password=password, reconnect_min_ms=50,
                        reconnect_max_ms=400)
        assert bureau.operator("enroll_charger", {"charger_id": "GZ-TH-0003",
                                                  "public_key": sim.charger.public_key().hex()})["status"] == "committed"
        pump_until(sim, lambda: sim.client.connected, what="the charger's connection")
        bureau.node.authz.stop()  # the node that answers is gone: only the attacker answers
        attacker.connect("127.0.0.1", mosquitto.port)
        attacker.loop_start()
        attacker.subscribe("ev/v1/charger/GZ-TH-0003/auth", qos=1)
        assert subscribed.wait(10)

        sim.tap(UNKNOWN)
        live(sim, lambda: not requests.empty(), what="the authorization request")
        req = requests.get()["req"]
        accept = {"type": "auth", "req": req, "decision": "accept", "wallet_id": "W-X", "authorized_fen": 50_000,
                  "auth_ref": "auth:0123456789abcdef", "reason": None, "detail": None, "method": "card",
                  "token": UNKNOWN, "expires": int(time.time()) + 3600}
        chain = bureau.genesis["chain_id"]
        forged = [{"v": 1, **accept},  # the old, unsigned format
                  wire.sign_auth_reply(accept, chain, "bureau-1", "GZ-TH-0003", SigningKey.generate()),
                  # the bureau's real signature, on a reply to another charger
                  wire.sign_auth_reply(accept, chain, "bureau-1", "GZ-TH-0002", bureau.node.key)]
        for msg in forged:
            attacker.publish("ev/v1/charger/GZ-TH-0003/reply", json.dumps(msg).encode(), qos=1).wait_for_publish(5)
        live(sim, lambda: sim.ctl.auth is not None or sum(sim.authz.refused_replies.values()) == len(forged),
             what="the forged replies")
        assert sim.ctl.auth is None and sim.flow.decisions == 0
        assert sim.authz.refused_replies == {"unsigned": 1, "bad_signature": 2}
        # no answer it can trust: the request runs into its timeout and the offline list decides
        live(sim, lambda: sim.flow.decisions == 1, what="the offline fallback")
        assert sim.flow.last["decision"] == "reject" and sim.flow.last["method"] == 2
        sim.plug_in()
        sim.run(10_000)
        assert sim.outputs.closures == 0 and not sim.outputs.closed and sim.charger.session is None
    finally:
        attacker.loop_stop()
        attacker.disconnect()
        sim.close()
        bureau.close()

