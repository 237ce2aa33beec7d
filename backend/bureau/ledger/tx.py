"""Ledger transactions: a kind byte, then the payload.

kind 1: a charging receipt envelope (docs/receipt-v1.md), exactly as the charger signed it.
kind 2: an operator action: u16 length, canonical JSON, 64-byte Ed25519 signature by an
        operator key named in the genesis; see docs/ledger.md for the actions and the window of
        block times in which an action may commit.
kind 3: a driver transaction: the same layout, signed by the key the transaction names (for
        `bind_phone`, the binding key of a binding code, ledger/binding.py), in the same window.
kind 4: an OCPP bill, the same layout, signed by the bureau that served the charge point
        (ledger/ocppbill.py, docs/ocpp.md).
kind 5: equivocation evidence: two conflicting votes of one validator, each in its consensus wire
        encoding (ledger/evidence.py, docs/consensus.md); unsigned, anyone may submit it.
"""

from __future__ import annotations

import hashlib
import re
import struct
import time
import secrets
from dataclasses import dataclass

from ..errors import ReasonedError
from . import canonical

KIND_RECEIPT = 1
KIND_OPERATOR = 2
KIND_DRIVER = 3
KIND_EVIDENCE = 5
MAX_TX = 4096
OPERATOR_TAG = b"EV-OPERATOR/v1".ljust(16, b"\x00")
DRIVER_TAG = b"EV-DRIVER/v1".ljust(16, b"\x00")
HEX_KEY_RE = re.compile(r"[0-9a-f]{64}\Z")
NONCE_RE = re.compile(r"[0-9a-f]{16,64}\Z")
MAX_BINDING_S = 7 * 86400  # a binding code is valid at most this long after the block that issues it
ID_RE = re.compile(r"[A-Za-z0-9._-]{1,32}\Z")
PAYMENT_REF_RE = re.compile(r"[A-Za-z0-9._:@/-]{1,64}\Z")
# An operator action may commit only in a block whose time B (UTC s) has
# B - ACTION_MAX_AGE_S <= action time <= B + ACTION_MAX_SKEW_S: so the ledger needs to remember
# only the hashes of actions decided within that window to keep every decision final.
ACTION_MAX_AGE_S = 3600
ACTION_MAX_SKEW_S = 300
MAX_ACTION_TIME = 2**40


class TxError(ReasonedError):
    """Refused: see `reason`."""


@dataclass(frozen=True)
class ActionArg:
    kind: str  # text, integer, list (of text) or object (JSON)
    help: str
    required: bool = True


