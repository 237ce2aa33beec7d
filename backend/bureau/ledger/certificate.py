"""Commit certificates: Ed25519 precommit signatures of more than 2/3 of the voting power over
(chain id, height, round, block hash). Checkable with nothing but the genesis validator set, and
checked by this one strict verifier everywhere: at commit, in sync, in the audit, in a receipt
proof and in the consensus core. `docs/consensus.md` is the prose version.

Precommit sign bytes v1, integers big-endian: "EV-PRECOMMIT/v1" padded with NUL to 16 bytes |
u8 len + chain_id (1-64 printable ASCII) | u64 height | u32 round | 32-byte block hash.

Certificate bytes v1: the canonical JSON (keys sorted, no spaces, lower-case hex)

    {"block_hash":hex,"height":H,"round":R,"signatures":[{"signature":hex,"validator":id},...],"v":1}

with the signatures in strictly ascending validator id order, so one set of precommits has
exactly one encoding and anything else is refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Union

from ..errors import ReasonedError
from .canonical import dumps, loads_canonical
from .validators import MAX_VALIDATORS, ValidatorSet

VERSION = 1
PRECOMMIT_TAG = b"EV-PRECOMMIT/v1".ljust(16, b"\x00")
NIL = bytes(32)                          # the hash a nil vote signs; no block has it
MAX_HEIGHT = (1 << 63) - 1
MAX_ROUND = (1 << 31) - 1
MAX_CHAIN_ID = 64
MAX_CERT_BYTES = 256 * 1024              # 1000 signatures of ~170 JSON bytes each fit
_HR = struct.Struct(">QI")


class CertificateError(ReasonedError):
    """Bytes that are no canonical certificate, or a certificate that does not prove +2/3 of the
    power precommitted this block. `reason` is one of: bad_type, too_large, bad_certificate,
    unsupported_version, wrong_block, bad_chain_id, unknown_validator, bad_signature,
    insufficient_power."""


@lru_cache(maxsize=64)
def chain_id_bytes(chain_id: str) -> bytes:
    """u8 length + ASCII chain id; the chain id is 1-64 printable ASCII characters."""
    try:
        raw = chain_id.encode("ascii")
    except (UnicodeEncodeError, AttributeError):
        raise ValueError(f"chain id must be ASCII, got {chain_id!r}") from None
    if not 1 <= len(raw) <= MAX_CHAIN_ID or not all(0x20 <= c <= 0x7E for c in raw):
        raise ValueError(f"chain id must be 1-{MAX_CHAIN_ID} printable ASCII characters, got {chain_id!r}")
    return bytes([len(raw)]) + raw


def precommit_bytes(chain_id: str, height: int, round_: int, block_hash: bytes) -> bytes:
    return PRECOMMIT_TAG + chain_id_bytes(chain_id) + _HR.pack(height, round_) + block_hash


@dataclass(frozen=True, slots=True)
class Certificate:
    """Precommits of one (height, round, block_hash), as (validator id, signature) pairs in
    ascending id order."""
    height: int
    round: int
    block_hash: bytes
    signatures: tuple[tuple[str, bytes], ...]

    def encode(self) -> bytes:
        return dumps({"v": VERSION, "height": self.height, "round": self.round, "block_hash": self.block_hash.hex(),
                      "signatures": [{"validator": v, "signature": s.hex()} for v, s in sorted(self.signatures)]})

    @classmethod
    def decode(cls, raw: bytes) -> "Certificate":
        """Strict parse: canonical bytes only (they re-encode to themselves); raises CertificateError."""
        if not isinstance(raw, (bytes, bytearray)):
            raise CertificateError("bad_type", "certificate must be bytes")
        raw = bytes(raw)
        if len(raw) > MAX_CERT_BYTES:
            raise CertificateError("too_large", f"certificate of {len(raw)} bytes is over {MAX_CERT_BYTES}")
        try:
            doc = loads_canonical(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise CertificateError("bad_certificate", f"not canonical JSON: {e}") from None
        if not isinstance(doc, dict) or set(doc) != {"v", "height", "round", "block_hash", "signatures"}:
            raise CertificateError("bad_certificate", "expected exactly the keys v, height, round, block_hash, signatures")
        if type(doc["v"]) is not int or doc["v"] != VERSION:
            raise CertificateError("unsupported_version", f"certificate version {doc['v']!r}, this node reads {VERSION}")
        h, r, bh, sigs = doc["height"], doc["round"], doc["block_hash"], doc["signatures"]
        if type(h) is not int or type(r) is not int or not 1 <= h <= MAX_HEIGHT or not 0 <= r <= MAX_ROUND:
            raise CertificateError("bad_certificate", "height and round must be integers in range")
        block_hash = _hex(bh)
        if len(block_hash) != 32 or block_hash == NIL:
            raise CertificateError("bad_certificate", "block_hash must be 32 bytes of hex, not nil")
        if not isinstance(sigs, list) or not 1 <= len(sigs) <= MAX_VALIDATORS:
            raise CertificateError("bad_certificate", f"signatures must be a list of 1..{MAX_VALIDATORS}")
        out = []
        for s in sigs:
            if not isinstance(s, dict) or set(s) != {"validator", "signature"} or not isinstance(s["validator"], str):
                raise CertificateError("bad_certificate", "each signature is {validator: id, signature: hex}")
            sig = _hex(s["signature"])
            if len(sig) != 64:
                raise CertificateError("bad_certificate", f"signature of {s['validator']!r} is not 64 bytes of hex")
            out.append((s["validator"], sig))
        ids = [vid for vid, _ in out]
        if any(a >= b for a, b in zip(ids, ids[1:])):
            raise CertificateError("bad_certificate", "signers must be in strictly ascending id order, each once")
        cert = cls(h, r, block_hash, tuple(out))
        if cert.encode() != raw:  # lower-case hex, nothing after the document
            raise CertificateError("bad_certificate", "certificate is not in canonical form")
        return cert


def _hex(value: Any) -> bytes:
    try:
        return bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        return b""


def verify(validators: ValidatorSet, chain_id: str, height: int, block_hash: bytes,
           cert: Union[bytes, Certificate], *, verifier: Any = None) -> Certificate:
    """The certificate, if `cert` (bytes or Certificate) proves that validators holding more than
    2/3 of the power of `validators` (the genesis set) precommitted `block_hash` at `height` on
    `chain_id` in one round; raises CertificateError otherwise. Every listed signature must
    verify and every signer be known. `verifier` is an optional object with
    verify(public_key, message, signature) -> bool (e.g. a SignatureCache); by default each
    signature is checked with libsodium."""
    if verifier is None:
        from ..crypto import verify as check
    else:
        check = verifier.verify
    if not isinstance(cert, Certificate):
        cert = Certificate.decode(cert)
    if cert.height != height or cert.block_hash != block_hash or block_hash == NIL:
        raise CertificateError("wrong_block", f"certificate is for block {cert.block_hash.hex()[:16]} at height "
                                              f"{cert.height}, not {block_hash.hex()[:16]} at {height}")
    try:
        message = precommit_bytes(chain_id, height, cert.round, block_hash)
    except ValueError as e:
        raise CertificateError("bad_chain_id", str(e)) from None
    power = 0
    last = None
    for vid, sig in cert.signatures:
        if last is not None and vid <= last:  # a Certificate built in memory, not decoded
            raise CertificateError("bad_certificate", "signers must be in strictly ascending id order, each once")
        last = vid
        v = validators.by_id(vid)
        if v is None:
            raise CertificateError("unknown_validator", f"{vid!r} is not a validator of {chain_id}")
        if not check(v.public_key, message, sig):
            raise CertificateError("bad_signature", f"precommit signature of {vid} does not verify")
        power += v.power
    if not validators.has_quorum(power):
        raise CertificateError("insufficient_power", f"signatures carry {power} of {validators.total_power} voting "
                               "power, not more than 2/3")
    return cert
