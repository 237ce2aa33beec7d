"""Energy register readings and OCMF records out of OCPP meter values, both versions (the
payloads as the `ocpp` library hands them over, keys in snake case).

Only the whole-meter active import register counts (`Energy.Active.Import.Register`, the
default measurand, without a phase); other measurands are ignored. Times are UTC seconds.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from decimal import Decimal, DecimalException

from ..ledger.ocppbill import MAX_WH

ENERGY = "Energy.Active.Import.Register"
SCALE = {"Wh": Decimal(1), "kWh": Decimal(1000)}


class MeterValueError(ValueError):
    """A meter value that cannot be read (the handler answers it with a CallError)."""


def unix_s(timestamp: str) -> int:
    """An OCPP dateTime (RFC 3339) as Unix seconds; one without an offset is UTC."""
    try:
        t = datetime.datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        raise MeterValueError(f"timestamp {timestamp!r} is not an RFC 3339 date-time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return int(t.timestamp())


def _whole_wh(value, scale: Decimal, multiplier: int = 0) -> int:
    """The register in whole Wh (a fraction of a Wh is not yet delivered energy), checked in
    range before any arithmetic a hostile value could blow up."""
    if type(multiplier) is not int or not -9 <= multiplier <= 9:
        raise MeterValueError(f"unit multiplier {multiplier!r}; allowed: -9..9")
    try:
        raw = Decimal(str(value))
        if not raw.is_finite() or not 0 <= raw <= MAX_WH:
            raise MeterValueError(f"energy value {value!r} is outside 0..{MAX_WH}")
        wh = raw * scale * Decimal(10) ** multiplier
    except DecimalException:
        raise MeterValueError(f"energy value {value!r} is not a number") from None
    if not 0 <= wh <= MAX_WH:
        raise MeterValueError(f"energy register {wh} Wh is outside 0..{MAX_WH}")
    return int(wh)


def _ocmf_text(data: str) -> str | None:
    if data.startswith("OCMF|"):
        return data
    try:
        text = base64.b64decode(data, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return text if text.startswith("OCMF|") else None


def _is_energy(sv: dict) -> bool:
    return sv.get("measurand", ENERGY) == ENERGY and not sv.get("phase")


def readings_v16(meter_values: list[dict]) -> tuple[list[tuple[int, int]], str | None]:
    """([(unix s, Wh)], the last OCMF record) of OCPP 1.6 meterValue entries."""
    readings, ocmf = [], None
    for mv in meter_values or []:
        at = unix_s(mv.get("timestamp"))
        for sv in mv.get("sampled_value", []):
            if not _is_energy(sv):
                continue
            value = str(sv.get("value", ""))
            if sv.get("format") == "SignedData":
                ocmf = _ocmf_text(value) or ocmf
                continue
            scale = SCALE.get(sv.get("unit", "Wh"))
            if scale is None:
                raise MeterValueError(f"energy unit {sv.get('unit')!r}; allowed: Wh, kWh")
            readings.append((at, _whole_wh(value, scale)))
    return readings, ocmf


def readings_v201(meter_values: list[dict]) -> tuple[list[tuple[int, int]], str | None]:
    """([(unix s, Wh)], the last OCMF record) of OCPP 2.0.1 meterValue entries."""
    readings, ocmf = [], None
    for mv in meter_values or []:
        at = unix_s(mv.get("timestamp"))
        for sv in mv.get("sampled_value", []):
            if not _is_energy(sv):
                continue
            signed = sv.get("signed_meter_value")
            if signed and signed.get("encoding_method", "OCMF") == "OCMF":
                ocmf = _ocmf_text(str(signed.get("signed_meter_data", ""))) or ocmf
            unit = sv.get("unit_of_measure") or {}
            scale = SCALE.get(unit.get("unit", "Wh"))
            if scale is None:
                raise MeterValueError(f"energy unit {unit.get('unit')!r}; allowed: Wh, kWh")
            readings.append((at, _whole_wh(sv["value"], scale, unit.get("multiplier", 0))))
    return readings, ocmf
