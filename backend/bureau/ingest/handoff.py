"""The link between a bureau node and its ingest workers, pure (docs/ingest-workers.md, "Link").

A worker dials its node and logs in with the peer handshake (peers/handshake.py: mutual Ed25519
proofs, a key per direction, every frame sealed and counted); the worker is the initiator under
its worker id, the node the responder under its node id. After the login, frames carry one of
four channels, each payload version 1:

    node -> worker  REGISTRY  JSON {"v": 1, "height": H, "chargers": {id: key hex}, "retired": [id],
                                    "old_keys": {id: [[until height, key hex], ...]}}
    worker -> node  ADMIT     u8 1 | 32 charger key | u8 len + topic's charger id | envelope
    worker -> node  REFUSE    JSON {"v": 1, "charger", "seq", "receipt", "reason", "detail"}
    node -> worker  REPLY     u8 1 | u8 len + charger id | signed ack or reject JSON

ADMIT: a receipt whose signature the worker verified with that key of the charger (the node
verifies again only when its registry holds another key for the charger by now).
REFUSE: a receipt the worker refused (seq and receipt null when it could not read them); the
node signs the reject. REPLY: what the worker publishes on the charger's reply topic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..ledger.state import LedgerState
from ..ledger.tx import ID_RE
from ..receipts.codec import MAX_ENVELOPE

VERSION = 1
CH_REGISTRY, CH_ADMIT, CH_REFUSE, CH_REPLY = 16, 17, 18, 19
# what a node takes from a worker in one frame: an envelope and its header, a refusal's JSON
MAX_WORKER_FRAME = MAX_ENVELOPE + 1024


class HandoffError(ValueError):
    """A frame of the worker link that does not decode; the link is dropped."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class ChargerRegistry:
    """What a worker knows of the ledger: the enrolled chargers' keys, the retired ones and the
    keys replaced by rotations, as of block `height` (enough for admission.screen_receipt)."""

    rotated_key_error = LedgerState.rotated_key_error  # reads only the old keys it is handed

    def __init__(self, height: int, chargers: dict[str, bytes], retired: set[str],
                 old_keys: dict[str, list[tuple[int, bytes]]]) -> None:
        self.height, self.chargers, self.retired, self.charger_old_keys = height, chargers, retired, old_keys

    @classmethod
    def of(cls, state: LedgerState, height: int) -> "ChargerRegistry":
        """A copy of the registry of `state` (read under the chain's lock)."""
        return cls(height, dict(state.chargers), set(state.retired),
                   {c: list(v) for c, v in state.charger_old_keys.items()})


def encode_registry(reg: ChargerRegistry) -> bytes:
    return json.dumps({"v": VERSION, "height": reg.height, "chargers": {c: k.hex() for c, k in reg.chargers.items()},
                       "retired": sorted(reg.retired),
                       "old_keys": {c: [[u, k.hex()] for u, k in v] for c, v in reg.charger_old_keys.items()}},
                      separators=(",", ":")).encode()


def decode_registry(payload: bytes) -> ChargerRegistry:
    try:
        doc = json.loads(payload)
        _version(doc)
        return ChargerRegistry(int(doc["height"]), {c: bytes.fromhex(k) for c, k in doc["chargers"].items()},
                               set(doc["retired"]),
                               {c: [(int(u), bytes.fromhex(k)) for u, k in v] for c, v in doc["old_keys"].items()})
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise HandoffError("malformed", f"registry: {e}") from None


def encode_admit(key: bytes, charger_id: str, envelope: bytes) -> bytes:
    cid = charger_id.encode("ascii")
    return bytes([VERSION]) + key + bytes([len(cid)]) + cid + envelope


def decode_admit(payload: bytes) -> tuple[bytes, str, bytes]:
    """(the charger key the worker verified with, the topic's charger id, envelope)."""
    if len(payload) < 35 or payload[0] != VERSION:
        raise HandoffError("malformed", "admit frame too short or of another version")
    n = payload[33]
    return payload[1:33], _charger(payload[34:34 + n]), payload[34 + n:]


@dataclass(frozen=True)
class WorkerRefusal:
    charger_id: str
    seq: int | None
    receipt_id: str | None
    reason: str
    detail: str


def encode_refuse(r: WorkerRefusal) -> bytes:
    return json.dumps({"v": VERSION, "charger": r.charger_id, "seq": r.seq, "receipt": r.receipt_id,
                       "reason": r.reason, "detail": r.detail[:255]}, separators=(",", ":")).encode()


def decode_refuse(payload: bytes) -> WorkerRefusal:
    try:
        doc = json.loads(payload)
        _version(doc)
        seq, rid = doc["seq"], doc["receipt"]
        if not (seq is None or type(seq) is int) or not (rid is None or isinstance(rid, str)):
            raise TypeError("seq must be an integer or null, receipt a string or null")
        if not isinstance(doc["reason"], str) or not isinstance(doc["detail"], str):
            raise TypeError("reason and detail must be strings")
        return WorkerRefusal(_charger(doc["charger"].encode("ascii")), seq, rid, doc["reason"], doc["detail"])
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeEncodeError) as e:
        raise HandoffError("malformed", f"refusal: {e}") from None


def encode_reply(charger_id: str, message: bytes) -> bytes:
    cid = charger_id.encode("ascii")
    return bytes([VERSION, len(cid)]) + cid + message


def decode_reply(payload: bytes) -> tuple[str, bytes]:
    if len(payload) < 2 or payload[0] != VERSION:
        raise HandoffError("malformed", "reply frame too short or of another version")
    n = payload[1]
    return _charger(payload[2:2 + n]), payload[2 + n:]


def _charger(raw: bytes) -> str:
    try:
        cid = raw.decode("ascii")
    except UnicodeDecodeError:
        cid = ""
    if not ID_RE.match(cid):
        raise HandoffError("malformed", f"charger id {raw[:40]!r} is not 1-32 of A-Z a-z 0-9 . _ -")
    return cid


def _version(doc) -> None:
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        raise ValueError(f"version {doc.get('v') if isinstance(doc, dict) else None!r}, expected {VERSION}")
