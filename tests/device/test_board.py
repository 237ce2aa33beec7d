"""firmware/device/board.py and uart_transport.py under CPython with fake `machine`: the pin
map of hardware/board/esp32_devkitc.json reaches the right peripherals with the right
settings, the pilot PWM carries the controller's duty, the ADC burst finds both plateaus, the
RS-485 direction pin frames every transmission, and a meter driver reads a simulated meter
through the transport."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import meter as fw_meter
import pilot as fw_pilot
from hwsim.meters import Dlt645MeterSim, EnergyCounter, ModbusMeterSim, load_regmap
from hwsim.pilot import PilotSim

ROOT = Path(__file__).resolve().parents[2]
BOARD = json.loads((ROOT / "hardware" / "board" / "esp32_devkitc.json").read_text())


def test_board_description_uses_usable_esp32_pins():
    used = {}
    for group, d in BOARD.items():
        if not isinstance(d, dict):
            continue
        for key, value in d.items():
            if key.endswith("_pin") or key == "pin":
                assert value not in used, f"GPIO{value} used by {used.get(value)} and {group}.{key}"
                used[value] = f"{group}.{key}"
    flash_pins = set(range(6, 12))
    assert not flash_pins & set(used), "GPIO6-11 belong to the module's flash"
    assert BOARD["pilot"]["adc_pin"] in range(32, 40), "the pilot ADC must be on ADC1 (works with WiFi on)"
    input_only = {34, 35, 36, 37, 38, 39}
    outputs = [BOARD["pilot"]["pwm_pin"], BOARD["contactor"]["relay_pin"], BOARD["rs485"]["tx_pin"],
               BOARD["rs485"]["de_re_pin"], BOARD["leds"]["green_pin"], BOARD["leds"]["red_pin"],
               BOARD["card_reader"]["cs_pin"], BOARD["card_reader"]["rst_pin"]]
    assert not input_only & set(outputs), "GPIO34-39 are inputs only"
    for pulled in (BOARD["stop_button"], BOARD["contactor"]):
        pin = pulled.get("pin", pulled.get("feedback_pin"))
        assert pin not in input_only, "GPIO34-39 have no internal pull-ups"


def test_pins_pwm_adc_and_contactor(device):
    m, hw = device.machine, device.hw
    b = device.board.Board(BOARD)
    p = b.pilot()
    pwm = hw.pwms[25]
    assert pwm.freq() == 1000 and pwm.duty_u16() == 65535  # steady +12 V from the start
    assert hw.pins[25].mode == m.Pin.OUT
    assert hw.adcs[36]._atten == m.ADC.ATTN_11DB
    for amps in (6, 16, 32, 80):
        p.pilot(fw_pilot.duty_u16(amps * 1000))
        assert pwm.duty_u16() == fw_pilot.duty_u16(amps * 1000)
        assert fw_pilot.current_ma_from_duty(pwm.duty_u16(), 65535) // 1000 in (amps - 1, amps)
    c = b.contactor()
    relay = hw.pins[26]
    assert relay.mode == m.Pin.OUT and relay.level == 0  # released at boot
    assert hw.pins[27].mode == m.Pin.IN and hw.pins[27].pull == m.Pin.PULL_UP
    c.contactor(True)
    assert relay.level == 1
    c.contactor(False)
    assert relay.history == [0, 1, 0]
    hw.pins[27].input_level = 0  # aux contact closed pulls the input low
    assert c.feedback() is True
    hw.pins[27].input_level = 1
    assert c.feedback() is False
    out = device.board.Outputs(p, c)
    out.contactor(True)
    out.pilot(fw_pilot.duty_u16(16000))
    out.safe()
    assert relay.level == 0 and pwm.duty_u16() == 0  # open, and -12 V (state F)


def test_active_low_relay_and_leds(device):
    hw = device.hw
    desc = json.loads(json.dumps(BOARD))
    desc["contactor"]["relay_active_high"] = False
    desc["leds"]["active_high"] = False
    b = device.board.Board(desc)
    c = b.contactor()
    assert hw.pins[26].level == 1  # released = high for an active-low driver
    c.contactor(True)
    assert hw.pins[26].level == 0
    green, red = b.leds()
    assert hw.pins[32].level == 1 and hw.pins[14].level == 1  # off
    green.value(1)
    assert hw.pins[32].level == 0


@pytest.mark.parametrize("vehicle,expect", [("A", "A"), ("B", "B"), ("C", "C"), ("D", "D"), ("E", "E")])
def test_pilot_burst_sampling_finds_both_plateaus(device, vehicle, expect):
    hw = device.hw
    hw.pilot_sim = PilotSim(noise_mv=8, adc_step_mv=0.8, seed=3)
    hw.pilot_sim.set_vehicle(vehicle)
    b = device.board.Board(BOARD)
    p = b.pilot()
    hw.adcs[36].pwm_pin = 25
    mon = fw_pilot.PilotMonitor(debounce=1, calibration=p.calibration())
    p.pilot(fw_pilot.duty_u16(16000))
    p.sample()
    assert hw.adcs[36].reads == BOARD["pilot"]["samples"]
    got = mon.classify_sample(p.pos_mv, p.neg_mv, pwm_on=True)
    assert got == expect
    if vehicle in "BCD":
        hw.pilot_sim.set_vehicle(vehicle, diode=False)
        p.sample()
        assert mon.classify_sample(p.pos_mv, p.neg_mv, pwm_on=True) == fw_pilot.DIODE_FAULT
        hw.pilot_sim.set_vehicle(vehicle)
    p.pilot(0)  # state F output: the vehicle's diode blocks the -12 V
    p.sample()
    assert mon.classify_sample(p.pos_mv, p.neg_mv) == (fw_pilot.STATE_F if vehicle != "E" else "E")


def test_button_debounce(device):
    hw = device.hw
    b = device.board.Board(BOARD)
    btn = b.stop_button()
    pin = hw.pins[33]
    assert pin.pull == device.machine.Pin.PULL_UP
    presses = []
    levels = [1] * 5 + [0, 1, 0, 1] + [0] * 10 + [1] * 10 + [0] * 10
    t = 0
    for level in levels:
        pin.input_level = level
        if btn.pressed(t):
            presses.append(t)
        t += 10
    assert len(presses) == 2  # the bounce at the start of the first press does not count twice


def test_uart_settings_follow_the_register_map(device):
    hw = device.hw
    b = device.board.Board(BOARD)
    b.rs485(load_regmap("dlt645_2007")["serial"])
    u = hw.uarts[2]
    assert u.config["baudrate"] == 2400 and u.config["parity"] == 0 and u.config["bits"] == 8
    assert (u.config["tx"], u.config["rx"], u.config["timeout"]) == (17, 16, 0)
    b.rs485(load_regmap("eastron_sdm120")["serial"])
    u = hw.uarts[2]
    assert u.config["parity"] is None and hw.pins[4].mode == device.machine.Pin.OUT
    with pytest.raises(ValueError):
        b.rs485({"parity": "X"})


def test_spi_i2c_and_watchdog(device):
    hw = device.hw
    b = device.board.Board(BOARD)
    spi, cs, rst = b.spi()
    assert spi.id == 2 and spi.config["sck"] == 18 and spi.config["mosi"] == 23 and spi.config["miso"] == 19
    assert cs.level == 1 and cs.id == 5 and rst.id == 13 and rst.level == 1
    i2c = b.i2c()
    assert i2c.config == {"scl": 22, "sda": 21, "freq": 400000}
    wdt = b.watchdog()
    assert wdt.timeout == 8000
    with pytest.raises(ValueError):
        device.board.Board({"v": 2})


class Ticks:
    def __init__(self):
        self.ms = 0
        self.us = 0

    def ticks_ms(self):
        return self.ms

    def ticks_us(self):
        self.us += 100  # time passes while the transmitter is polled
        return self.us

    def sleep_ms(self, n):
        self.ms += n
        self.us += n * 1000


def make_transport(device, regmap_name, sim, idle=None):
    hw = device.hw
    hw.meter_sim = sim
    regmap = load_regmap(regmap_name)
    t = Ticks()
    b = device.board.Board(BOARD)
    tr = b.rs485(regmap["serial"])
    hw.uarts[2].de_pin = 4
    tr._ticks_ms, tr._ticks_us, tr._sleep_ms = t.ticks_ms, t.ticks_us, t.sleep_ms
    tr.idle = idle
    return tr, regmap, t


def test_rs485_direction_pin_frames_each_transmission(device):
    sim = ModbusMeterSim(load_regmap("eastron_sdm120"), counter=EnergyCounter(wh=123456))
    tr, regmap, _ = make_transport(device, "eastron_sdm120", sim)
    de = device.hw.pins[4]
    assert de.level == 0  # listening
    drv = fw_meter.ModbusMeter(tr, regmap)
    assert drv.read_wh() == 123456
    u = device.hw.uarts[2]
    assert u.sent and all(level == 1 for _, level in u.sent)  # DE high while sending
    assert de.level == 0 and de.history[-2:] == [1, 0] and u.flushes == len(u.sent)


def test_dlt645_meter_through_the_uart_transport(device):
    sim = Dlt645MeterSim(address="202400000018", counter=EnergyCounter(wh=7654320))
    tr, regmap, _ = make_transport(device, "dlt645_2007", sim)
    drv = fw_meter.Dlt645Meter(tr, regmap=regmap)
    assert drv.read_wh() == 7654320 and drv.meter_address == "202400000018"


def test_transport_read_contract_and_idle_callback(device):
    calls = []
    tr, _, t = make_transport(device, "eastron_sdm120", None, idle=lambda: (calls.append(t.ms), t.sleep_ms(5)))
    u = device.hw.uarts[2]
    assert bytes(tr.read(8, 0)) == b"" and calls == []  # nothing waiting, no wait
    u.rx += b"\x01\x02\x03"
    assert bytes(tr.read(8, 0)) == b"\x01\x02\x03"  # what is there, at once
    u.rx += b"abcdef"
    assert bytes(tr.read(4, 100)) == b"abcd" and calls == []  # enough waiting: no idle
    got = tr.read(8, 100)  # two bytes, then nothing: waits the timeout out, sampling meanwhile
    assert bytes(got) == b"ef" and t.ms >= 100 and len(calls) == 20
    assert tr.read(1000, 0).nbytes == 0  # n above the buffer is capped, not an error
    u._tx_pending = True
    u.flush = None  # a port without UART.flush and a transmitter that never finishes
    with pytest.raises(OSError):
        tr._drain(4)
