"""What the signed replies to a charger (ack, reject) share: the `str` of their signed bytes and
the check of a reply's JSON against the genesis validators' keys (docs/receipt-v1.md)."""

from __future__ import annotations

import json
import re
from typing import Callable

from .. import crypto

HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_PRINTABLE = re.compile(r"[\x20-\x7e]{1,255}\Z")


def text(s: str, what: str, error) -> bytes:
    """A signed `str`: a 1-byte length and 1-255 printable ASCII bytes."""
    if not isinstance(s, str) or not _PRINTABLE.match(s):
        raise error("malformed", f"{what} must be 1-255 printable ASCII characters")
    return bytes([len(s)]) + s.encode("ascii")


def verify_signed(payload: bytes, kind: str, version: int, keys: dict[str, bytes], error,
                  signed_of: Callable[[dict], bytes]) -> dict:
    """The reply's JSON when it is a `kind` of `version` that a validator in `keys` signed over
    `signed_of(msg)`; raises `error(reason, detail)`. What the charger checks besides (its own
    id, the receipt in its outbox) is left to the caller."""
    try:
        msg = json.loads(payload)
    except ValueError:
        raise error("malformed", "not JSON") from None
    if not isinstance(msg, dict) or msg.get("type") != kind:
        raise error("malformed", f"not a {kind}")
    if msg.get("v") != version:
        raise error("unsigned", f"{kind} version {msg.get('v')!r}; signed {kind}s are v {version}")
    try:
        sig = bytes.fromhex(msg["sig"])
        signed = signed_of(msg)
    except (KeyError, TypeError, ValueError):
        raise error("malformed", f"{kind} fields missing or of the wrong type") from None
    key = keys.get(msg["bureau"])
    if key is None:
        raise error("unknown_signer", f"{msg['bureau']} is not a bureau validator")
    if not crypto.verify(key, signed, sig):
        raise error("bad_signature", f"signature does not verify with the key of {msg['bureau']}")
    return msg
