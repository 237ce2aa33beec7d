"""Peer link handshake and framing, pure (no socket, no clock). `docs/consensus.md`, "Peer
links", is the prose version.

Every frame: u32 length | u8 channel | payload. Before login a frame is at most
MAX_HANDSHAKE_FRAME bytes, after it MAX_FRAME.

The dialling side is the initiator I, the listening side the responder R:

    I -> R  HELLO_I   "EVP2" | u8 role 0 | u8 len + chain_id | u8 len + I | u8 len + R | 32 nonce_I
    R -> I  HELLO_R   "EVP2" | u8 role 1 | u8 len + chain_id | u8 len + R | u8 len + I | 32 nonce_R
    I -> R  PROOF_I   Ed25519_I(INITIATOR_TAG | th)
    R -> I  PROOF_R   Ed25519_R(RESPONDER_TAG | th)     sent only after PROOF_I verified

    th = SHA-256(TRANSCRIPT_TAG | u16 len + HELLO_I | u16 len + HELLO_R)

A proof binds its role (the tag), the direction (both ids in order), the chain and both fresh
nonces, so it is good for one login in one direction only: a signature made on one link can
neither be relayed to log in on another nor reflected back as the other side's proof. The
responder signs nothing before the initiator proved its key, so a caller without a key never
obtains a signature over a nonce it chose or relayed.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

from .. import crypto

MAGIC = b"EVP2"
ROLE_INITIATOR, ROLE_RESPONDER = 0, 1
INITIATOR_TAG = b"EV-PEER/v2 initiator".ljust(32, b"\x00")
RESPONDER_TAG = b"EV-PEER/v2 responder".ljust(32, b"\x00")
TRANSCRIPT_TAG = b"EV-PEER/v2 transcript".ljust(32, b"\x00")
MAX_ID = 64
MAX_HANDSHAKE_FRAME = 512  # a hello (at most 4 + 1 + 3 * 65 + 32 bytes) or a 64-byte proof, plus the channel byte
MAX_FRAME = 40 * 1024 * 1024  # above the largest block a proposal or sync response carries
CH_HELLO, CH_PROOF, CH_CONSENSUS, CH_TXS = 0, 1, 2, 3


class HandshakeError(ValueError):
    """A peer that failed the handshake or broke the framing."""


def frame(channel: int, payload: bytes) -> bytes:
    if len(payload) + 1 > MAX_FRAME:
        raise ValueError("frame over the size limit")
    return struct.pack(">IB", len(payload) + 1, channel) + payload


class FrameReader:
    """Feed bytes, take whole frames; refuses a length over `max_frame` before buffering it.
    The limit is small until login and raised by the shell once the peer proved its key."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            (n,) = struct.unpack_from(">I", self._buf, 0)
            if n < 1 or n > self.max_frame:
                raise HandshakeError(f"frame length {n} out of bounds (limit {self.max_frame})")
            if len(self._buf) < 4 + n:
                break
            out.append((self._buf[4], bytes(self._buf[5:4 + n])))
            del self._buf[:4 + n]
        return out


@dataclass(frozen=True)
class Hello:
    role: int
    chain_id: str
    sender: str
    receiver: str
    nonce: bytes

    def encode(self) -> bytes:
        parts = [MAGIC, bytes([self.role])]
        for text in (self.chain_id, self.sender, self.receiver):
            raw = text.encode("ascii")
            if not 1 <= len(raw) <= MAX_ID:
                raise ValueError(f"handshake identifier must be 1-{MAX_ID} ASCII bytes")
            parts += [bytes([len(raw)]), raw]
        if len(self.nonce) != 32:
            raise ValueError("hello nonce must be 32 bytes")
        return b"".join(parts) + self.nonce

    @classmethod
    def decode(cls, payload: bytes) -> "Hello":
        if payload[:4] != MAGIC:
            raise HandshakeError("not a version-2 bureau peer (bad magic)")
        try:
            role, i, texts = payload[4], 5, []
            for _ in range(3):
                n = payload[i]
                if not 1 <= n <= MAX_ID or i + 1 + n > len(payload):
                    raise HandshakeError("malformed hello")
                texts.append(payload[i + 1:i + 1 + n].decode("ascii"))
                i += 1 + n
        except (IndexError, UnicodeDecodeError):
            raise HandshakeError("malformed hello") from None
        if role not in (ROLE_INITIATOR, ROLE_RESPONDER):
            raise HandshakeError(f"unknown hello role {role}")
        nonce = payload[i:]
        if len(nonce) != 32:
            raise HandshakeError("hello nonce must be 32 bytes")
        return cls(role, texts[0], texts[1], texts[2], bytes(nonce))