# The operator actions and their arguments (docs/ledger.md): what a node admits, and what
# `bureau operator --help` lists. LedgerState carries out each as `_op_<action>`.
ACTIONS: dict[str, dict[str, ActionArg]] = {
    "enroll_charger": {"charger_id": ActionArg("text", "the charger's id, 1-32 of A-Z a-z 0-9 . _ -"),
                       "public_key": ActionArg("text", "its Ed25519 public key, 64 hex digits")},
    "enroll_ocpp_charger": {
        "charger_id": ActionArg("text", "the OCPP charge point's identity, 1-32 of A-Z a-z 0-9 . _ -"),
        "ocpp_version": ActionArg("text", "1.6 or 2.0.1: the subprotocol it speaks (ocpp1.6 / ocpp2.0.1)"),
        "password_digest": ActionArg("text", "the salted scrypt digest of its HTTP Basic password "
                                             "(bureau operator's --password derives it; never the password)"),
        "ocmf_key": ActionArg("text", "its meter's OCMF P-256 public key, DER SubjectPublicKeyInfo in hex "
                                      "(none: bills are attested by the bureau)", required=False),
        "location": ActionArg("object", "where it stands, for OCPI CDRs (docs/ocpp.md: id, address, city, country, "
                                        "latitude, longitude, evse_uid, evse_id, connector_id, connector_standard, "
                                        "connector_format, connector_power_type)", required=False)},
    "rotate_ocpp_password": {
        "charger_id": ActionArg("text", "an enrolled OCPP charge point"),
        "password_digest": ActionArg("text", "the salted scrypt digest of its new HTTP Basic password (`bureau ocpp "
                                             "password-digest`): the old one is refused from the next block on")},
    "retire_charger": {"charger_id": ActionArg("text", "an enrolled charger, retired for good (docs/ledger.md)")},
    "rotate_charger_key": {"charger_id": ActionArg("text", "an enrolled charger that is not retired"),
                           "public_key": ActionArg("text", "its new Ed25519 public key, 64 hex digits: its receipts "
                                                           "verify with it from the next block on")},
    "rotate_operator_key": {"public_key": ActionArg("text", "the signing operator's new Ed25519 public key, 64 hex "
                                                            "digits: its actions verify with it from the next block on")},
    "open_wallet": {"wallet_id": ActionArg("text", "the wallet's id, 1-32 of A-Z a-z 0-9 . _ -"),
                    "public_key": ActionArg("text", "the driver's phone key, 64 hex digits (none: the phone "
                                                    "binds later with a binding code)", required=False),
                    "cards": ActionArg("list", "card UIDs bound to the wallet", required=False)},
    "top_up": {"wallet_id": ActionArg("text", "an open wallet"),
               "amount_fen": ActionArg("integer", "fen to add, 1..10^10"),
               "reference": ActionArg("text", "the payment's id, credited once ever: 1-64 of A-Z a-z 0-9 . _ : @ / -")},
    "refund": {"wallet_id": ActionArg("text", "an open wallet"),
               "amount_fen": ActionArg("integer", "fen to give back, 1..10^10"),
               "reason": ActionArg("text", "why, 1-200 printable characters (in the wallet's history)"),
               "reference": ActionArg("text", "the refund's id, counted once ever like a top-up's")},
    "adjust": {"wallet_id": ActionArg("text", "an open wallet"),
               "delta_fen": ActionArg("integer", "fen to add (positive) or take (negative), 1..10^10 either way"),
               "reason": ActionArg("text", "why, 1-200 printable characters (in the wallet's history)"),
               "reference": ActionArg("text", "the adjustment's id, counted once ever like a top-up's")},
    "bind_card": {"wallet_id": ActionArg("text", "an open wallet"),
                  "card": ActionArg("text", "a card UID bound to no wallet")},
    "unbind_card": {"card": ActionArg("text", "a bound card UID: it pays for nothing from the next block")},
    "block_card": {"card": ActionArg("text", "a bound card UID: refused at authorization, off the offline list"),
                   "reason": ActionArg("text", "why, 1-200 printable characters")},
    "unblock_card": {"card": ActionArg("text", "a blocked card UID")},
    "issue_binding_code": {"wallet_id": ActionArg("text", "an open wallet"),
                           "binding_key": ActionArg("text", "the code's binding key, 64 hex digits (the CLI's "
                                                            "issue-binding-code derives it; the code is never sent)"),
                           "expires": ActionArg("integer", "UTC s after which the code is refused, at most 7 days "
                                                           "after the block time")},
    "publish_tariff": {"tariff": ActionArg("object", "a tariff document (docs/tariff.md)"),
                       "effective_from": ActionArg("integer", "UTC s from which sessions are billed by it, at or after "
                                                              "the block time (default: the block that commits it)",
                                                   required=False)},
    "change_validators": {"change": ActionArg("object", "the validator-set change {v: 1, seq, changes} "
                                                        "(docs/consensus.md), in force from 2 blocks after it commits"),
                          "approvals": ActionArg("list", "JSON list of {validator, signature}: approvals of the "
                                                         "change by more than 2/3 of the power in force "
                                                         "(`bureau approve-validators`)")},
}


def tx_hash(tx: bytes) -> bytes:
    return hashlib.sha256(tx).digest()


def receipt_tx(envelope: bytes) -> bytes:
    return bytes([KIND_RECEIPT]) + envelope


@dataclass(frozen=True)
class OperatorAction:
    doc: dict
    raw: bytes
    signature: bytes

    @property
    def action(self) -> str:
        return self.doc["action"]

    @property
    def args(self) -> dict:
        return self.doc["args"]

    @property
    def operator(self) -> str:
        return self.doc["operator"]

    @property
    def time(self) -> int:
        return self.doc["time"]


def action_time_error(action_time: int, block_time_s: int) -> TxError | None:
    """Why an action signed at `action_time` may not commit in a block of `block_time_s`, if so."""
    if action_time < block_time_s - ACTION_MAX_AGE_S:
        return TxError("expired", f"action time {action_time} is more than {ACTION_MAX_AGE_S} s before the "
                                  f"block time {block_time_s}; sign it again")
    if action_time > block_time_s + ACTION_MAX_SKEW_S:
        return TxError("too_early", f"action time {action_time} is more than {ACTION_MAX_SKEW_S} s after the "
                                    f"block time {block_time_s}; check the operator's clock")
    return None


def operator_action(signing_key, operator: str, action: str, args: dict, *, now: int | None = None,
                    nonce: str | None = None) -> bytes:
    """Build and sign an operator action transaction (CLI, demo and tests)."""
    doc = {"v": 1, "action": action, "operator": operator, "args": args,
           "nonce": nonce or secrets.token_hex(16), "time": int(time.time() if now is None else now)}
    return signed_json_tx(KIND_OPERATOR, OPERATOR_TAG, doc, signing_key)


