"""The CSMS core's bookkeeping of a transaction's readings (bureau/ocpp/core.py): however many
meter values a long transaction sends, it keeps the last of each run in one tariff period, and
the periods (so the bill) stay those of every reading; readings out of order are dropped."""

from types import SimpleNamespace

from bureau.ledger import ocppbill
from bureau.ledger.tariff import Tariff
from bureau.ocpp.core import CsmsCore, Transaction
from bureau.tools.network import DEFAULT_TARIFF

TARIFF = Tariff.from_doc(DEFAULT_TARIFF)
T0 = 1_793_491_200 - 8 * 3600  # a local midnight (UTC+8)


class _Chain:
    def __init__(self) -> None:
        self.state = SimpleNamespace(tariff_in_force=lambda tid, at, ex=None: TARIFF, ocpp_bills=set())

    def on_commit(self, listener) -> None:
        pass


def _core_and_transaction():
    core = CsmsCore("bureau-1", _Chain(), authz=None, signing_key=None, tariff_id=TARIFF.tariff_id)
    t = Transaction("CP", "1", "1.6", "04AA", "W-1", "auth:0123456789abcdef", 10**9, TARIFF.tariff_id, T0,
                    [[T0, 0]])
    return core, t


def test_a_day_of_meter_values_keeps_a_reading_per_period_run_and_the_same_periods():
    core, t = _core_and_transaction()
    every = [[T0, 0]] + [[T0 + 60 * i, 10 * i] for i in range(1, 24 * 60)]
    for at, wh in every[1:]:
        core.meter(t, [(at, wh)])
    assert len(t.readings) <= len(TARIFF.schedule) + 2
    assert ocppbill.periods_of(TARIFF, t.readings) == ocppbill.periods_of(TARIFF, every)
    assert t.readings == ocppbill.boundary_readings(TARIFF, every)


def test_readings_out_of_order_or_running_back_are_dropped():
    core, t = _core_and_transaction()
    core.meter(t, [(T0 + 600, 500)])
    core.meter(t, [(T0 + 300, 700), (T0 + 900, 400), (T0 + 600, 500)])
    assert t.readings == [[T0, 0], [T0 + 600, 500]]


def test_a_meter_value_out_of_range_is_refused_before_any_arithmetic():
    import pytest

    from bureau.ocpp.meter import MeterValueError, readings_v16, readings_v201
    for value in ("1e999999999", "-5", "NaN"):
        with pytest.raises(MeterValueError):
            readings_v16([{"timestamp": "2026-12-01T00:00:00Z", "sampled_value": [{"value": value}]}])
    with pytest.raises(MeterValueError):
        readings_v201([{"timestamp": "2026-12-01T00:00:00Z", "sampled_value": [{"value": 1e308}]}])
