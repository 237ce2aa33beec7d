"""Peer link handshake and framing, pure.

Every frame: u32 length | u8 channel | payload, at most MAX_FRAME bytes. A link starts with one
HELLO each way: magic "EVP1" | u8 len + chain_id | u8 len + node_id | 32-byte nonce. Then one
PROOF each way: the sender's Ed25519 signature over
"EV-PEER/v1" (padded to 16) | chain_id | sender id | receiver id | sender nonce | receiver nonce,
checked with the sender's key from the genesis. Both nonces are fresh per link, so a recorded
handshake cannot be replayed, and a node can only ever speak as itself.
"""

from __future__ import annotations

import struct

from .. import crypto

MAGIC = b"EVP1"
PEER_TAG = b"EV-PEER/v1".ljust(16, b"\x00")
MAX_FRAME = 40 * 1024 * 1024  # above the largest block a proposal or sync response carries
CH_HELLO, CH_PROOF, CH_CONSENSUS, CH_TXS = 0, 1, 2, 3


class HandshakeError(ValueError):
    """A peer that failed the handshake or broke the framing."""


def frame(channel: int, payload: bytes) -> bytes:
    if len(payload) + 1 > MAX_FRAME:
        raise ValueError("frame over the size limit")
    return struct.pack(">IB", len(payload) + 1, channel) + payload


class FrameReader:
    """Feed bytes, take whole frames; refuses a length over MAX_FRAME before buffering it."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            (n,) = struct.unpack_from(">I", self._buf, 0)
            if n < 1 or n > MAX_FRAME:
                raise HandshakeError(f"frame length {n} out of bounds")
            if len(self._buf) < 4 + n:
                break
            out.append((self._buf[4], bytes(self._buf[5:4 + n])))
            del self._buf[:4 + n]
        return out


def hello(chain_id: str, node_id: str, nonce: bytes) -> bytes:
    c, n = chain_id.encode(), node_id.encode()
    return MAGIC + bytes([len(c)]) + c + bytes([len(n)]) + n + nonce


def parse_hello(payload: bytes) -> tuple[str, str, bytes]:
    try:
        if payload[:4] != MAGIC:
            raise HandshakeError("not a bureau peer (bad magic or version)")
        i = 4
        c = payload[i + 1:i + 1 + payload[i]].decode("ascii")
        i += 1 + payload[i]
        n = payload[i + 1:i + 1 + payload[i]].decode("ascii")
        i += 1 + payload[i]
        nonce = payload[i:]
    except (IndexError, UnicodeDecodeError):
        raise HandshakeError("malformed hello") from None
    if len(nonce) != 32:
        raise HandshakeError("hello nonce must be 32 bytes")
    return c, n, bytes(nonce)


def proof_message(chain_id: str, sender: str, receiver: str, sender_nonce: bytes, receiver_nonce: bytes) -> bytes:
    return PEER_TAG + b"|".join((chain_id.encode(), sender.encode(), receiver.encode())) + sender_nonce + receiver_nonce


def check_proof(public_key: bytes, signature: bytes, chain_id: str, sender: str, receiver: str,
                sender_nonce: bytes, receiver_nonce: bytes) -> None:
    if not crypto.verify(public_key, proof_message(chain_id, sender, receiver, sender_nonce, receiver_nonce), signature):
        raise HandshakeError(f"{sender} did not prove its key")
