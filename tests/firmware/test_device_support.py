"""The pure parts of the device application: wall clock and epoch conversion, millisecond
ticks, backoff, the watchdog heartbeat, the status / last will / enrollment messages,
first-boot provisioning, and the uplink (receipts, acks, status, enrollment, commands) over a
recording MQTT client. Clock conversion and ticks also run under real MicroPython."""

from __future__ import annotations

import calendar
import json
import random
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from tests.support import bureau_replies
from tests.support.signer import NaclSigner

import charger as fw_charger
import clock
import status
import supervisor
import uplink
from mqtt_codec import MQTTError
from mqtt_session import CONNECT_FAILED, CONNECTED_EVENT, DISCONNECTED_EVENT, MESSAGE, PUBLISHED
from mqtt_session import ticks_diff as session_ticks_diff
from chargerhost.simcontroller import ControllerSim
from tests.support.flashsim import CuttableFlash
from tests.support.micropython import run_micropython

TARIFF = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "tariff.json").read_text())["tariff"]


# ---------------------------------------------------------------- clock

def test_epoch_offset_is_the_unix_time_of_2000():
    assert clock.epoch_offset(2000) == calendar.timegm((2000, 1, 1, 0, 0, 0)) == 946_684_800
    assert clock.epoch_offset(1970) == 0
    with pytest.raises(ValueError):
        clock.epoch_offset(1980)


def test_clock_converts_esp32_time_and_tracks_sync():
    t = [calendar.timegm((2026, 11, 1, 0, 0, 0)) - 946_684_800]  # what an ESP32's time.time() says
    mono = [0]
    c = clock.Clock(lambda: t[0], clock.epoch_offset(2000), max_age_s=86400, mono_s_fn=lambda: mono[0])
    assert c.now() == 1_793_491_200
    assert not c.synced() and c.sync_age_s() is None
    c.mark_synced()
    assert c.synced() and c.syncs == 1
    mono[0] = 86400
    assert c.synced()
    mono[0] = 86401
    assert not c.synced()  # a day without NTP: readings are marked unsynced again
    c.mark_synced()
    t[0] = 3600  # an RTC that was never set (2000-01-01): never synced, whatever was called
    assert not c.synced()
    c.mark_unsynced()
    t[0] = 900_000_000
    assert not c.synced()
    forever = clock.Clock(lambda: 1_800_000_000.7)  # CPython float time, no aging
    forever.mark_synced()
    assert forever.now() == 1_800_000_000 and forever.synced() and forever.sync_age_s() == 0


def test_ticks_match_micropython_rule_and_the_mqtt_session():
    rng = random.Random(7)
    period = 1 << 30
    for _ in range(20000):
        a, b = rng.randrange(period), rng.randrange(period)
        want = ((a - b + (1 << 29)) % period) - (1 << 29)
        assert clock.ticks_diff(a, b) == want == session_ticks_diff(a, b)
        delta = rng.randrange(-(1 << 29) + 1, 1 << 29)
        assert clock.ticks_add(a, delta) == (a + delta) % period
    assert clock.ticks_diff(5, period - 5) == 10 and clock.ticks_add(period - 5, 10) == 5
    src = clock.ticks_source()
    assert 0 <= src() < period


def test_clock_and_ticks_under_micropython():
    out = run_micropython("""
import clock, time, micropython
assert clock.epoch_offset(time.gmtime(0)[0]) in (0, 946684800)
c = clock.Clock(lambda: 1793491200 - 946684800, clock.epoch_offset(2000))
print(c.now(), c.synced())
c.mark_synced()
print(c.synced())
a = (1 << 30) - 3
print(clock.ticks_diff(2, a), clock.ticks_add(a, 10), clock.ticks_diff(a, 2))
print(clock.ticks_diff(time.ticks_add(time.ticks_ms(), 1234), time.ticks_ms()) in (1233, 1234))
x, y, d = (1 << 30) - 1, 0, 0
micropython.heap_lock()
try:
    d = clock.ticks_diff(x, y) + clock.ticks_diff(y, x) + clock.ticks_add(x, 5)
finally:
    micropython.heap_unlock()
print(d)
""")
    assert out.split("\n")[:5] == ["1793491200 False", "True", "5 7 -5", "True", "4"]


