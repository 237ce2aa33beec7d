"""OCMF signed meter values (Open Charge Metering Format, S.A.F.E. e.V.), the subset a bill needs.

A record is `OCMF|<payload JSON>|<signature JSON>`; the signature JSON names the algorithm
(`SA`, only `ECDSA-secp256r1-SHA256` here) and carries the DER-encoded ECDSA signature in hex
(`SD`) over the payload's bytes exactly as sent. The payload's `RD` readings carry the meter
register: `TX` "B" the transaction's begin, "E" (or "L", "R", "A", "P", "S", "T") its end; `RV`
the value in `RU` ("kWh" or "Wh"). The key is the meter's P-256 public key as DER
SubjectPublicKeyInfo, registered on chain at the charge point's enrollment (docs/ocpp.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import ReasonedError
from .canonical import MAX_DEPTH, nesting_depth

ALGORITHM = "ECDSA-secp256r1-SHA256"
MAX_RECORD = 2048
MAX_WH = 10**12  # a register beyond a terawatt-hour is no meter's
END_TX = frozenset("ELRAPST")


class OcmfError(ReasonedError):
    """An OCMF record that is malformed or does not verify: see `reason`."""


@dataclass(frozen=True)
class OcmfReading:
    begin_wh: int
    end_wh: int


def load_public_key(spki_hex: str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_der_public_key(bytes.fromhex(spki_hex))
    except ValueError:
        raise OcmfError("malformed", "an OCMF key is a P-256 public key as DER SubjectPublicKeyInfo in hex") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise OcmfError("malformed", "an OCMF key must be on the P-256 curve (secp256r1)")
    return key


def _wh(reading: dict) -> int:
    unit = reading.get("RU")
    try:
        value = Decimal(str(reading["RV"]))
    except (KeyError, InvalidOperation):
        raise OcmfError("malformed", "an OCMF reading needs a numeric RV") from None
    scale = {"kWh": 1000, "Wh": 1}.get(unit)
    if scale is None:
        raise OcmfError("malformed", f"OCMF reading unit {unit!r}; allowed: kWh, Wh")
    wh = value * scale
    if not wh.is_finite() or not 0 <= wh <= MAX_WH or wh != wh.to_integral_value():
        raise OcmfError("malformed", f"OCMF reading {value} {unit} is not a whole number of Wh up to {MAX_WH}")
    return int(wh)


def verify(record: str, spki_hex: str) -> OcmfReading:
    """The begin and end register readings of `record`, once its signature verifies with the
    meter key `spki_hex`; OcmfError otherwise."""
    if len(record) > MAX_RECORD:
        raise OcmfError("malformed", f"OCMF record longer than {MAX_RECORD} characters")
    head, sep, rest = record.partition("|")
    payload, sep2, signature = rest.rpartition("|")
    if head != "OCMF" or not sep or not sep2:
        raise OcmfError("malformed", "an OCMF record is OCMF|<payload>|<signature>")
    # every bureau parses what one charge point sent: nothing may nest deeper than the parser recurses
    if max(nesting_depth(payload.encode(), MAX_DEPTH), nesting_depth(signature.encode(), MAX_DEPTH)) > MAX_DEPTH:
        raise OcmfError("malformed", f"OCMF JSON nests deeper than {MAX_DEPTH} levels")
    try:
        body, sig = json.loads(payload), json.loads(signature)
    except ValueError:
        raise OcmfError("malformed", "OCMF payload and signature must be JSON") from None
    if not isinstance(body, dict) or not isinstance(sig, dict):
        raise OcmfError("malformed", "OCMF payload and signature must be JSON objects")
    if sig.get("SA", ALGORITHM) != ALGORITHM:
        raise OcmfError("unsupported_algorithm", f"OCMF signature algorithm {sig.get('SA')!r}; allowed: {ALGORITHM}")
    try:
        der = bytes.fromhex(str(sig["SD"]))
    except (KeyError, ValueError):
        raise OcmfError("malformed", "OCMF signature needs SD, the DER signature in hex") from None
    try:
        load_public_key(spki_hex).verify(der, payload.encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise OcmfError("bad_meter_signature", "the OCMF record does not verify with the meter key enrolled") from None
    readings = body.get("RD")
    if not isinstance(readings, list) or not all(isinstance(r, dict) for r in readings):
        raise OcmfError("malformed", "OCMF payload needs RD, a list of readings")
    begin = [r for r in readings if r.get("TX") == "B"]
    end = [r for r in readings if r.get("TX") in END_TX]
    if len(begin) != 1 or len(end) != 1:
        raise OcmfError("malformed", "an OCMF transaction record has one begin (TX B) and one end reading")
    return OcmfReading(_wh(begin[0]), _wh(end[0]))
