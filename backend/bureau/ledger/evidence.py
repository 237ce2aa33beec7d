"""Equivocation evidence, transaction kind 5 (docs/consensus.md, "Equivocation evidence").

    0x05 | vote A (the 114-byte consensus wire encoding of a prevote or precommit) | vote B

A and B are of the same kind, height, round and validator index and differ in block id (either
may be nil), A's block id the lower of the two, so one pair of votes has one encoding. The
validator index is its position in the set in force at that height. The transaction needs no
signature of its own: the two vote signatures are the proof.
"""

from __future__ import annotations

from .. import crypto
from ..consensus.types import DecodeError, Step, Vote, decode_message, encode_message
from .tx import KIND_EVIDENCE, TxError

VOTE_BYTES = 114  # "EB" | version | type | u64 height | u32 round | 32 block id | u16 index | 64 signature


def encode(a: Vote, b: Vote) -> bytes:
    """The evidence transaction of two conflicting votes, in either order."""
    if b.block_hash < a.block_hash:
        a, b = b, a
    return bytes([KIND_EVIDENCE]) + encode_message(a) + encode_message(b)


def decode(tx: bytes) -> tuple[Vote, Vote]:
    """The two votes of a well-formed evidence transaction; TxError("malformed") otherwise
    (signatures are checked by the caller, against the set in force at their height)."""
    if len(tx) != 1 + 2 * VOTE_BYTES or tx[0] != KIND_EVIDENCE:
        raise TxError("malformed", f"evidence is 0x05 and two votes of {VOTE_BYTES} bytes")
    try:
        a, b = decode_message(tx[1:1 + VOTE_BYTES]), decode_message(tx[1 + VOTE_BYTES:])
    except DecodeError as e:
        raise TxError("malformed", f"evidence vote: {e}") from None
    if not isinstance(a, Vote) or not isinstance(b, Vote) or a.kind not in (Step.PREVOTE, Step.PRECOMMIT):
        raise TxError("malformed", "evidence holds two prevotes or two precommits")
    if (a.kind, a.height, a.round, a.validator) != (b.kind, b.height, b.round, b.validator):
        raise TxError("malformed", "the votes differ in kind, height, round or validator: no equivocation")
    if not a.block_hash < b.block_hash:
        raise TxError("malformed", "the first vote's block id must be the lower one (and the two must differ)")
    return a, b


def signed_by(chain_id: str, public_key: bytes, a: Vote, b: Vote) -> bool:
    return (crypto.verify(public_key, a.sign_bytes(chain_id), a.signature)
            and crypto.verify(public_key, b.sign_bytes(chain_id), b.signature))
