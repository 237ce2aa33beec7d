"""The signed receipt ack, v2 (docs/receipt-v1.md, "Replies to the charger").

A charger removes a receipt from its flash outbox only on an ack signed by a bureau validator of
its genesis for its chain, its id, and the seq and receipt id of that receipt. The admitting
bureau signs with its node key:

    "EV-ACK/v2" zero-padded to 16 bytes | chain_id str | bureau str | charger_id str | seq u32 |
    receipt id 32 bytes | height u64 | block hash 32 bytes

(`str`: a 1-byte length and that many printable ASCII bytes; integers unsigned big-endian).
The firmware's signed_reply.py builds the same bytes; tests/vectors/replies.json holds the two
together.
"""

from __future__ import annotations

import json
import re
import struct

from .. import crypto
from ..errors import ReasonedError

ACK_VERSION = 2
ACK_TAG = b"EV-ACK/v2".ljust(16, b"\x00")
_PRINTABLE = re.compile(r"[\x20-\x7e]{1,255}\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


class AckError(ReasonedError):
    """An ack that must not remove a receipt: see `reason`."""


def text(s: str, what: str, error=AckError) -> bytes:
    """A signed `str`: a 1-byte length and 1-255 printable ASCII bytes."""
    if not isinstance(s, str) or not _PRINTABLE.match(s):
        raise error("malformed", f"{what} must be 1-255 printable ASCII characters")
    return bytes([len(s)]) + s.encode("ascii")


def signed_bytes(chain_id: str, bureau: str, charger_id: str, seq: int, receipt_id: str, height: int,
                 block_hash: bytes) -> bytes:
    if not isinstance(receipt_id, str) or not _HEX64.match(receipt_id) or len(block_hash) != 32:
        raise AckError("malformed", "receipt id must be 64 lower-case hex digits, block hash 32 bytes")
    if not 1 <= seq <= 2**32 - 1 or not 0 <= height <= 2**64 - 1:
        raise AckError("malformed", "seq or height out of range")
    return (ACK_TAG + text(chain_id, "chain id") + text(bureau, "bureau") + text(charger_id, "charger id")
            + struct.pack(">I", seq) + bytes.fromhex(receipt_id) + struct.pack(">Q", height) + block_hash)


def ack_message(chain_id: str, bureau: str, signing_key, charger_id: str, seq: int, receipt_id: str,
                height: int, block_hash: bytes) -> bytes:
    """The ack JSON for the charger's reply topic, signed with the bureau's node key."""
    sig = signing_key.sign(signed_bytes(chain_id, bureau, charger_id, seq, receipt_id, height,
                                        block_hash)).signature
    return json.dumps({"v": ACK_VERSION, "type": "ack", "charger": charger_id, "seq": seq, "receipt": receipt_id,
                       "height": height, "block": block_hash.hex(), "bureau": bureau, "sig": sig.hex()},
                      separators=(",", ":")).encode()


def verify_ack(payload: bytes, chain_id: str, keys: dict[str, bytes]) -> dict:
    """The ack's JSON when a validator in `keys` signed it for `chain_id`; raises AckError. What
    the charger checks besides (its own id, the receipt in its outbox) is left to the caller."""
    try:
        msg = json.loads(payload)
    except ValueError:
        raise AckError("malformed", "not JSON") from None
    if not isinstance(msg, dict) or msg.get("type") != "ack":
        raise AckError("malformed", "not an ack")
    if msg.get("v") != ACK_VERSION:
        raise AckError("unsigned", f"ack version {msg.get('v')!r}; signed acks are v {ACK_VERSION}")
    try:
        block, sig = bytes.fromhex(msg["block"]), bytes.fromhex(msg["sig"])
        signed = signed_bytes(chain_id, msg["bureau"], msg["charger"], msg["seq"], msg["receipt"], msg["height"],
                              block)
    except (KeyError, TypeError, ValueError):
        raise AckError("malformed", "ack fields missing or of the wrong type") from None
    key = keys.get(msg["bureau"])
    if key is None:
        raise AckError("unknown_signer", f"{msg['bureau']} is not a bureau validator")
    if not crypto.verify(key, signed, sig):
        raise AckError("bad_signature", f"signature does not verify with the key of {msg['bureau']}")
    return msg
