"""Simulated energy meters for host tests, demos and a technician's desk.

- `EnergyCounter`: the meter's energy register, advancing by a power setting, either by hand
  (`advance(seconds)`) or with a clock.
- `ModbusMeterSim`: a Modbus RTU meter built from a register map (`hardware/meters/*.json`).
  Requests are decoded and replies encoded with pymodbus (its RTU framer and PDU classes), so
  the firmware's own codec is checked against an independent implementation end to end.
- `Dlt645MeterSim`: a DL/T 645-2007 meter (read data 0x11, replies 0x91 / error 0xD1), written
  here independently of `firmware/lib/dlt645.py` for the same reason.
- Faults on both: no reply, corrupted reply (bad CRC / checksum), exception / error reply, a
  frozen register, and a rollback of the register.
- Reaching a simulator: `LoopbackTransport(sim)` in process (the `write`/`read(n, timeout_ms)`
  transport the firmware drivers take), or `PtyMeterServer(sim)` behind a pseudo-terminal served
  by a thread, opened with `SerialTransport(port)` (pyserial) like a USB RS-485 adapter.
"""

from __future__ import annotations

import os
import select
import struct
import threading
import time
import tty
from collections import deque

import serial
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

FAULT_NO_REPLY = "no_reply"
FAULT_CORRUPT = "corrupt"  # reply with a wrong CRC (Modbus) or checksum (DL/T 645)
FAULT_ERROR = "error"  # exception response (Modbus) / error reply 0xD1 (DL/T 645)
FAULT_FROZEN = "frozen"  # the energy register stops moving while energy flows
FAULTS = (FAULT_NO_REPLY, FAULT_CORRUPT, FAULT_ERROR, FAULT_FROZEN)


def _as_int(value):
    if isinstance(value, str):
        return int(value, 0)
    return int(value)


class EnergyCounter:
    """An energy register in Wh (kept as a float internally, read as whole Wh or kWh).

    With `clock` (a callable returning seconds, e.g. time.monotonic) energy accrues in real
    time at `power_w`; without, only `advance()` moves it."""

    def __init__(self, wh: float = 0.0, power_w: float = 0.0, clock=None):
        self._wh = float(wh)
        self.power_w = float(power_w)
        self._clock = clock
        self._last = clock() if clock else None
        self._lock = threading.Lock()

    def _accrue(self) -> None:
        if self._clock is not None:
            now = self._clock()
            self._wh += self.power_w * (now - self._last) / 3600.0
            self._last = now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._accrue()
            self._wh += self.power_w * seconds / 3600.0

    def set_power(self, power_w: float) -> None:
        with self._lock:
            self._accrue()
            self.power_w = float(power_w)

    def set_wh(self, wh: float) -> None:
        with self._lock:
            self._accrue()
            self._wh = float(wh)

    @property
    def wh(self) -> float:
        with self._lock:
            self._accrue()
            return self._wh


