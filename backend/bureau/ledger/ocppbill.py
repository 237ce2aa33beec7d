"""OCPP bills (tx kind 4): a finished transaction of an OCPP charge point, signed by the bureau
that served it (docs/ocpp.md, "The bill on chain").

kind 4 | u16 length | canonical JSON | Ed25519 signature by the serving validator's node key over
"EV-OCPPBILL/v1" (zero-padded to 16 bytes) + the JSON. The document is built only from what the
charge point sent, so a resend of the same transaction yields the same bytes: one bill per
(charge point, transaction id), whichever bureau builds it first.

`periods_of` is the one place that splits metered energy into tariff periods: the CSMS builds the
bill with it and every bureau checks the bill with it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .tariff import Tariff
from .tx import ID_RE, MAX_ACTION_TIME, TxError, _split_json_tx, signed_json_tx

KIND_OCPP_BILL = 4
OCPP_BILL_TAG = b"EV-OCPPBILL/v1".ljust(16, b"\x00")
OCPP_VERSIONS = ("1.6", "2.0.1")
MAX_READINGS = 48  # period boundaries a bill can name: two days of the busiest schedule
MAX_WH = 10**9
TRANSACTION_ID_RE = re.compile(r"[\x21-\x7e]{1,36}\Z")  # 1.6: an integer; 2.0.1: identifierString(36)
TOKEN_RE = re.compile(r"[\x20-\x7e]{1,36}\Z")
FIELDS = {"v", "bureau", "charger_id", "ocpp", "transaction_id", "id_token", "wallet_id", "auth_ref",
          "start_time", "end_time", "readings", "tariff_id", "tariff_version", "periods", "amount_fen",
          "stop_reason", "ocmf"}


def periods_of(tariff: Tariff, readings) -> list[list[int]]:
    """[kind, wh] per period kind, ascending, of readings [[unix s, register Wh], ...]: the energy
    between two readings belongs to the period of the later one's time (docs/tariff.md)."""
    out: dict[int, int] = {}
    for (_, a), (t, b) in zip(readings, readings[1:]):
        if b > a:
            kind = tariff.kind_at(t)
            out[kind] = out.get(kind, 0) + b - a
    return [[k, wh] for k, wh in sorted(out.items())]


def boundary_readings(tariff: Tariff, readings) -> list[list[int]]:
    """The readings that keep `periods_of` unchanged: the first, the last, and the last of every
    run of readings in one period. What the bill carries of a long session's meter values."""
    kept = []
    for i, (t, wh) in enumerate(readings):
        last = i == len(readings) - 1
        if i == 0 or last or tariff.kind_at(t) != tariff.kind_at(readings[i + 1][0]):
            kept.append([t, wh])
    return kept


@dataclass(frozen=True)
class OcppBill:
    doc: dict
    raw: bytes
    signature: bytes

    # what the billing rules (LedgerState.billing_error) read, named as a receipt names them
    charger_id = property(lambda self: self.doc["charger_id"])
    wallet_id = property(lambda self: self.doc["wallet_id"])
    transaction_id = property(lambda self: self.doc["transaction_id"])
    start_time = property(lambda self: self.doc["start_time"])
    end_time = property(lambda self: self.doc["end_time"])
    tariff_id = property(lambda self: self.doc["tariff_id"])
    tariff_version = property(lambda self: self.doc["tariff_version"])
    periods = property(lambda self: tuple(tuple(p) for p in self.doc["periods"]))
    amount_fen = property(lambda self: self.doc["amount_fen"])
    auth_ref = property(lambda self: self.doc["auth_ref"])

    @property
    def session_id(self) -> bytes:
        """Stands for the (charge point, transaction id) pair where the billing rules name a session."""
        return session_id(self.doc["charger_id"], self.doc["transaction_id"])

    @property
    def meter_start_wh(self) -> int:
        return self.doc["readings"][0][1]

    @property
    def meter_end_wh(self) -> int:
        return self.doc["readings"][-1][1]

    @property
    def energy_wh(self) -> int:
        return self.meter_end_wh - self.meter_start_wh

    # a charge point's register is checked within the transaction (readings ascend), not across
    # transactions: no per-meter mark is kept for it
    meter_serial = ""
    meter_status = 0
    seq = 0

    def signed_message(self) -> bytes:
        return OCPP_BILL_TAG + self.raw


