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


def test_an_authorize_no_transaction_uses_gives_its_hold_back():
    from bureau.ocpp.core import PENDING_AUTH_S

    class Authz:
        released = []

        def authorize_ocpp(self, cp, method, token):
            return {"decision": "accept", "wallet_id": "W-1", "auth_ref": "auth:00000000000000aa",
                    "authorized_fen": 500, "reason": None, "detail": None}

        def release_ocpp(self, cp, auth_ref):
            self.released.append((cp, auth_ref))
            return True

    authz = Authz()
    core = CsmsCore("bureau-1", _Chain(), authz=authz, signing_key=None, tariff_id=TARIFF.tariff_id)
    assert core.authorize("CP", "04AA", T0).accepted
    assert core.authorize("CP", "04AA", T0 + 10).auth_ref == "auth:00000000000000aa"  # the same hold again
    core.expire_pending(T0 + PENDING_AUTH_S - 1)
    assert authz.released == []
    core.expire_pending(T0 + PENDING_AUTH_S)
    assert authz.released == [("CP", "auth:00000000000000aa")]
    t, decision = core.start("CP", "7", "1.6", "04AA", 0, T0 + PENDING_AUTH_S, T0 + PENDING_AUTH_S)
    assert decision.accepted  # a start after that asks again (here: accepted anew)
