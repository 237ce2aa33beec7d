"""The signed receipt reject, v2 (docs/receipt-v1.md, "Replies to the charger").

A charger moves a receipt out of its sending queue (into refused/) only on a reject signed by a
bureau validator of its genesis for its chain, its id, and the seq and receipt id of that
receipt. The rejecting bureau signs with its node key:

    "EV-REJECT/v2" zero-padded to 16 bytes | chain_id str | bureau str | charger_id str |
    named u8 | (when named is 1) seq u32 | receipt id 32 bytes | reason str | detail str

`named` is 0 for a reject of an envelope too broken to read its seq: such a reject names no
receipt and moves nothing. `str` is a 1-byte length and that many printable ASCII bytes (1-255;
the detail 0-255, cut and cleaned by `printable_detail`); integers unsigned big-endian. The
firmware's signed_reply.py builds the same bytes; tests/vectors/replies.json holds the two together.
"""

from __future__ import annotations

import json
import struct

from ..errors import ReasonedError, printable_detail
from .signed_reply import HEX64, text, verify_signed

REJECT_VERSION = 2
REJECT_TAG = b"EV-REJECT/v2".ljust(16, b"\x00")


class RejectError(ReasonedError):
    """A reject that must not move a receipt: see `reason`."""


def signed_bytes(chain_id: str, bureau: str, charger_id: str, seq: int | None, receipt_id: str | None,
                 reason: str, detail: str) -> bytes:
    out = REJECT_TAG + text(chain_id, "chain id", RejectError) + text(bureau, "bureau", RejectError) \
        + text(charger_id, "charger id", RejectError)
    if seq is None and receipt_id is None:
        out += b"\x00"
    else:
        if not isinstance(receipt_id, str) or not HEX64.match(receipt_id) \
                or not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= 2**32 - 1:
            raise RejectError("malformed", "a reject names both a seq (1..2^32-1) and a receipt id (64 hex), "
                                           "or neither")
        out += b"\x01" + struct.pack(">I", seq) + bytes.fromhex(receipt_id)
    if not isinstance(detail, str) or printable_detail(detail) != detail:
        raise RejectError("malformed", "detail must be 0-255 printable ASCII characters")
    return out + text(reason, "reason", RejectError) + bytes([len(detail)]) + detail.encode("ascii")


def reject_message(chain_id: str, bureau: str, signing_key, charger_id: str, seq: int | None,
                   receipt_id: str | None, reason: str, detail: str) -> bytes:
    """The reject JSON for the charger's reply topic, signed with the bureau's node key; `seq`
    and `receipt_id` are None when the envelope could not be read."""
    if seq is None or receipt_id is None:
        seq = receipt_id = None
    detail = printable_detail(detail)
    sig = signing_key.sign(signed_bytes(chain_id, bureau, charger_id, seq, receipt_id, reason, detail)).signature
    return json.dumps({"v": REJECT_VERSION, "type": "reject", "charger": charger_id, "seq": seq,
                       "receipt": receipt_id, "reason": reason, "detail": detail, "bureau": bureau,
                       "sig": sig.hex()}, separators=(",", ":")).encode()


def verify_reject(payload: bytes, chain_id: str, keys: dict[str, bytes]) -> dict:
    """The reject's JSON when a validator in `keys` signed it for `chain_id`; raises RejectError."""
    return verify_signed(payload, "reject", REJECT_VERSION, keys, RejectError, lambda m: signed_bytes(
        chain_id, m["bureau"], m["charger"], m["seq"], m["receipt"], m["reason"], m["detail"]))