def transcript_hash(hello_i: bytes, hello_r: bytes) -> bytes:
    return hashlib.sha256(TRANSCRIPT_TAG + struct.pack(">H", len(hello_i)) + hello_i
                          + struct.pack(">H", len(hello_r)) + hello_r).digest()


def proof_message(role: int, th: bytes) -> bytes:
    return (INITIATOR_TAG if role == ROLE_INITIATOR else RESPONDER_TAG) + th


def _check_proof(public_key: bytes, role: int, th: bytes, signature: bytes, who: str) -> None:
    if len(signature) != 64 or not crypto.verify(public_key, proof_message(role, th), signature):
        raise HandshakeError(f"{who} did not prove its key")


class Initiator:
    """The dialling side: hello() -> on_hello(HELLO_R) gives PROOF_I -> on_proof(PROOF_R)."""

    def __init__(self, chain_id: str, node_id: str, peer_id: str, signing_key, keys: dict[str, bytes],
                 nonce: bytes | None = None) -> None:
        self.chain_id, self.node_id, self.peer_id = chain_id, node_id, peer_id
        self.key, self.keys = signing_key, keys
        self._hello = Hello(ROLE_INITIATOR, chain_id, node_id, peer_id, nonce or os.urandom(32)).encode()
        self._th: bytes | None = None

    def hello(self) -> bytes:
        return self._hello

    def on_hello(self, payload: bytes) -> bytes:
        h = Hello.decode(payload)
        if h.role != ROLE_RESPONDER or h.chain_id != self.chain_id:
            raise HandshakeError("hello of another chain or role")
        if h.sender != self.peer_id or h.receiver != self.node_id:
            raise HandshakeError(f"expected {self.peer_id}, answered by {h.sender!r} for {h.receiver!r}")
        self._th = transcript_hash(self._hello, payload)
        return self.key.sign(proof_message(ROLE_INITIATOR, self._th)).signature

    def on_proof(self, signature: bytes) -> None:
        if self._th is None:
            raise HandshakeError("proof before hello")
        _check_proof(self.keys[self.peer_id], ROLE_RESPONDER, self._th, signature, self.peer_id)


class Responder:
    """The listening side: on_hello(HELLO_I) gives HELLO_R -> on_proof(PROOF_I) checks it and
    only then gives PROOF_R; `peer` is the authenticated id after that."""

    def __init__(self, chain_id: str, node_id: str, signing_key, keys: dict[str, bytes],
                 nonce: bytes | None = None) -> None:
        self.chain_id, self.node_id, self.key, self.keys = chain_id, node_id, signing_key, keys
        self._nonce = nonce or os.urandom(32)
        self.claimed: str | None = None
        self.peer: str | None = None
        self._th: bytes | None = None

    def on_hello(self, payload: bytes) -> bytes:
        h = Hello.decode(payload)
        if h.role != ROLE_INITIATOR or h.chain_id != self.chain_id:
            raise HandshakeError("hello of another chain or role")
        if h.receiver != self.node_id:
            raise HandshakeError(f"hello meant for {h.receiver!r}")
        if h.sender not in self.keys or h.sender == self.node_id:
            raise HandshakeError(f"unexpected peer {h.sender!r}")
        self.claimed = h.sender
        mine = Hello(ROLE_RESPONDER, self.chain_id, self.node_id, h.sender, self._nonce).encode()
        self._th = transcript_hash(payload, mine)
        return mine

    def on_proof(self, signature: bytes) -> bytes:
        if self._th is None or self.claimed is None:
            raise HandshakeError("proof before hello")
        _check_proof(self.keys[self.claimed], ROLE_INITIATOR, self._th, signature, self.claimed)
        self.peer = self.claimed
        return self.key.sign(proof_message(ROLE_RESPONDER, self._th)).signature
