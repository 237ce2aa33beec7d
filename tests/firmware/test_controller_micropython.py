"""The controller under real MicroPython (the WebAssembly port): a whole session with the
firmware's own Ed25519 signer and receipt decoder, millisecond ticks that wrap at 2**30, and
proof that a pilot sample allocates nothing (the heap is locked while samples are fed)."""

from __future__ import annotations

import json
from pathlib import Path

from nacl.signing import VerifyKey

from bureau.receipts.codec import decode, signed_message
from tests.support.micropython import run_micropython

TARIFF = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "tariff.json").read_text())["tariff"]

SCRIPT = r"""
import json, binascii, hashlib, micropython
import charger, controller, ed25519, meter, pilot, receipt

class MemFlash:
    def __init__(self):
        self.files = {}
    def mkdir(self, name):
        pass
    def read(self, name):
        return self.files.get(name)
    def write_atomic(self, name, data):
        self.files[name] = bytes(data)
        LOG.append(("write", name))
    def remove(self, name):
        self.files.pop(name, None)
    def rename(self, old, new):
        self.files[new] = self.files.pop(old)
    def listdir(self, name):
        p = name + "/"
        return [k[len(p):] for k in self.files if k.startswith(p)]

class Meter:
    def __init__(self):
        self.wh = 1500000
        self.fail = 0
    def read_wh(self):
        if self.fail:
            raise meter.MeterError("no_reply")
        return self.wh
    def read_serial(self):
        return None

class Clock:
    def __init__(self):
        self.t = 1793491200
    def now(self):
        return self.t
    def synced(self):
        return True

class Out:
    def pilot(self, duty):
        LOG.append(("pilot", duty))
    def contactor(self, closed):
        LOG.append(("contactor", closed))

_rng = [hashlib.sha256(b"mp seed").digest()]
def urandom(n):
    _rng[0] = hashlib.sha256(_rng[0]).digest()
    return _rng[0][:n]

LOG = []
TARIFF = json.loads(TARIFF_JSON)
m = Meter()
clock = Clock()
watch = meter.MeterWatch(lost_after=charger.LOST_AFTER)
wm = controller.WatchedMeter(m, watch)
ch = charger.Charger("MP-CP-1", MemFlash(), wm, clock, ed25519, urandom, "fw-mp", "MTR-MP", default_tariff=TARIFF)
ch.boot()
mon = pilot.PilotMonitor(debounce=3)
ctl = controller.Controller(ch, mon, watch, wm, Out(), current_ma=16000)
cal = mon.calibration
A, B, C = cal.adc_mv(12000), cal.adc_mv(9000), cal.adc_mv(6000)
NEG = cal.adc_mv(-12000)
now = (1 << 30) - 700  # ticks wrap during the session

def feed(pos, n):
    global now
    for _ in range(n):
        now = (now + 25) & 0x3FFFFFFF
        ctl.pilot(pos, NEG, now)

def seconds(n, watts):
    global now
    for _ in range(n):
        for _ in range(40):
            now = (now + 25) & 0x3FFFFFFF
            ctl.pilot(C, NEG, now)
        clock.t += 1
        m.wh += watts // 3600
        ctl.meter_tick(now)

feed(A, 5)
ctl.meter_tick(now)
assert ctl.state == "available", ctl.state
feed(B, 5)
assert ctl.display_state() == "tap_card"
ctl.authorize(receipt.AUTH_CARD_ONLINE, "04A1B2C3", "W-1001", 100000, "auth-77", now)
assert ctl.pwm_on and ctl.duty == pilot.duty_u16(16000)
feed(C, 3)
assert ctl.state == "charging" and ctl.closed, ctl.state

# allocation-free pilot path: the heap is locked while a charging vehicle is sampled
import gc
def locked_samples(pos, n):
    # every name exists before the heap is locked: a MemoryError means the sample path allocated
    global now
    t = now
    gc.collect()
    micropython.heap_lock()
    try:
        for _ in range(n):
            # t + 25 may pass 2**30 - 1, which is no small int any more: wrap without it
            t = t + 25 if t < 0x3FFFFFE7 else t - 0x3FFFFFE7
            ctl.pilot(pos, NEG, t)
    finally:
        micropython.heap_unlock()
    now = t

locked_samples(C, 2000)
assert ctl.state == "charging"

seconds(120, 7200)  # 7.2 kW: 2 Wh a second
print("ENERGY", ctl.energy_wh(), ctl.cost_fen(), ctl.remaining_fen())
feed(A, 2)
assert ctl.closed  # debounce: two samples are not enough
feed(A, 1)
assert not ctl.closed and ctl.state == "available"
pending = ch.outbox.pending()
assert pending == [1], pending
env = ch.outbox.get(1)
r, body = receipt.decode_envelope(env)[:2]
assert r["stop_reason"] == "U" and r["meter_start_wh"] == 1500000 and r["meter_end_wh"] == 1500240, r
assert ed25519.verify(ch.public_key(), receipt.signed_message(body), env[-64:])
i_open = LOG.index(("contactor", False), LOG.index(("contactor", True)))
i_write = LOG.index(("write", "outbox/0000000001"))
assert i_open < i_write
print("ENV", binascii.hexlify(env).decode())
print("PUB", binascii.hexlify(ch.public_key()).decode())

# idle, no vehicle: sampling allocates nothing either
feed(A, 10)
locked_samples(A, 2000)
assert ctl.state == "available"

# a diode fault mid-session under MicroPython
feed(B, 5)
ctl.authorize(receipt.AUTH_CARD_ONLINE, "04A1B2C3", "W-1001", 100000, "auth-78", now)
feed(C, 3)
assert ctl.closed
seconds(10, 3600)
for _ in range(3):
    now = (now + 25) & 0x3FFFFFFF
    ctl.pilot(C, C, now)  # the negative plateau is gone
assert not ctl.closed and ctl.state == "faulted" and ctl.error == "diode_fault"
r2 = receipt.decode_envelope(ch.outbox.get(2))[0]
assert r2["stop_reason"] == "F" and r2["meter_end_wh"] - r2["meter_start_wh"] == 10
print("micropython controller ok")
"""


def test_controller_session_under_micropython():
    script = "TARIFF_JSON = " + repr(json.dumps(TARIFF)) + "\n" + SCRIPT
    out = run_micropython(script)
    assert "micropython controller ok" in out, out
    lines = dict(line.split(" ", 1) for line in out.splitlines() if line[:3] in ("ENV", "PUB", "ENE"))
    energy, cost, remaining = (int(x) for x in lines["ENERGY"].split())
    assert energy == 240 and cost + remaining == 100_000
    # the envelope signed by the firmware's own Ed25519 under MicroPython verifies with PyNaCl
    # and decodes with the backend's codec
    env = bytes.fromhex(lines["ENV"])
    r, body, sig = decode(env)
    VerifyKey(bytes.fromhex(lines["PUB"])).verify(signed_message(body), sig)
    assert r.stop_reason == "U" and r.energy_wh == 240 and r.charger_id == "MP-CP-1"
    assert r.amount_fen == cost and r.periods == ((2, 240),)
