"""Block header v1 and block encoding.

Header bytes (big-endian): u8 version | u8 len + chain_id | u64 height | 32 prev_hash |
u64 time_ms (UTC) | 32 tx_root | 32 state_root | u8 len + proposer | u32 tx_count.
The block hash is SHA-256 of the header bytes. A block on the wire or on disk is
u32 header length | header | u32 tx count | per tx: u32 length | tx bytes.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from . import merkle

HEADER_VERSION = 1
MAX_BLOCK_TXS = 20_000
MAX_BLOCK_BYTES = 32 * 1024 * 1024


class BlockError(ValueError):
    """Block or header bytes that are not a valid version-1 encoding."""


def _text(value: str) -> bytes:
    raw = value.encode("ascii")
    if not 1 <= len(raw) <= 64:
        raise BlockError("identifier must be 1-64 ASCII bytes")
    return bytes([len(raw)]) + raw


@dataclass(frozen=True)
class Header:
    chain_id: str
    height: int
    prev_hash: bytes
    time_ms: int
    tx_root: bytes
    state_root: bytes
    proposer: str
    tx_count: int
    version: int = HEADER_VERSION

    def encode(self) -> bytes:
        return b"".join((
            struct.pack(">B", self.version), _text(self.chain_id), struct.pack(">Q", self.height), self.prev_hash,
            struct.pack(">Q", self.time_ms), self.tx_root, self.state_root, _text(self.proposer),
            struct.pack(">I", self.tx_count),
        ))

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()

    @classmethod
    def decode(cls, raw: bytes) -> "Header":
        try:
            version = raw[0]
            if version != HEADER_VERSION:
                raise BlockError(f"header version {version} is not supported")
            i = 1
            n = raw[i]
            chain_id = raw[i + 1:i + 1 + n].decode("ascii")
            i += 1 + n
            (height,) = struct.unpack_from(">Q", raw, i)
            prev_hash = raw[i + 8:i + 40]
            (time_ms,) = struct.unpack_from(">Q", raw, i + 40)
            tx_root, state_root = raw[i + 48:i + 80], raw[i + 80:i + 112]
            i += 112
            n = raw[i]
            proposer = raw[i + 1:i + 1 + n].decode("ascii")
            i += 1 + n
            (tx_count,) = struct.unpack_from(">I", raw, i)
            i += 4
        except (IndexError, struct.error, UnicodeDecodeError) as e:
            raise BlockError(f"header is malformed: {e}") from None
        header = cls(chain_id, height, bytes(prev_hash), time_ms, bytes(tx_root), bytes(state_root), proposer, tx_count)
        if i != len(raw) or header.encode() != bytes(raw):
            raise BlockError("header is not in canonical form")
        return header


@dataclass(frozen=True)
class Block:
    header: Header
    txs: tuple[bytes, ...]
    _leaf_hashes: list = field(default=None, compare=False, repr=False)

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    def leaf_hashes(self) -> list[bytes]:
        if self._leaf_hashes is None:
            object.__setattr__(self, "_leaf_hashes", [merkle.leaf_hash(tx) for tx in self.txs])
        return self._leaf_hashes

    def encode(self) -> bytes:
        h = self.header.encode()
        parts = [struct.pack(">I", len(h)), h, struct.pack(">I", len(self.txs))]
        for tx in self.txs:
            parts.append(struct.pack(">I", len(tx)))
            parts.append(tx)
        return b"".join(parts)

    @classmethod
    def decode(cls, raw: bytes) -> "Block":
        if len(raw) > MAX_BLOCK_BYTES:
            raise BlockError("block over the size limit")
        try:
            (hl,) = struct.unpack_from(">I", raw, 0)
            header = Header.decode(raw[4:4 + hl])
            i = 4 + hl
            (n,) = struct.unpack_from(">I", raw, i)
            i += 4
            if n > MAX_BLOCK_TXS or n != header.tx_count:
                raise BlockError("transaction count does not match the header")
            txs = []
            for _ in range(n):
                (tl,) = struct.unpack_from(">I", raw, i)
                tx = raw[i + 4:i + 4 + tl]
                if len(tx) != tl:
                    raise BlockError("block ends inside a transaction")
                txs.append(bytes(tx))
                i += 4 + tl
        except struct.error as e:
            raise BlockError(f"block is malformed: {e}") from None
        if i != len(raw):
            raise BlockError("bytes after the last transaction")
        return cls(header, tuple(txs))

    def check_tx_root(self) -> bool:
        return merkle.root_from_leaf_hashes(self.leaf_hashes()) == self.header.tx_root


def block_hash(raw: bytes) -> bytes:
    """The hash of an encoded block without decoding it (SHA-256 of its header bytes); a pure
    function of the bytes, so consensus can identify blocks before anyone validates them."""
    if len(raw) < 4:
        raise BlockError("block is shorter than its header length")
    (hl,) = struct.unpack_from(">I", raw, 0)
    if len(raw) < 4 + hl:
        raise BlockError("block ends inside its header")
    return hashlib.sha256(raw[4:4 + hl]).digest()