# ---------------------------------------------------------------- supervisor

def test_backoff_doubles_to_the_cap_with_jitter_and_resets():
    b = supervisor.Backoff(1000, 10_000)
    assert [b.delay() for _ in range(6)] == [1000, 2000, 4000, 8000, 10_000, 10_000]
    assert b.failures == 6
    b.reset()
    assert b.delay() == 1000 and b.failures == 1
    rng = random.Random(1)
    j = supervisor.Backoff(1000, 64_000, lambda: rng.getrandbits(8))
    for nominal in (1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 64_000):
        d = j.delay()
        assert nominal // 2 <= d <= nominal
    with pytest.raises(ValueError):
        supervisor.Backoff(0, 10)
    with pytest.raises(ValueError):
        supervisor.Backoff(10, 5)


def test_heartbeat():
    h = supervisor.Heartbeat(3000)
    assert not h.alive(0)  # never beat
    h.beat((1 << 30) - 1000)
    assert h.alive(1500)  # across the ticks wrap
    assert not h.alive(2000)
    h.beat(2000)
    h.stop()
    assert not h.alive(2001)
    with pytest.raises(ValueError):
        supervisor.Heartbeat(0)


# ---------------------------------------------------------------- messages

def test_status_and_last_will_messages():
    msg = json.loads(status.status_message("GZ-1", "charging", 1_234_567, "fw-1", None, 1_793_491_200, True,
                                           812, 122))
    assert msg == {"v": 1, "charger_id": "GZ-1", "state": "charging", "online": True, "meter_wh": 1_234_567,
                   "firmware": "fw-1", "error": None, "time": 1_793_491_200, "time_synced": True,
                   "session": {"energy_wh": 812, "amount_fen": 122},
                   "refused": {"acks": {}, "rejects": {}, "auth_replies": {}}}
    shown = json.loads(status.status_message("GZ-1", "available", 1, "fw-1", refused_acks={"bad_signature": 2},
                                             refused_auth_replies={"unsigned": 1}, refused_rejects={"not_pending": 3}))
    assert shown["refused"] == {"acks": {"bad_signature": 2}, "rejects": {"not_pending": 3},
                                "auth_replies": {"unsigned": 1}}
    will = json.loads(status.offline_message("GZ-1", "fw-1"))
    assert will["v"] == 1 and will["state"] == "offline" and will["online"] is False and will["session"] is None
    topic, payload, qos, retain = uplink.will("GZ-1", "fw-1")
    assert topic == "ev/v1/charger/GZ-1/status" and qos == 1 and retain is True
    assert json.loads(payload) == will


def test_enrollment_message_and_commands():
    pk = SigningKey(b"\x07" * 32).verify_key.encode()
    msg = json.loads(status.enroll_message("GZ-1", pk, "SDM120-0042", "fw-1"))
    assert msg == {"v": 1, "charger_id": "GZ-1", "public_key": pk.hex(), "meter_serial": "SDM120-0042",
                   "firmware": "fw-1"}
    with pytest.raises(ValueError):
        status.enroll_message("GZ-1", b"\x00" * 31, "x", "fw")
    sid = "ab" * 16
    assert status.parse_command(json.dumps({"v": 1, "type": "stop", "session_id": sid})) == ("stop", sid)
    for bad in (b"{", b"[]", json.dumps({"v": 2, "type": "stop", "session_id": sid}),
                json.dumps({"v": 1, "type": "stop"}), json.dumps({"v": 1, "type": "reboot"}),
                json.dumps({"v": 1, "type": "stop", "session_id": "short"})):
        assert status.parse_command(bad) is None