class _FaultyMeter:
    """Fault injection and the register value a meter reports."""

    def __init__(self, counter: EnergyCounter | None):
        self.counter = counter if counter is not None else EnergyCounter()
        self._faults: dict[str, int | None] = {}
        self._frozen_wh: float | None = None
        self.error_code = 0x04
        self.requests = 0  # requests addressed to this meter
        self.replies = 0
        self._lock = threading.Lock()

    def inject(self, fault: str, count: int | None = None, code: int | None = None) -> None:
        """Turn a fault on, for the next `count` requests or (None) until cleared. For
        FAULT_ERROR, `code` is the Modbus exception code / DL/T 645 error status byte."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        with self._lock:
            self._faults[fault] = count
            if code is not None:
                self.error_code = code
            if fault == FAULT_FROZEN:
                self._frozen_wh = self.counter.wh

    def clear(self, fault: str | None = None) -> None:
        with self._lock:
            if fault is None:
                self._faults.clear()
            else:
                self._faults.pop(fault, None)
            if FAULT_FROZEN not in self._faults:
                self._frozen_wh = None

    def rollback(self, wh: float) -> None:
        """Make the register drop by `wh` (as a faulty or swapped meter would)."""
        self.counter.set_wh(self.counter.wh - wh)
        if self._frozen_wh is not None:
            self._frozen_wh -= wh

    def _take(self, fault: str) -> bool:
        with self._lock:
            if fault not in self._faults:
                return False
            left = self._faults[fault]
            if left is not None:
                if left <= 1:
                    del self._faults[fault]
                    if fault == FAULT_FROZEN:
                        self._frozen_wh = None
                else:
                    self._faults[fault] = left - 1
            return True

    def energy_wh(self) -> float:
        """The value the register shows now."""
        if self._take(FAULT_FROZEN) and self._frozen_wh is not None:
            return self._frozen_wh
        return self.counter.wh


class ModbusMeterSim(_FaultyMeter):
    """A Modbus RTU energy meter answering 0x03 / 0x04 from a register map."""

    def __init__(self, regmap: dict, unit_id: int | None = None, counter: EnergyCounter | None = None,
                 serial_number: int = 12345678, export_wh: float = 0.0):
        super().__init__(counter)
        if regmap.get("protocol") != "modbus_rtu":
            raise ValueError("not a Modbus register map")
        self.regmap = regmap
        self.unit_id = unit_id if unit_id is not None else regmap.get("unit_id", 1)
        self.serial_number = serial_number
        self.export_wh = export_wh
        self._framer = FramerRTU(DecodePDU(is_server=True))

    # -- register contents -------------------------------------------------------------
    def _value_words(self, spec: dict, value: float) -> list[int]:
        unit_wh = {"Wh": 1, "0.01kWh": 10, "0.1kWh": 100, "kWh": 1000}[spec.get("unit", "kWh")]
        if spec.get("type", "float32") == "float32":
            raw = struct.pack(">f", value / unit_wh)
        else:
            raw = struct.pack(">I", int(value // unit_wh) & 0xFFFFFFFF)
        hi, lo = struct.unpack(">HH", raw)
        return [lo, hi] if spec.get("word_order", "big") == "little" else [hi, lo]

    def register_table(self, function: int) -> dict[int, int]:
        """Register address -> 16-bit value for one function code, as the meter shows now."""
        table: dict[int, int] = {}
        for name, spec in self.regmap["registers"].items():
            if _as_int(spec["function"]) != function:
                continue
            if name == "import_energy":
                words = self._value_words(spec, self.energy_wh())
            elif name == "export_energy":
                words = self._value_words(spec, self.export_wh)
            elif name == "serial_number":
                words = [(self.serial_number >> 16) & 0xFFFF, self.serial_number & 0xFFFF]
                if spec.get("word_order", "big") == "little":
                    words.reverse()
            else:
                continue
            base = _as_int(spec["address"])
            for i, w in enumerate(words):
                table[base + i] = w
        return table

    # -- wire ------------------------------------------------------------------------------
    @staticmethod
    def frame_length(buf: bytes) -> int:
        """For a byte stream: >0 a complete request of that length is at the front, 0 wait."""
        if len(buf) < 2:
            return 0
        fc = buf[1]
        if fc in (1, 2, 3, 4, 5, 6):
            need = 8
        elif fc in (15, 16):
            if len(buf) < 7:
                return 0
            need = 9 + buf[6]
        else:
            return 0  # unknown: the line's silence ends it
        return need if len(buf) >= need else 0

    @staticmethod
    def frame_ok(frame: bytes) -> bool:
        """The frame's CRC is right (for resynchronising on a stream)."""
        return len(frame) >= 4 and FramerRTU.check_CRC(frame[:-2], int.from_bytes(frame[-2:], "big"))

    def handle(self, frame: bytes) -> bytes | None:
        """The reply to one request frame, or None when the meter stays silent."""
        _, pdu = self._framer.handleFrame(bytes(frame), 0, 0)
        if pdu is None:  # bad CRC or undecodable: a meter ignores it
            return None
        if pdu.dev_id != self.unit_id:
            return None
        self.requests += 1
        if self._take(FAULT_NO_REPLY):
            return None
        fc = pdu.function_code
        if self._take(FAULT_ERROR):
            reply = ExceptionResponse(fc, self.error_code, device_id=self.unit_id)
        elif fc not in (3, 4):
            reply = ExceptionResponse(fc, 0x01, device_id=self.unit_id)
        else:
            table = self.register_table(fc)
            wanted = range(pdu.address, pdu.address + pdu.count)
            if any(a not in table for a in wanted):
                reply = ExceptionResponse(fc, 0x02, device_id=self.unit_id)
            else:
                cls = ReadHoldingRegistersResponse if fc == 3 else ReadInputRegistersResponse
                reply = cls(registers=[table[a] for a in wanted], dev_id=self.unit_id)
        out = bytearray(self._framer.buildFrame(reply))
        if self._take(FAULT_CORRUPT):
            out[-1] ^= 0x5A
        self.replies += 1
        return bytes(out)


# -- DL/T 645-2007, independent of the firmware codec -------------------------------------

