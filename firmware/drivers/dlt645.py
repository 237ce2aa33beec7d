"""DL/T 645-2007 master codec for energy meters: sans-I/O, MicroPython and CPython alike.

Frame::

    [FE FE FE FE]  68  A0 A1 A2 A3 A4 A5  68  C  L  DATA(L)  CS  16

- the FE bytes are a wake-up preamble; a master sends four, a meter may send 0..4. Parsing skips
  any number of them.
- A0..A5: meter address, 12 BCD digits, **low byte first** (the address printed on the meter,
  "123456789012", goes out as 12 90 78 56 34 12). A byte AA is a wildcard: the all-AA address
  reaches whichever single meter is on the bus, and its reply carries its real address.
  999999999999 is the broadcast address (only for broadcast commands, never answered; not used
  for reads).
- C: control. Bit 7 direction (1 = reply from the meter), bit 6 abnormal reply, bit 5 more
  frames follow, bits 4..0 the function. Read data: request 0x11, normal reply 0x91, error reply
  0xD1 (one data byte: the error status word).
- L: number of data bytes. Every data byte goes on the wire **plus 0x33** (mod 256).
- DATA of a read: the 4-byte data identifier (DI), low byte first, then (in a reply) the value.
- CS: sum of all bytes from the first 68 up to the byte before CS, mod 256.

Energy values (DI3 = 00) are 4 bytes BCD, low byte first, format XXXXXX.XX kWh; so Wh = BCD
value * 10. Combined active energy (DI2 = 00, e.g. DI 0x00000000) may be negative: the top bit of
its highest byte is then the sign.

Bad frames raise `Dlt645Error` with a short machine `reason`:

    short          fewer bytes than the smallest frame (12 after the preamble)
    bad_frame      no 68 start, no second 68, no 16 end, or non-FE garbage before the start
    bad_length     L disagrees with the frame length
    bad_checksum   CS does not match
    wrong_address  reply from a meter other than the one addressed
    wrong_control  not a read reply (or a multi-frame reply, which reads here never ask for)
    wrong_di       reply for another data identifier, or too short to hold one
    error_reply    the meter answered 0xD1; `code` holds its error status byte
    bad_bcd        a value byte is not BCD
"""

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from binascii import hexlify
from errors import CodecError

START = const(0x68)
END = const(0x16)
PREAMBLE_BYTE = const(0xFE)
DATA_OFFSET = const(0x33)

CTRL_READ = const(0x11)
CTRL_READ_REPLY = const(0x91)
CTRL_READ_ERROR = const(0xD1)
_CTRL_FOLLOW = const(0x20)

DI_FORWARD_ACTIVE_TOTAL = const(0x00010000)
DI_COMBINED_ACTIVE_TOTAL = const(0x00000000)
DI_REVERSE_ACTIVE_TOTAL = const(0x00020000)

WILDCARD = "AAAAAAAAAAAA"
BROADCAST = "999999999999"

_HEAD = const(10)  # 68 A0..A5 68 C L
_MIN_FRAME = const(12)  # head + CS + 16, no data
_MAX_DATA = const(200)  # longest data field a 2007 read frame carries
_READ_LEN = const(16)  # read request without preamble

ERROR_BITS = (
    (0x01, "other error"),
    (0x02, "no requested data"),
    (0x04, "password error / unauthorized"),
    (0x08, "baud rate cannot be changed"),
    (0x10, "year time zones exceeded"),
    (0x20, "daily periods exceeded"),
    (0x40, "tariffs exceeded"),
)


class Dlt645Error(CodecError):
    """A DL/T 645 frame that cannot be used; `code` is the meter's error status byte of an
    error reply (else None)."""


def describe_error(code):
    """Human text of an error status byte."""
    names = [name for bit, name in ERROR_BITS if code & bit]
    return ", ".join(names) if names else "error status 0x%02x" % code


def _nibble(c):
    o = ord(c)
    if 0x30 <= o <= 0x39:
        return o - 0x30
    if c == "A" or c == "a":
        return 10
    return -1


