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
import struct

from ..errors import ReasonedError
from .signed_reply import HEX64, text, verify_signed

ACK_VERSION = 2
ACK_TAG = b"EV-ACK/v2".ljust(16, b"\x00")


class AckError(ReasonedError):
    """An ack that must not remove a receipt: see `reason`."""


def signed_bytes(chain_id: str, bureau: str, charger_id: str, seq: int, receipt_id: str, height: int,
                 block_hash: bytes) -> bytes:
    if not isinstance(receipt_id, str) or not HEX64.match(receipt_id) or len(block_hash) != 32:
        raise AckError("malformed", "receipt id must be 64 lower-case hex digits, block hash 32 bytes")
    if not 1 <= seq <= 2**32 - 1 or not 0 <= height <= 2**64 - 1:
        raise AckError("malformed", "seq or height out of range")
    return (ACK_TAG + text(chain_id, "chain id", AckError) + text(bureau, "bureau", AckError)
            + text(charger_id, "charger id", AckError)
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
    """The ack's JSON when a validator in `keys` signed it for `chain_id`; raises AckError."""
    return verify_signed(payload, "ack", ACK_VERSION, keys, AckError, lambda m: signed_bytes(
        chain_id, m["bureau"], m["charger"], m["seq"], m["receipt"], m["height"], bytes.fromhex(m["block"])))
