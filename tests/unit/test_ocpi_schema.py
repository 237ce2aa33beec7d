"""The OCPI objects the bureau sends (bureau/ocpi/model.py) against OCPI 2.2.1's field rules,
written here as a small schema from the specification (mod_tariffs 11.3-11.4, mod_cdrs 10.3-10.4,
types 16, transport_and_format 4.1.7): every required field present, no unknown field, each of
its type and length, enumerations from the spec's lists. `check` is also used on the nodes'
answers in tests/integration/test_ocpi.py."""

from __future__ import annotations

import re

import pytest

from bureau.ledger import ocppbill
from bureau.ledger.tariff import Tariff
from bureau.ocpi import model
from bureau.tools.network import DEFAULT_TARIFF
from tests.support.ocmf_meter import OcmfMeter

DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z\Z")


# (type, required, extra): type is "ci:N" / "str:N" (CiString / string of at most N), "int",
# "number", "bool", "datetime", "enum:A,B", an object schema (dict) or ["list", item, min items]
def ci(n):
    return f"ci:{n}"


PRICE = {"excl_vat": ("number", True), "incl_vat": ("number", False)}
RESTRICTIONS = {"start_time": ("time", False), "end_time": ("time", False), "start_date": ("str:10", False),
                "end_date": ("str:10", False), "min_kwh": ("number", False), "max_kwh": ("number", False),
                "min_current": ("number", False), "max_current": ("number", False), "min_power": ("number", False),
                "max_power": ("number", False), "min_duration": ("int", False), "max_duration": ("int", False),
                "day_of_week": (["list", "enum:MONDAY,TUESDAY,WEDNESDAY,THURSDAY,FRIDAY,SATURDAY,SUNDAY", 0], False),
                "reservation": ("enum:RESERVATION,RESERVATION_EXPIRES", False)}
PRICE_COMPONENT = {"type": ("enum:ENERGY,FLAT,PARKING_TIME,TIME", True), "price": ("number", True),
                   "vat": ("number", False), "step_size": ("int", True)}
TARIFF = {
    "country_code": (ci(2), True), "party_id": (ci(3), True), "id": (ci(36), True), "currency": ("str:3", True),
    "type": ("enum:AD_HOC_PAYMENT,PROFILE_CHEAPEST,PROFILE_FASTEST,PROFILE_GREEN,REGULAR", False),
    "tariff_alt_text": (["list", {"language": ("str:2", True), "text": ("str:512", True)}, 0], False),
    "tariff_alt_url": ("str:255", False), "min_price": (PRICE, False), "max_price": (PRICE, False),
    "elements": (["list", {"price_components": (["list", PRICE_COMPONENT, 1], True),
                           "restrictions": (RESTRICTIONS, False)}, 1], True),
    "start_date_time": ("datetime", False), "end_date_time": ("datetime", False),
    "last_updated": ("datetime", True),
}
CONNECTOR_TYPES = ("CHADEMO,CHAOJI,DOMESTIC_A,DOMESTIC_B,DOMESTIC_C,DOMESTIC_D,DOMESTIC_E,DOMESTIC_F,DOMESTIC_G,"
                   "DOMESTIC_H,DOMESTIC_I,DOMESTIC_J,DOMESTIC_K,DOMESTIC_L,GBT_AC,GBT_DC,IEC_60309_2_single_16,"
                   "IEC_60309_2_three_16,IEC_60309_2_three_32,IEC_60309_2_three_64,IEC_62196_T1,IEC_62196_T1_COMBO,"
                   "IEC_62196_T2,IEC_62196_T2_COMBO,IEC_62196_T3A,IEC_62196_T3C,NEMA_5_20,NEMA_6_30,NEMA_6_50,"
                   "NEMA_10_30,NEMA_10_50,NEMA_14_30,NEMA_14_50,PANTOGRAPH_BOTTOM_UP,PANTOGRAPH_TOP_DOWN,TESLA_R,"
                   "TESLA_S")
