"""Meter drivers and the meter watchdog: MicroPython and CPython alike.

Every driver offers `read_wh()`: the meter's import (forward active) energy register as an
integer number of Wh, or `MeterError` with a short machine `reason`. The firmware never
estimates energy; a reading is what the meter said or an error.

Transport
---------
The Modbus and DL/T 645 drivers talk over an injected transport (a UART with RS-485 direction
control on the device, a pseudo-terminal or an in-process simulator in tests)::

    transport.write(data)            send all of `data` (bytes, bytearray or memoryview)
    transport.read(n, timeout_ms)    -> bytes (or None/b"" when nothing came): at most n bytes;
                                        fewer than n only when timeout_ms ran out first.
                                        read(n, 0) returns what is already waiting.

Before each request a driver discards stale input (`read(256, 0)` until empty), so a late reply
to an earlier request can never be taken for the answer to this one.

Reasons of MeterError: `no_reply` (nothing came back), `short_reply` (the reply stopped part
way), `transport` (the transport raised OSError), `bad_value`, and the codec reasons of
`modbus_rtu.ModbusError` / `dlt645.Dlt645Error` passed through (`bad_crc`, `exception`,
`error_reply`, `wrong_address`, ...).

Register maps
-------------
`ModbusMeter` and `Dlt645Meter` are configured by the register-map dicts of
`hardware/meters/*.json` (loaded with `json.load` from a small file on flash). Modbus::

    {"protocol": "modbus_rtu", "unit_id": 1,
     "serial": {"baud": 2400, "data_bits": 8, "parity": "N", "stop_bits": 1},
     "registers": {"import_energy": {"function": 4, "address": "0x0048", "words": 2,
                                     "type": "float32", "word_order": "big", "unit": "kWh"}}}

`address` is an int or a "0x…" string; `type` is float32 or uint32; `word_order` big (high word
first) or little; `unit` kWh, Wh, 0.1kWh or 0.01kWh. An optional `serial_number` register (type
uint32) lets `read_serial()` tell one meter from another. DL/T 645::

    {"protocol": "dlt645_2007", "serial": {"baud": 2400, "data_bits": 8, "parity": "E", ...},
     "address": "AAAAAAAAAAAA", "preamble": 4,
     "registers": {"import_energy": {"di": "0x00010000", "bytes": 4, "decimals": 2, "unit": "kWh"}}}

MeterWatch (meter_watch.py, re-exported here) judges every reading; it keeps the `meter_status`
bits of receipt field 16.
"""

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# modbus_rtu and dlt645 are imported inside the methods that use them: a charger loads only the
# protocol its register map names (each costs heap once imported)

# the watch and the reading's error are the core's (meter_watch.py); re-exported for the drivers' users
from meter_watch import (  # noqa: F401
    STATUS_FROZEN, STATUS_LOST, STATUS_OK, STATUS_REPLACED, STATUS_ROLLBACK, MeterError, MeterWatch, WatchedMeter)

_RX_MAX = const(256)
_MAX_PREAMBLE = const(8)


def _int(value, what):
    if isinstance(value, str):
        if value[:2] in ("0x", "0X"):
            return int(value[2:], 16)
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("%s must be an int or a '0x..' string" % what)


def _char_ms(serial):
    """Milliseconds per character on the line (start + data + parity + stop bits), rounded up."""
    baud = serial.get("baud", 9600)
    bits = 1 + serial.get("data_bits", 8) + (0 if serial.get("parity", "N") == "N" else 1) + serial.get("stop_bits", 1)
    return (bits * 1000 + baud - 1) // baud


class _Link:
    """Request/reply plumbing over a transport with a receive buffer allocated once."""

    def __init__(self, transport, char_ms, timeout_ms, gap_ms):
        self._t = transport
        self._char_ms = char_ms
        self.timeout_ms = timeout_ms
        self.gap_ms = gap_ms
        self._rx = bytearray(_RX_MAX)
        self._rxv = memoryview(self._rx)

    def _budget(self, n):
        return n * self._char_ms + self.gap_ms

    def send(self, request):
        t = self._t
        try:
            for _ in range(16):  # stale input from an earlier exchange; bounded
                if not t.read(_RX_MAX, 0):
                    break
            t.write(request)
        except OSError as e:
            raise MeterError("transport", str(e))

    def fill(self, pos, n, timeout_ms):
        """Read up to n bytes into the buffer at pos; return how many came."""
        got = 0
        try:
            while got < n:
                chunk = self._t.read(n - got, timeout_ms)
                if not chunk:
                    break
                k = len(chunk)
                if k > n - got:
                    raise MeterError("transport", "read returned %d bytes, asked %d" % (k, n - got))
                self._rxv[pos + got:pos + got + k] = chunk
                got += k
        except OSError as e:
            raise MeterError("transport", str(e))
        return got


