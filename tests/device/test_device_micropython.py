"""firmware/device (board.py, uart_transport.py, app.py) under real MicroPython with fake
`machine`, `network`, `ntptime` and `socket` modules: the application boots, a session runs
through the pins (pilot ADC and PWM, relay and aux contact, the meter over the UART with its
direction pin), and a control round - pilot burst, controller, contactor feedback, stop
button, heartbeat - allocates nothing (the heap is locked while it runs)."""

from __future__ import annotations

import json
from pathlib import Path

from chargerhost import DEVICE_DIR, LIB_DIRS
from tests.support.micropython import run_micropython

ROOT = Path(__file__).resolve().parents[2]
BOARD = (ROOT / "hardware" / "board" / "esp32_devkitc.json").read_text()
REGMAP = (ROOT / "hardware" / "meters" / "eastron_sdm120.json").read_text()
TARIFF = json.loads((ROOT / "tests" / "vectors" / "tariff.json").read_text())["tariff"]

SCRIPT = r"""
import sys, json, struct, hashlib, time, micropython, gc
import modbus_rtu

class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 2
    PULL_DOWN = 1
    pins = {}
    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.level = 0 if value is None else value
        self.follow = None  # an input that reads another pin (the aux contact follows the relay)
        if mode == Pin.IN and pull == Pin.PULL_UP:
            self.level = 1
        Pin.pins[id] = self
    def value(self, v=None):
        if v is None:
            if self.follow is not None:
                return 0 if self.follow.level else 1
            return self.level
        self.level = 1 if v else 0

class PWM:
    last = None
    def __init__(self, pin, freq=None, duty_u16=None):
        self.f = freq
        self.d = duty_u16
        PWM.last = self
    def duty_u16(self, d=None):
        if d is None:
            return self.d
        self.d = d

class ADC:
    ATTN_11DB = 3
    def __init__(self, pin):
        self.vals = (0,)
        self.i = 0
    def atten(self, a):
        pass
    def read_uv(self):
        self.i += 1
        if self.i >= len(self.vals):
            self.i = 0
        return self.vals[self.i]

class UART:
    def __init__(self, id, **kw):
        self.rx = bytearray(64)
        self.n = 0
        self.kwh = 1500.0
        self.frames = 0
    def write(self, data):
        self.frames += 1
        assert Pin.pins[4].level == 1  # the RS-485 driver is on while we send
        req = bytes(data)
        body = bytes((req[0], req[1], 4)) + struct.pack(">f", self.kwh)
        crc = modbus_rtu.crc16(body)
        reply = body + bytes((crc & 0xFF, crc >> 8))
        self.rx[:len(reply)] = reply
        self.n = len(reply)
        return len(req)
    def flush(self):
        pass
    def txdone(self):
        return True
    def any(self):
        return self.n
    def readinto(self, buf, nbytes=None):
        k = min(len(buf), self.n)
        buf[:k] = self.rx[:k]
        self.rx[:self.n - k] = self.rx[k:self.n]
        self.n -= k
        return k

class I2C:
    def __init__(self, id, **kw):
        pass
    def writeto(self, addr, buf, stop=True):
        raise OSError(19)  # no display fitted: LEDs

class SPI:
    def __init__(self, *a, **kw):
        pass

class WDT:
    def __init__(self, id=0, timeout=0):
        self.feeds = 0
    def feed(self):
        self.feeds += 1

class Namespace:
    pass

machine = Namespace()
machine.Pin, machine.PWM, machine.ADC, machine.UART, machine.I2C, machine.SPI, machine.WDT = Pin, PWM, ADC, UART, I2C, SPI, WDT
network = Namespace()
network.STA_IF = 0
class WLAN:
    def __init__(self, i):
        self.on = False
    def active(self, v=None):
        self.on = v
    def isconnected(self):
        return False
    def connect(self, ssid, key):
        pass
    def disconnect(self):
        pass
    def status(self):
        return 201
network.WLAN = WLAN
ntptime = Namespace()
ntptime.host = ""
def settime():
    raise OSError(110)
ntptime.settime = settime
fsock = Namespace()
fsock.SOCK_STREAM = 1
def getaddrinfo(host, port, af=0, kind=0):
    return [(2, 1, 0, "", (host, port))]
def no_socket(*a):
    raise OSError(111)
fsock.getaddrinfo = getaddrinfo
fsock.socket = no_socket
sys.modules["machine"] = machine
sys.modules["network"] = network
sys.modules["ntptime"] = ntptime

import app as app_mod
import board, pilot

_rng = [hashlib.sha256(b"device").digest()]
def urandom(n):
    _rng[0] = hashlib.sha256(_rng[0]).digest()
    return _rng[0][:n]

cfg = {"charger_id": "MP-DEV-1", "meter_serial": "SDM120-7", "wifi": {"ssid": "x", "password": "y"},
       "mqtt": {"host": "10.0.0.9", "port": 1883}, "max_current_ma": 16000, "tariff": json.loads(TARIFF_JSON)}
app = app_mod.App(cfg, json.loads(REGMAP_JSON), board.Board(json.loads(BOARD_JSON)), flash_root="/data",
               ticks_ms=time.ticks_ms, urandom=urandom, socket_mod=fsock)
adc = app.pilot_hw.adc
relay = Pin.pins[26]
Pin.pins[27].follow = relay
cal = app.ctl.monitor.calibration

def level(cp_mv):
    return cal.adc_mv(cp_mv) * 1000

def vehicle(pos_cp_mv):
    # 64 samples over ~3 PWM periods: high for the duty, then the negative plateau
    vals = []
    for i in range(64):
        vals.append(level(pos_cp_mv) if (i % 20) < 6 else level(-12000))
    adc.vals = tuple(vals)

t = [1000]
def rounds(n):
    for _ in range(n):
        t[0] += 25
        app.control_step(t[0])

vehicle(9000)
rounds(10)
print("STATE1", app.ctl.display_state(), PWM.last.d)
app.ctl.authorize(1, "04A1B2C3", "W-1001", 100000, "auth-1", t[0])
print("DUTY", PWM.last.d, pilot.duty_u16(16000))
vehicle(6000)
rounds(10)
print("STATE2", app.ctl.state, relay.level, app.uart if hasattr(app, "uart") else "")

# a control round between meter ticks allocates nothing
app._next_meter = t[0] + 100000000
gc.collect()
start = t[0]
micropython.heap_lock()
try:
    for _ in range(300):
        t[0] += 25
        app.control_step(t[0])
finally:
    micropython.heap_unlock()
print("LOCKED_OK", app.ctl.state, relay.level)

# meter ticks: 2 kWh more, then the stop button
app._next_meter = t[0]
uart = app.transport.uart
for k in range(5):
    uart.kwh += 0.4
    rounds(40)
Pin.pins[33].level = 0
rounds(4)
Pin.pins[33].level = 1
rounds(4)
print("STATE3", app.ctl.state, relay.level, PWM.last.d)
seqs = app.charger.outbox.pending()
import receipt
r = receipt.decode_envelope(app.charger.outbox.get(seqs[0]))[0]
print("RECEIPT", r["stop_reason"], r["meter_start_wh"], r["meter_end_wh"], r["meter_serial"], uart.frames > 3)
wdt = app.hw.watchdog()
app.wdt = wdt
print("WDT", app.watchdog_step(t[0]), wdt.feeds)
print("device ok")
"""


def test_device_app_under_micropython():
    script = ("TARIFF_JSON = %r\nREGMAP_JSON = %r\nBOARD_JSON = %r\n" % (json.dumps(TARIFF), REGMAP, BOARD)) + SCRIPT
    out = run_micropython(script, lib_dirs=[*LIB_DIRS, DEVICE_DIR])
    got = {line.split(" ", 1)[0]: line.split(" ", 1)[1] if " " in line else "" for line in out.splitlines()}
    assert "ok" in got.get("device", ""), out
    assert got["STATE1"] == "tap_card 65535"
    duty, expect = got["DUTY"].split()
    assert duty == expect
    assert got["STATE2"].split()[:2] == ["charging", "1"]
    assert got["LOCKED_OK"] == "charging 1"
    assert got["STATE3"] == "finishing 0 65535"
    stop, start_wh, end_wh, serial, talked = got["RECEIPT"].split()
    assert stop == "L" and int(end_wh) - int(start_wh) == 2000 and serial == "SDM120-7" and talked == "True"
    assert got["WDT"] == "True 1"
