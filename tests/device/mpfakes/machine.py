# A fake of MicroPython's `machine` for the ESP32 application on the unix port: every part the
# firmware reads or drives is on the hardware bench (tests/device/bench.py), reached through
# benchlink. Pin levels and PWM duty are told to the bench; inputs, the ADC, UART frames and
# SPI transfers ask it. Only what board.py and the drivers use is here.
import time

import benchlink


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        self.id = id
        self.mode = mode
        self.level = None
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            if self.mode == Pin.IN:
                return int(benchlink.ask("pin? %d" % self.id))
            return self.level
        v = 1 if v else 0
        if v != self.level:
            self.level = v
            benchlink.tell("pin %d %d" % (self.id, v))
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class PWM:
    def __init__(self, pin, freq=1000, duty_u16=None):
        self.pin = pin
        self._freq = freq
        self._duty = None
        if duty_u16 is not None:
            self.duty_u16(duty_u16)

    def freq(self, f=None):
        if f is None:
            return self._freq
        self._freq = f

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        if not 0 <= d <= 65535:
            raise ValueError("duty_u16 out of range")
        if d != self._duty:
            self._duty = d
            benchlink.tell("pwm %d %d" % (self.pin.id, d))


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    _REFRESH_MS = 5  # one burst of read_uv() sees one bench answer

    def __init__(self, pin, *, atten=None):
        self.pin = pin
        self.reads = 0
        self._at = None
        self._pos = self._neg = 0
        self._high = 20

    def atten(self, a):
        pass

    def read_uv(self):
        """A sample at some phase of the pilot's PWM: 20 reads span one 1 kHz period."""
        now = time.ticks_ms()
        if self._at is None or time.ticks_diff(now, self._at) >= ADC._REFRESH_MS:
            self._at = now
            pos, neg, duty = benchlink.ask("adc? %d" % self.pin.id).split()
            self._pos = int(pos)
            self._neg = None if neg == "-" else int(neg)
            self._high = max(1, int(duty) * 20 // 65535)
        self.reads += 1
        if self._neg is None or self.reads % 20 < self._high:
            return self._pos * 1000
        return self._neg * 1000


class UART:
    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, *, tx=None, rx=None, rxbuf=256,
                 timeout=0, **kw):
        self.id = id
        self.rx = bytearray()
        benchlink.tell("uart %d %d %d %s %d" % (id, baudrate, bits, parity, stop))

    def write(self, data):
        reply = benchlink.ask("uart> %d %s" % (self.id, bytes(data).hex()))
        if reply:
            self.rx += bytes.fromhex(reply)
        return len(data)

    def flush(self):
        pass

    def txdone(self):
        return True

    def any(self):
        return len(self.rx)

    def readinto(self, buf, nbytes=None):
        n = min(len(buf) if nbytes is None else nbytes, len(self.rx))
        if n == 0:
            return None
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n


class SPI:
    def __init__(self, id, baudrate=1000000, *, polarity=0, phase=0, sck=None, mosi=None, miso=None, **kw):
        self.id = id

    def _transfer(self, out):
        return bytes.fromhex(benchlink.ask("spi> %d %s" % (self.id, bytes(out).hex())))

    def write(self, buf):
        self._transfer(buf)

    def read(self, n, write=0):
        return self._transfer(bytes((write,)) * n)

    def readinto(self, buf, write=0):
        buf[:] = self._transfer(bytes((write,)) * len(buf))

    def write_readinto(self, out, into):
        into[:] = self._transfer(out)


class I2C:
    """The OLED answers at its address and takes what is drawn (nothing of it reaches the bench)."""

    def __init__(self, id, *, scl=None, sda=None, freq=400000):
        self.id = id
        self.writes = 0

    def writeto(self, addr, buf, stop=True):
        self.writes += 1
        return len(buf)


class WDT:
    def __init__(self, id=0, timeout=5000):
        benchlink.tell("wdt %d" % timeout)

    def feed(self):
        benchlink.tell("feed")


def reset():
    raise SystemExit("machine.reset()")