class ModbusMeter:
    """Energy meter over Modbus RTU, configured by a register-map dict."""

    def __init__(self, transport, regmap, unit_id=None, quantity="import_energy", timeout_ms=500, gap_ms=50):
        import modbus_rtu
        if regmap.get("protocol", "modbus_rtu") != "modbus_rtu":
            raise ValueError("register map is not for Modbus RTU")
        regs = regmap["registers"]
        reg = regs[quantity]
        self.unit_id = _int(unit_id if unit_id is not None else regmap.get("unit_id", 1), "unit_id")
        self._fn = _int(reg["function"], "function")
        self._addr = _int(reg["address"], "address")
        self._words = _int(reg.get("words", 2), "words")
        self._type = reg.get("type", "float32")
        self._order = reg.get("word_order", "big")
        self._unit = reg.get("unit", "kWh")
        if self._type not in ("float32", "uint32") or self._words != 2:
            raise ValueError("energy register must be float32 or uint32 in 2 words")
        if self._order not in ("big", "little"):
            raise ValueError("word_order must be big or little")
        if self._unit not in modbus_rtu.UNIT_WH:
            raise ValueError("unknown unit %r" % (self._unit,))
        # validate the request once; raises ValueError for a bad map or unit id
        modbus_rtu.build_read_request(self.unit_id, self._fn, self._addr, self._words)
        self._serial_reg = regs.get("serial_number")
        self._req = bytearray(8)
        self._link = _Link(transport, _char_ms(regmap.get("serial", {})), timeout_ms, gap_ms)

    def _read(self, fn, addr, count):
        import modbus_rtu
        link = self._link
        link.send(modbus_rtu.build_read_request(self.unit_id, fn, addr, count, self._req))
        got = link.fill(0, 3, link.timeout_ms)
        if got == 0:
            raise MeterError("no_reply", "unit %d did not answer" % self.unit_id)
        if got < 3:
            raise MeterError("short_reply", "%d bytes" % got)
        total = modbus_rtu.frame_length(link._rx, fn)
        if total is None:
            # not our function: collect what is left and let the parser name the fault
            total = 3 + link.fill(3, _RX_MAX - 3, link.gap_ms)
        else:
            if total > _RX_MAX:
                total = _RX_MAX
            got += link.fill(3, total - 3, link._budget(total - 3))
            if got < total:
                raise MeterError("short_reply", "%d of %d bytes" % (got, total))
        try:
            return modbus_rtu.parse_read_response(link._rxv[:total], self.unit_id, fn, count)
        except modbus_rtu.ModbusError as e:
            raise MeterError(e.reason, e.detail, e.code)

    def read_wh(self):
        import modbus_rtu
        data = self._read(self._fn, self._addr, self._words)
        try:
            if self._type == "float32":
                return modbus_rtu.float32_to_wh(data, 0, self._order, self._unit)
            return modbus_rtu.uint32_to_wh(data, 0, self._order, self._unit)
        except modbus_rtu.ModbusError as e:
            raise MeterError(e.reason, e.detail)

    def read_serial(self):
        """The meter's serial number as a decimal string, or None when the map has none."""
        import modbus_rtu
        reg = self._serial_reg
        if reg is None:
            return None
        data = self._read(_int(reg["function"], "function"), _int(reg["address"], "address"), 2)
        return str(modbus_rtu.uint32(data, 0, reg.get("word_order", "big")))


