# Charging receipt, format v1 (docs/receipt-v1.md): canonical encoding and signing.
# Runs under MicroPython and CPython. A receipt is a dict with the field names of the doc.
import struct

from errors import CodecError

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

VERSION = const(1)
MAX_ENVELOPE = const(1024)
SIG_LEN = const(64)
DOMAIN_TAG = b"EV-RECEIPT/v1\x00\x00\x00"

AUTH_CARD_ONLINE = const(1)
AUTH_CARD_OFFLINE = const(2)
AUTH_APP = const(3)

STOP_LOCAL = "L"
STOP_REMOTE = "R"
STOP_LIMIT = "Q"
STOP_UNPLUG = "U"
STOP_FAULT = "F"
STOP_POWER = "P"
STOP_TIME = "T"
STOP_REASONS = "LRQUFPT"

# (name, kind) in wire order; kinds: s = str, b = u8, I = u32, Q = u64, x = 16 raw bytes,
# p = period list. Kept as data so the encoder and decoder cannot drift apart.
FIELDS = (
    ("version", "b"),
    ("charger_id", "s"),
    ("seq", "I"),
    ("session_id", "x"),
    ("auth_method", "b"),
    ("id_token", "s"),
    ("wallet_id", "s"),
    ("authorized_fen", "Q"),
    ("auth_ref", "s"),
    ("start_time", "Q"),
    ("end_time", "Q"),
    ("time_flags", "b"),
    ("meter_serial", "s"),
    ("meter_start_wh", "Q"),
    ("meter_end_wh", "Q"),
    ("meter_status", "b"),
    ("stop_reason", "c"),
    ("tariff_id", "s"),
    ("tariff_version", "I"),
    ("periods", "p"),
    ("amount_fen", "Q"),
    ("firmware_version", "s"),
)


ReceiptError = CodecError  # a receipt that cannot be encoded or an envelope that cannot be parsed


def _put_str(out, value):
    raw = value.encode()
    if len(raw) > 255:
        raise ReceiptError("malformed", "string over 255 bytes")
    out.append(len(raw))
    out.extend(raw)


def encode_body(r):
    """The canonical body bytes of receipt dict `r` (without signature)."""
    out = bytearray()
    for name, kind in FIELDS:
        v = r[name]
        if kind == "s":
            _put_str(out, v)
        elif kind == "b":
            out.append(v)
        elif kind == "c":
            out.append(ord(v))
        elif kind == "x":
            if len(v) != 16:
                raise ReceiptError("malformed", "session_id must be 16 bytes")
            out.extend(v)
        elif kind == "p":
            out.append(len(v))
            for pk, wh in v:
                out.append(pk)
                out.extend(struct.pack(">Q", wh))
        else:
            out.extend(struct.pack(">" + kind, v))
    return bytes(out)


def signed_message(body):
    return DOMAIN_TAG + body


def seal(r, seed, sign):
    """Encode and sign receipt `r` with the charger's 32-byte `seed`; `sign(seed, msg)` is
    ed25519.sign. Returns the envelope (body + 64-byte signature)."""
    body = encode_body(r)
    envelope = body + sign(seed, signed_message(body))
    if len(envelope) > MAX_ENVELOPE:
        raise ReceiptError("oversized", "envelope of %d bytes, limit %d" % (len(envelope), MAX_ENVELOPE))
    return envelope


def decode_envelope(envelope):
    """Split and parse an envelope; returns (receipt dict, body, signature). Checks the
    encoding only; the bureau node does the full checks."""
    if len(envelope) > MAX_ENVELOPE:
        raise ReceiptError("oversized", "%d bytes, limit %d" % (len(envelope), MAX_ENVELOPE))
    if len(envelope) < SIG_LEN + 1:
        raise ReceiptError("malformed", "shorter than a signature")
    body = envelope[:-SIG_LEN]
    if body[0] != VERSION:
        raise ReceiptError("unsupported_version", "version %d" % body[0])
    r = {}
    i = 0
    try:
        for name, kind in FIELDS:
            if kind == "s":
                n = body[i]
                r[name] = bytes(body[i + 1:i + 1 + n]).decode()
                if len(r[name]) != n:
                    raise ReceiptError("malformed", "text field is not ASCII")
                i += 1 + n
            elif kind == "b":
                r[name] = body[i]
                i += 1
            elif kind == "c":
                r[name] = chr(body[i])
                i += 1
            elif kind == "x":
                r[name] = bytes(body[i:i + 16])
                i += 16
            elif kind == "p":
                n = body[i]
                i += 1
                periods = []
                for _ in range(n):
                    periods.append((body[i], struct.unpack(">Q", body[i + 1:i + 9])[0]))
                    i += 9
                r[name] = periods
            else:
                size = 4 if kind == "I" else 8
                r[name] = struct.unpack(">" + kind, body[i:i + size])[0]
                i += size
    except ReceiptError:
        raise
    except Exception:  # short buffer (IndexError, struct.error) or bad text (UnicodeError)
        raise ReceiptError("malformed", "receipt ends early or holds bad text")
    if i != len(body):
        raise ReceiptError("malformed", "%d bytes after the last field" % (len(body) - i))
    return r, bytes(body), bytes(envelope[-SIG_LEN:])


def receipt_id(envelope):
    import hashlib
    import binascii
    return binascii.hexlify(hashlib.sha256(envelope).digest()).decode()