def test_provisioning_announces_a_key_until_acknowledged_once():
    flash = CuttableFlash()
    pk = SigningKey(b"\x01" * 32).verify_key.encode()
    p = status.Provisioning(flash, "GZ-1", pk, "M-1", "fw-1")
    assert p.topic == "ev/v1/charger/GZ-1/enroll" and p.needed()
    p.published(7)
    assert not p.needed()  # in flight: the MQTT session re-sends it itself
    assert p.acked(8) is False and flash.read(status.ENROLL_FILE) is None
    assert p.acked(7) is True and flash.read(status.ENROLL_FILE) == pk.hex().encode()
    assert not status.Provisioning(flash, "GZ-1", pk, "M-1", "fw-1").needed()  # after reboot too
    other = SigningKey(b"\x02" * 32).verify_key.encode()
    assert status.Provisioning(flash, "GZ-1", other, "M-1", "fw-1").needed()  # a new key is announced


# ---------------------------------------------------------------- uplink over a recording client

class RecordingClient:
    """What Uplink needs of mqtt_client.MQTTClient, with the events scripted by the test."""

    def __init__(self):
        self.events = []
        self.published = []  # (topic, payload, qos, retain)
        self.subscribed = []
        self.connected = False
        self.next_id = 1
        self.inflight_limit = 100

    def subscribe(self, topic, qos=0):
        self.subscribed.append((topic, qos))

    def poll(self, now=None, wait_ms=0):
        out, self.events = self.events, []
        return out

    def publish(self, topic, payload, qos=0, retain=False):
        if len(self.published) >= self.inflight_limit:
            raise MQTTError("inflight_full", "test")
        self.published.append((topic, payload, qos, retain))
        pid = self.next_id
        self.next_id += 1
        return pid


