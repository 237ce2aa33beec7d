"""Authorization settings: one typed dataclass, read once from the environment (BUREAU_AUTHZ_*)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class AuthzSettings:
    # Whether this node answers authorization requests and publishes the signed list and tariff.
    # None: the first validator of the genesis does (exactly one responder per network, so a
    # wallet's holds live in one place; see docs/authorization.md).
    enabled: bool | None = None
    hold_ttl_s: int = 12 * 3600  # an open authorization holds its amount at most this long
    min_authorize_fen: int = 100  # below this much available, a start is refused
    max_authorize_fen: int = 50_000  # the most one online authorization allows (500 CNY)
    app_token_ttl_s: int = 120  # a phone start must be redeemed by the charger within this
    offline_cap_fen: int = 5_000  # the most a card may spend offline per list (50 CNY)
    offline_min_fen: int = 100  # cards whose offline limit would be lower are left off the list
    list_ttl_s: int = 24 * 3600  # a list expires this long after it is issued
    list_min_interval_s: int = 60  # a changed list is published at most this often
    list_max_entries: int = 1400  # what one manifest of 1536-byte pages can name (docs/authorization.md)
    tariff_id: str = ""  # the tariff this bureau's chargers use; default: the genesis's first
    max_request_bytes: int = 1024

    @classmethod
    def from_env(cls, env=os.environ, **overrides) -> "AuthzSettings":
        values: dict = {}
        for f in fields(cls):
            raw = env.get("BUREAU_AUTHZ_" + f.name.upper())
            if raw is None:
                continue
            if f.name == "enabled":
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            elif f.type == "int":
                values[f.name] = int(raw)
            else:
                values[f.name] = raw
        values.update(overrides)
        return cls(**values)
