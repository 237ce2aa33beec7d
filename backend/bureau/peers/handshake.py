"""Peer link handshake and framing, pure (no socket, no clock). `docs/consensus.md`, "Peer
links", is the prose version.

Every frame: u32 length | body. Before login the body is u8 channel | payload and a frame is
at most MAX_HANDSHAKE_FRAME bytes; after it the body is sealed (`FrameSealer`) and at most
MAX_FRAME bytes.

The dialling side is the initiator I, the listening side the responder R:

    I -> R  HELLO_I   "EVP3" | u8 role 0 | u8 len + chain_id | u8 len + I | u8 len + R | 32 nonce_I | 32 E_I
    R -> I  HELLO_R   "EVP3" | u8 role 1 | u8 len + chain_id | u8 len + R | u8 len + I | 32 nonce_R | 32 E_R
    I -> R  PROOF_I   Ed25519_I(INITIATOR_TAG | th)
    R -> I  PROOF_R   Ed25519_R(RESPONDER_TAG | th)     sent only after PROOF_I verified

    th = SHA-256(TRANSCRIPT_TAG | u16 len + HELLO_I | u16 len + HELLO_R)

E_I and E_R are X25519 public keys made for this login only. A proof binds its role (the tag),
the direction (both ids in order), the chain, both fresh nonces and both ephemeral keys, so it
is good for one login in one direction only: a signature made on one link can neither be
relayed to log in on another nor reflected back as the other side's proof. The responder signs
nothing before the initiator proved its key, so a caller without a key never obtains a
signature over a nonce it chose or relayed.

After both proofs, each direction has its own key (`link_keys`), which nobody who merely relayed
the login knows: the ephemeral keys it saw are signed, so it cannot have swapped in its own.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
from nacl.public import PrivateKey

from .. import crypto

MAGIC = b"EVP3"
ROLE_INITIATOR, ROLE_RESPONDER = 0, 1
INITIATOR_TAG = b"EV-PEER/v3 initiator".ljust(32, b"\x00")
RESPONDER_TAG = b"EV-PEER/v3 responder".ljust(32, b"\x00")
TRANSCRIPT_TAG = b"EV-PEER/v3 transcript".ljust(32, b"\x00")
KEY_TAGS = {ROLE_INITIATOR: b"EV-PEER/v3 key I->R".ljust(32, b"\x00"),
            ROLE_RESPONDER: b"EV-PEER/v3 key R->I".ljust(32, b"\x00")}
MAX_ID = 64
MAX_HANDSHAKE_FRAME = 512  # a hello (at most 4 + 1 + 3 * 65 + 64 bytes) or a 64-byte proof, plus the channel byte
MAX_FRAME = 40 * 1024 * 1024  # above the largest block a proposal or sync response carries
SEAL_OVERHEAD = 1 + nacl.bindings.crypto_aead_chacha20poly1305_ietf_ABYTES  # channel byte and tag
CH_HELLO, CH_PROOF, CH_CONSENSUS, CH_TXS = 0, 1, 2, 3


class HandshakeError(ValueError):
    """A peer that failed the handshake or broke the framing."""


class FrameAuthError(HandshakeError):
    """A frame after login that does not open under the link's key: forged, altered, replayed
    or out of order. The link cannot be trusted after it."""


def frame(channel: int, payload: bytes) -> bytes:
    """A frame before login: u32 length | u8 channel | payload."""
    if len(payload) + 1 > MAX_FRAME:
        raise ValueError("frame over the size limit")
    return struct.pack(">IB", len(payload) + 1, channel) + payload


def split_plain(body: bytes) -> tuple[int, bytes]:
    """(channel, payload) of a frame body before login."""
    return body[0], body[1:]


class FrameReader:
    """Feed bytes, take whole frame bodies; refuses a length over `max_frame` before buffering
    it. The limit is small until login and raised by the shell once the peer proved its key."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out, i = [], 0
        while len(self._buf) - i >= 4:
            (n,) = struct.unpack_from(">I", self._buf, i)
            if n < 1 or n > self.max_frame:
                raise HandshakeError(f"frame length {n} out of bounds (limit {self.max_frame})")
            if len(self._buf) - i < 4 + n:
                break
            out.append(bytes(self._buf[i + 4:i + 4 + n]))
            i += 4 + n
        del self._buf[:i]
        return out


