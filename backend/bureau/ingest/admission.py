"""Admission of a receipt arriving on a charger's topic: the checks a node makes before the
receipt may wait for a block. Pure: it reads the ledger state and returns a decision."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .. import crypto, topics
from ..ledger.ocppbill import KIND_OCPP_BILL
from ..ledger.state import LedgerState
from ..ledger.tx import (KIND_DRIVER, KIND_EVIDENCE, TxError, action_time_error, decode_driver, decode_operator,
                         receipt_tx, signed_operator_message, tx_hash)
from ..receipts.codec import MAX_ENVELOPE, ReceiptError, decode, receipt_id, signed_message



@dataclass(frozen=True)
class Admitted:
    tx: bytes
    tx_hash: bytes
    charger_id: str
    seq: int
    receipt_id: str
    decoded: tuple | None = None  # (receipt, body, signature) as parsed here: execution reuses it


@dataclass(frozen=True)
class AlreadyCommitted:
    """A byte-identical resend of a committed receipt: answer with its ack again."""
    charger_id: str
    seq: int
    receipt_id: str


@dataclass(frozen=True)
class Refused:
    charger_id: str | None
    seq: int | None
    reason: str
    detail: str
    receipt_id: str | None = None  # of the envelope, when it could be read (the reject names it)


def admit(topic: str, payload: bytes, state: LedgerState) -> Admitted | AlreadyCommitted | Refused:
    """A receipt published by a charger on its own topic."""
    charger = topics.charger_of(topic, topics.RECEIPT)
    if charger is None:
        return Refused(None, None, "malformed", f"not a receipt topic: {topic}")
    return admit_receipt(payload, state, charger)


def admit_receipt(payload: bytes, state: LedgerState, topic_charger: str | None = None,
                  now_s: int | None = None, signature_checked: bool = False) -> Admitted | AlreadyCommitted | Refused:
    """The checks of a receipt envelope before it may wait for a block: from a charger's topic
    (`topic_charger` set) or relayed by another bureau (None); `now_s` is this node's clock.
    `signature_checked`: an ingest worker of this bureau verified the signature against the
    charger registry this state holds (ingest/gateway.py), so it is not verified again."""
    screened = screen_receipt(payload, state, topic_charger, signature_checked)
    if isinstance(screened, Refused):
        return screened
    r, body, sig, rid = screened
    charger = r.charger_id
    now_s = int(time.time()) if now_s is None else now_s
    # in the block's order: a receipt past the staleness bound is refused as such, committed or not
    taken = state.time_error(r.end_time, now_s) or state.seq_error(charger, r.seq, rid)
    if taken is not None and taken.reason == "duplicate":
        return AlreadyCommitted(charger, r.seq, rid)
    if taken is not None:
        return Refused(charger, r.seq, taken.reason, taken.detail, rid)
    # the billing rules against the committed state, with this node's clock for the block time
    billing = state.billing_error(r, state.tariffs.get((r.tariff_id, r.tariff_version)), now_s)
    if billing is not None:
        return Refused(charger, r.seq, billing.reason, billing.detail, rid)
    tx = receipt_tx(payload)
    return Admitted(tx, tx_hash(tx), charger, r.seq, rid, (r, body, sig))


def screen_receipt(payload: bytes, registry, topic_charger: str | None = None,
                   signature_checked: bool = False) -> tuple | Refused:
    """The checks that need only the charger registry (`registry`: a LedgerState, or a worker's
    copy of its `chargers`, `retired` and `charger_old_keys`): size, decoding, topic, enrollment
    and the signature. (receipt, body, signature, receipt id), or Refused."""
    charger = topic_charger
    if len(payload) > MAX_ENVELOPE:
        return Refused(charger, None, "oversized", f"{len(payload)} bytes, limit {MAX_ENVELOPE}")
    try:
        r, body, sig = decode(payload)
    except ReceiptError as e:
        return Refused(charger, None, e.reason, e.detail)
    rid = receipt_id(payload)
    if charger is None:
        charger = r.charger_id
    elif r.charger_id != charger:
        # The broker's ACL lets a charger publish only on its own topic; the receipt must agree.
        return Refused(charger, r.seq, "wrong_topic", f"receipt of {r.charger_id} on the topic of {charger}", rid)
    key = registry.chargers.get(charger)
    if key is None:
        return Refused(charger, r.seq, "unknown_charger", f"charger {charger} is not enrolled", rid)
    if charger in registry.retired:
        return Refused(charger, r.seq, "charger_retired", f"charger {charger} is retired", rid)
    if not signature_checked and not crypto.verify(key, signed_message(body), sig):
        rotated = registry.rotated_key_error(registry.charger_old_keys, charger, signed_message(body), sig)
        if rotated is not None:
            return Refused(charger, r.seq, rotated.reason, rotated.detail, rid)
        return Refused(charger, r.seq, "bad_signature", "signature does not verify with the enrolled key", rid)
    return r, body, sig, rid


def admit_operator(tx: bytes, state: LedgerState, now_s: int | None = None) -> bytes:
    """Hash of a well-formed operator action signed by an operator of the genesis, inside its time
    window by this node's clock (`now_s`) and not decided yet; raises TxError."""
    op = decode_operator(tx)
    key = state.operators.get(op.operator)
    if key is None or not crypto.verify(key, signed_operator_message(op), op.signature):
        rotated = state.rotated_key_error(state.operator_old_keys, op.operator, signed_operator_message(op),
                                          op.signature)
        raise rotated or TxError("bad_signature", "not signed by an operator of this chain")
    late = action_time_error(op.time, int(time.time()) if now_s is None else now_s)
    if late is not None:
        raise late
    h = tx_hash(tx)
    if h in state.operator_txs:
        raise TxError("duplicate", "this action is already decided on the chain (committed or refused)")
    return h


