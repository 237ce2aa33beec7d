"""Modbus RTU client codec for energy meters: sans-I/O, MicroPython and CPython alike.

Only what a charger needs to read a meter register: build a request for function 0x03 (read
holding registers) or 0x04 (read input registers), tell how long the reply will be from its first
three bytes, check and parse the reply, and turn register contents into integer Wh.

Frame layout (all requests and replies)::

    unit(1) function(1) payload(n) crc(2, low byte first)

    request : unit fc addr_hi addr_lo count_hi count_lo crc_lo crc_hi         (8 bytes)
    reply   : unit fc byte_count data(byte_count) crc_lo crc_hi               (5 + 2*count)
    error   : unit fc|0x80 exception_code crc_lo crc_hi                        (5 bytes)

Every bad reply raises `ModbusError` with a short machine `reason`:

    short          fewer bytes than the smallest valid frame
    bad_crc        CRC-16/MODBUS does not match (checked before anything else is trusted)
    wrong_address  reply from another unit id than the one asked
    wrong_function reply to another function than the one asked
    bad_length     byte count does not match the registers asked for, or trailing bytes
    exception      the meter answered with an exception response (`code` holds its code)
    bad_value      the register holds no usable energy value (negative, NaN, infinite, too big)

Energy as float32
-----------------
Meters send kWh as an IEEE-754 binary32 value. ESP32 MicroPython computes in single precision,
so converting through a float would lose Wh. `float32_to_wh` therefore decodes the bits with
integer arithmetic only and returns the exact value times the unit's Wh per unit, **rounded to
the nearest Wh, halves up**. Nearest (not floor) keeps the conversion decimal-safe: a meter
showing 100.700 kWh sends the float32 nearest to it, 100.69999695 kWh, and that must read as
100700 Wh, not 100699. For every reading below 16384 kWh (where one float32 step is under 1 Wh)
the Wh integer the meter meant is recovered exactly; above, the result is the Wh nearest to what
the meter sent. The map is monotonic, so a rising float never yields a falling Wh count.
"""

from errors import CodecError

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x


READ_HOLDING_REGISTERS = const(0x03)
READ_INPUT_REGISTERS = const(0x04)

_EXC_FLAG = const(0x80)
_MAX_READ_COUNT = const(125)  # Modbus limit for 0x03/0x04
_REQUEST_LEN = const(8)
_MIN_FRAME = const(5)
MAX_FRAME = const(256)  # largest RTU frame (unit + PDU 253 + CRC 2)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

# Wh per unit of a register value, by the unit name a register map uses.
UNIT_WH = {"Wh": 1, "0.01kWh": 10, "0.1kWh": 100, "kWh": 1000}

_U64_LIMIT = 1 << 64


class ModbusError(CodecError):
    """A Modbus reply that cannot be used; `code` is the exception code of an exception
    response (else None)."""


