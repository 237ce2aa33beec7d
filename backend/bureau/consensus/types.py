"""Consensus data: signed messages, their canonical bytes,
write-ahead-log records and the `Ready` batch the core hands to its shell.

Everything here is pure: no clock, no socket, no file. `docs/consensus.md` is the prose
version of the formats below.

Sign bytes (what an Ed25519 signature covers), all integers big-endian:

    tag (16 bytes, ASCII padded with NUL: "EV-PROPOSAL/v1", "EV-PREVOTE/v1", "EV-PRECOMMIT/v1")
    | u8 len + chain_id (1-64 ASCII bytes) | u64 height | u32 round | 32-byte block hash
    | i32 pol_round (proposals only)

A nil vote signs the all-zero hash (`NIL`), which no block can have. A precommit for a block
signs exactly `bureau.ledger.certificate.precommit_bytes`, so the certificate the core builds is
the one the ledger stores and audits, and `bureau.ledger.certificate.verify` is the one check of
it everywhere. The validator set is the genesis one (`bureau.ledger.validators`).

Wire messages: b"EB" | u8 version (1) | u8 type | body (see `encode_message`).
WAL records:   b"EW" | u8 version (1) | u8 type | body (see `encode_record`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Callable, Union

from ..errors import ReasonedError
from ..ledger.certificate import (MAX_CERT_BYTES, MAX_CHAIN_ID, MAX_HEIGHT, MAX_ROUND, NIL, PRECOMMIT_TAG,
                                  Certificate, CertificateError, chain_id_bytes)
from ..ledger.validators import MAX_PROPOSER_PERIOD, MAX_VALIDATORS, Validator, ValidatorSet

PROTOCOL_VERSION = 1
WIRE_MAGIC = b"EB"
RECORD_MAGIC = b"EW"

MAX_BLOCK_BYTES = 32 * 1024 * 1024          # the ledger's own block limit
MAX_SYNC_BATCH = 64
MAX_MESSAGE_BYTES = MAX_BLOCK_BYTES + 1024 * 1024


class Step(IntEnum):
    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3


class MsgType(IntEnum):
    PROPOSAL = 1
    PREVOTE = 2
    PRECOMMIT = 3
    SYNC_REQUEST = 4
    SYNC_RESPONSE = 5


class DecodeError(ReasonedError):
    """Malformed bytes. `reason` is a short machine word, the message says what and where."""


# --------------------------------------------------------------------------- sign bytes

_TAGS = {
    Step.PROPOSE: b"EV-PROPOSAL/v1".ljust(16, b"\x00"),
    Step.PREVOTE: b"EV-PREVOTE/v1".ljust(16, b"\x00"),
    Step.PRECOMMIT: PRECOMMIT_TAG,
}
_HR = struct.Struct(">QI")
_I32 = struct.Struct(">i")


def vote_sign_bytes(chain_id: str, kind: int, height: int, round_: int, block_hash: bytes) -> bytes:
    return _TAGS[kind] + chain_id_bytes(chain_id) + _HR.pack(height, round_) + block_hash


def proposal_sign_bytes(chain_id: str, height: int, round_: int, block_hash: bytes, pol_round: int) -> bytes:
    return _TAGS[Step.PROPOSE] + chain_id_bytes(chain_id) + _HR.pack(height, round_) + block_hash + _I32.pack(pol_round)


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Vote:
    """A prevote or precommit (`kind` is Step.PREVOTE or Step.PRECOMMIT) of validator `validator`
    (its index) for `block_hash`, or for nothing when block_hash is NIL."""
    kind: int
    height: int
    round: int
    block_hash: bytes
    validator: int
    signature: bytes

    def sign_bytes(self, chain_id: str) -> bytes:
        return vote_sign_bytes(chain_id, self.kind, self.height, self.round, self.block_hash)

    @property
    def step(self) -> int:
        return self.kind


@dataclass(frozen=True, slots=True)
class Proposal:
    """The proposer of (height, round) proposes `block`. pol_round >= 0 says the block is the
    proposer's valid value, which had a polka (+2/3 prevotes) in that round; `pol` then carries
    those prevotes as (validator index, signature): their sign bytes are prevotes for
    (height, pol_round, hash of block), so they need not be repeated."""
    height: int
    round: int
    pol_round: int
    block: bytes
    signature: bytes
    pol: tuple[tuple[int, bytes], ...] = ()

    def sign_bytes(self, chain_id: str, block_hash: bytes) -> bytes:
        return proposal_sign_bytes(chain_id, self.height, self.round, block_hash, self.pol_round)

    @property
    def step(self) -> int:
        return Step.PROPOSE


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """A lagging node asks a peer for the committed blocks from `from_height` on."""
    from_height: int
    max_count: int = 16


@dataclass(frozen=True, slots=True)
class SyncEntry:
    height: int
    block: bytes
    certificate: bytes


@dataclass(frozen=True, slots=True)
class SyncResponse:
    """Committed blocks with their certificates, heights strictly ascending."""
    entries: tuple[SyncEntry, ...]


Message = Union[Proposal, Vote, SyncRequest, SyncResponse]

_HDR = struct.Struct(">2sBB")
_VOTE = struct.Struct(">QI32sH64s")
_PROP_HEAD = struct.Struct(">QIi64sI")
_POL = struct.Struct(">H64s")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_SREQ = struct.Struct(">QH")
_ENTRY_HEAD = struct.Struct(">QI")


def encode_message(msg: Message) -> bytes:
    """The canonical wire bytes of a message (one encoding per message)."""
    if isinstance(msg, Vote):
        if msg.kind not in (Step.PREVOTE, Step.PRECOMMIT):
            raise ValueError("a vote is a prevote or a precommit")
        return _HDR.pack(WIRE_MAGIC, PROTOCOL_VERSION, msg.kind) + _VOTE.pack(
            msg.height, msg.round, msg.block_hash, msg.validator, msg.signature)
    if isinstance(msg, Proposal):
        parts = [_HDR.pack(WIRE_MAGIC, PROTOCOL_VERSION, MsgType.PROPOSAL),
                 _PROP_HEAD.pack(msg.height, msg.round, msg.pol_round, msg.signature, len(msg.block)),
                 msg.block, _U16.pack(len(msg.pol))]
        parts.extend(_POL.pack(i, s) for i, s in msg.pol)
        out = b"".join(parts)
    elif isinstance(msg, SyncRequest):
        out = _HDR.pack(WIRE_MAGIC, PROTOCOL_VERSION, MsgType.SYNC_REQUEST) + _SREQ.pack(msg.from_height, msg.max_count)
    elif isinstance(msg, SyncResponse):
        parts = [_HDR.pack(WIRE_MAGIC, PROTOCOL_VERSION, MsgType.SYNC_RESPONSE), _U16.pack(len(msg.entries))]
        for e in msg.entries:
            parts += [_ENTRY_HEAD.pack(e.height, len(e.block)), e.block, _U32.pack(len(e.certificate)), e.certificate]
        out = b"".join(parts)
    else:
        raise TypeError(f"not a consensus message: {type(msg).__name__}")
    if len(out) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(out)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    return out


def _need(data: bytes, i: int, n: int, what: str) -> None:
    if i + n > len(data):
        raise DecodeError("truncated", f"{what} needs {n} bytes at offset {i}, message has {len(data)}")


def _check_hr(height: int, round_: int) -> None:
    if not 1 <= height <= MAX_HEIGHT:
        raise DecodeError("bad_height", f"height {height} is not in 1..2^63-1")
    if round_ > MAX_ROUND:
        raise DecodeError("bad_round", f"round {round_} is over 2^31-1")


def decode_message(data: bytes) -> Message:
    """Parse wire bytes; raises DecodeError (a ValueError) on anything but one canonical message."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("bad_type", f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError("too_large", f"{len(data)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    _need(data, 0, _HDR.size, "header")
    magic, version, mtype = _HDR.unpack_from(data, 0)
    if magic != WIRE_MAGIC:
        raise DecodeError("bad_magic", f"expected {WIRE_MAGIC!r}, got {magic!r}")
    if version != PROTOCOL_VERSION:
        raise DecodeError("unsupported_version", f"message version {version}, this node speaks {PROTOCOL_VERSION}")
    i = _HDR.size
    if mtype in (MsgType.PREVOTE, MsgType.PRECOMMIT):
        _need(data, i, _VOTE.size, "vote")
        height, round_, block_hash, validator, sig = _VOTE.unpack_from(data, i)
        _check_hr(height, round_)
        if validator >= MAX_VALIDATORS:
            raise DecodeError("bad_validator", f"validator index {validator} is over {MAX_VALIDATORS - 1}")
        i += _VOTE.size
        msg: Message = Vote(mtype, height, round_, block_hash, validator, sig)
    elif mtype == MsgType.PROPOSAL:
        _need(data, i, _PROP_HEAD.size, "proposal")
        height, round_, pol_round, sig, blen = _PROP_HEAD.unpack_from(data, i)
        _check_hr(height, round_)
        if not -1 <= pol_round < round_:
            raise DecodeError("bad_pol_round", f"pol_round {pol_round} must be -1 or below round {round_}")
        if not 1 <= blen <= MAX_BLOCK_BYTES:
            raise DecodeError("bad_block_length", f"block length {blen} is not in 1..{MAX_BLOCK_BYTES}")
        i += _PROP_HEAD.size
        _need(data, i, blen, "block")
        block = data[i:i + blen]
        i += blen
        _need(data, i, 2, "pol count")
        (count,) = _U16.unpack_from(data, i)
        i += 2
        if pol_round < 0 and count:
            raise DecodeError("bad_pol", "a proposal without pol_round carries no prevotes")
        if count > MAX_VALIDATORS:
            raise DecodeError("bad_pol", f"{count} pol prevotes is over {MAX_VALIDATORS}")
        _need(data, i, count * _POL.size, "pol prevotes")
        pol = []
        last = -1
        for _ in range(count):
            idx, psig = _POL.unpack_from(data, i)
            i += _POL.size
            if idx <= last:
                raise DecodeError("bad_pol", "pol prevotes must be in strictly ascending validator order")
            last = idx
            pol.append((idx, psig))
        msg = Proposal(height, round_, pol_round, block, sig, tuple(pol))
    elif mtype == MsgType.SYNC_REQUEST:
        _need(data, i, _SREQ.size, "sync request")
        frm, mx = _SREQ.unpack_from(data, i)
        i += _SREQ.size
        if not 1 <= frm <= MAX_HEIGHT:
            raise DecodeError("bad_height", f"from_height {frm} is not in 1..2^63-1")
        if not 1 <= mx <= MAX_SYNC_BATCH:
            raise DecodeError("bad_count", f"max_count {mx} is not in 1..{MAX_SYNC_BATCH}")
        msg = SyncRequest(frm, mx)
    elif mtype == MsgType.SYNC_RESPONSE:
        _need(data, i, 2, "entry count")
        (count,) = _U16.unpack_from(data, i)
        i += 2
        if count > MAX_SYNC_BATCH:
            raise DecodeError("bad_count", f"{count} entries is over {MAX_SYNC_BATCH}")
        entries = []
        last = 0
        for _ in range(count):
            _need(data, i, _ENTRY_HEAD.size, "entry")
            height, blen = _ENTRY_HEAD.unpack_from(data, i)
            i += _ENTRY_HEAD.size
            if not last < height <= MAX_HEIGHT:
                raise DecodeError("bad_height", f"entry heights must ascend strictly, got {height} after {last}")
            last = height
            if not 1 <= blen <= MAX_BLOCK_BYTES:
                raise DecodeError("bad_block_length", f"block length {blen} is not in 1..{MAX_BLOCK_BYTES}")
            _need(data, i, blen + 4, "entry block")
            block = data[i:i + blen]
            i += blen
            (clen,) = _U32.unpack_from(data, i)
            i += 4
            if not 1 <= clen <= MAX_CERT_BYTES:
                raise DecodeError("bad_certificate_length", f"certificate length {clen} is not in 1..{MAX_CERT_BYTES}")
            _need(data, i, clen, "entry certificate")
            entries.append(SyncEntry(height, block, data[i:i + clen]))
            i += clen
        msg = SyncResponse(tuple(entries))
    else:
        raise DecodeError("unknown_type", f"message type {mtype}")
    if i != len(data):
        raise DecodeError("trailing_bytes", f"{len(data) - i} bytes after the end of the message")
    return msg


# --------------------------------------------------------------------------- WAL records


@dataclass(frozen=True, slots=True)
class LastSigned:
    """The highest (height, round, step) this validator signed, with what and the signature.
    The shell keeps only the newest; it must be durable before any message of the same Ready
    leaves the node."""
    height: int
    round: int
    step: int
    sign_bytes: bytes
    signature: bytes

    @property
    def hrs(self) -> tuple[int, int, int]:
        return (self.height, self.round, self.step)


@dataclass(frozen=True, slots=True)
class WalRound:
    """The node entered `round` of `height` (so a restart resumes there, not at round 0)."""
    height: int
    round: int


@dataclass(frozen=True, slots=True)
class WalMessage:
    """A message this node signed (proposal or vote)."""
    message: Union[Proposal, Vote]

    @property
    def height(self) -> int:
        return self.message.height


@dataclass(frozen=True, slots=True)
class WalLock:
    """Lock and valid value of a height: locked_round/locked_block and valid_round/valid_block
    (-1 and None when unset), and the polka of the valid round as (index, signature) prevotes."""
    height: int
    locked_round: int
    locked_block: bytes | None
    valid_round: int
    valid_block: bytes | None
    valid_pol: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class WalDecision:
    """Height `height` decided `block` with `certificate` (bytes)."""
    height: int
    block: bytes
    certificate: bytes


Record = Union[LastSigned, WalRound, WalMessage, WalLock, WalDecision]

_REC_LAST, _REC_ROUND, _REC_MSG, _REC_LOCK, _REC_DECISION = 1, 2, 3, 4, 5
_LS_HEAD = struct.Struct(">QIBH")
_LOCK_HEAD = struct.Struct(">Qii")
_DEC_HEAD = struct.Struct(">QI")


def encode_record(rec: Record) -> bytes:
    if isinstance(rec, LastSigned):
        return _HDR.pack(RECORD_MAGIC, PROTOCOL_VERSION, _REC_LAST) + _LS_HEAD.pack(
            rec.height, rec.round, rec.step, len(rec.sign_bytes)) + rec.sign_bytes + rec.signature
    if isinstance(rec, WalRound):
        return _HDR.pack(RECORD_MAGIC, PROTOCOL_VERSION, _REC_ROUND) + _HR.pack(rec.height, rec.round)
    if isinstance(rec, WalMessage):
        return _HDR.pack(RECORD_MAGIC, PROTOCOL_VERSION, _REC_MSG) + encode_message(rec.message)
    if isinstance(rec, WalLock):
        parts = [_HDR.pack(RECORD_MAGIC, PROTOCOL_VERSION, _REC_LOCK),
                 _LOCK_HEAD.pack(rec.height, rec.locked_round, rec.valid_round)]
        lb = rec.locked_block or b""
        parts += [_U32.pack(len(lb)), lb]
        if rec.valid_block is None:
            parts.append(b"\x00")
        elif rec.valid_block == rec.locked_block:
            parts.append(b"\x01")
        else:
            parts += [b"\x02", _U32.pack(len(rec.valid_block)), rec.valid_block]
        parts.append(_U16.pack(len(rec.valid_pol)))
        parts.extend(_POL.pack(i, s) for i, s in rec.valid_pol)
        return b"".join(parts)
    if isinstance(rec, WalDecision):
        return _HDR.pack(RECORD_MAGIC, PROTOCOL_VERSION, _REC_DECISION) + _DEC_HEAD.pack(
            rec.height, len(rec.block)) + rec.block + _U32.pack(len(rec.certificate)) + rec.certificate
    raise TypeError(f"not a WAL record: {type(rec).__name__}")


def decode_record(data: bytes) -> Record:
    """Parse one WAL record; raises DecodeError. (Framing, checksums and fsync are the shell's.)"""
    data = bytes(data)
    _need(data, 0, _HDR.size, "record header")
    magic, version, rtype = _HDR.unpack_from(data, 0)
    if magic != RECORD_MAGIC:
        raise DecodeError("bad_magic", f"expected {RECORD_MAGIC!r}, got {magic!r}")
    if version != PROTOCOL_VERSION:
        raise DecodeError("unsupported_version", f"record version {version}")
    i = _HDR.size
    if rtype == _REC_MSG:
        msg = decode_message(data[i:])
        if not isinstance(msg, (Proposal, Vote)):
            raise DecodeError("bad_record", "a WAL message is a proposal or a vote")
        return WalMessage(msg)
    if rtype == _REC_LAST:
        _need(data, i, _LS_HEAD.size, "last-signed")
        h, r, step, sblen = _LS_HEAD.unpack_from(data, i)
        i += _LS_HEAD.size
        if step not in (1, 2, 3):
            raise DecodeError("bad_record", f"step {step}")
        _need(data, i, sblen + 64, "last-signed bytes")
        rec: Record = LastSigned(h, r, step, data[i:i + sblen], data[i + sblen:i + sblen + 64])
        i += sblen + 64
    elif rtype == _REC_ROUND:
        _need(data, i, _HR.size, "round")
        rec = WalRound(*_HR.unpack_from(data, i))
        i += _HR.size
    elif rtype == _REC_LOCK:
        _need(data, i, _LOCK_HEAD.size + 4, "lock")
        h, lr, vr = _LOCK_HEAD.unpack_from(data, i)
        i += _LOCK_HEAD.size
        (lbl,) = _U32.unpack_from(data, i)
        i += 4
        _need(data, i, lbl + 1, "locked block")
        lb = data[i:i + lbl] if lbl else None
        i += lbl
        flag = data[i]
        i += 1
        if flag == 0:
            vb = None
        elif flag == 1:
            vb = lb
        elif flag == 2:
            _need(data, i, 4, "valid block length")
            (vbl,) = _U32.unpack_from(data, i)
            i += 4
            _need(data, i, vbl, "valid block")
            vb = data[i:i + vbl]
            i += vbl
        else:
            raise DecodeError("bad_record", f"valid block flag {flag}")
        _need(data, i, 2, "pol count")
        (count,) = _U16.unpack_from(data, i)
        i += 2
        _need(data, i, count * _POL.size, "pol")
        pol = tuple(_POL.unpack_from(data, i + k * _POL.size) for k in range(count))
        i += count * _POL.size
        if (lr < 0) != (lb is None) or (vr < 0) != (vb is None):
            raise DecodeError("bad_record", "round and block of a lock must be both set or both unset")
        rec = WalLock(h, lr, lb, vr, vb, pol)
    elif rtype == _REC_DECISION:
        _need(data, i, _DEC_HEAD.size, "decision")
        h, blen = _DEC_HEAD.unpack_from(data, i)
        i += _DEC_HEAD.size
        _need(data, i, blen + 4, "decision block")
        block = data[i:i + blen]
        i += blen
        (clen,) = _U32.unpack_from(data, i)
        i += 4
        _need(data, i, clen, "decision certificate")
        rec = WalDecision(h, block, data[i:i + clen])
        i += clen
    else:
        raise DecodeError("unknown_type", f"record type {rtype}")
    if i != len(data):
        raise DecodeError("trailing_bytes", f"{len(data) - i} bytes after the record")
    return rec


# --------------------------------------------------------------------------- core <-> shell


BlockHash = Callable[[bytes], bytes]
"""The 32-byte identity of a block (what votes and certificates sign): a pure function of the
block bytes, given to the core at construction; it raises on bytes that are no block."""


@dataclass(frozen=True, slots=True)
class ProposeRequest:
    """This node is the proposer of (height, round) and holds no valid value: the shell builds a
    block on top of the applied chain and answers `core.propose(block)` (now or later; an
    answer that comes after the round moved on is ignored)."""
    height: int
    round: int


@dataclass(frozen=True, slots=True)
class ValidateRequest:
    """Re-validate someone's block for `height` against the applied chain and answer
    `core.validated(block_hash, ok)`. Until the answer the core neither votes for the block nor
    commits it."""
    height: int
    block_hash: bytes
    block: bytes


@dataclass(frozen=True, slots=True)
class Outbound:
    """Send `message` to peer `to`, or to every peer when `to` is None."""
    to: Any
    message: Message


@dataclass(frozen=True, slots=True)
class Committed:
    height: int
    block: bytes
    certificate: bytes


@dataclass(frozen=True, slots=True)
class ServeRequest:
    """A peer asked for committed blocks the core no longer holds in memory: the shell answers
    `peer` with a SyncResponse built from its block store (heights from `from_height`, at most
    `max_count` of them, those below `below` only)."""
    peer: Any
    from_height: int
    max_count: int
    below: int


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two different signed messages of one validator for one (height, round, step)."""
    height: int
    round: int
    step: int
    validator: int
    first: Union[Proposal, Vote]
    second: Union[Proposal, Vote]


@dataclass(slots=True)
class Ready:
    """What the shell must do, in this order: make `persist` durable (append WAL records in
    order; a LastSigned record replaces the previous one), then send `messages`, then apply
    `committed` in order and answer `serve`, then call `advance()`. `propose` and `validate` are
    questions about the chain as it stands after `committed` was applied; the shell may answer
    them before `advance()` or later."""
    persist: list[Record] = field(default_factory=list)
    messages: list[Outbound] = field(default_factory=list)
    committed: list[Committed] = field(default_factory=list)
    serve: list[ServeRequest] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    propose: ProposeRequest | None = None
    validate: list[ValidateRequest] = field(default_factory=list)
