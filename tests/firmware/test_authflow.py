"""firmware/lib/authflow.py with the simulated charge point (controller, meter, pilot, the RC522
driver on an emulated chip) and a scripted MQTT client standing in for the bureau: the paths
the integration test does not take - a phone start, an unused online hold given back, a late or
surplus accept released, a request without an answer falling back to the list, a request that
could not be sent, the card that started a session ending it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import authflow
from chargerhost.simcontroller import ControllerSim
from mqtt_codec import MQTTError
from mqtt_session import MESSAGE
from tests.support import bureau_replies

TARIFF = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "tariff.json").read_text())["tariff"]
CARD = "04A1B2C3D4E5F6"
GENESIS = bureau_replies.GENESIS


class ScriptedClient:
    def __init__(self):
        self.connected = True
        self.published = []
        self.subscribed = []
        self.inbox = []
        self.fail = None

    def publish(self, topic, payload, qos=0, retain=False):
        if self.fail:
            raise MQTTError(self.fail)
        self.published.append((topic, json.loads(payload)))
        return 1

    def subscribe(self, topic, qos=0):
        self.subscribed.append(topic)

    def poll(self, now=None, wait_ms=0):
        out, self.inbox = [(MESSAGE, t, p) for t, p in self.inbox], []
        return out


def make(tmp_path, **kw):
    sim = ControllerSim(tmp_path / "flash", charger_id="CP-1", tariff=TARIFF, start_time=int(time.time()), **kw)
    sim.enable_authz(GENESIS)
    client = ScriptedClient()
    sim.flow = authflow.AuthFlow(sim.authz, sim.charger, sim.ctl, client, lambda: sim.now_ms, sim.flow_log.append)
    sim.run(2000)
    return sim, client


def reply(sim, client, msg):
    """A message of the bureau on the reply topic: authorization replies signed as a node signs them."""
    if msg["type"] == "auth":
        payload = bureau_replies.auth_reply(sim.charger.charger_id, msg)
    else:
        payload = json.dumps(dict({"v": 1}, **msg)).encode()
    client.inbox.append((sim.authz.reply_topic, payload))
    sim.flow.client.poll()


def accept(req, ref="auth:00000000000000aa", fen=3000):
    return {"type": "auth", "req": req, "decision": "accept", "wallet_id": "W-1", "authorized_fen": fen,
            "auth_ref": ref, "reason": None, "detail": None}


def test_subscriptions_phone_start_and_an_unused_hold_given_back(tmp_path):
    sim, client = make(tmp_path)
    assert client.subscribed == ["ev/v1/bureau/authlist/#", "ev/v1/bureau/tariff"]
    reply(sim, client, {"type": "start", "token": "app:0123456789abcdef", "wallet_id": "W-1", "cap_fen": 3000})
    topic, req = client.published[-1]
    assert topic == "ev/v1/charger/CP-1/auth" and (req["method"], req["token"]) == ("app", "app:0123456789abcdef")
    assert sim.ctl.display_state() == "authorizing"
    reply(sim, client, accept(req["req"]))
    assert sim.ctl.auth == (3, "app:0123456789abcdef", "W-1", 3000, "auth:00000000000000aa")
    # the vehicle never comes: the controller drops the authorization, the flow releases the hold
    sim.run(sim.ctl.plug_timeout_ms + 2000)
    assert sim.ctl.error == "plug_timeout" and sim.flow.released == 1
    assert client.published[-1][1]["type"] == "release" and client.published[-1][1]["auth_ref"] == "auth:00000000000000aa"
    # a late accept (the request already decided) is released by authz itself
    reply(sim, client, accept("unknown-req", ref="auth:00000000000000bb"))
    assert client.published[-1][1] == dict(client.published[-1][1], type="release", auth_ref="auth:00000000000000bb")
    assert sim.outputs.closures == 0


def test_a_used_hold_is_kept_and_the_same_card_ends_its_session(tmp_path):
    sim, client = make(tmp_path)
    sim.tap(CARD)
    sim.run(200)
    req = client.published[-1][1]
    assert (req["method"], req["token"]) == ("card", CARD)
    reply(sim, client, accept(req["req"], fen=50_000))
    sim.plug_in()
    sim.run(60_000)
    assert sim.ctl.state == "charging"
    sim.tap("A1B2C3D4", tap_ms=300)  # another card: ignored while the session runs
    sim.run(2000)
    assert sim.ctl.state == "charging" and len(client.published) == 1
    sim.tap(CARD)
    sim.run(1000)
    assert sim.ctl.state == "finishing" and not sim.outputs.closed
    from bureau.receipts.codec import decode
    r = decode(sim.receipts()[0])[0]
    assert (r.stop_reason, r.auth_method, r.auth_ref) == ("L", 1, "auth:00000000000000aa")
    assert sim.flow.released == 0  # the receipt ends the hold at the bureau


def test_no_answer_or_no_send_falls_back_to_the_list(tmp_path):
    sim, client = make(tmp_path)
    sim.tap(CARD)
    sim.run(1000)
    assert sim.ctl.display_state() == "authorizing" and sim.flow.decisions == 0
    sim.run(5000)  # authz.ONLINE_TIMEOUT_MS without a reply
    assert sim.flow.last["method"] == 2 and sim.flow.last["reason"] == "no_list"
    assert sim.ctl.error == "denied:no_list"
    sim.run(2000)
    client.fail = "inflight_full"
    sim.tap(CARD)
    sim.run(300)
    assert sim.flow.decisions == 2 and sim.flow.last["reason"] == "no_list" and not sim.authz.pending
    client.fail = None
    client.connected = False  # offline: no request at all
    n = len(client.published)
    sim.run(2000)
    sim.tap(CARD)
    sim.run(300)
    assert sim.flow.decisions == 3 and len(client.published) == n
    # a reject from the node is final for the card (not a transient reason)
    client.connected = True
    sim.run(2000)
    sim.tap(CARD)
    sim.run(300)
    reply(sim, client, {"type": "auth", "req": client.published[-1][1]["req"], "decision": "reject",
                        "wallet_id": "W-1", "authorized_fen": 0, "auth_ref": None, "reason": "insufficient_balance",
                        "detail": "x"})
    assert sim.ctl.error == "denied:insufficient_balance" and sim.flow.last["method"] == 1
    assert sim.outputs.closures == 0
