# The bureau's signed replies on ev/v1/charger/<id>/reply (docs/receipt-v1.md "Replies to the
# charger", docs/authorization.md "Online: request and reply"): receipt acks and rejects,
# authorization and release replies. The bytes each Ed25519 signature covers, built from the
# JSON the charger received and the facts it knows itself (chain id, its own id). The backend's
# receipts/ack.py, receipts/reject.py and authz/wire.py write the same bytes;
# tests/vectors/replies.json holds the two together.
#
# Signed bytes: a 16-byte domain tag, then fields; integers unsigned big-endian, `str` a 1-byte
# length and that many printable ASCII bytes. None from a builder: a field the bureau could not
# have signed (wrong type, out of range, not printable ASCII).
import binascii
import struct

ACK_VERSION = 2
REJECT_VERSION = 2
AUTH_REPLY_VERSION = 2
RELEASE_VERSION = 2
ACK_TAG = b"EV-ACK/v2\x00\x00\x00\x00\x00\x00\x00"
REJECT_TAG = b"EV-REJECT/v2\x00\x00\x00\x00"
AUTH_REPLY_TAG = b"EV-AUTHREPLY/v2\x00"
RELEASE_TAG = b"EV-RELEASE/v2\x00\x00\x00"
SIG_LEN = 64
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
_REQ_TEXT = 2  # kind byte of a text `req` (the bureau also signs 0 = null and 1 = integer)


def _str(s):
    if s is None:
        s = ""
    if not isinstance(s, str):
        return None
    raw = s.encode()
    if len(raw) > 255:
        return None
    for c in raw:
        if c < 0x20 or c > 0x7E:
            return None
    return bytes([len(raw)]) + raw


def _uint(n, fmt, top):
    if not isinstance(n, int) or isinstance(n, bool) or n < 0 or n > top:
        return None
    return struct.pack(fmt, n)


def _hex(s, n):
    if not isinstance(s, str) or len(s) != 2 * n:
        return None
    try:
        return binascii.unhexlify(s)
    except ValueError:
        return None


def _join(parts):
    for p in parts:
        if p is None:
            return None
    return b"".join(parts)


def signature(msg):
    """The 64-byte signature of a reply (hex in "sig"), or None."""
    return _hex(msg.get("sig"), SIG_LEN)


def ack_bytes(chain_id, charger_id, msg):
    """What the bureau signed for a v2 ack `msg`:
    ACK_TAG | chain_id str | bureau str | charger_id str | seq u32 | receipt id 32 bytes |
    height u64 | block hash 32 bytes."""
    return _join((ACK_TAG, _str(chain_id), _str(msg.get("bureau")), _str(charger_id),
                  _uint(msg.get("seq"), ">I", _U32), _hex(msg.get("receipt"), 32),
                  _uint(msg.get("height"), ">Q", _U64), _hex(msg.get("block"), 32)))


def reject_bytes(chain_id, charger_id, msg):
    """What the bureau signed for a v2 reject `msg` that names a receipt (one that names none
    moves nothing, so the charger never checks it):
    REJECT_TAG | chain_id str | bureau str | charger_id str | u8 1 | seq u32 |
    receipt id 32 bytes | reason str | detail str."""
    return _join((REJECT_TAG, _str(chain_id), _str(msg.get("bureau")), _str(charger_id), b"\x01",
                  _uint(msg.get("seq"), ">I", _U32), _hex(msg.get("receipt"), 32),
                  _str(msg.get("reason")), _str(msg.get("detail"))))


def release_bytes(chain_id, charger_id, msg):
    """What the bureau signed for a v2 reply to a release request with a text `req`:
    RELEASE_TAG | chain_id str | bureau str | charger_id str | req (u8 2, str) | auth_ref str |
    released u8 (1 released, 0 not) | reason str."""
    req, released = msg.get("req"), msg.get("released")
    if not isinstance(req, str) or (released is not True and released is not False):
        return None
    return _join((RELEASE_TAG, _str(chain_id), _str(msg.get("bureau")), _str(charger_id),
                  bytes([_REQ_TEXT]), _str(req), _str(msg.get("auth_ref")),
                  bytes([1 if released else 0]), _str(msg.get("reason"))))


def auth_reply_bytes(chain_id, charger_id, msg):
    """What the bureau signed for a v2 authorization reply `msg` whose `req` is text (a charger
    only sends text ones):
    AUTH_REPLY_TAG | chain_id str | bureau str | charger_id str | req (u8 2, str) |
    decision u8 (1 accept, 0 reject) | method str | token str | wallet_id str |
    authorized_fen u64 | auth_ref str | expires u64 | reason str | detail str
    (a JSON null or an absent field is the empty str, or 0)."""
    decision = msg.get("decision")
    if decision != "accept" and decision != "reject":
        return None
    req = msg.get("req")
    if not isinstance(req, str):
        return None
    return _join((AUTH_REPLY_TAG, _str(chain_id), _str(msg.get("bureau")), _str(charger_id),
                  bytes([_REQ_TEXT]), _str(req), bytes([1 if decision == "accept" else 0]),
                  _str(msg.get("method")), _str(msg.get("token")), _str(msg.get("wallet_id")),
                  _uint(msg.get("authorized_fen") or 0, ">Q", _U64), _str(msg.get("auth_ref")),
                  _uint(msg.get("expires") or 0, ">Q", _U64), _str(msg.get("reason")),
                  _str(msg.get("detail"))))


def check(trust, verify, signed, msg):
    """None when `signed` (bytes of a builder above) carries the valid signature in `msg` of a
    validator the charger trusts, else the reason: malformed, not_provisioned, unknown_signer,
    bad_signature."""
    sig = signature(msg)
    if signed is None or sig is None:
        return "malformed"
    return trust.check(verify, msg.get("bureau"), signed, sig)