class FrameSealer:
    """One direction of a logged-in link. A sealed frame is

        u32 n | ChaCha20-Poly1305-IETF(key, nonce = 4 zero bytes | u64 counter, aad = u32 n,
                                       u8 channel | payload)

    with n = 1 + len(payload) + 16 and the counter counting this direction's frames from 0. The
    receiver keeps its own count, so a frame that was dropped, replayed, reordered or made up
    fails to open."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("link keys are 32 bytes")
        self._key = key
        self._counter = 0

    def _nonce(self) -> bytes:
        if self._counter >= 1 << 64:
            raise HandshakeError("link used up its frame counter")
        nonce = b"\x00\x00\x00\x00" + self._counter.to_bytes(8, "big")
        self._counter += 1
        return nonce

    def seal(self, channel: int, payload: bytes) -> bytes:
        n = len(payload) + SEAL_OVERHEAD
        if n > MAX_FRAME:
            raise ValueError("frame over the size limit")
        header = struct.pack(">I", n)
        return header + nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
            bytes([channel]) + payload, header, self._nonce(), self._key)

    def open(self, body: bytes) -> tuple[int, bytes]:
        """(channel, payload) of a sealed frame body (what FrameReader gives)."""
        if len(body) < SEAL_OVERHEAD:
            raise FrameAuthError("sealed frame shorter than its tag")
        try:
            plain = nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(
                body, struct.pack(">I", len(body)), self._nonce(), self._key)
        except nacl.exceptions.CryptoError:
            raise FrameAuthError("frame failed authentication") from None
        return plain[0], plain[1:]


@dataclass(frozen=True)
class Hello:
    role: int
    chain_id: str
    sender: str
    receiver: str
    nonce: bytes
    ephemeral: bytes  # X25519 public key of this login

    def encode(self) -> bytes:
        parts = [MAGIC, bytes([self.role])]
        for text in (self.chain_id, self.sender, self.receiver):
            raw = text.encode("ascii")
            if not 1 <= len(raw) <= MAX_ID:
                raise ValueError(f"handshake identifier must be 1-{MAX_ID} ASCII bytes")
            parts += [bytes([len(raw)]), raw]
        if len(self.nonce) != 32 or len(self.ephemeral) != 32:
            raise ValueError("hello nonce and ephemeral key must be 32 bytes each")
        return b"".join(parts) + self.nonce + self.ephemeral

    @classmethod
    def decode(cls, payload: bytes) -> "Hello":
        if payload[:4] != MAGIC:
            raise HandshakeError("not a version-3 bureau peer (bad magic)")
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
        rest = payload[i:]
        if len(rest) != 64:
            raise HandshakeError("hello must end in a 32-byte nonce and a 32-byte ephemeral key")
        return cls(role, texts[0], texts[1], texts[2], bytes(rest[:32]), bytes(rest[32:]))


def transcript_hash(hello_i: bytes, hello_r: bytes) -> bytes:
    return hashlib.sha256(TRANSCRIPT_TAG + struct.pack(">H", len(hello_i)) + hello_i
                          + struct.pack(">H", len(hello_r)) + hello_r).digest()


def proof_message(role: int, th: bytes) -> bytes:
    return (INITIATOR_TAG if role == ROLE_INITIATOR else RESPONDER_TAG) + th


def link_keys(ephemeral: PrivateKey, peer_ephemeral: bytes, th: bytes) -> dict[int, bytes]:
    """The key of each direction, by the role of the side that sends on it:
    HMAC-SHA256(X25519(own ephemeral, peer's ephemeral), KEY_TAG | th)."""
    try:
        shared = nacl.bindings.crypto_scalarmult(ephemeral.encode(), peer_ephemeral)
    except nacl.exceptions.RuntimeError:  # libsodium refuses a result of all zeros
        raise HandshakeError("ephemeral key of low order") from None
    return {role: hmac.new(shared, tag + th, hashlib.sha256).digest() for role, tag in KEY_TAGS.items()}


def _check_proof(public_key: bytes, role: int, th: bytes, signature: bytes, who: str) -> None:
    if len(signature) != 64 or not crypto.verify(public_key, proof_message(role, th), signature):
        raise HandshakeError(f"{who} did not prove its key")


@dataclass
class Session:
    """A logged-in link: what this side sends is sealed by `outgoing`, what it receives is opened
    by `incoming`."""
    peer: str
    outgoing: FrameSealer
    incoming: FrameSealer


class Initiator:
    """The dialling side: hello() -> on_hello(HELLO_R) gives PROOF_I -> on_proof(PROOF_R) gives
    the Session."""

    def __init__(self, chain_id: str, node_id: str, peer_id: str, signing_key, keys: dict[str, bytes],
                 nonce: bytes | None = None, ephemeral: PrivateKey | None = None) -> None:
        self.chain_id, self.node_id, self.peer_id = chain_id, node_id, peer_id
        self.key, self.keys = signing_key, keys
        self._ephemeral = ephemeral or PrivateKey.generate()
        self._hello = Hello(ROLE_INITIATOR, chain_id, node_id, peer_id, nonce or os.urandom(32),
                            self._ephemeral.public_key.encode()).encode()
        self._th: bytes | None = None
        self._peer_ephemeral = b""

    def hello(self) -> bytes:
        return self._hello

    def on_hello(self, payload: bytes) -> bytes:
        h = Hello.decode(payload)
        if h.role != ROLE_RESPONDER or h.chain_id != self.chain_id:
            raise HandshakeError("hello of another chain or role")
        if h.sender != self.peer_id or h.receiver != self.node_id:
            raise HandshakeError(f"expected {self.peer_id}, answered by {h.sender!r} for {h.receiver!r}")
        self._th = transcript_hash(self._hello, payload)
        self._peer_ephemeral = h.ephemeral
        return self.key.sign(proof_message(ROLE_INITIATOR, self._th)).signature

    def on_proof(self, signature: bytes) -> Session:
        if self._th is None:
            raise HandshakeError("proof before hello")
        _check_proof(self.keys[self.peer_id], ROLE_RESPONDER, self._th, signature, self.peer_id)
        keys = link_keys(self._ephemeral, self._peer_ephemeral, self._th)
        return Session(self.peer_id, FrameSealer(keys[ROLE_INITIATOR]), FrameSealer(keys[ROLE_RESPONDER]))


class Responder:
    """The listening side: on_hello(HELLO_I) gives HELLO_R -> on_proof(PROOF_I) checks it and
    only then gives PROOF_R; `session` is the authenticated link after that."""

    def __init__(self, chain_id: str, node_id: str, signing_key, keys: dict[str, bytes],
                 nonce: bytes | None = None, ephemeral: PrivateKey | None = None) -> None:
        self.chain_id, self.node_id, self.key, self.keys = chain_id, node_id, signing_key, keys
        self._nonce = nonce or os.urandom(32)
        self._ephemeral = ephemeral or PrivateKey.generate()
        self.claimed: str | None = None
        self.session: Session | None = None
        self._th: bytes | None = None
        self._peer_ephemeral = b""

    @property
    def peer(self) -> str | None:
        """The authenticated id of the initiator, once its proof checked out."""
        return self.session.peer if self.session else None

    def on_hello(self, payload: bytes) -> bytes:
        h = Hello.decode(payload)
        if h.role != ROLE_INITIATOR or h.chain_id != self.chain_id:
            raise HandshakeError("hello of another chain or role")
        if h.receiver != self.node_id:
            raise HandshakeError(f"hello meant for {h.receiver!r}")
        if h.sender not in self.keys or h.sender == self.node_id:
            raise HandshakeError(f"unexpected peer {h.sender!r}")
        self.claimed = h.sender
        self._peer_ephemeral = h.ephemeral
        mine = Hello(ROLE_RESPONDER, self.chain_id, self.node_id, h.sender, self._nonce,
                     self._ephemeral.public_key.encode()).encode()
        self._th = transcript_hash(payload, mine)
        return mine

    def on_proof(self, signature: bytes) -> bytes:
        if self._th is None or self.claimed is None:
            raise HandshakeError("proof before hello")
        _check_proof(self.keys[self.claimed], ROLE_INITIATOR, self._th, signature, self.claimed)
        keys = link_keys(self._ephemeral, self._peer_ephemeral, self._th)
        self.session = Session(self.claimed, FrameSealer(keys[ROLE_RESPONDER]), FrameSealer(keys[ROLE_INITIATOR]))
        return self.key.sign(proof_message(ROLE_RESPONDER, self._th)).signature
