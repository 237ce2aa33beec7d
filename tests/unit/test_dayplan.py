"""The fleet simulator's day of one charger (chargerhost.dayplan): arrivals follow the daily
profile, sessions never overlap and end within the day, a seed gives the same day again."""

import random

import pytest

from chargerhost.dayplan import (
    AMPLE_FEN, CHANGEOVER_S, DAILY_PROFILE, DAY_S, LOCAL_OFFSET_S, TIGHT_FEN, local_midnight, plan_day,
)

DAY = local_midnight(1_793_491_200)
WALLETS = ["W-1", "W-2", "W-3"]


def fleet_day(chargers: int = 300, seed: int = 7, **kw):
    return [plan_day(random.Random(f"{seed}:{i}"), DAY, sessions_per_day=kw.get("per_day", 4), power_w=7000,
                     wallets=WALLETS) for i in range(chargers)]


def test_the_day_starts_at_a_local_midnight():
    assert (DAY + LOCAL_OFFSET_S) % DAY_S == 0
    assert local_midnight(DAY + 5) == DAY and local_midnight(DAY - 1) == DAY - DAY_S


def test_sessions_of_a_charger_never_overlap_and_end_within_the_day():
    for plan in fleet_day():
        for p in plan:
            assert DAY <= p.start < p.end <= DAY + DAY_S
            assert p.wallet_id in WALLETS
            assert p.authorized_fen == AMPLE_FEN or TIGHT_FEN[0] <= p.authorized_fen <= TIGHT_FEN[1]
        for a, b in zip(plan, plan[1:]):
            assert b.start >= a.end + CHANGEOVER_S


def test_the_evening_peak_gets_more_arrivals_than_the_night():
    hours = [0] * 24
    for plan in fleet_day(chargers=500, per_day=2):
        for p in plan:
            hours[(p.start - DAY) // 3600] += 1
    evening, night = sum(hours[18:21]), sum(hours[1:4])
    assert evening > 5 * night > 0
    assert DAILY_PROFILE.index(max(DAILY_PROFILE)) in range(18, 21)


def test_a_seed_gives_the_same_day_and_another_seed_another():
    assert fleet_day(chargers=20, seed=3) == fleet_day(chargers=20, seed=3)
    assert fleet_day(chargers=20, seed=3) != fleet_day(chargers=20, seed=4)


def test_some_drivers_prepay_tightly_and_most_amply():
    amounts = [p.authorized_fen for plan in fleet_day() for p in plan]
    tight = sum(1 for a in amounts if a != AMPLE_FEN)
    assert 0.1 * len(amounts) < tight < 0.3 * len(amounts)


@pytest.mark.parametrize("kw", [{"profile": (1.0,) * 23}, {"profile": (0.0,) * 24}, {"profile": (-1.0,) + (1.0,) * 23},
                                {"sessions_per_day": 0}, {"power_w": 0}, {"wallets": []}])
def test_a_bad_plan_request_is_refused(kw):
    args = {"sessions_per_day": 4, "power_w": 7000, "wallets": WALLETS} | kw
    with pytest.raises(ValueError):
        plan_day(random.Random(1), DAY, **args)
