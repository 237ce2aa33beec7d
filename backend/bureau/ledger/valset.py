"""Validator-set changes decided on chain (docs/consensus.md, "Changing the validator set").

A change document names the set version it replaces and the changes to make:

    {"v": 1, "seq": n, "changes": [{"op": "add", "id", "public_key", "power", "address", "api"},
                                   {"op": "update", "id", and any of public_key, power, address, api},
                                   {"op": "remove", "id"}]}

Validators holding more than 2/3 of the power of the set in force sign its approval bytes with
their node keys:

    "EV-VALSET/v1" NUL-padded to 16 bytes | u8 len + chain_id | SHA-256(canonical JSON of the change)

and an operator submits the change with the approvals as the `change_validators` action. The
committing block `d` decides it; the new set is in force from height d + 2, so every node knows a
height's set when the height before it is committed, and switches at the same block. Pure
functions here; LedgerState (ledger/state.py) runs the rule.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .. import crypto
from .canonical import dumps
from .certificate import chain_id_bytes
from .tx import TxError
from .validators import Validator, ValidatorSet

VERSION = 1
APPROVAL_TAG = b"EV-VALSET/v1".ljust(16, b"\x00")
EFFECT_DELAY = 2          # decided at height d: in force from d + EFFECT_DELAY
MAX_CHANGES = 8           # one action stays well inside a transaction's 4096 bytes
_UPDATABLE = ("public_key", "power", "address", "api")


@dataclass(frozen=True, slots=True)
class Epoch:
    """Validator set version `seq`, in force from block `from_height` (genesis: seq 0, from 1)
    until the next epoch's `from_height`."""
    seq: int
    from_height: int
    validators: ValidatorSet

    def record(self) -> str:
        """The `v/set` state-map record (docs/state.md)."""
        return dumps({"seq": self.seq, "from_height": self.from_height,
                      "validators": validators_doc(self.validators)}).decode()

    @classmethod
    def from_record(cls, text: str) -> "Epoch":
        """Parse a `v/set` record; ValueError when malformed."""
        import json
        try:
            doc = json.loads(text)
            seq, since = doc["seq"], doc["from_height"]
            if type(seq) is not int or type(since) is not int or seq < 0 or since < 1:
                raise ValueError("seq and from_height must be integers")
            return cls(seq, since, ValidatorSet.from_doc(doc["validators"]))
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
            raise ValueError(f"validator set record is malformed: {e!r}") from None


def validator_doc(v: Validator) -> dict:
    return {"id": v.id, "public_key": v.public_key.hex(), "power": v.power, "address": v.address, "api": v.api}


def validators_doc(vs: ValidatorSet) -> list[dict]:
    return [validator_doc(v) for v in vs]


def approval_bytes(chain_id: str, change: dict) -> bytes:
    return APPROVAL_TAG + chain_id_bytes(chain_id) + hashlib.sha256(dumps(change)).digest()


def approve(signing_key, validator_id: str, chain_id: str, change: dict) -> dict:
    """One validator's approval of `change`, as the action's `approvals` list holds it."""
    return {"validator": validator_id, "signature": signing_key.sign(approval_bytes(chain_id, change)).signature.hex()}