def signed_json_tx(kind: int, tag: bytes, doc: dict, signing_key) -> bytes:
    """kind | u16 length | canonical JSON | Ed25519 signature over tag + JSON: kinds 2 and 3."""
    raw = canonical.dumps(doc)
    sig = signing_key.sign(tag + raw).signature
    return bytes([kind]) + struct.pack(">H", len(raw)) + raw + sig


def _split_json_tx(tx: bytes, what: str) -> tuple[object, bytes, bytes]:
    """(parsed JSON, its bytes, signature) of a kind 2 or 3 transaction; TxError("malformed")."""
    if len(tx) < 3 + 64:
        raise TxError("malformed", f"{what} too short")
    (n,) = struct.unpack(">H", tx[1:3])
    if len(tx) != 3 + n + 64:
        raise TxError("malformed", f"{what} length does not match")
    raw, sig = tx[3:3 + n], tx[3 + n:]
    try:
        return canonical.loads_canonical(raw), raw, sig
    except ValueError as e:
        raise TxError("malformed", str(e)) from None


def decode_operator(tx: bytes) -> OperatorAction:
    doc, raw, sig = _split_json_tx(tx, "operator action")
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise TxError("unsupported_version", "operator action must have v = 1")
    if doc.get("action") not in ACTIONS:
        raise TxError("malformed", f"unknown action {doc.get('action')!r}")
    if not isinstance(doc.get("args"), dict) or not isinstance(doc.get("operator"), str):
        raise TxError("malformed", "operator action needs operator and args")
    if not isinstance(doc.get("nonce"), str) or not 16 <= len(doc["nonce"]) <= 64:
        raise TxError("malformed", "operator action needs a nonce of 16-64 characters")
    t = doc.get("time")
    if type(t) is not int or not 0 <= t < MAX_ACTION_TIME:
        raise TxError("malformed", "operator action needs its time as integer UTC seconds")
    return OperatorAction(doc, raw, sig)


def signed_operator_message(action: OperatorAction) -> bytes:
    return OPERATOR_TAG + action.raw


# ---- driver transactions (kind 3) ----------------------------------------------------------------

@dataclass(frozen=True)
class DriverTx:
    doc: dict
    raw: bytes
    signature: bytes

    @property
    def wallet_id(self) -> str:
        return self.doc["wallet_id"]

    @property
    def public_key(self) -> bytes:
        return bytes.fromhex(self.doc["public_key"])

    @property
    def time(self) -> int:
        return self.doc["time"]

    def signed_message(self) -> bytes:
        return DRIVER_TAG + self.raw


def bind_phone_tx(binding_signing_key, wallet_id: str, phone_key: bytes, genesis_hash: bytes, *,
                  now: int | None = None, nonce: str | None = None) -> bytes:
    """A signed `bind_phone` transaction (driver CLI, tests, vectors; the phone page builds the same)."""
    doc = {"v": 1, "action": "bind_phone", "wallet_id": wallet_id, "public_key": phone_key.hex(),
           "genesis": genesis_hash.hex(), "time": int(time.time() if now is None else now),
           "nonce": nonce or secrets.token_hex(16)}
    return signed_json_tx(KIND_DRIVER, DRIVER_TAG, doc, binding_signing_key)


def decode_driver(tx: bytes) -> DriverTx:
    """The well-formed driver transaction of `tx`; TxError otherwise (signature not checked)."""
    if not tx or tx[0] != KIND_DRIVER:
        raise TxError("malformed", "not a driver transaction")
    doc, raw, sig = _split_json_tx(tx, "driver transaction")
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise TxError("unsupported_version", "driver transaction must have v = 1")
    if doc.get("action") != "bind_phone":
        raise TxError("malformed", f"unknown driver action {doc.get('action')!r}")
    if set(doc) != {"v", "action", "wallet_id", "public_key", "genesis", "time", "nonce"}:
        raise TxError("malformed", "bind_phone has v, action, wallet_id, public_key, genesis, time and nonce")
    if not isinstance(doc["wallet_id"], str) or not ID_RE.match(doc["wallet_id"]):
        raise TxError("malformed", "wallet_id must be 1-32 of A-Z a-z 0-9 . _ -")
    for name in ("public_key", "genesis"):
        if not isinstance(doc[name], str) or not HEX_KEY_RE.match(doc[name]):
            raise TxError("malformed", f"{name} must be 64 lowercase hex digits")
    if not isinstance(doc["nonce"], str) or not NONCE_RE.match(doc["nonce"]):
        raise TxError("malformed", "nonce must be 16-64 lowercase hex digits")
    t = doc["time"]
    if type(t) is not int or not 0 <= t < MAX_ACTION_TIME:
        raise TxError("malformed", "time must be integer UTC seconds")
    return DriverTx(doc, raw, sig)
