"""A simulated day of one public charger: when drivers arrive, how much energy they want and how
much they prepaid. Pure: a seeded random.Random in, a list of planned sessions out.

Arrivals follow a daily profile in local time (UTC+8, the tariff's): few at night, a morning
and a midday rise and most in the evening peak. They are a Poisson process whose rate follows
the profile (drawn by thinning); a driver who arrives while the charger is taken goes
elsewhere, and the next car needs a few minutes to pull up after one leaves. Every session
ends within the day."""

from __future__ import annotations

import random
from dataclasses import dataclass

LOCAL_OFFSET_S = 8 * 3600  # the tariff's UTC+8 (firmware/core/tariff.py)
DAY_S = 86_400
# relative arrival rate per local hour 0..23
DAILY_PROFILE = (0.3, 0.2, 0.15, 0.15, 0.2, 0.4, 0.8, 1.2, 1.5, 1.4, 1.3, 1.3,
                 1.4, 1.3, 1.2, 1.2, 1.4, 1.9, 2.6, 3.0, 2.8, 2.0, 1.2, 0.6)
CHANGEOVER_S = 180  # the next car pulls up at least this long after one leaves
LAST_START_S = 15 * 60  # no session starts in the last quarter hour of the day
ENERGY_WH = (4_000, 40_000)  # what a driver wants, uniform in this range
TIGHT_FEN = (800, 3_000)  # a tight prepaid amount: the charger stops at the limit (stop reason Q)
TIGHT_SHARE = 0.2
AMPLE_FEN = 100_000  # more than any session costs: the driver stops it


@dataclass(frozen=True)
class Planned:
    start: int  # Unix s (UTC) the driver starts the session
    end: int  # Unix s the driver means to stop it (unless the prepaid limit comes first)
    wallet_id: str
    authorized_fen: int


def local_midnight(unix_s: int) -> int:
    """The UTC+8 midnight at or before `unix_s`."""
    return unix_s - (unix_s + LOCAL_OFFSET_S) % DAY_S


def rate_at(profile: tuple[float, ...], sessions_per_day: float, t_in_day: int) -> float:
    """Arrivals per second at `t_in_day` seconds after local midnight."""
    return sessions_per_day * profile[(t_in_day // 3600) % 24] / (sum(profile) * 3600)


def plan_day(rng: random.Random, day_start: int, *, sessions_per_day: float, power_w: int, wallets: list[str],
             profile: tuple[float, ...] = DAILY_PROFILE) -> list[Planned]:
    """The sessions of one charger drawing `power_w` over the day from `day_start` (a local
    midnight). `sessions_per_day` is the arrival rate's daily total: fewer start when cars
    find the charger taken."""
    if len(profile) != 24 or min(profile) < 0 or not sum(profile):
        raise ValueError("a daily profile is 24 non-negative hourly weights, not all zero")
    if sessions_per_day <= 0 or power_w <= 0 or not wallets:
        raise ValueError("need sessions_per_day > 0, power_w > 0 and at least one wallet")
    peak = rate_at(profile, sessions_per_day, 3600 * profile.index(max(profile)))
    out: list[Planned] = []
    t, free_at = 0.0, 0
    while True:
        t += rng.expovariate(peak)
        if t >= DAY_S - LAST_START_S:
            return out
        if rng.random() * peak > rate_at(profile, sessions_per_day, int(t)) or t < free_at:
            continue  # thinned out, or the charger is taken: this driver goes elsewhere
        start = int(t)
        wanted_wh = rng.randint(*ENERGY_WH)
        end = min(start + max(600, wanted_wh * 3600 // power_w), DAY_S - 60)
        tight = rng.random() < TIGHT_SHARE
        out.append(Planned(day_start + start, day_start + end, rng.choice(wallets),
                           rng.randint(*TIGHT_FEN) if tight else AMPLE_FEN))
        free_at = end + CHANGEOVER_S
