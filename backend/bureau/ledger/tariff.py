"""Tariff documents and the one rounding rule (docs/tariff.md), backend side.

The firmware's `tariff.py` does the same arithmetic under MicroPython; tests/vectors/tariff.json
holds the two together.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

LOCAL_OFFSET_S = 8 * 3600
KINDS = 4
KIND_NAMES = ("critical_peak", "peak", "flat", "valley")


class TariffError(ValueError):
    """A tariff document that breaks the rules of docs/tariff.md."""


@dataclass(frozen=True)
class Tariff:
    tariff_id: str
    version: int
    rates: tuple[int | None, ...]  # energy price + service fee per kind, 0.0001 CNY/kWh
    prices: tuple[tuple[int, int, int], ...]
    schedule: tuple[tuple[int, int], ...]
    # derived from the schedule once: every receipt's period check reads them
    starts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    kind_count: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "starts", tuple(m for m, _ in self.schedule))
        object.__setattr__(self, "kind_count", len({k for _, k in self.schedule}))

    @classmethod
    def from_doc(cls, doc: dict) -> "Tariff":
        if doc.get("v") != 1:
            raise TariffError("tariff document must have v = 1")
        try:
            tariff_id, version = str(doc["tariff_id"]), int(doc["version"])
            prices = tuple((int(k), int(e), int(s)) for k, e, s in doc["prices"])
            schedule = tuple((int(m), int(k)) for m, k in doc["schedule"])
        except (KeyError, TypeError, ValueError) as e:
            raise TariffError(f"tariff document is malformed: {e}") from None
        if version < 1:
            raise TariffError("tariff version must be >= 1")
        kinds = [k for k, _, _ in prices]
        if kinds != sorted(set(kinds)) or any(not 0 <= k < KINDS for k in kinds):
            raise TariffError("price rows need unique kinds 0-3 in ascending order")
        if any(e < 0 or s < 0 for _, e, s in prices):
            raise TariffError("prices must not be negative")
        rates: list[int | None] = [None] * KINDS
        for k, e, s in prices:
            rates[k] = e + s
        starts = [m for m, _ in schedule]
        if not starts or starts[0] != 0 or starts != sorted(set(starts)) or starts[-1] >= 1440:
            raise TariffError("schedule rows must ascend from minute 0 to below 1440")
        if any(not 0 <= k < KINDS or rates[k] is None for _, k in schedule):
            raise TariffError("schedule names a period kind without a price")
        return cls(tariff_id, version, tuple(rates), prices, schedule)

    def to_doc(self) -> dict:
        return {"v": 1, "tariff_id": self.tariff_id, "version": self.version,
                "prices": [list(p) for p in self.prices], "schedule": [list(s) for s in self.schedule]}

    def kind_at(self, unix_s: int) -> int:
        minute = ((unix_s + LOCAL_OFFSET_S) % 86400) // 60
        return self.schedule[bisect_right(self.starts, minute) - 1][1]

    def kinds_between(self, start_s: int, end_s: int) -> set[int]:
        """The kinds in force at some second of [start_s, end_s], both ends included: the energy
        up to the end reading belongs to the period of the end reading's time."""
        starts, schedule, every = self.starts, self.schedule, self.kind_count
        kinds, t = set(), start_s
        while t <= end_s and len(kinds) < every:
            local = t + LOCAL_OFFSET_S
            day, minute = local - local % 86400, (local % 86400) // 60
            i = bisect_right(starts, minute)
            kinds.add(schedule[i - 1][1])  # the row in force at t
            t = day + (starts[i] * 60 if i < len(starts) else 86400) - LOCAL_OFFSET_S  # the next row's start
        return kinds

    def amount_fen(self, periods) -> int:
        """Fen for (kind, wh) pairs: exact sum in 1e-7 CNY, rounded half up once."""
        exact = 0
        for kind, wh in periods:
            rate = self.rates[kind] if 0 <= kind < KINDS else None
            if rate is None:
                raise TariffError(f"tariff {self.tariff_id} v{self.version} has no price for kind {kind}")
            exact += wh * rate
        return (exact + 50_000) // 100_000
