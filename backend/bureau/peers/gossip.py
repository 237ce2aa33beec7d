"""Transactions relayed between bureaus: whatever one bureau admits reaches the others, so the
next proposer holds it whichever bureau it is.

Batch bytes: u8 version (1) | u32 count | per tx: u32 length | tx. Bounded by MAX_BATCH_TXS and
the frame limit of the link.
"""

from __future__ import annotations

import struct

from ..ledger.tx import MAX_TX

VERSION = 1
MAX_BATCH_TXS = 10_000


class GossipError(ValueError):
    """A relayed transaction batch that is malformed."""


def encode_batch(txs: list[bytes]) -> bytes:
    parts = [struct.pack(">BI", VERSION, len(txs))]
    for tx in txs:
        parts.append(struct.pack(">I", len(tx)))
        parts.append(tx)
    return b"".join(parts)


def decode_batch(data: bytes) -> list[bytes]:
    if len(data) < 5 or data[0] != VERSION:
        raise GossipError("not a version-1 transaction batch")
    (n,) = struct.unpack_from(">I", data, 1)
    if n > MAX_BATCH_TXS:
        raise GossipError(f"batch of {n} transactions, limit {MAX_BATCH_TXS}")
    txs, i = [], 5
    for _ in range(n):
        if i + 4 > len(data):
            raise GossipError("batch ends early")
        (k,) = struct.unpack_from(">I", data, i)
        if k == 0 or k > MAX_TX or i + 4 + k > len(data):
            raise GossipError("transaction length out of bounds")
        txs.append(data[i + 4:i + 4 + k])
        i += 4 + k
    if i != len(data):
        raise GossipError("bytes after the last transaction")
    return txs