def _bcd(n: int, nbytes: int) -> bytes:
    """n as BCD, low byte first."""
    digits = f"{n:0{2 * nbytes}d}"
    if len(digits) > 2 * nbytes:
        raise ValueError("value does not fit")
    return bytes(int(digits[i:i + 2], 16) for i in range(0, 2 * nbytes, 2))[::-1]


class Dlt645MeterSim(_FaultyMeter):
    """A DL/T 645-2007 meter answering read-data requests for energy identifiers."""

    FORWARD = 0x00010000
    COMBINED = 0x00000000
    REVERSE = 0x00020000

    def __init__(self, address: str = "123456789012", counter: EnergyCounter | None = None,
                 reverse_wh: float = 0.0, preamble: int = 4):
        super().__init__(counter)
        if len(address) != 12 or not address.isdigit():
            raise ValueError("meter address must be 12 digits")
        self.address = address
        self.reverse_wh = reverse_wh
        self.preamble = preamble
        self.error_code = 0x02  # no requested data

    @property
    def wire_address(self) -> bytes:
        return bytes.fromhex(self.address)[::-1]

    @staticmethod
    def frame_length(buf: bytes) -> int:
        """For a byte stream: >0 a complete frame (with its FE prefix) of that length is at the
        front, 0 wait for more, <0 discard that many bytes of garbage."""
        p = 0
        while p < len(buf) and buf[p] == 0xFE:
            p += 1
        if p == len(buf):
            return 0
        if buf[p] != 0x68:
            return -(p + 1)
        if len(buf) >= p + 8 and buf[p + 7] != 0x68:
            return -(p + 1)  # no second 68: this 68 was noise
        if len(buf) < p + 10:
            return 0
        if buf[p + 9] > 200:
            return -(p + 1)
        need = p + 12 + buf[p + 9]
        return need if len(buf) >= need else 0

    @staticmethod
    def frame_ok(frame: bytes) -> bool:
        """The frame's checksum and end byte are right (for resynchronising on a stream)."""
        raw = bytes(frame).lstrip(b"\xfe")
        return len(raw) >= 12 and raw[-1] == 0x16 and sum(raw[:-2]) & 0xFF == raw[-2]

    def _frame(self, control: int, data: bytes) -> bytes:
        body = bytes([0x68]) + self.wire_address + bytes([0x68, control, len(data)])
        body += bytes((b + 0x33) & 0xFF for b in data)
        return b"\xfe" * self.preamble + body + bytes([sum(body) & 0xFF, 0x16])

    def _energy(self, di: int) -> int | None:
        """Energy of a DI in 0.01 kWh, signed for combined; None when not supported."""
        forward = int(self.energy_wh() // 10)
        reverse = int(self.reverse_wh // 10)
        return {self.FORWARD: forward, self.REVERSE: reverse, self.COMBINED: forward - reverse}.get(di)

    def handle(self, frame: bytes) -> bytes | None:
        frame = bytes(frame)
        raw = frame.lstrip(b"\xfe")
        if len(raw) < 12 or raw[0] != 0x68 or raw[7] != 0x68 or raw[-1] != 0x16:
            return None
        length = raw[9]
        if len(raw) != 12 + length or sum(raw[:-2]) & 0xFF != raw[-2]:
            return None
        addr = raw[1:7]
        if addr == b"\x99" * 6:
            return None  # broadcast: never answered
        if any(a != 0xAA and a != b for a, b in zip(addr, self.wire_address)):
            return None
        control = raw[8]
        data = bytes((b - 0x33) & 0xFF for b in raw[10:10 + length])
        if control != 0x11 or length < 4:
            return None
        self.requests += 1
        if self._take(FAULT_NO_REPLY):
            return None
        di = int.from_bytes(data[:4], "little")
        value = self._energy(di)
        if self._take(FAULT_ERROR) or value is None:
            out = self._frame(0xD1, bytes([self.error_code if value is not None else 0x02]))
        else:
            negative = value < 0
            enc = bytearray(_bcd(abs(value), 4))
            if negative:
                enc[3] |= 0x80
            out = self._frame(0x91, data[:4] + bytes(enc))
        out = bytearray(out)
        if self._take(FAULT_CORRUPT):
            out[-2] ^= 0x5A
        self.replies += 1
        return bytes(out)


# -- transports ------------------------------------------------------------------------------

class LoopbackTransport:
    """The firmware transport contract, wired straight to a simulator in this process."""

    def __init__(self, sim):
        self.sim = sim
        self._rx = bytearray()
        self.sent: deque[bytes] = deque(maxlen=256)  # the latest frames (a long simulation keeps no more)

    def write(self, data) -> int:
        frame = bytes(data)
        self.sent.append(frame)
        reply = self.sim.handle(frame)
        if reply:
            self._rx += reply
        return len(frame)

    def read(self, n: int, timeout_ms: int) -> bytes:
        out = bytes(self._rx[:n])
        del self._rx[:n]
        return out

    def inject_rx(self, data: bytes) -> None:
        """Put bytes on the line as if they arrived (stale replies, noise)."""
        self._rx += data


class PtyMeterServer:
    """Serves a simulated meter on a pseudo-terminal from a background thread. `port` is the
    device path a client opens (e.g. with `SerialTransport`). Bytes that do not form a request
    are dropped after `silence_s` of quiet on the line, and a candidate frame whose check fails is
    hunted through byte by byte, so garbage on the line delays a request but does not swallow it."""

    def __init__(self, sim, silence_s: float = 0.05, reply_delay_s: float = 0.0):
        self.sim = sim
        self.silence_s = silence_s
        self.reply_delay_s = reply_delay_s
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="pty-meter", daemon=True)
        self.errors: list[BaseException] = []

    def start(self) -> "PtyMeterServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "PtyMeterServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve(self) -> None:
        buf = bytearray()
        last_rx = time.monotonic()
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self._master, self._wake_r], [], [], self.silence_s)
                if self._wake_r in ready:
                    break
                if self._master in ready:
                    try:
                        chunk = os.read(self._master, 4096)
                    except OSError:
                        time.sleep(self.silence_s)
                        continue
                    buf += chunk
                    last_rx = time.monotonic()
                elif buf and time.monotonic() - last_rx >= self.silence_s:
                    buf.clear()  # silence ends an incomplete frame: drop it
                while buf:
                    n = self.sim.frame_length(bytes(buf))
                    if n < 0:
                        del buf[:-n]
                        continue
                    if n == 0:
                        break
                    frame = bytes(buf[:n])
                    if not self.sim.frame_ok(frame):
                        del buf[:1]  # hunt: garbage ran into a frame; resynchronise byte by byte
                        continue
                    del buf[:n]
                    reply = self.sim.handle(frame)
                    if reply:
                        if self.reply_delay_s:
                            time.sleep(self.reply_delay_s)
                        view = memoryview(reply)
                        while view:
                            k = os.write(self._master, view)
                            view = view[k:]
        except BaseException as e:  # surfaced to tests through .errors
            self.errors.append(e)


