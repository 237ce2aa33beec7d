"""The charge point controller (firmware/core/controller.py) on a simulated charger: the pilot
circuit, a Modbus (or DL/T 645) meter, the card reader and a vehicle from hardware/hwsim, the
real Charger core writing receipts to a flash directory. Every receipt is decoded by the
backend's codec and its signature checked; energy is checked against what flowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nacl.signing import VerifyKey

import controller as fw_controller
import meter as fw_meter
import pilot as fw_pilot
from bureau.ledger.tariff import Tariff
from bureau.receipts.codec import decode, signed_message
from chargerhost.simcontroller import ControllerSim
from hwsim.meters import FAULT_FROZEN, FAULT_NO_REPLY
from tests.support.flashsim import CuttableFlash, PowerCut
from tests.support.signer import NaclSigner

TARIFF = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "tariff.json").read_text())["tariff"]
START = 1_793_491_200  # 2026-11-01T00:00:00Z: 08:00 local, flat period
CARD = "04A1B2C3D4E5F6"
WALLETS = {CARD: ("W-1001", 100_000), "04DEAD01": ("W-2002", 60)}
STEP = 25
DEBOUNCE = 3


def make_sim(tmp_path, **kw) -> ControllerSim:
    kw.setdefault("tariff", TARIFF)
    kw.setdefault("start_time", START)
    kw.setdefault("wallets", WALLETS)
    kw.setdefault("signer", NaclSigner)
    kw.setdefault("step_ms", STEP)
    kw.setdefault("debounce", DEBOUNCE)
    flash_dir = None if "flash" in kw else tmp_path / "flash"
    return ControllerSim(flash_dir, **kw)


def receipts(sim):
    out = []
    for env in sim.receipts():
        r, body, sig = decode(env)
        VerifyKey(sim.charger.public_key()).verify(signed_message(body), sig)
        out.append(r)
    return out


def start_charging(sim, card=CARD):
    sim.plug_in()
    sim.run(500)
    assert sim.ctl.display_state() == "tap_card"
    sim.tap(card)
    assert sim.run_until(lambda: sim.ctl.state == fw_controller.CHARGING, 3000), sim.ctl.display_state()


def contactor_events(sim):
    return [(t, v) for t, what, v in sim.log if what == "contactor"]


def open_before_receipt(sim):
    """The contactor's last opening came before the receipt's outbox write."""
    kinds = [(what, v) for _, what, v in sim.log if what in ("contactor", "write")]
    i_open = max(i for i, e in enumerate(kinds) if e == ("contactor", False))
    i_write = max(i for i, e in enumerate(kinds) if e[0] == "write" and str(e[1]).startswith("outbox/"))
    return i_open < i_write


def meter_now(sim):
    """What the meter shows now (its float32 kWh register, rounded as the driver does)."""
    return sim.driver.read_wh()


def amount_of(r):
    return Tariff.from_doc(TARIFF).amount_fen(r.periods)


# ---------------------------------------------------------------- whole sessions

def test_plug_authorize_charge_unplug_gives_one_receipt_with_U(tmp_path):
    sim = make_sim(tmp_path)
    sim.run(1000)
    assert sim.ctl.state == fw_controller.AVAILABLE and sim.outputs.duty == fw_controller.PILOT_HIGH
    assert not sim.outputs.closed
    sim.plug_in()
    sim.run(500)
    assert sim.vehicle_state() == "B" and sim.ctl.display_state() == "tap_card"
    assert sim.outputs.duty == fw_controller.PILOT_HIGH  # no offer before authorization
    sim.tap(CARD)
    sim.run(100)
    assert sim.ctl.display_state() == "authorizing"
    start_wh = meter_now(sim)
    # granted: PWM at 16 A, the vehicle answers with C, then (and only then) the contactor closes
    assert sim.run_until(lambda: sim.outputs.closed, 3000)
    duty_at = next(t for t, what, v in sim.log if what == "pilot" and v not in (0, 65535))
    close_at = next(t for t, v in contactor_events(sim) if v)
    assert sim.outputs.duty == fw_pilot.duty_u16(16000)
    assert close_at - duty_at >= DEBOUNCE * STEP  # C seen through the debounce, after PWM came on
    assert sim.ctl.state == fw_controller.CHARGING
    sim.run(300_000)
    assert sim.ctl.energy_wh() > 300
    assert sim.ctl.remaining_fen() == 100_000 - sim.ctl.cost_fen()
    sim.unplug()
    sim.run(DEBOUNCE * STEP)
    assert not sim.outputs.closed  # open within the debounce of the unplug
    sim.run(1000)
    assert sim.ctl.state == fw_controller.AVAILABLE and sim.outputs.duty == fw_controller.PILOT_HIGH
    (r,) = receipts(sim)
    assert r.stop_reason == "U" and r.id_token == CARD and r.wallet_id == "W-1001" and r.authorized_fen == 100_000
    assert r.auth_method == 1 and r.auth_ref == "sim-auth-1" and r.meter_status == 0 and r.time_flags == 3
    assert r.meter_start_wh == start_wh
    assert r.meter_end_wh == meter_now(sim)  # the end reading after the contactor opened
    assert r.energy_wh == r.meter_end_wh - r.meter_start_wh
    assert abs(r.energy_wh - sim.energy_delivered_wh) < 1.0  # what flowed is what is billed
    assert r.amount_fen == amount_of(r) and r.periods == ((2, r.energy_wh),)
    assert sim.ctl.last == (r.energy_wh, r.amount_fen, "U")
    assert open_before_receipt(sim)
    assert sim.outputs.closures == 1


def test_authorized_before_plug_in_waits_for_the_vehicle_then_times_out(tmp_path):
    sim = make_sim(tmp_path, plug_timeout_ms=30_000)
    sim.tap(CARD)
    sim.run(1000)
    assert sim.ctl.display_state() == "plug_in" and sim.outputs.duty == fw_controller.PILOT_HIGH
    sim.run(10_000)
    sim.plug_in()
    assert sim.run_until(lambda: sim.outputs.closed, 2000)
    sim.run(60_000)
    sim.unplug()
    sim.run(1000)
    (r,) = receipts(sim)
    assert r.stop_reason == "U" and r.energy_wh > 0

    # a second authorization that the vehicle never comes for expires
    sim.tap(CARD)
    sim.run(31_000)
    assert sim.ctl.auth is None and sim.ctl.error == fw_controller.ERR_PLUG_TIMEOUT
    assert sim.ctl.display_state() == "available"
    sim.plug_in()
    sim.run(2000)
    assert sim.ctl.display_state() == "tap_card" and not sim.outputs.closed
    assert len(receipts(sim)) == 1


def test_vehicle_asking_without_authorization_never_gets_the_contactor(tmp_path):
    sim = make_sim(tmp_path)
    sim.plug_in()
    sim.vehicle.override = "C"  # a vehicle that goes to C without waiting for PWM (C1)
    sim.run(5000)
    assert not sim.outputs.closed and sim.outputs.closures == 0
    assert sim.ctl.display_state() == "tap_card"
    sim.tap("04FFFFFF")  # unknown card: denied
    sim.run(1000)
    assert sim.ctl.error == "denied:unknown_card" and not sim.outputs.closed
    sim.tap(CARD)
    assert sim.run_until(lambda: sim.outputs.closed, 2000)


@pytest.mark.parametrize("fault,error", [
    ("short", fw_controller.ERR_PILOT_SHORT),
    ("diode", fw_controller.ERR_DIODE),
    ("glitch", fw_controller.ERR_PILOT_INVALID),
])
def test_pilot_fault_mid_session_opens_at_once_and_bills_with_F(tmp_path, fault, error):
    sim = make_sim(tmp_path)
    start_charging(sim)
    sim.run(120_500)
    before = sim.t_ms
    if fault == "short":
        sim.short()
    elif fault == "diode":
        sim.remove_diode()
    else:
        sim.pilot_glitch(4.5)  # between C (6 V) and D (3 V)
    sim.run(DEBOUNCE * STEP)
    assert not sim.outputs.closed
    opened_at = [t for t, v in contactor_events(sim) if not v][-1]
    assert opened_at - before <= DEBOUNCE * STEP
    assert sim.ctl.state == fw_controller.FAULTED and sim.ctl.error == error
    (r,) = receipts(sim)
    assert r.stop_reason == "F" and r.meter_status == 0
    # the end reading was taken when the contactor had opened: nothing delivered is unbilled
    assert r.meter_end_wh == meter_now(sim) and abs(r.energy_wh - sim.energy_delivered_wh) < 1.0
    assert open_before_receipt(sim)
    # faulted until unplugged: a card is refused, nothing is offered
    sim.clear_faults()
    sim.tap(CARD)
    sim.run(3000)
    assert sim.ctl.state == fw_controller.FAULTED and not sim.outputs.closed
    assert sim.outputs.duty == fw_controller.PILOT_HIGH
    sim.unplug()
    sim.run(1000)
    assert sim.ctl.state == fw_controller.AVAILABLE and sim.ctl.error is None
    start_charging(sim)
    assert len(receipts(sim)) == 1


def test_meter_lost_mid_session_stops_with_F_and_drives_state_F_until_it_returns(tmp_path):
    sim = make_sim(tmp_path)
    start_charging(sim)
    sim.run(60_000)
    last_good = meter_now(sim)
    sim.meter_sim.inject(FAULT_NO_REPLY)
    sim.run(3000)
    assert not sim.outputs.closed and sim.ctl.state == fw_controller.UNAVAILABLE
    assert sim.ctl.error == fw_controller.ERR_METER_LOST
    assert sim.outputs.duty == fw_controller.PILOT_LOW  # -12 V: EVSE unavailable
    (r,) = receipts(sim)
    assert r.stop_reason == "F" and r.meter_status & fw_meter.STATUS_LOST
    assert last_good - 5 <= r.meter_end_wh <= last_good  # the last reading the meter gave
    assert open_before_receipt(sim)
    sim.tap(CARD)
    sim.run(3000)
    assert not sim.outputs.closed and sim.ctl.state == fw_controller.UNAVAILABLE
    sim.meter_sim.clear()
    sim.run(2000)
    assert sim.ctl.state != fw_controller.UNAVAILABLE and sim.ctl.error is None
    assert sim.outputs.duty == fw_controller.PILOT_HIGH
    sim.run(1000)
    assert sim.ctl.display_state() == "tap_card"  # the vehicle is still plugged in
    sim.tap(CARD)
    assert sim.run_until(lambda: sim.outputs.closed, 3000)


def test_prepaid_limit_stops_with_Q_below_the_authorized_amount(tmp_path):
    sim = make_sim(tmp_path)
    start_charging(sim, card="04DEAD01")  # 0.60 CNY authorized
    assert sim.run_until(lambda: not sim.outputs.closed, 900_000)
    sim.run(1000)
    (r,) = receipts(sim)
    assert r.stop_reason == "Q" and r.amount_fen == amount_of(r) <= 60
    # one more second of charging would have passed the amount
    assert amount_of(r) + Tariff.from_doc(TARIFF).amount_fen(((2, 2),)) >= 55
    assert sim.ctl.state == fw_controller.FINISHING and sim.outputs.duty == fw_controller.PILOT_HIGH
    assert sim.vehicle_state() == "B"  # no PWM: the vehicle stopped asking
    assert open_before_receipt(sim)
    sim.unplug()
    sim.run(500)
    assert sim.ctl.state == fw_controller.AVAILABLE


def test_stop_button_ends_with_L_and_a_new_card_starts_a_new_session(tmp_path):
    sim = make_sim(tmp_path)
    start_charging(sim)
    sim.run(30_000)
    sim.press_stop()
    sim.run(STEP)
    assert not sim.outputs.closed and sim.ctl.state == fw_controller.FINISHING
    sim.run(2000)
    assert sim.vehicle_state() == "B"
    (r,) = receipts(sim)
    assert r.stop_reason == "L" and abs(r.energy_wh - sim.energy_delivered_wh) < 1.0
    assert open_before_receipt(sim)
    sim.press_stop()  # nothing left to stop
    sim.run(100)
    assert len(receipts(sim)) == 1
    sim.tap(CARD)
    assert sim.run_until(lambda: sim.outputs.closed, 3000)
    sim.run(30_000)
    sim.unplug()
    sim.run(500)
    r1, r2 = receipts(sim)
    assert (r1.seq, r2.seq) == (1, 2) and r2.stop_reason == "U"
    assert r1.meter_end_wh <= r2.meter_start_wh and r1.session_id != r2.session_id
    assert abs(r1.energy_wh + r2.energy_wh - sim.energy_delivered_wh) < 2.0


def test_remote_stop_needs_the_running_session_id(tmp_path):
    sim = make_sim(tmp_path)
    start_charging(sim)
    sim.run(10_000)
    sim.remote_stop("00" * 16)  # a late command for some other session
    sim.run(1000)
    assert sim.outputs.closed
    sim.remote_stop(sim.charger.session.d["session_id"])
    sim.run(STEP)
    assert not sim.outputs.closed
    (r,) = receipts(sim)
    assert r.stop_reason == "R"


def test_stop_before_the_session_started_withdraws_the_authorization(tmp_path):
    sim = make_sim(tmp_path)
    sim.tap(CARD)
    sim.run(1000)
    assert sim.ctl.display_state() == "plug_in"
    sim.press_stop()
    sim.run(100)
    assert sim.ctl.auth is None and sim.ctl.display_state() == "available"
    sim.plug_in()
    sim.run(2000)
    assert not sim.outputs.closed and receipts(sim) == []


def test_vehicle_pausing_keeps_the_session_and_opens_the_contactor(tmp_path):
    sim = make_sim(tmp_path)
    start_charging(sim)
    sim.run(30_000)
    sim.vehicle.wants = False  # the vehicle goes C -> B (battery full, schedule...)
    sim.run(DEBOUNCE * STEP)
    assert not sim.outputs.closed and sim.ctl.state == fw_controller.SUSPENDED_EV
    assert sim.charger.session is not None and sim.outputs.duty == fw_pilot.duty_u16(16000)
    paused_wh = sim.counter.wh
    sim.run(30_000)
    assert sim.counter.wh == paused_wh
    sim.vehicle.wants = True
    assert sim.run_until(lambda: sim.outputs.closed, 1000)
    sim.run(30_000)
    sim.unplug()
    sim.run(500)
    (r,) = receipts(sim)
    assert r.stop_reason == "U" and abs(r.energy_wh - sim.energy_delivered_wh) < 1.0
    assert sim.outputs.closures == 2


def test_ventilation_request_refused_when_not_supported(tmp_path):
    sim = make_sim(tmp_path, ventilation=False)
    sim.vehicle.ventilation = True
    sim.plug_in()
    sim.tap(CARD)
    sim.run(5000)
    assert sim.vehicle_state() == "D" and not sim.outputs.closed
    assert sim.ctl.error == fw_controller.ERR_VENTILATION
    sim2 = make_sim(tmp_path / "b")
    sim2.vehicle.ventilation = True
    start_charging(sim2)
    assert sim2.vehicle_state() == "D"


def test_offered_current_follows_set_current(tmp_path):
    sim = make_sim(tmp_path, current_ma=32000)
    start_charging(sim)
    assert sim.outputs.duty == fw_pilot.duty_u16(32000) and sim.power_w() == pytest.approx(32 * 230, rel=0.001)
    sim.ctl.set_current(10000)
    assert sim.outputs.duty == fw_pilot.duty_u16(10000)
    sim.run(100)
    assert sim.power_w() == pytest.approx(10 * 230, rel=0.01)
    with pytest.raises(ValueError):
        sim.ctl.set_current(5000)


# ---------------------------------------------------------------- meter status into the receipt

def test_frozen_meter_while_current_flows_is_flagged(tmp_path):
    sim = make_sim(tmp_path)
    sim.watch.frozen_after_ms = 20_000
    start_charging(sim)
    sim.run(10_000)
    sim.meter_sim.inject(FAULT_FROZEN)
    sim.run(25_000)
    sim.meter_sim.clear(FAULT_FROZEN)
    sim.run(5000)
    sim.press_stop()
    sim.run(100)
    (r,) = receipts(sim)
    assert r.meter_status == fw_meter.STATUS_FROZEN and r.stop_reason == "L"


def test_rollback_while_idle_is_flagged_in_the_next_session(tmp_path):
    sim = make_sim(tmp_path)
    sim.run(3000)
    sim.meter_sim.rollback(500)
    sim.run(3000)
    start_charging(sim)
    sim.run(10_000)
    sim.press_stop()
    sim.run(100)
    start_charging_again = sim.ctl  # same vehicle, a second session without a rollback
    sim.tap(CARD)
    assert sim.run_until(lambda: sim.outputs.closed, 3000)
    sim.run(10_000)
    sim.unplug()
    sim.run(500)
    r1, r2 = receipts(sim)
    assert r1.meter_status == fw_meter.STATUS_ROLLBACK and r2.meter_status == 0
    assert start_charging_again.sessions == 2


def test_replaced_dlt645_meter_is_flagged(tmp_path):
    sim = make_sim(tmp_path, regmap="dlt645_2007.json")
    start_charging(sim)
    sim.run(10_000)
    sim.meter_sim.address = "999999999999"  # another meter answers the wildcard read
    sim.run(5000)
    sim.unplug()
    sim.run(500)
    (r,) = receipts(sim)
    assert r.meter_status & fw_meter.STATUS_REPLACED and r.stop_reason == "U"


# ---------------------------------------------------------------- contactor feedback

def test_welded_contactor_makes_the_charge_point_unavailable(tmp_path):
    sim = make_sim(tmp_path)
    start_charging(sim)
    sim.run(10_000)
    sim.welded = True
    sim.press_stop()
    sim.run(2000)
    assert sim.ctl.state == fw_controller.UNAVAILABLE and sim.ctl.error == fw_controller.ERR_WELDED
    assert sim.outputs.duty == fw_controller.PILOT_LOW
    (r,) = receipts(sim)
    assert r.stop_reason == "L"
    sim.tap(CARD)
    sim.run(3000)
    assert sim.ctl.state == fw_controller.UNAVAILABLE
    sim.welded = False  # repaired
    sim.run(3000)
    assert sim.ctl.state != fw_controller.UNAVAILABLE


def test_contactor_that_does_not_close_is_a_fault(tmp_path):
    sim = make_sim(tmp_path)
    sim.feedback = False  # drive the feedback by hand: the aux contact never closes
    start_charging(sim)
    for _ in range(50):
        sim.step()
        sim.ctl.feedback(False, sim.now_ms)
    assert sim.ctl.state == fw_controller.FAULTED and sim.ctl.error == fw_controller.ERR_CONTACTOR
    (r,) = receipts(sim)
    assert r.stop_reason == "F"


# ---------------------------------------------------------------- re-entrancy during a meter read

def test_pilot_sampled_during_a_meter_read_opens_the_contactor_inside_the_read(tmp_path):
    sim = make_sim(tmp_path)
    start_charging(sim)
    sim.run(20_000)
    ctl, driver = sim.ctl, sim.driver
    seen = []
    inner = driver.read_wh

    def read_with_pilot_samples():
        # what the device's UART wait does: sample the pilot while the reply is awaited
        sim.short()
        sim.pilot_sim.set_vehicle("E")
        for _ in range(DEBOUNCE):
            pos, _neg = sim.pilot_sim.read()
            ctl.pilot(pos, pos, sim.now_ms)
        seen.append(sim.outputs.closed)
        return inner()

    driver.read_wh = read_with_pilot_samples
    ctl.meter_tick(sim.now_ms)
    driver.read_wh = inner
    assert seen[0] is False  # opened before the read returned (then the end reading)
    assert ctl.state == fw_controller.FAULTED and sim.charger.session is None
    (r,) = receipts(sim)
    assert r.stop_reason == "F"


# ---------------------------------------------------------------- power cut

def test_power_cut_mid_session_closes_it_with_P_at_boot(tmp_path):
    sim = make_sim(tmp_path)
    start_charging(sim)
    sim.run(60_000)
    # power is cut: nothing more runs; the contactor drops out with the supply
    sim2 = make_sim(tmp_path, meter_wh=sim.counter.wh)
    assert sim2.ctl.state == fw_controller.AVAILABLE and not sim2.outputs.closed
    (r,) = receipts(sim2)
    assert r.stop_reason == "P" and r.meter_end_wh == meter_now(sim)
    assert abs(r.energy_wh - sim.energy_delivered_wh) < 1.0


def test_power_cut_at_every_flash_step_of_a_controller_session(tmp_path):
    def scenario(flash, held):
        sim = make_sim(tmp_path, flash=flash)
        held.append(sim)
        start_charging(sim)
        sim.run(20_000)
        sim.press_stop()
        sim.run(1000)
        sim.tap(CARD)
        sim.run(3000)
        sim.run(20_000)
        sim.unplug()
        sim.run(1000)

    flash = CuttableFlash()
    scenario(flash, [])
    total = flash.steps
    assert total > 10
    for cut in range(0, total + 1):
        flash, held = CuttableFlash(), []
        flash.cut_at = cut
        try:
            scenario(flash, held)
        except PowerCut:
            pass
        flash.cut_at = None
        wh = held[-1].counter.wh if held else 2_000_000
        rebooted = make_sim(tmp_path, flash=flash, meter_wh=wh)
        rs = receipts(rebooted)
        assert len({r.seq for r in rs}) == len(rs), cut
        assert len({r.session_id for r in rs}) == len(rs), cut
        spans = sorted((r.meter_start_wh, r.meter_end_wh) for r in rs)
        # every Wh that went through the meter is in exactly one receipt: no energy flows
        # between sessions, so the readings of consecutive receipts meet, and the last one
        # ends at what the meter shows
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])), cut
        if rs:
            assert spans[0][0] == 2_000_000 and spans[-1][1] == meter_now(rebooted), cut
        assert not rebooted.outputs.closed and rebooted.charger.session is None


# ---------------------------------------------------------------- availability and answers

def test_without_a_tariff_the_charge_point_is_unavailable_until_one_arrives(tmp_path):
    sim = make_sim(tmp_path, tariff=None)
    sim.plug_in()
    sim.run(2000)
    assert sim.ctl.state == fw_controller.UNAVAILABLE and sim.ctl.error == fw_controller.ERR_NO_TARIFF
    assert sim.outputs.duty == fw_controller.PILOT_LOW
    sim.tap(CARD)
    sim.run(2000)
    assert not sim.outputs.closed and sim.ctl.auth is None  # refused while unavailable
    sim.charger.set_tariff(TARIFF)  # the bureau's push (verified by the caller)
    sim.run(2000)
    assert sim.ctl.state == fw_controller.PREPARING and sim.ctl.display_state() == "tap_card"
    sim.tap(CARD)
    assert sim.run_until(lambda: sim.outputs.closed, 3000)


def test_an_authorization_request_without_answer_times_out(tmp_path):
    sim = make_sim(tmp_path, auth_timeout_ms=5000, auth_delay_ms=10**9)  # the backend never answers
    sim.plug_in()
    sim.tap(CARD)
    sim.run(1000)
    assert sim.ctl.display_state() == "authorizing"
    sim.run(5000)
    assert sim.ctl.display_state() == "tap_card" and sim.ctl.error == fw_controller.ERR_AUTH_TIMEOUT
    assert not sim.outputs.closed


def test_a_second_authorization_during_a_session_is_refused(tmp_path):
    sim = make_sim(tmp_path)
    start_charging(sim)
    assert sim.ctl.authorize(1, "04FFFFFF", "W-9", 10, "x", sim.now_ms) is False
    sim.run(10_000)
    sim.unplug()
    sim.run(500)
    (r,) = receipts(sim)
    assert r.wallet_id == "W-1001"
