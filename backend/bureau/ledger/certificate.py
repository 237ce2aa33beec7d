"""Commit certificates: Ed25519 precommit signatures of more than 2/3 of the voting power over
(chain id, height, round, block hash). Checkable with nothing but the genesis validator set.

Precommit sign bytes v1: "EV-PRECOMMIT/v1" padded to 16 bytes | u8 len + chain_id | u64 height |
u32 round | 32-byte block hash. Certificate bytes: canonical JSON
{"v":1,"height":H,"round":R,"block_hash":hex,"signatures":[{"validator":id,"signature":hex},...]}.
"""

from __future__ import annotations

import json
import struct

from .. import crypto
from .canonical import dumps
from .genesis import Validator

PRECOMMIT_TAG = b"EV-PRECOMMIT/v1".ljust(16, b"\x00")


class CertificateError(ValueError):
    """A commit certificate that does not prove +2/3 of the power."""


def precommit_bytes(chain_id: str, height: int, round_: int, block_hash: bytes) -> bytes:
    cid = chain_id.encode("ascii")
    return PRECOMMIT_TAG + bytes([len(cid)]) + cid + struct.pack(">QI", height, round_) + block_hash


def encode(height: int, round_: int, block_hash: bytes, signatures: dict[str, bytes]) -> bytes:
    return dumps({"v": 1, "height": height, "round": round_, "block_hash": block_hash.hex(),
                  "signatures": [{"validator": v, "signature": s.hex()} for v, s in sorted(signatures.items())]})


def sign_commit(signing_key, node_id: str, chain_id: str, height: int, round_: int, block_hash: bytes) -> bytes:
    return signing_key.sign(precommit_bytes(chain_id, height, round_, block_hash)).signature


def verify(validators: tuple[Validator, ...], chain_id: str, height: int, block_hash: bytes, cert: bytes) -> None:
    """Raise CertificateError unless `cert` proves +2/3 of the power precommitted this block."""
    try:
        doc = json.loads(cert)
        if not isinstance(doc, dict) or doc.get("v") != 1:
            raise CertificateError("certificate version must be 1")
        round_ = int(doc["round"])
        if int(doc["height"]) != height or bytes.fromhex(doc["block_hash"]) != block_hash:
            raise CertificateError("certificate is for another block")
        sigs = [(s["validator"], bytes.fromhex(s["signature"])) for s in doc["signatures"]]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, CertificateError):
            raise
        raise CertificateError(f"certificate is malformed: {e}") from None
    by_id = {v.id: v for v in validators}
    total = sum(v.power for v in validators)
    message = precommit_bytes(chain_id, height, round_, block_hash)
    seen, power = set(), 0
    for vid, sig in sigs:
        v = by_id.get(vid)
        if v is None or vid in seen:
            raise CertificateError(f"signature of unknown or repeated validator {vid!r}")
        if not crypto.verify(v.public_key, message, sig):
            raise CertificateError(f"signature of {vid} does not verify")
        seen.add(vid)
        power += v.power
    if 3 * power <= 2 * total:
        raise CertificateError(f"signatures carry {power} of {total} voting power, not more than 2/3")