CDR = {
    "country_code": (ci(2), True), "party_id": (ci(3), True), "id": (ci(39), True),
    "start_date_time": ("datetime", True), "end_date_time": ("datetime", True), "session_id": (ci(36), False),
    "cdr_token": ({"country_code": (ci(2), True), "party_id": (ci(3), True), "uid": (ci(36), True),
                   "type": ("enum:AD_HOC_USER,APP_USER,OTHER,RFID", True), "contract_id": (ci(36), True)}, True),
    "auth_method": ("enum:AUTH_REQUEST,COMMAND,WHITELIST", True), "authorization_reference": (ci(36), False),
    "cdr_location": ({
        "id": (ci(36), True), "name": ("str:255", False), "address": ("str:45", True), "city": ("str:45", True),
        "postal_code": ("str:10", False), "state": ("str:20", False), "country": ("str:3", True),
        "coordinates": ({"latitude": ("lat", True), "longitude": ("lon", True)}, True),
        "evse_uid": (ci(36), True), "evse_id": (ci(48), True), "connector_id": (ci(36), True),
        "connector_standard": ("enum:" + CONNECTOR_TYPES, True), "connector_format": ("enum:SOCKET,CABLE", True),
        "connector_power_type": ("enum:AC_1_PHASE,AC_2_PHASE,AC_2_PHASE_SPLIT,AC_3_PHASE,DC", True)}, True),
    "meter_id": ("str:255", False), "currency": ("str:3", True), "tariffs": (["list", TARIFF, 0], False),
    "charging_periods": (["list", {
        "start_date_time": ("datetime", True),
        "dimensions": (["list", {"type": ("enum:CURRENT,ENERGY,ENERGY_EXPORT,ENERGY_IMPORT,MAX_CURRENT,MIN_CURRENT,"
                                          "MAX_POWER,MIN_POWER,PARKING_TIME,POWER,RESERVATION_TIME,STATE_OF_CHARGE,"
                                          "TIME", True), "volume": ("number", True)}, 1], True),
        "tariff_id": (ci(36), False)}, 1], True),
    "signed_data": ({"encoding_method": (ci(36), True), "encoding_method_version": ("int", False),
                     "public_key": ("str:512", False),
                     "signed_values": (["list", {"nature": (ci(32), True), "plain_data": ("str:512", True),
                                                 "signed_data": ("str:5000", True)}, 1], True),
                     "url": ("str:512", False)}, False),
    "total_cost": (PRICE, True), "total_fixed_cost": (PRICE, False), "total_energy": ("number", True),
    "total_energy_cost": (PRICE, False), "total_time": ("number", True), "total_time_cost": (PRICE, False),
    "total_parking_time": ("number", False), "total_parking_cost": (PRICE, False),
    "total_reservation_cost": (PRICE, False), "remark": ("str:255", False), "invoice_reference_id": (ci(39), False),
    "credit": ("bool", False), "credit_reference_id": (ci(39), False), "home_charging_compensation": ("bool", False),
    "last_updated": ("datetime", True),
}
ENVELOPE = {"data": ("any", False), "status_code": ("int", True), "status_message": ("str:1000", False),
            "timestamp": ("datetime", True)}


def check(value, schema, where="$") -> None:
    """AssertionError naming the first field that breaks `schema`."""
    if isinstance(schema, dict):
        assert isinstance(value, dict), f"{where} is not an object"
        unknown = set(value) - set(schema)
        assert not unknown, f"{where} has fields OCPI does not define: {sorted(unknown)}"
        for name, (kind, required) in schema.items():
            if name not in value or value[name] is None:
                assert not required, f"{where}.{name} is required"
                continue
            check(value[name], kind, f"{where}.{name}")
        return
    if isinstance(schema, list):
        _, item, least = schema
        assert isinstance(value, list) and len(value) >= least, f"{where} is not a list of at least {least}"
        for i, v in enumerate(value):
            check(v, item, f"{where}[{i}]")
        return
    kind, _, arg = schema.partition(":")
    if kind in ("ci", "str"):
        assert isinstance(value, str) and len(value) <= int(arg), f"{where} is not a string of at most {arg}"
        if kind == "ci":
            assert re.fullmatch(r"[\x20-\x7e]*", value), f"{where} is not printable ASCII (CiString)"
    elif kind == "int":
        assert type(value) is int, f"{where} is not an int"
    elif kind == "number":
        assert type(value) in (int, float), f"{where} is not a number"
    elif kind == "bool":
        assert type(value) is bool, f"{where} is not a boolean"
    elif kind == "datetime":
        assert isinstance(value, str) and DATETIME.match(value), f"{where} is not a UTC DateTime: {value!r}"
    elif kind == "time":
        assert re.fullmatch(r"([0-1][0-9]|2[0-3]):[0-5][0-9]", value), f"{where} is not HH:MM"
    elif kind == "lat":
        assert re.fullmatch(r"-?[0-9]{1,2}\.[0-9]{5,7}", value), f"{where} is not a latitude"
    elif kind == "lon":
        assert re.fullmatch(r"-?[0-9]{1,3}\.[0-9]{5,7}", value), f"{where} is not a longitude"
    elif kind == "enum":
        assert value in arg.split(","), f"{where} {value!r} is not one of OCPI's values"
    else:
        assert kind == "any", schema


