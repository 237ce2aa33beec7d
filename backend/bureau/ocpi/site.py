"""Where an OCPP charge point stands, as its enrollment records it (enroll_ocpp_charger's
`location`, docs/ocpp.md): what an OCPI CDR's `cdr_location` needs, checked by OCPI 2.2.1's
rules for those fields (mod_cdrs CdrLocation, mod_locations ConnectorType / ConnectorFormat /
PowerType)."""

from __future__ import annotations

import re

CONNECTOR_STANDARDS = frozenset({
    "CHADEMO", "CHAOJI", "DOMESTIC_A", "DOMESTIC_B", "DOMESTIC_C", "DOMESTIC_D", "DOMESTIC_E", "DOMESTIC_F",
    "DOMESTIC_G", "DOMESTIC_H", "DOMESTIC_I", "DOMESTIC_J", "DOMESTIC_K", "DOMESTIC_L", "GBT_AC", "GBT_DC",
    "IEC_60309_2_single_16", "IEC_60309_2_three_16", "IEC_60309_2_three_32", "IEC_60309_2_three_64",
    "IEC_62196_T1", "IEC_62196_T1_COMBO", "IEC_62196_T2", "IEC_62196_T2_COMBO", "IEC_62196_T3A", "IEC_62196_T3C",
    "NEMA_5_20", "NEMA_6_30", "NEMA_6_50", "NEMA_10_30", "NEMA_10_50", "NEMA_14_30", "NEMA_14_50", "PANTOGRAPH_BOTTOM_UP",
    "PANTOGRAPH_TOP_DOWN", "TESLA_R", "TESLA_S"})
CONNECTOR_FORMATS = frozenset({"SOCKET", "CABLE"})
POWER_TYPES = frozenset({"AC_1_PHASE", "AC_2_PHASE", "AC_2_PHASE_SPLIT", "AC_3_PHASE", "DC"})
LATITUDE_RE = re.compile(r"-?[0-9]{1,2}\.[0-9]{5,7}\Z")
LONGITUDE_RE = re.compile(r"-?[0-9]{1,3}\.[0-9]{5,7}\Z")
COUNTRY_RE = re.compile(r"[A-Z]{3}\Z")  # ISO 3166-1 alpha-3
CI_RE = re.compile(r"[\x20-\x7e]+\Z")
TEXT_FIELDS = {"id": 36, "address": 45, "city": 45, "evse_uid": 36, "evse_id": 48, "connector_id": 36}
FIELDS = {*TEXT_FIELDS, "country", "latitude", "longitude", "connector_standard", "connector_format",
          "connector_power_type"}


class SiteError(ValueError):
    """A location that breaks the rules above; the message says which field."""


def check(loc) -> dict:
    """`loc` when it is a valid location document; SiteError otherwise."""
    if not isinstance(loc, dict) or set(loc) != FIELDS:
        raise SiteError(f"a location has exactly the fields {', '.join(sorted(FIELDS))}")
    for name, limit in TEXT_FIELDS.items():
        value = loc[name]
        if not isinstance(value, str) or not CI_RE.match(value) or len(value) > limit:
            raise SiteError(f"location {name} must be 1-{limit} printable ASCII characters")
    for name, rule in (("country", COUNTRY_RE), ("latitude", LATITUDE_RE), ("longitude", LONGITUDE_RE)):
        if not isinstance(loc[name], str) or not rule.match(loc[name]):
            raise SiteError(f"location {name} {loc[name]!r} is not in OCPI's form")
    for name, allowed in (("connector_standard", CONNECTOR_STANDARDS), ("connector_format", CONNECTOR_FORMATS),
                          ("connector_power_type", POWER_TYPES)):
        if loc[name] not in allowed:
            raise SiteError(f"location {name} {loc[name]!r} is not one of OCPI 2.2.1's values")
    return loc