def address_bytes(address):
    """Wire form (6 bytes, low byte first) of a meter address.

    `address` is the 12-digit string printed on the meter (most significant digit first);
    each pair of digits may be "AA" as a wildcard. Six bytes are taken as already in wire order
    and only checked."""
    if isinstance(address, (bytes, bytearray, memoryview)):
        raw = bytes(address)
        if len(raw) != 6:
            raise ValueError("address must be 6 bytes")
        for b in raw:
            if b != 0xAA and ((b >> 4) > 9 or (b & 0x0F) > 9):
                raise ValueError("address byte %02x is neither BCD nor the AA wildcard" % b)
        return raw
    if len(address) != 12:
        raise ValueError("address must be 12 digits")
    out = bytearray(6)
    for i in range(6):
        hi = _nibble(address[2 * i])
        lo = _nibble(address[2 * i + 1])
        if hi < 0 or lo < 0 or ((hi == 10) != (lo == 10)):
            raise ValueError("address %r: each digit pair must be BCD or AA" % (address,))
        out[5 - i] = (hi << 4) | lo
    return bytes(out)


def address_str(wire):
    """The printed form (12 characters, most significant first) of a 6-byte wire address."""
    if len(wire) != 6:
        raise ValueError("address must be 6 bytes")
    rev = bytearray(6)
    for i in range(6):
        rev[i] = wire[5 - i]
    return hexlify(bytes(rev)).decode().upper()


def checksum(frame, start, end):
    """Sum of frame[start:end] mod 256."""
    s = 0
    for i in range(start, end):
        s += frame[i]
    return s & 0xFF


def build_read(address, di, buf=None, preamble=4):
    """The read-data request (control 0x11) for data identifier `di` (an int, e.g.
    0x00010000) from the meter at `address`, with `preamble` FE bytes in front.

    With `buf` (a bytearray of at least preamble + 16 bytes, allocated once) the frame is
    written into it and a memoryview of it is returned; without, a new bytes object."""
    addr = address_bytes(address)
    if addr == b"\x99\x99\x99\x99\x99\x99":
        raise ValueError("reads cannot use the broadcast address; use the AA wildcard")
    if not 0 <= di <= 0xFFFFFFFF:
        raise ValueError("data identifier must be 0..0xFFFFFFFF")
    if not 0 <= preamble <= 4:
        raise ValueError("preamble must be 0..4 FE bytes")
    n = preamble + _READ_LEN
    out = buf if buf is not None else bytearray(n)
    if len(out) < n:
        raise ValueError("request buffer needs %d bytes" % n)
    for i in range(preamble):
        out[i] = PREAMBLE_BYTE
    p = preamble
    out[p] = START
    for i in range(6):
        out[p + 1 + i] = addr[i]
    out[p + 7] = START
    out[p + 8] = CTRL_READ
    out[p + 9] = 4
    for i in range(4):
        out[p + 10 + i] = ((di >> (8 * i)) + DATA_OFFSET) & 0xFF
    out[p + 14] = checksum(out, p, p + 14)
    out[p + 15] = END
    if buf is None:
        return bytes(out)
    return memoryview(out)[:n]


def frame_length(head):
    """Length of a frame (without preamble) from its first 10 bytes (68 A0..A5 68 C L)."""
    if len(head) < _HEAD:
        raise ValueError("need the first 10 bytes of the frame")
    if head[0] != START or head[7] != START:
        raise Dlt645Error("bad_frame", "no 68 .. 68 header")
    if head[9] > _MAX_DATA:
        raise Dlt645Error("bad_length", "L = %d" % head[9])
    return _MIN_FRAME + head[9]