def admit_driver(tx: bytes, state: LedgerState, now_s: int | None = None) -> bytes:
    """Hash of a driver transaction that may commit on the committed state by this node's clock
    (the ledger's own check, `LedgerState.driver_error`); raises TxError."""
    d = decode_driver(tx)
    h = tx_hash(tx)
    refused = state.driver_error(d, h, int(time.time()) if now_s is None else now_s)
    if refused is not None:
        raise refused
    return h


def admit_ocpp_bill(tx: bytes, state: LedgerState, now_s: int | None = None) -> bytes:
    """Hash of an OCPP bill (another bureau's, relayed) that the ledger would take on the
    committed state at this node's clock; raises TxError with the ledger's reason."""
    ex = state.execute([tx], max((int(time.time()) if now_s is None else now_s) * 1000, state.last_time_ms + 1))
    if ex.refused:
        raise TxError(ex.refused[0].reason, ex.refused[0].detail)
    return tx_hash(tx)


def admit_evidence(tx: bytes, state: LedgerState) -> bytes:
    """Hash of equivocation evidence (kind 5) the next block may record: both votes signed by the
    validator they name in the set in force at their height, its slot not recorded yet (the
    ledger's own check, `LedgerState.evidence_slot`); raises TxError. Any node's evidence reaches
    the chain: the node that saw the equivocation relays it, and every node admits it so."""
    state.evidence_slot(tx)
    return tx_hash(tx)


def admit_signed(tx: bytes, state: LedgerState, now_s: int | None = None) -> bytes:
    """An operator action, a driver transaction, an OCPP bill or equivocation evidence, by its kind byte."""
    if tx and tx[0] == KIND_DRIVER:
        return admit_driver(tx, state, now_s)
    if tx and tx[0] == KIND_OCPP_BILL:
        return admit_ocpp_bill(tx, state, now_s)
    if tx and tx[0] == KIND_EVIDENCE:
        return admit_evidence(tx, state)
    return admit_operator(tx, state, now_s)
