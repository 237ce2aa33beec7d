"""Energy register readings and OCMF records out of OCPP meter values, both versions (the
payloads as the `ocpp` library hands them over, keys in snake case).

Only the whole-meter active import register counts (`Energy.Active.Import.Register`, the
default measurand, without a phase); other measurands are ignored. Times are UTC seconds.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from decimal import Decimal, InvalidOperation

ENERGY = "Energy.Active.Import.Register"
SCALE_V16 = {"Wh": Decimal(1), "kWh": Decimal(1000)}


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


def _whole_wh(value: Decimal) -> int:
    if value < 0:
        raise MeterValueError(f"energy register {value} Wh is negative")
    return int(value)  # a register's fraction of a Wh is not yet delivered energy


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
            scale = SCALE_V16.get(sv.get("unit", "Wh"))
            if scale is None:
                raise MeterValueError(f"energy unit {sv.get('unit')!r}; allowed: Wh, kWh")
            try:
                readings.append((at, _whole_wh(Decimal(value) * scale)))
            except InvalidOperation:
                raise MeterValueError(f"energy value {value!r} is not a number") from None
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
            scale = {"Wh": Decimal(1), "kWh": Decimal(1000)}.get(unit.get("unit", "Wh"))
            if scale is None:
                raise MeterValueError(f"energy unit {unit.get('unit')!r}; allowed: Wh, kWh")
            multiplier = unit.get("multiplier", 0)
            readings.append((at, _whole_wh(Decimal(str(sv["value"])) * scale * Decimal(10) ** multiplier)))
    return readings, ocmf