def test_uplink_delivers_receipts_status_enrollment_and_commands(tmp_path):
    sim = ControllerSim(tmp_path / "flash", tariff=TARIFF, start_time=1_793_491_200, signer=NaclSigner,
                        wallets={"04A1B2C3": ("W-1", 100_000)}, genesis=bureau_replies.GENESIS)
    for _ in range(2):  # two finished sessions in the outbox
        sim.plug_in()
        sim.tap("04A1B2C3")
        sim.run(20_000)
        sim.unplug()
        sim.run(1000)
    assert sim.charger.outbox.pending() == [1, 2]
    client = RecordingClient()
    stops = []
    prov = status.Provisioning(sim.flash, sim.charger.charger_id, sim.charger.public_key(), "M", "fw-t")
    up = uplink.Uplink(client, sim.charger, sim.ctl, prov, sim.clock, "fw-t", on_stop=stops.append,
                       status_every_ms=30_000)
    assert ("ev/v1/charger/SIM-CP-1/reply", 1) in client.subscribed
    assert ("ev/v1/charger/SIM-CP-1/cmd", 1) in client.subscribed
    up.step(0)
    assert client.published == []  # not connected: nothing goes out
    client.connected = True
    client.events = [(CONNECTED_EVENT, False)]
    up.step(100)
    topics = [p[0] for p in client.published]
    assert topics == ["ev/v1/charger/SIM-CP-1/enroll", "ev/v1/charger/SIM-CP-1/status",
                      "ev/v1/charger/SIM-CP-1/receipt", "ev/v1/charger/SIM-CP-1/receipt"]
    enroll, st = client.published[0], client.published[1]
    assert enroll[2:] == (1, True) and json.loads(enroll[1])["public_key"] == sim.charger.public_key().hex()
    assert st[2:] == (1, True) and json.loads(st[1])["state"] == "available" and json.loads(st[1])["v"] == 1
    assert [p[1] for p in client.published[2:]] == sim.receipts()
    assert all(p[2] == 1 and p[3] is False for p in client.published[2:])
    # nothing new: no publish; the status again only after status_every_ms
    client.published.clear()
    up.step(5000)
    assert client.published == []
    up.step(20_200)  # unacknowledged for RESEND_MS: sent again
    assert [p[1] for p in client.published] == sim.receipts()
    client.published.clear()
    up.step(30_200)
    assert [p[0] for p in client.published] == ["ev/v1/charger/SIM-CP-1/status"]
    # PUBACK of the enrollment: remembered on flash
    client.events = [(PUBLISHED, 1)]
    up.step(30_300)
    assert not prov.needed()
    # the signed ack of receipt 1 removes it; an unsigned one for 2 is ignored and shown in the status;
    # garbage is ignored
    from outbox import receipt_id
    env1 = sim.charger.outbox.get(1)
    unsigned = json.dumps({"v": 1, "type": "ack", "seq": 2, "receipt": receipt_id(sim.charger.outbox.get(2))})
    client.events = [(MESSAGE, sim.charger.reply_topic, bureau_replies.ack("SIM-CP-1", 1, env1, height=3), 1, False,
                      False), (MESSAGE, sim.charger.reply_topic, unsigned.encode(), 1, False, False),
        (MESSAGE, sim.charger.reply_topic, b"garbage", 1, False, False)]
    up.step(30_400)
    assert sim.charger.outbox.pending() == [2] and up.acked == 1
    assert json.loads(up.status_payload())["refused"] == {"acks": {"unsigned": 1}, "rejects": {}, "auth_replies": {}}
    # a remote stop command reaches on_stop; an unknown one does not
    sid = "cd" * 16
    client.events = [(MESSAGE, "ev/v1/charger/SIM-CP-1/cmd", json.dumps({"v": 1, "type": "stop", "session_id": sid}),
                      1, False, False),
                     (MESSAGE, "ev/v1/charger/SIM-CP-1/cmd", json.dumps({"v": 1, "type": "dance"}), 1, False, False)]
    up.step(30_500)
    assert stops == [sid]
    # a lost connection, then a new one: what is still unacknowledged goes out again at once
    client.connected = False
    client.events = [(DISCONNECTED_EVENT, "ping_timeout")]
    up.step(31_000)
    assert not up.up and up.last_reason == "ping_timeout"
    client.events = [(CONNECT_FAILED, "connect_error:111")]
    up.step(32_000)
    client.published.clear()
    client.connected = True
    client.events = [(CONNECTED_EVENT, True)]
    up.step(33_000)
    assert [p[0].rsplit("/", 1)[1] for p in client.published] == ["status", "receipt"]
    assert client.published[1][1] == sim.charger.outbox.get(2) and up.connections == 2
    # a state change publishes the status at once
    client.published.clear()
    sim.plug_in()
    sim.run(500)
    up.step(34_000)
    assert [json.loads(p[1])["state"] for p in client.published] == ["tap_card"]
    # Charger.due sees a counter that does not wrap when the ticks do
    up2 = uplink.Uplink(RecordingClient(), sim.charger, sim.ctl, prov, sim.clock, "fw-t")
    up2.client.connected = True
    up2.client.events = [(CONNECTED_EVENT, False)]
    up2.step((1 << 30) - 5000)
    first = [p for p in up2.client.published if p[0].endswith("/receipt")]
    up2.client.published.clear()
    up2.step(10_000)  # 15 s later, across the wrap: not yet due again
    assert first and not [p for p in up2.client.published if p[0].endswith("/receipt")]
    up2.step(16_000)  # 21 s later: resent
    assert [p[1] for p in up2.client.published if p[0].endswith("/receipt")] == [p[1] for p in first]
    # a full in-flight window: the rest waits, no exception escapes
    client.published.clear()
    client.inflight_limit = 0
    client.events = [(CONNECTED_EVENT, False)]
    up.step(35_000)
    assert up.last_reason == "inflight_full"


def test_uplink_status_during_a_session(tmp_path):
    sim = ControllerSim(tmp_path / "flash", tariff=TARIFF, start_time=1_793_491_200, signer=NaclSigner,
                        wallets={"04A1B2C3": ("W-1", 100_000)})
    sim.plug_in()
    sim.tap("04A1B2C3")
    sim.run(60_000)
    client = RecordingClient()
    prov = status.Provisioning(sim.flash, sim.charger.charger_id, sim.charger.public_key(), "M", "fw-t")
    up = uplink.Uplink(client, sim.charger, sim.ctl, prov, sim.clock, "fw-t")
    msg = json.loads(up.status_payload())
    assert msg["state"] == "charging" and msg["session"]["energy_wh"] == sim.ctl.energy_wh() > 0
    assert msg["session"]["amount_fen"] == sim.ctl.cost_fen() and msg["meter_wh"] == sim.watch.last_wh
    assert msg["time"] == sim.clock.now() and msg["time_synced"] is True and msg["firmware"] == "fw-t"
    assert fw_charger.RESEND_MS > 0
