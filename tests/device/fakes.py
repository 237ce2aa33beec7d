"""Fake `machine`, `network` and `ntptime` modules for running firmware/device under CPython.

They record what the firmware does to the hardware (pin levels over time, PWM duty, UART
frames with the RS-485 direction pin's level while they were sent, I2C writes, watchdog feeds,
WiFi connect attempts) and play the hardware's part where the firmware reads: the pilot ADC
is driven by hwsim's PilotSim following the PWM the firmware sets; the UART is wired to a
simulated meter.
"""

from __future__ import annotations

import sys
import types


class Hardware:
    """Everything the fakes share: the pins by number, the devices created."""

    def __init__(self) -> None:
        self.pins: dict[int, "Pin"] = {}
        self.pwms: dict[int, "PWM"] = {}
        self.adcs: dict[int, "ADC"] = {}
        self.uarts: dict[int, "UART"] = {}
        self.spis: list = []
        self.i2cs: list = []
        self.wdts: list = []
        self.pilot_sim = None  # hwsim.pilot.PilotSim driving the ADC
        self.meter_sim = None  # hwsim meter answering on the UART
        self.ms = 0  # fake ticks_ms (driven by the tests)
        self.us = 0


HW = Hardware()


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        self.level = 0 if value is None else int(value)
        self.history = [self.level]
        if mode == Pin.IN and pull == Pin.PULL_UP:
            self.level = 1
        self.input_level = None  # what the outside world drives on an input
        HW.pins[id] = self

    def value(self, v=None):
        if v is None:
            if self.mode == Pin.IN and self.input_level is not None:
                return self.input_level
            return self.level
        self.level = int(bool(v))
        self.history.append(self.level)
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class PWM:
    def __init__(self, pin, freq=None, duty_u16=None):
        self.pin = pin
        self._freq = freq
        self._duty = duty_u16
        self.history = [duty_u16]
        HW.pwms[pin.id] = self

    def freq(self, f=None):
        if f is None:
            return self._freq
        self._freq = f

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        if not 0 <= d <= 65535:
            raise ValueError("duty_u16 out of range")
        self._duty = d
        self.history.append(d)


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3

    def __init__(self, pin, *, atten=None):
        self.pin = pin
        self._atten = atten
        self.reads = 0
        HW.adcs[pin.id] = self
        self.pwm_pin = None  # the PWM whose output this ADC senses through the pilot circuit

    def atten(self, a):
        self._atten = a

    def read_uv(self):
        """A sample at some phase of the pilot's PWM: 20 reads span one 1 kHz period."""
        self.reads += 1
        sim = HW.pilot_sim
        pwm = HW.pwms.get(self.pwm_pin) if self.pwm_pin is not None else None
        duty = pwm.duty_u16() if pwm is not None else 65535
        if duty == 65535:
            sim.set_evse("+12")
        elif duty == 0:
            sim.set_evse("-12")
        else:
            sim.set_evse("pwm")
        pos, neg = sim.read()
        phase = self.reads % 20
        high = phase < max(1, duty * 20 // 65535) or neg is None
        return (pos if high else neg) * 1000


class UART:
    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, *, tx=None, rx=None, rxbuf=256,
                 timeout=0, **kw):
        self.id = id
        self.config = dict(baudrate=baudrate, bits=bits, parity=parity, stop=stop, tx=tx, rx=rx, rxbuf=rxbuf,
                           timeout=timeout, **kw)
        self.rx = bytearray()
        self.sent: list[tuple[bytes, int | None]] = []  # (frame, DE level while it was written)
        self.de_pin = None
        self._tx_pending = False
        self.flushes = 0
        HW.uarts[id] = self

    def write(self, data):
        frame = bytes(data)
        de = HW.pins.get(self.de_pin).level if self.de_pin is not None else None
        self.sent.append((frame, de))
        self._tx_pending = True
        if HW.meter_sim is not None and de != 0:
            reply = HW.meter_sim.handle(frame)
            if reply:
                self.rx += reply
        return len(frame)

    def flush(self):
        self.flushes += 1
        self._tx_pending = False

    def txdone(self):
        return not self._tx_pending

    def any(self):
        return len(self.rx)

    def readinto(self, buf, nbytes=None):
        n = min(len(buf) if nbytes is None else nbytes, len(self.rx))
        if n == 0:
            return None
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n


class SPI:
    def __init__(self, id, baudrate=1000000, *, polarity=0, phase=0, sck=None, mosi=None, miso=None, **kw):
        self.id = id
        self.config = dict(baudrate=baudrate, polarity=polarity, phase=phase, sck=sck.id, mosi=mosi.id,
                           miso=miso.id)
        HW.spis.append(self)


class I2C:
    def __init__(self, id, *, scl=None, sda=None, freq=400000):
        self.id = id
        self.config = dict(scl=scl.id, sda=sda.id, freq=freq)
        self.writes: list[tuple[int, bytes]] = []
        self.present = {0x3C}
        HW.i2cs.append(self)

    def writeto(self, addr, buf, stop=True):
        if addr not in self.present:
            raise OSError(19, "ENODEV")
        self.writes.append((addr, bytes(buf)))
        return len(buf)


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0
        HW.wdts.append(self)

    def feed(self):
        self.feeds += 1


class WLAN:
    instances: list["WLAN"] = []

    def __init__(self, interface):
        self.interface = interface
        self._active = False
        self.connected = False
        self.connects: list[tuple[int, str]] = []  # (fake ms, ssid)
        self.disconnects = 0
        self.succeed_after: int | None = None  # connect attempts that fail before one works
        self._status = 1000
        WLAN.instances.append(self)

    def active(self, v=None):
        if v is None:
            return self._active
        self._active = bool(v)

    def connect(self, ssid, key=None):
        if not self._active:
            raise OSError("WLAN not active")
        self.connects.append((HW.ms, ssid))
        if self.succeed_after is not None and len(self.connects) > self.succeed_after:
            self.connected = True
            self._status = 1010
        else:
            self._status = 201  # no AP found

    def disconnect(self):
        self.disconnects += 1
        self.connected = False

    def isconnected(self):
        return self.connected

    def status(self, *a):
        return self._status


class Ntp:
    def __init__(self) -> None:
        self.host = "pool.ntp.org"
        self.calls = 0
        self.fail = False

    def settime(self):
        self.calls += 1
        if self.fail:
            raise OSError(110, "ETIMEDOUT")


def install() -> tuple[types.ModuleType, types.ModuleType, Ntp]:
    """Put fresh fakes into sys.modules; return (machine, network, ntptime)."""
    global HW
    HW = Hardware()
    machine = types.ModuleType("machine")
    for cls in (Pin, PWM, ADC, UART, SPI, I2C, WDT):
        setattr(machine, cls.__name__, cls)
    network = types.ModuleType("network")
    network.STA_IF = 0
    network.AP_IF = 1
    WLAN.instances = []
    network.WLAN = WLAN
    ntp = Ntp()
    ntptime = types.ModuleType("ntptime")
    ntptime.settime = ntp.settime
    ntptime.host = ntp.host
    ntptime.fake = ntp
    sys.modules["machine"] = machine
    sys.modules["network"] = network
    sys.modules["ntptime"] = ntptime
    return machine, network, ntp


def hardware() -> Hardware:
    return HW


DEVICE_MODULES = ("machine", "network", "ntptime", "board", "uart_transport", "app")


def uninstall() -> None:
    for name in DEVICE_MODULES:
        sys.modules.pop(name, None)