TARIFF_DOC = Tariff.from_doc(DEFAULT_TARIFF)
LOCATION = {"id": "LOC-SZ-1", "address": "1 Shennan Road", "city": "Shenzhen", "country": "CHN",
            "latitude": "22.54310", "longitude": "114.05787", "evse_uid": "CP-LOC-1", "evse_id": "CN*CLG*ECP1*1",
            "connector_id": "1", "connector_standard": "GBT_AC", "connector_format": "CABLE",
            "connector_power_type": "AC_1_PHASE"}
SETTINGS = {"country_code": "CN", "party_id": "CLG", "vat_percent": 13}


def _bill(ocmf: str | None, token="04A1B2C3"):
    readings = [[1_793_491_200, 1000], [1_793_492_000, 3000], [1_793_494_800, 7000]]
    periods = ocppbill.periods_of(TARIFF_DOC, readings)
    return {"v": 1, "bureau": "bureau-1", "charger_id": "CP-LOC-1", "ocpp": "1.6", "transaction_id": "42",
            "id_token": token, "wallet_id": "W-1", "auth_ref": "auth:0123456789abcdef",
            "start_time": readings[0][0], "end_time": readings[-1][0], "readings": readings,
            "tariff_id": TARIFF_DOC.tariff_id, "tariff_version": 1, "periods": periods,
            "amount_fen": TARIFF_DOC.amount_fen(periods), "stop_reason": "Local", "ocmf": ocmf}


def _tariff():
    return model.tariff_object(TARIFF_DOC, 0, None, 1_793_400_000, **SETTINGS)


def test_a_tariff_follows_ocpi_and_prices_every_local_period_without_vat():
    t = _tariff()
    check(t, TARIFF)
    assert [(e["restrictions"]["start_time"], e["restrictions"]["end_time"]) for e in t["elements"]][:2] == \
        [("00:00", "08:00"), ("08:00", "10:00")]
    valley = t["elements"][0]["price_components"][0]
    assert valley["vat"] == 13.0 and valley["price"] == round(1.15 / 1.13, 4)  # 0.35 + 0.80 CNY/kWh paid


@pytest.mark.parametrize("ocmf, token", [(None, "04A1B2C3"), (OcmfMeter().record(1000, 7000), "app:0123456789abcdef")])
def test_a_cdr_follows_ocpi_with_or_without_the_meters_signed_data(ocmf, token):
    bill = _bill(ocmf, token)
    cdr = model.cdr_object(bill, b"\x01" * 32, 1_793_495_000, LOCATION, _tariff(), OcmfMeter().public_key_hex,
                           **SETTINGS)
    check(cdr, CDR)
    assert cdr["total_cost"]["incl_vat"] == bill["amount_fen"] / 100 and cdr["total_energy"] == 6.0
    assert sum(d["volume"] for p in cdr["charging_periods"] for d in p["dimensions"]) == 6.0
    assert ("signed_data" in cdr) == (ocmf is not None)
    assert cdr["auth_method"] == ("COMMAND" if token.startswith("app:") else "AUTH_REQUEST")


def test_the_envelope_and_the_paging_headers():
    check(model.envelope([], 1_793_495_000), ENVELOPE)
    check(model.envelope(None, 1_793_495_000, model.INVALID_PARAMETERS, "limit must be an integer"), ENVELOPE)
    h = model.page_headers("https://b1/ocpi/2.2.1/cdrs", {"date_from": "2026-12-01T00:00:00Z", "date_to": None},
                           0, 10, 25)
    assert h["X-Total-Count"] == "25" and h["X-Limit"] == "10"
    assert h["Link"] == ('<https://b1/ocpi/2.2.1/cdrs?date_from=2026-12-01T00%3A00%3A00Z&offset=10&limit=10>; '
                         'rel="next"')
    assert "Link" not in model.page_headers("https://b1/x", {}, 20, 10, 25)


def test_the_schema_catches_what_ocpi_forbids():
    cdr = model.cdr_object(_bill(None), b"\x01" * 32, 1_793_495_000, LOCATION, _tariff(), None, **SETTINGS)
    for broken, says in (({**cdr, "auth_method": "CARD"}, "auth_method"), ({**cdr, "extra": 1}, "does not define"),
                         ({k: v for k, v in cdr.items() if k != "total_energy"}, "total_energy is required")):
        with pytest.raises(AssertionError, match=says):
            check(broken, CDR)