def session_id(charger_id: str, transaction_id: str) -> bytes:
    return hashlib.sha256(f"ocpp/{charger_id}/{transaction_id}".encode()).digest()[:16]


def bill_tx(signing_key, doc: dict) -> bytes:
    return signed_json_tx(KIND_OCPP_BILL, OCPP_BILL_TAG, doc, signing_key)


def decode(tx: bytes) -> OcppBill:
    """The well-formed bill of `tx`; TxError("malformed") otherwise (signature not checked)."""
    if not tx or tx[0] != KIND_OCPP_BILL:
        raise TxError("malformed", "not an OCPP bill")
    doc, raw, sig = _split_json_tx(tx, "OCPP bill")
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise TxError("unsupported_version", "an OCPP bill must have v = 1")
    if set(doc) != FIELDS:
        raise TxError("malformed", f"an OCPP bill has exactly the fields {', '.join(sorted(FIELDS))}")

    def bad(detail: str) -> TxError:
        return TxError("malformed", detail)

    for name in ("bureau", "charger_id", "wallet_id", "tariff_id"):
        if not isinstance(doc[name], str) or not ID_RE.match(doc[name]):
            raise bad(f"{name} must be 1-32 of A-Z a-z 0-9 . _ -")
    if doc["ocpp"] not in OCPP_VERSIONS:
        raise bad(f"ocpp must be one of {', '.join(OCPP_VERSIONS)}")
    if not isinstance(doc["transaction_id"], str) or not TRANSACTION_ID_RE.match(doc["transaction_id"]):
        raise bad("transaction_id must be 1-36 printable characters without spaces")
    for name in ("id_token", "auth_ref", "stop_reason"):
        if not isinstance(doc[name], str) or not TOKEN_RE.match(doc[name]):
            raise bad(f"{name} must be 1-36 printable characters")
    for name in ("start_time", "end_time", "tariff_version", "amount_fen"):
        if type(doc[name]) is not int or not 0 <= doc[name] < MAX_ACTION_TIME:
            raise bad(f"{name} must be a non-negative integer")
    if doc["end_time"] < doc["start_time"]:
        raise bad("end_time is before start_time")
    readings = doc["readings"]
    if not isinstance(readings, list) or not 2 <= len(readings) <= MAX_READINGS:
        raise bad(f"readings must be 2..{MAX_READINGS} [time, Wh] pairs")
    for r in readings:
        if not (isinstance(r, list) and len(r) == 2 and all(type(x) is int for x in r)
                and 0 <= r[0] < MAX_ACTION_TIME and 0 <= r[1] <= MAX_WH):
            raise bad("a reading is [unix s, register Wh], both non-negative integers")
    if any(b[0] < a[0] or b[1] < a[1] for a, b in zip(readings, readings[1:])):
        raise bad("readings must ascend in time and in Wh")
    if readings[0][0] != doc["start_time"] or readings[-1][0] != doc["end_time"]:
        raise bad("the first reading is at start_time and the last at end_time")
    periods = doc["periods"]
    if not isinstance(periods, list) or not all(isinstance(p, list) and len(p) == 2 and all(type(x) is int for x in p)
                                                for p in periods):
        raise bad("periods must be [kind, Wh] pairs")
    ocmf = doc["ocmf"]
    if ocmf is not None and not isinstance(ocmf, str):
        raise bad("ocmf is the charge point's OCMF record as text, or null")
    return OcppBill(doc, raw, sig)