def crc16(data, start=0, end=None):
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF) of data[start:end], as an int.

    On the wire the CRC goes low byte first. Works on bytes, bytearray and memoryview
    without copying."""
    if end is None:
        end = len(data)
    crc = 0xFFFF
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xA001
            else:
                crc >>= 1
    return crc


def _check_request(unit, function, address, count):
    if not 1 <= unit <= 247:
        raise ValueError("unit id must be 1..247 (0 is broadcast, which reads cannot use)")
    if function != READ_HOLDING_REGISTERS and function != READ_INPUT_REGISTERS:
        raise ValueError("function must be 0x03 or 0x04")
    if not 0 <= address <= 0xFFFF:
        raise ValueError("register address must be 0..0xFFFF")
    if not 1 <= count <= _MAX_READ_COUNT:
        raise ValueError("register count must be 1..125")
    if address + count > 0x10000:
        raise ValueError("registers run past 0xFFFF")


def build_read_request(unit, function, address, count, buf=None):
    """Build the 8-byte request to read `count` registers from `address`.

    With `buf` (a bytearray of at least 8 bytes, allocated once by the caller) the frame is
    written into it and a memoryview of the 8 bytes is returned; without, a new bytes object."""
    _check_request(unit, function, address, count)
    out = buf if buf is not None else bytearray(_REQUEST_LEN)
    if len(out) < _REQUEST_LEN:
        raise ValueError("request buffer needs 8 bytes")
    out[0] = unit
    out[1] = function
    out[2] = address >> 8
    out[3] = address & 0xFF
    out[4] = count >> 8
    out[5] = count & 0xFF
    crc = crc16(out, 0, 6)
    out[6] = crc & 0xFF
    out[7] = crc >> 8
    if buf is None:
        return bytes(out)
    return memoryview(out)[:_REQUEST_LEN]


def reply_length(function, count):
    """Length in bytes of a normal reply to a read of `count` registers."""
    return _MIN_FRAME + 2 * count


def frame_length(head, function):
    """Total length of the reply whose first three bytes are `head`, or None when the second
    byte is neither `function` nor its exception form (then the reply is garbage or for
    someone else and the caller should collect what comes and let `parse_read_response`
    name the fault)."""
    if len(head) < 3:
        raise ValueError("need the first three bytes of the reply")
    fc = head[1]
    if fc == function:
        return _MIN_FRAME + head[2]
    if fc == (function | _EXC_FLAG):
        return _MIN_FRAME
    return None


def parse_read_response(frame, unit, function, count):
    """Check a reply to a read of `count` registers and return its register data bytes
    (2*count bytes, big-endian registers) as a memoryview into `frame`.

    Raises ModbusError (see the module doc for reasons)."""
    n = len(frame)
    if n < _MIN_FRAME:
        raise ModbusError("short", "%d bytes" % n)
    got = frame[n - 2] | (frame[n - 1] << 8)
    want = crc16(frame, 0, n - 2)
    if got != want:
        raise ModbusError("bad_crc", "crc %04x, computed %04x" % (got, want))
    if frame[0] != unit:
        raise ModbusError("wrong_address", "reply from unit %d, asked unit %d" % (frame[0], unit))
    fc = frame[1]
    if fc == (function | _EXC_FLAG):
        if n != _MIN_FRAME:
            raise ModbusError("bad_length", "exception reply of %d bytes" % n)
        code = frame[2]
        raise ModbusError("exception", EXCEPTION_NAMES.get(code, "code %d" % code), code)
    if fc != function:
        raise ModbusError("wrong_function", "reply function 0x%02x, asked 0x%02x" % (fc, function))
    byte_count = frame[2]
    if byte_count != 2 * count:
        raise ModbusError("bad_length", "byte count %d, asked %d registers" % (byte_count, count))
    if n != _MIN_FRAME + byte_count:
        raise ModbusError("bad_length", "frame of %d bytes, byte count says %d" % (n, _MIN_FRAME + byte_count))
    return memoryview(frame)[3:3 + byte_count]


def registers(data):
    """Register values (ints) of register data bytes."""
    return [(data[i] << 8) | data[i + 1] for i in range(0, len(data) - 1, 2)]


def _u32(data, offset, word_order):
    hi = (data[offset] << 8) | data[offset + 1]
    lo = (data[offset + 2] << 8) | data[offset + 3]
    if word_order == "little":  # low word first ("CDAB")
        hi, lo = lo, hi
    elif word_order != "big":
        raise ValueError("word_order must be 'big' or 'little'")
    return (hi << 16) | lo


def float32_bits_to_scaled(bits, scale):
    """round_half_up(value(bits) * scale) for the binary32 pattern `bits`, exactly, with
    integers only. Raises ModbusError('bad_value') for NaN, infinities and values below 0
    (a negative zero reads as 0)."""
    sign = bits >> 31
    exp = (bits >> 23) & 0xFF
    frac = bits & 0x7FFFFF
    if exp == 0xFF:
        raise ModbusError("bad_value", "NaN" if frac else "infinite")
    if exp == 0:
        mant = frac  # subnormal: frac * 2**-149
        shift = -149
    else:
        mant = frac | 0x800000
        shift = exp - 150  # value = mant * 2**(exp - 127 - 23)
    if mant == 0:
        return 0
    if sign:
        raise ModbusError("bad_value", "negative energy")
    num = mant * scale
    if shift >= 0:
        return num << shift
    return (num + (1 << (-shift - 1))) >> (-shift)


def float32_to_wh(data, offset=0, word_order="big", unit="kWh"):
    """Energy in Wh (int) from the float32 in two registers at data[offset:offset+4].

    `word_order` 'big' means the high word comes first (ABCD, the usual), 'little' the low word
    first (CDAB). `unit` is what the float counts: 'kWh' (the usual), 'Wh', '0.1kWh', '0.01kWh'."""
    scale = UNIT_WH.get(unit)
    if scale is None:
        raise ValueError("unknown unit %r" % (unit,))
    wh = float32_bits_to_scaled(_u32(data, offset, word_order), scale)
    if wh >= _U64_LIMIT:
        raise ModbusError("bad_value", "energy does not fit 64 bits")
    return wh


def uint32_to_wh(data, offset=0, word_order="big", unit="Wh"):
    """Energy in Wh (int) from an unsigned 32-bit counter in two registers."""
    scale = UNIT_WH.get(unit)
    if scale is None:
        raise ValueError("unknown unit %r" % (unit,))
    return _u32(data, offset, word_order) * scale


def uint32(data, offset=0, word_order="big"):
    """Unsigned 32-bit value of two registers (e.g. a serial number)."""
    return _u32(data, offset, word_order)