def parse_frame(frame):
    """Check a whole frame (leading FE bytes allowed) and return
    (address: 6 wire bytes, control: int, data: bytes with the 0x33 removed)."""
    n = len(frame)
    p = 0
    while p < n and frame[p] == PREAMBLE_BYTE:
        p += 1
    if n - p < _MIN_FRAME:
        raise Dlt645Error("short", "%d bytes after the preamble" % (n - p))
    if frame[p] != START or frame[p + 7] != START:
        raise Dlt645Error("bad_frame", "no 68 .. 68 header")
    length = frame[p + 9]
    if n - p != _MIN_FRAME + length:
        raise Dlt645Error("bad_length", "L = %d but %d frame bytes" % (length, n - p))
    if frame[n - 1] != END:
        raise Dlt645Error("bad_frame", "no 16 end byte")
    cs = checksum(frame, p, n - 2)
    if frame[n - 2] != cs:
        raise Dlt645Error("bad_checksum", "CS %02x, computed %02x" % (frame[n - 2], cs))
    data = bytearray(length)
    for i in range(length):
        data[i] = (frame[p + 10 + i] - DATA_OFFSET) & 0xFF
    return bytes(frame[p + 1:p + 7]), frame[p + 8], bytes(data)


def address_matches(asked, got):
    """True when the reply address `got` answers a request to `asked` (AA bytes match any)."""
    for i in range(6):
        if asked[i] != 0xAA and asked[i] != got[i]:
            return False
    return True


def parse_read_reply(frame, address, di):
    """Check a reply to a read of `di` from `address` and return
    (meter address: 6 wire bytes, value bytes after the DI)."""
    asked = address_bytes(address)
    got, control, data = parse_frame(frame)
    if not address_matches(asked, got):
        raise Dlt645Error("wrong_address", "reply from %s" % address_str(got))
    if control == CTRL_READ_ERROR:
        if len(data) != 1:
            raise Dlt645Error("bad_length", "error reply with %d data bytes" % len(data))
        raise Dlt645Error("error_reply", describe_error(data[0]), data[0])
    if control == (CTRL_READ_REPLY | _CTRL_FOLLOW):
        raise Dlt645Error("wrong_control", "multi-frame reply (control 0xB1) to a single read")
    if control != CTRL_READ_REPLY:
        raise Dlt645Error("wrong_control", "control 0x%02x" % control)
    if len(data) < 4:
        raise Dlt645Error("wrong_di", "reply with %d data bytes has no DI" % len(data))
    got_di = data[0] | (data[1] << 8) | (data[2] << 16) | (data[3] << 24)
    if got_di != di:
        raise Dlt645Error("wrong_di", "reply for DI %08x, asked %08x" % (got_di, di))
    return got, data[4:]


def _bcd_byte(b):
    hi = b >> 4
    lo = b & 0x0F
    if hi > 9 or lo > 9:
        raise Dlt645Error("bad_bcd", "byte %02x" % b)
    return hi * 10 + lo


def decode_energy_wh(value, signed=False):
    """Wh (int) of a 4-byte XXXXXX.XX kWh value (BCD, low byte first, 0x33 already removed).
    With `signed`, bit 7 of the highest byte is the sign and the result may be negative."""
    if len(value) != 4:
        raise Dlt645Error("bad_length", "energy value of %d bytes, expected 4" % len(value))
    top = value[3]
    negative = False
    if signed and top & 0x80:
        negative = True
        top &= 0x7F
    hundredths = _bcd_byte(top)
    for i in (2, 1, 0):
        hundredths = hundredths * 100 + _bcd_byte(value[i])
    wh = hundredths * 10  # 0.01 kWh = 10 Wh
    return -wh if negative else wh


def is_signed_energy(di):
    """True for combined active energy identifiers (DI3 = 00, DI2 = 00), which carry a sign."""
    return (di >> 16) == 0


def read_energy_wh(frame, address, di):
    """Wh of an energy read reply; returns (meter address wire bytes, Wh)."""
    if di >> 24 != 0:
        raise ValueError("DI %08x is not an energy identifier" % di)
    got, value = parse_read_reply(frame, address, di)
    return got, decode_energy_wh(value, is_signed_energy(di))
