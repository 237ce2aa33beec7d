"""Session times for what sends receipts to a bureau from a script: benches, the fleet and soak
simulators, the hostile load, tests. The ledger refuses a receipt that ended more than
MAX_RECEIPT_AGE_S (30 days) before its block's time (`too_old`) or later than the block time
allows (`from_future`), so a fixed date written into a script ages out."""

from __future__ import annotations

import time

DAY_S = 86400


def recent(t: int, days: int = 2, now: int | None = None) -> int:
    """`t` moved by whole days to between `days` and `days` + 1 days before `now` (default: the
    clock's): the same time of day, so the same tariff periods."""
    now = int(time.time()) if now is None else now
    return t + ((now - t) // DAY_S - days) * DAY_S