_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


class SerialTransport:
    """The firmware transport contract over a serial port (pyserial): a USB RS-485 adapter on a
    host, or a `PtyMeterServer` port in tests."""

    def __init__(self, port: str, baud: int = 9600, data_bits: int = 8, parity: str = "N", stop_bits: int = 1):
        # A pseudo-terminal carries bytes, not bits: parity means nothing on it, and some kernels
        # refuse or half-apply it. On a pty only, parity is left off (and noted); a real port gets
        # what was asked or raises.
        self.parity_ignored = parity != "N" and os.path.realpath(port).startswith("/dev/pts/")
        self._ser = serial.Serial(port, baudrate=baud, bytesize=data_bits,
                                  parity=serial.PARITY_NONE if self.parity_ignored else _PARITY[parity],
                                  stopbits=stop_bits, timeout=0)
        self._timeout = 0.0

    @classmethod
    def for_regmap(cls, port: str, regmap: dict) -> "SerialTransport":
        s = regmap.get("serial", {})
        return cls(port, s.get("baud", 9600), s.get("data_bits", 8), s.get("parity", "N"), s.get("stop_bits", 1))

    def write(self, data) -> int:
        n = self._ser.write(bytes(data))
        self._ser.flush()
        return n

    def read(self, n: int, timeout_ms: int) -> bytes:
        t = timeout_ms / 1000.0
        if t != self._timeout:
            self._ser.timeout = t
            self._timeout = t
        return self._ser.read(n)

    def close(self) -> None:
        self._ser.close()

    def __enter__(self) -> "SerialTransport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_regmap(name: str) -> dict:
    """A register map of hardware/meters by file stem, e.g. 'eastron_sdm120'."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "meters" / f"{name}.json"
    return json.loads(path.read_text())


__all__ = [
    "EnergyCounter", "ModbusMeterSim", "Dlt645MeterSim", "LoopbackTransport", "PtyMeterServer",
    "SerialTransport", "load_regmap", "FAULTS", "FAULT_NO_REPLY", "FAULT_CORRUPT", "FAULT_ERROR",
    "FAULT_FROZEN",
]
