"""Session times for tests whose receipts reach a bureau: the ledger refuses a receipt that ended
more than MAX_RECEIPT_AGE_S (30 days) before the block time (`too_old`), so a fixed date ages out."""

from __future__ import annotations

import time

DAY_S = 86400


def recent(t: int) -> int:
    """`t` moved by whole days to between one and two days before now: the same time of day, so
    the same tariff periods, well inside the staleness bound."""
    return t + ((int(time.time()) - t) // DAY_S - 2) * DAY_S