class Dlt645Meter:
    """Energy meter over DL/T 645-2007. `meter_address` holds the address the meter answered
    with (useful after a read through the AA wildcard)."""

    def __init__(self, transport, address=None, di=None, regmap=None, preamble=None, timeout_ms=1000, gap_ms=100):
        import dlt645
        regmap = regmap or {}
        if regmap.get("protocol", "dlt645_2007") != "dlt645_2007":
            raise ValueError("register map is not for DL/T 645-2007")
        if address is None:
            address = regmap.get("address", dlt645.WILDCARD)
        if di is None:
            reg = regmap.get("registers", {}).get("import_energy")
            if reg:
                if reg.get("bytes", 4) != 4 or reg.get("decimals", 2) != 2 or reg.get("unit", "kWh") != "kWh":
                    raise ValueError("energy register must be 4 bytes BCD with 2 decimals of kWh")
                di = _int(reg["di"], "di")
            else:
                di = dlt645.DI_FORWARD_ACTIVE_TOTAL
        if preamble is None:
            preamble = regmap.get("preamble", 4)
        if di >> 24 != 0:
            raise ValueError("DI %08x is not an energy identifier" % di)
        self._addr = dlt645.address_bytes(address)
        self._di = di
        self._preamble = preamble
        self._req = bytearray(preamble + 16)
        dlt645.build_read(self._addr, di, self._req, preamble)  # validates address and DI
        self.meter_address = None
        self._link = _Link(transport, _char_ms(regmap.get("serial", {"baud": 2400, "parity": "E"})), timeout_ms, gap_ms)

    def read_wh(self):
        import dlt645
        link = self._link
        link.send(dlt645.build_read(self._addr, self._di, self._req, self._preamble))
        if link.fill(0, 1, link.timeout_ms) == 0:
            raise MeterError("no_reply", "meter did not answer")
        skipped = 0
        while link._rx[0] == dlt645.PREAMBLE_BYTE:
            skipped += 1
            if skipped > _MAX_PREAMBLE:
                raise MeterError("bad_frame", "more than %d FE bytes" % _MAX_PREAMBLE)
            if link.fill(0, 1, link._budget(1)) == 0:
                raise MeterError("short_reply", "only preamble bytes")
        if link._rx[0] != dlt645.START:
            link.fill(1, _RX_MAX - 1, link.gap_ms)  # swallow the rest of the garbage
            raise MeterError("bad_frame", "reply starts with %02x" % link._rx[0])
        got = 1 + link.fill(1, 9, link._budget(9))
        if got < 10:
            raise MeterError("short_reply", "%d bytes" % got)
        try:
            total = dlt645.frame_length(link._rx)
            got += link.fill(10, total - 10, link._budget(total - 10))
            if got < total:
                raise MeterError("short_reply", "%d of %d bytes" % (got, total))
            addr, wh = dlt645.read_energy_wh(link._rxv[:total], self._addr, self._di)
        except dlt645.Dlt645Error as e:
            raise MeterError(e.reason, e.detail, e.code)
        self.meter_address = dlt645.address_str(addr)
        if wh < 0:
            raise MeterError("bad_value", "negative combined energy %d Wh" % wh)
        return wh

    def read_serial(self):
        """The meter's address (its identity on DL/T 645) from the last reply, or None."""
        return self.meter_address


class S0PulseMeter:
    """Energy from an S0 pulse output. `counter` is a callable, or an object with `value()`,
    returning the total number of pulses counted (on the device, a GPIO interrupt or PCNT
    counter that never wraps). Wh = base_wh + floor((count - base_count) * 1000 / impulses_per_kwh):
    a Wh is reported once all of its pulses have arrived."""

    def __init__(self, counter, impulses_per_kwh, base_wh=0, base_count=0):
        if not isinstance(impulses_per_kwh, int) or impulses_per_kwh <= 0:
            raise ValueError("impulses_per_kwh must be a positive int")
        self._counter = counter if callable(counter) else counter.value
        self.impulses_per_kwh = impulses_per_kwh
        self.base_wh = base_wh
        self.base_count = base_count

    def read_wh(self):
        try:
            count = self._counter()
        except OSError as e:
            raise MeterError("transport", str(e))
        wh = self.base_wh + (count - self.base_count) * 1000 // self.impulses_per_kwh
        if wh < 0:
            raise MeterError("bad_value", "pulse count %d below the base %d" % (count, self.base_count))
        return wh

    def read_serial(self):
        return None


def meter_from_config(transport, regmap, **options):
    """The driver a register map asks for."""
    protocol = regmap.get("protocol")
    if protocol == "modbus_rtu":
        return ModbusMeter(transport, regmap, **options)
    if protocol == "dlt645_2007":
        return Dlt645Meter(transport, regmap=regmap, **options)
    raise ValueError("unknown meter protocol %r" % (protocol,))
