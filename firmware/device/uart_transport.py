# The meter drivers' transport (see meter.py) over a machine.UART and an RS-485 transceiver
# (MAX3485 class: DE and /RE tied together on one GPIO, high = transmit).
#
#     write(data)            drive the line, send, wait until the last stop bit has left the
#                            shift register, release the line (so the meter's reply, which may
#                            start 3.5 characters later, is not lost to our own driver)
#     read(n, timeout_ms)    at most n bytes, fewer only when timeout_ms ran out; read(n, 0)
#                            returns what is already waiting. The result is a memoryview of a
#                            buffer allocated once, valid until the next read.
#
# While it waits for bytes it calls `idle()` (when set), which the device uses to keep sampling
# the control pilot during a meter exchange, so that a fault or an unplug opens the contactor
# within the pilot period even while the meter takes its time to answer.
import time

from clock import ticks_diff, ticks_source

_TICKS_MS = ticks_source()
try:
    from time import sleep_ms as _SLEEP_MS, ticks_us as _TICKS_US
except ImportError:  # CPython (host tests)
    def _TICKS_US():
        return int(time.monotonic() * 1000000) & 0x3FFFFFFF

    def _SLEEP_MS(ms):
        time.sleep(ms / 1000)


class UartTimeout(OSError):
    pass


class UartTransport:
    def __init__(self, uart, de=None, baud=9600, bits=8, parity=None, stop=1, rx_size=256, idle=None,
                 ticks_ms=None, ticks_us=None, sleep_ms=None):
        self.uart = uart
        self.de = de
        self.idle = idle
        self.char_us = (1 + bits + (0 if parity is None else 1) + stop) * 1000000 // baud + 1
        self._buf = bytearray(rx_size)
        self._mv = memoryview(self._buf)
        self._ticks_ms = ticks_ms or _TICKS_MS
        self._ticks_us = ticks_us or _TICKS_US
        self._sleep_ms = sleep_ms or _SLEEP_MS
        if de is not None:
            de.value(0)  # listen

    def write(self, data):
        n = len(data)
        de = self.de
        if de is not None:
            de.value(1)
        try:
            self.uart.write(data)
            self._drain(n)
        finally:
            if de is not None:
                de.value(0)
        return n

    def _drain(self, n):
        """Wait until the UART has shifted out every bit of the last n bytes."""
        u = self.uart
        flush = getattr(u, "flush", None)
        if flush is not None:
            flush()  # MicroPython >= 1.20: waits until all data has been sent
        limit_us = (n + 2) * self.char_us + 2000
        start = self._ticks_us()
        while not u.txdone():
            if ticks_diff(self._ticks_us(), start) > limit_us:
                raise UartTimeout("RS-485 transmit did not finish")

    def read(self, n, timeout_ms):
        if n > len(self._buf):
            n = len(self._buf)
        u = self.uart
        got = 0
        start = self._ticks_ms()
        while got < n:
            k = u.any()
            if k:
                if k > n - got:
                    k = n - got
                r = u.readinto(self._mv[got:got + k])
                if r:
                    got += r
                continue
            if timeout_ms <= 0 or ticks_diff(self._ticks_ms(), start) >= timeout_ms:
                break
            if self.idle is not None:
                self.idle()
            else:
                self._sleep_ms(1)
        return self._mv[:got]
