"""OCPI 2.2.1 objects from the ledger's data, without I/O (docs/ocpi.md): a Tariff per published
tariff version, a CDR per committed OCPP bill, the response envelope and the paging links.

Money: the tariffs' prices are what drivers pay, VAT included; OCPI gives a price without VAT
plus the VAT rate (`PriceComponent.price`, `.vat`) and a cost both ways (`Price.excl_vat`,
`.incl_vat`): the VAT-free figure is the paid one divided by (1 + VAT), rounded to 4 decimals
for a price per kWh and to the fen for a cost. Times: UTC, RFC 3339 with a Z; a tariff's
`restrictions` are local time of the sites (UTC+8), as OCPI reads them.
"""

from __future__ import annotations

import datetime
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlencode

from ..ledger.tariff import Tariff

VERSION = "2.2.1"
CURRENCY = "CNY"
SUCCESS = 1000
CLIENT_ERROR, INVALID_PARAMETERS = 2000, 2001
UNABLE_TO_USE_CLIENT_API, UNSUPPORTED_VERSION = 3001, 3002
RATE_UNIT = Decimal(10_000)  # our prices are 0.0001 CNY per kWh


def iso(unix_s: int | float) -> str:
    return datetime.datetime.fromtimestamp(int(unix_s), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(data, now_s: float, status_code: int = SUCCESS, message: str | None = None) -> dict:
    out = {"data": data, "status_code": status_code, "timestamp": iso(now_s)}
    if message is not None:
        out["status_message"] = message
    return out


def tariff_ref(tariff_id: str, version: int) -> str:
    return f"{tariff_id}.{version}"  # CiString(36): 32 of the id, a dot, the version


def tariff_id(t: Tariff) -> str:
    return tariff_ref(t.tariff_id, t.version)


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _excl_vat(paid: Decimal, vat_percent: int, places: str) -> Decimal:
    return (paid * 100 / (100 + vat_percent)).quantize(Decimal(places), rounding=ROUND_HALF_UP)


def tariff_object(t: Tariff, effective_from: int, until: int | None, last_updated_s: int, *, country_code: str,
                  party_id: str, vat_percent: int) -> dict:
    """One OCPI Tariff: an element per row of the UTC+8 schedule, its energy price (energy + service
    fee) per kWh, restricted to the row's local hours."""
    starts = [m for m, _ in t.schedule]
    elements = []
    for i, (minute, kind) in enumerate(t.schedule):
        end = starts[i + 1] if i + 1 < len(starts) else 1440
        paid = Decimal(t.rates[kind]) / RATE_UNIT
        elements.append({
            "price_components": [{"type": "ENERGY", "price": float(_excl_vat(paid, vat_percent, "0.0001")),
                                  "vat": float(vat_percent), "step_size": 1}],
            "restrictions": {"start_time": _hhmm(minute), "end_time": _hhmm(end % 1440)},
        })
    out = {"country_code": country_code, "party_id": party_id, "id": tariff_id(t), "currency": CURRENCY,
           "type": "REGULAR", "elements": elements, "start_date_time": iso(effective_from),
           "last_updated": iso(last_updated_s)}
    if until is not None:
        out["end_date_time"] = iso(until)
    return out


def cdr_object(bill: dict, tx_hash: bytes, committed_s: int, location: dict, tariff: dict, ocmf_key: str | None, *,
               country_code: str, party_id: str, vat_percent: int) -> dict:
    """One OCPI CDR of a committed OCPP bill (its document, ledger/ocppbill.py)."""
    readings = bill["readings"]
    energy_wh = readings[-1][1] - readings[0][1]
    paid = Decimal(bill["amount_fen"]) / 100
    periods = [{"start_date_time": iso(a[0]), "dimensions": [{"type": "ENERGY", "volume": (b[1] - a[1]) / 1000}],
                "tariff_id": tariff["id"]} for a, b in zip(readings, readings[1:])]
    app = bill["id_token"].startswith("app:")
    cdr = {
        "country_code": country_code, "party_id": party_id, "id": tx_hash.hex()[:36],
        "start_date_time": iso(bill["start_time"]), "end_date_time": iso(bill["end_time"]),
        "session_id": bill["transaction_id"],
        "cdr_token": {"country_code": country_code, "party_id": party_id, "uid": bill["id_token"],
                      "type": "APP_USER" if app else "RFID", "contract_id": bill["wallet_id"]},
        "auth_method": "COMMAND" if app else "AUTH_REQUEST",
        "authorization_reference": bill["auth_ref"],
        "cdr_location": {"id": location["id"], "address": location["address"], "city": location["city"],
                         "country": location["country"],
                         "coordinates": {"latitude": location["latitude"], "longitude": location["longitude"]},
                         "evse_uid": location["evse_uid"], "evse_id": location["evse_id"],
                         "connector_id": location["connector_id"], "connector_standard": location["connector_standard"],
                         "connector_format": location["connector_format"],
                         "connector_power_type": location["connector_power_type"]},
        "currency": CURRENCY,
        "tariffs": [tariff],
        "charging_periods": periods,
        "total_cost": {"excl_vat": float(_excl_vat(paid, vat_percent, "0.01")), "incl_vat": float(paid)},
        "total_energy": energy_wh / 1000,
        "total_energy_cost": {"excl_vat": float(_excl_vat(paid, vat_percent, "0.01")), "incl_vat": float(paid)},
        "total_time": round((bill["end_time"] - bill["start_time"]) / 3600, 4),
        "last_updated": iso(committed_s),
    }
    if bill["ocmf"] is not None:
        payload = bill["ocmf"].split("|", 1)[1].rsplit("|", 1)[0]
        if len(payload) <= 512 and len(bill["ocmf"]) <= 5000 and (ocmf_key is None or len(ocmf_key) <= 512):
            # (OCPI's field limits; a longer record stays on chain, in the bill's proof)
            cdr["signed_data"] = {"encoding_method": "OCMF", "public_key": ocmf_key,
                                  "signed_values": [{"nature": "Transaction", "plain_data": payload,
                                                     "signed_data": bill["ocmf"]}]}
    return cdr


def page_headers(base_url: str, params: dict, offset: int, limit: int, total: int) -> dict:
    """X-Total-Count, X-Limit and, when objects follow, the Link to the next page (OCPI 2.2.1
    transport_and_format, "Pagination")."""
    headers = {"X-Total-Count": str(total), "X-Limit": str(limit)}
    if offset + limit < total:
        query = urlencode({**{k: v for k, v in params.items() if v is not None}, "offset": offset + limit,
                           "limit": limit})
        headers["Link"] = f'<{base_url}?{query}>; rel="next"'
    return headers