def apply_change(current: ValidatorSet, change: dict) -> ValidatorSet:
    """The set `change` makes of `current`; TxError (malformed, unknown_validator,
    validator_exists, bad_validator_set) when it cannot be made."""
    if not isinstance(change, dict) or set(change) != {"v", "seq", "changes"} or change["v"] != VERSION:
        raise TxError("malformed", "a change is {v: 1, seq, changes}")
    items = change["changes"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_CHANGES:
        raise TxError("malformed", f"changes must be a list of 1..{MAX_CHANGES}")
    vals = list(current)
    touched: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise TxError("malformed", "each change names the validator's id")
        op, vid = item.get("op"), item["id"]
        if vid in touched:
            raise TxError("malformed", f"validator {vid} is changed twice in one change")
        touched.add(vid)
        at = next((i for i, v in enumerate(vals) if v.id == vid), None)
        try:
            if op == "add":
                if set(item) != {"op", "id", "public_key", "power", "address", "api"}:
                    raise TxError("malformed", "add takes id, public_key, power, address and api")
                if at is not None:
                    raise TxError("validator_exists", f"{vid} is already a validator")
                vals.append(Validator.from_doc(item))
            elif op == "update":
                fields = set(item) - {"op", "id"}
                if not fields or not fields <= set(_UPDATABLE):
                    raise TxError("malformed", f"update takes id and some of {', '.join(_UPDATABLE)}")
                if at is None:
                    raise TxError("unknown_validator", f"{vid} is not a validator")
                doc = {**validator_doc(vals[at]), **{k: item[k] for k in fields}}
                vals[at] = Validator.from_doc(doc)
            elif op == "remove":
                if set(item) != {"op", "id"}:
                    raise TxError("malformed", "remove takes only id")
                if at is None:
                    raise TxError("unknown_validator", f"{vid} is not a validator")
                del vals[at]
            else:
                raise TxError("malformed", f"op must be add, update or remove, not {op!r}")
        except (ValueError, TypeError) as e:
            if isinstance(e, TxError):
                raise
            raise TxError("malformed", f"change of {vid}: {e}") from None
    try:
        return ValidatorSet(vals)
    except ValueError as e:
        raise TxError("bad_validator_set", str(e)) from None


def approval_power(current: ValidatorSet, chain_id: str, change: dict, approvals) -> int:
    """The power of `current` whose valid approvals of `change` are listed (each validator once,
    in ascending id order); TxError for an approval that is malformed, by no validator, or does
    not verify."""
    if not isinstance(approvals, list) or not approvals:
        raise TxError("malformed", "approvals must be a non-empty list of {validator, signature}")
    message = approval_bytes(chain_id, change)
    power, last = 0, None
    for a in approvals:
        if not isinstance(a, dict) or set(a) != {"validator", "signature"} or not isinstance(a["validator"], str) \
                or not isinstance(a["signature"], str):
            raise TxError("malformed", "each approval is {validator: id, signature: hex}")
        vid = a["validator"]
        if last is not None and vid <= last:
            raise TxError("malformed", "approvals must be in strictly ascending validator id order, each once")
        last = vid
        v = current.by_id(vid)
        if v is None:
            raise TxError("unknown_validator", f"approval by {vid}, which is not in the set in force")
        try:
            sig = bytes.fromhex(a["signature"])
        except ValueError:
            sig = b""
        if len(sig) != 64 or not crypto.verify(v.public_key, message, sig):
            raise TxError("bad_approval", f"the approval of {vid} does not verify")
        power += v.power
    return power


class Schedule:
    """The epochs of a chain known so far, oldest first: which set is in force at a height."""

    __slots__ = ("epochs",)

    def __init__(self, epochs: list[Epoch]) -> None:
        if not epochs or epochs[0].from_height != 1:
            raise ValueError("a schedule starts with the set in force from height 1")
        self.epochs = list(epochs)

    @classmethod
    def genesis(cls, validators: ValidatorSet) -> "Schedule":
        return cls([Epoch(0, 1, validators)])

    @property
    def latest(self) -> Epoch:
        return self.epochs[-1]

    def add(self, epoch: Epoch) -> None:
        last = self.epochs[-1]
        if epoch.seq != last.seq + 1 or epoch.from_height <= last.from_height:
            raise ValueError(f"epoch {epoch.seq} from {epoch.from_height} does not follow {last.seq} "
                             f"from {last.from_height}")
        self.epochs.append(epoch)

    def epoch_at(self, height: int) -> Epoch:
        for e in reversed(self.epochs):
            if e.from_height <= height:
                return e
        return self.epochs[0]

    def at(self, height: int) -> ValidatorSet:
        return self.epoch_at(height).validators

    def peers_from(self, height: int) -> dict[str, Validator]:
        """The validators of the set in force at `height` and of every set decided to follow it,
        by id (the later entry of one id winning): whom a node links to and accepts links from."""
        out: dict[str, Validator] = {}
        current = self.epoch_at(height)
        for e in self.epochs:
            if e.seq >= current.seq:
                for v in e.validators:
                    out[v.id] = v
        return out
