"""firmware/device/app.py under CPython with fake machine/network/ntptime: a whole charging
session driven through the board's pins (pilot ADC and PWM, relay and its aux contact, stop
button, meter on the UART), the watchdog fed only while the control loop lives, WiFi
reconnects with backoff, NTP only while the contactor is open, DNS likewise, and the asyncio
tasks running on an event loop."""

from __future__ import annotations

import asyncio
import importlib
import json
from pathlib import Path

import pytest

import pilot as fw_pilot
from bureau.receipts.codec import decode
from hwsim.meters import EnergyCounter, ModbusMeterSim, load_regmap
from hwsim.pilot import PilotSim
from tests.support.signer import NaclSigner

ROOT = Path(__file__).resolve().parents[2]
BOARD = json.loads((ROOT / "hardware" / "board" / "esp32_devkitc.json").read_text())
TARIFF = json.loads((ROOT / "tests" / "vectors" / "tariff.json").read_text())["tariff"]


class FakeSocketModule:
    """getaddrinfo answers from a table; sockets refuse to connect (no broker in these tests)."""

    SOCK_STREAM = 1

    def __init__(self):
        self.lookups = []
        self.table = {"broker.bureau.example": "10.20.30.40"}

    def getaddrinfo(self, host, port, af=0, kind=0):
        self.lookups.append(host)
        if host not in self.table and not host[0].isdigit():
            raise OSError(-2, "EAI_NONAME")
        ip = self.table.get(host, host)
        return [(2, 1, 0, "", (ip, port))]

    def socket(self, *a):
        raise OSError(111, "ECONNREFUSED")


class Ticks:
    def __init__(self, start=(1 << 30) - 20_000):
        self.ms = start  # wraps during the test

    def __call__(self):
        return self.ms

    def advance(self, ms):
        self.ms = (self.ms + ms) % (1 << 30)


def make_app(device, tmp_path, host="10.0.0.5", board=None, **cfg_extra):
    hw = device.hw
    hw.pilot_sim = PilotSim()
    counter = EnergyCounter(wh=3_000_000)
    regmap = load_regmap("eastron_sdm120")
    hw.meter_sim = ModbusMeterSim(regmap, counter=counter)
    cfg = {"charger_id": "GZ-DEV-1", "meter_serial": "SDM120-0042", "wifi": {"ssid": "depot", "password": "pw"},
           "mqtt": {"host": host, "port": 1883}, "ntp_host": "ntp.bureau.example", "max_current_ma": 16000,
           "tariff": TARIFF}
    cfg.update(cfg_extra)
    app_mod = importlib.import_module("app")
    ticks = Ticks()
    sock = FakeSocketModule()
    app = app_mod.App(cfg, regmap, device.board.Board(board or BOARD), flash_root=str(tmp_path / "data"),
                   ticks_ms=ticks, rand8=None, signer=NaclSigner, socket_mod=sock)
    hw.adcs[36].pwm_pin = 25
    hw.uarts[2].de_pin = 4
    app.counter = counter
    app.ticks = ticks
    app.sock = sock
    return app_mod, app


def run_control(app, hw, ms, vehicle=None, button=None):
    """Control rounds every 25 ms; the aux contact follows the relay; energy flows while the
    relay is closed and the vehicle asks."""
    if vehicle is not None:
        hw.pilot_sim.set_vehicle(vehicle)
    if button is not None:
        hw.pins[33].input_level = 0 if button else 1
    for _ in range(ms // 25):
        relay = hw.pins[26].level
        hw.pins[27].input_level = 0 if relay else 1
        if relay and hw.pilot_sim.vehicle in ("C", "D"):
            app.counter.set_power(3680.0)
        else:
            app.counter.set_power(0.0)
        app.counter.advance(0.025)
        app.ticks.advance(25)
        app.control_step(app.ticks())


def test_session_through_the_pins(device, tmp_path):
    hw = device.hw
    app_mod, app = make_app(device, tmp_path)
    pwm, relay = hw.pwms[25], hw.pins[26]
    run_control(app, hw, 2000, vehicle="A")
    assert app.ctl.state == "available" and pwm.duty_u16() == 65535 and relay.level == 0
    run_control(app, hw, 500, vehicle="B")
    assert app.ctl.display_state() == "tap_card"
    app.ctl.authorize(1, "04A1B2C3", "W-1001", 100_000, "auth-1", app.ticks())
    assert pwm.duty_u16() == fw_pilot.duty_u16(16000)  # 26.6 %: 16 A offered
    run_control(app, hw, 500, vehicle="C")
    assert relay.level == 1 and app.ctl.state == "charging"
    run_control(app, hw, 60_000)
    assert app.ctl.energy_wh() >= 60
    run_control(app, hw, 100, button=True)  # the stop button
    assert relay.level == 0 and app.ctl.state == "finishing" and pwm.duty_u16() == 65535
    run_control(app, hw, 500, button=False, vehicle="B")
    (seq,) = app.charger.outbox.pending()
    r, _, _ = decode(app.charger.outbox.get(seq))
    assert r.stop_reason == "L" and r.meter_serial == "SDM120-0042" and 60 <= r.energy_wh <= 62
    assert r.charger_id == "GZ-DEV-1" and r.time_flags == 0  # no NTP sync yet: times marked unsynced
    # the meter was read over RS-485 with the direction pin high for every frame
    assert all(level == 1 for _, level in hw.uarts[2].sent) and len(hw.uarts[2].sent) > 60
    # the LEDs show the state (the CPython build has no framebuf for the OLED)
    app.display_step(app.ticks())
    assert hw.pins[32].history[-1] in (0, 1) and "display" in app.logs[0]


def test_pilot_is_sampled_while_the_meter_reply_is_awaited(device, tmp_path):
    hw = device.hw
    app_mod, app = make_app(device, tmp_path)
    run_control(app, hw, 500, vehicle="B")
    app.ctl.authorize(1, "04A1B2C3", "W-1001", 100_000, "auth-1", app.ticks())
    run_control(app, hw, 500, vehicle="C")
    assert hw.pins[26].level == 1
    # the meter goes silent; while the transport waits out its timeout the pilot is sampled
    hw.meter_sim.inject("no_reply")
    hw.pilot_sim.set_vehicle("E")
    reads_before = hw.adcs[36].reads
    clock_ms = [0]

    def ticks_ms():  # real transports see time pass while they wait
        clock_ms[0] += 5
        return (app.ticks() + clock_ms[0]) % (1 << 30)

    app.transport._ticks_ms = ticks_ms
    app.ticks_ms = ticks_ms
    app.ctl.meter_tick(ticks_ms())
    assert hw.adcs[36].reads > reads_before  # sampled inside the read
    assert hw.pins[26].level == 0 and app.ctl.state == "faulted"
    (seq,) = app.charger.outbox.pending()
    assert decode(app.charger.outbox.get(seq))[0].stop_reason == "F"


def test_watchdog_is_fed_only_while_the_control_loop_lives(device, tmp_path):
    hw = device.hw
    app_mod, app = make_app(device, tmp_path)
    app.wdt = app.hw.watchdog()
    wdt = hw.wdts[-1]
    assert wdt.timeout == 8000
    assert app.watchdog_step(app.ticks()) is False and wdt.feeds == 0  # no heartbeat yet
    for _ in range(10):
        run_control(app, hw, 1000, vehicle="A")
        app.watchdog_step(app.ticks())
    assert wdt.feeds == 10
    app.ticks.advance(app_mod.HEARTBEAT_STALE_MS)  # the control loop hangs
    for _ in range(5):
        app.ticks.advance(1000)
        app.watchdog_step(app.ticks())
    assert wdt.feeds == 10
    run_control(app, hw, 100)  # it comes back
    app.watchdog_step(app.ticks())
    assert wdt.feeds == 11
    # a crash: the hardware is made safe and the WDT is never fed again
    run_control(app, hw, 500, vehicle="B")
    app.ctl.authorize(1, "04A1B2C3", "W-1001", 100_000, "auth-1", app.ticks())
    run_control(app, hw, 500, vehicle="C")
    assert hw.pins[26].level == 1
    app.fail(RuntimeError("boom"))
    assert hw.pins[26].level == 0 and hw.pwms[25].duty_u16() == 0
    app.heartbeat.beat(app.ticks())
    app.watchdog_step(app.ticks())
    assert wdt.feeds == 11
    assert app.uptime_s() >= 15  # the watchdog task keeps the uptime (the clock ages syncs by it)


def names_looked_up(app):
    return [h for h in app.sock.lookups if not h[0].isdigit()]  # the client's own lookups of the IP aside


def step_link(app, hw, ms, every=50):
    for _ in range(ms // every):
        hw.ms = app.ticks.ms
        app.link_step(app.ticks())
        app.ticks.advance(every)


def test_wifi_dns_and_broker_share_one_backoff(device, tmp_path):
    hw = device.hw
    app_mod, app = make_app(device, tmp_path, host="broker.bureau.example")
    wlan = device.network.WLAN.instances[-1]
    assert wlan.active() is True and wlan.interface == device.network.STA_IF
    wlan.succeed_after = 2  # two associations fail
    t0 = app.ticks()
    step_link(app, hw, 60_000)
    starts = [(t - t0) % (1 << 30) for t, _ in wlan.connects]
    # attempt, 15 s to associate, then 1 s and 2 s of backoff
    assert starts == [0, 16_000, 33_000] and all(ssid == "depot" for _, ssid in wlan.connects)
    # joined: the name resolves, the broker refuses; the same backoff goes on (4 s, 8 s, ...)
    assert names_looked_up(app) == ["broker.bureau.example"] and app.mqtt.host == "10.20.30.40"
    assert app.link.reason == "broker_unreachable" and app.uplink.last_reason.startswith("connect_error")
    assert app.link.backoff.failures >= 4 and not app.link.up
    n = len(wlan.connects)
    wlan.connected = False  # the access point went away: joined again when the backoff allows,
    step_link(app, hw, 40_000)  # and the name looked up again (another network, another resolver)
    assert len(wlan.connects) == n + 1
    assert names_looked_up(app) == ["broker.bureau.example"] * 2


def test_ntp_sync_marks_the_clock_and_waits_while_charging(device, tmp_path):
    hw = device.hw
    app_mod, app = make_app(device, tmp_path)
    ntp = device.ntp
    assert device.machine is not None and __import__("ntptime").host == "ntp.bureau.example"
    assert app.ntp_step(app.ticks()) is False and ntp.calls == 0  # no WiFi
    device.network.WLAN.instances[-1].connected = True
    app.link_step(app.ticks())
    ntp.fail = True
    t0 = app.ticks()
    calls_at = []
    for _ in range(40):
        before = ntp.calls
        app.ntp_step(app.ticks())
        if ntp.calls > before:
            calls_at.append((app.ticks() - t0) % (1 << 30))
        app.ticks.advance(1000)
    assert calls_at == [0, 5000, 15000, 35000]  # 5, 10, 20 s of backoff
    assert not app.clock.synced()
    ntp.fail = False
    app.ticks.advance(60_000)
    assert app.ntp_step(app.ticks()) is True and app.clock.synced()
    assert app.ntp_step(app.ticks()) is False  # next sync in an hour
    # while the contactor is closed nothing blocking runs
    run_control(app, hw, 500, vehicle="B")
    app.ctl.authorize(1, "04A1B2C3", "W-1001", 100_000, "auth-1", app.ticks())
    run_control(app, hw, 500, vehicle="C")
    app.ticks.advance(app_mod.NTP_EVERY_MS)
    calls = ntp.calls
    assert app.ntp_step(app.ticks()) is False and ntp.calls == calls
    run_control(app, hw, 5000)
    run_control(app, hw, 500, vehicle="A")
    (seq,) = app.charger.outbox.pending()
    assert decode(app.charger.outbox.get(seq))[0].time_flags == 3  # both readings synced


def test_broker_name_is_resolved_only_while_the_contactor_is_open(device, tmp_path):
    hw = device.hw
    app_mod, app = make_app(device, tmp_path, host="broker.bureau.example")
    device.network.WLAN.instances[-1].connected = True
    run_control(app, hw, 500, vehicle="B")
    app.ctl.authorize(1, "04A1B2C3", "W-1001", 100_000, "auth-1", app.ticks())
    run_control(app, hw, 500, vehicle="C")
    assert app.ctl.closed
    step_link(app, hw, 1000)
    assert app.sock.lookups == [] and app.link.on_network and not app.link.up
    run_control(app, hw, 500, vehicle="B")
    assert not app.ctl.closed
    step_link(app, hw, 150)
    assert names_looked_up(app) == ["broker.bureau.example"] and app.mqtt.host == "10.20.30.40"
    # the client now connects to the address (refused here); the link waits its backoff
    assert app.uplink.last_reason is not None and app.uplink.last_reason.startswith("connect_error")
    assert app.link.reason == "broker_unreachable"


def test_tasks_run_on_an_asyncio_loop(device, tmp_path):
    hw = device.hw
    from clock import ticks_source

    app_mod, app = make_app(device, tmp_path)
    app.ticks_ms = ticks_source()
    app.transport._ticks_ms = app.ticks_ms
    app._last_pilot = app.ticks_ms()
    app._next_meter = app.ticks_ms()
    app.heartbeat.last = None
    app._uptime_at = app.ticks_ms()
    app._gc_at = app.ticks_ms()
    hw.pilot_sim.set_vehicle("B")
    loop = asyncio.new_event_loop()
    try:
        app.start(loop)
        loop.call_later(1.3, loop.stop)
        loop.run_forever()
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert hw.wdts[-1].feeds >= 1
    assert hw.adcs[36].reads >= 10 * BOARD["pilot"]["samples"]
    assert app.ctl.display_state() == "tap_card"
    assert device.network.WLAN.instances[-1].connects  # WiFi attempted
    assert hw.uarts[2].sent  # the meter was read
    assert not app.heartbeat.stopped


def test_app_boots_from_the_reference_files(device, tmp_path):
    """What a technician copies onto the device: board.json, meter.json, config.json."""
    hw = device.hw
    hw.pilot_sim = PilotSim()
    hw.meter_sim = ModbusMeterSim(load_regmap("eastron_sdm120"), counter=EnergyCounter(wh=1_000_000))
    root = tmp_path / "fs"
    root.mkdir()
    (root / "board.json").write_text((ROOT / "hardware" / "board" / "esp32_devkitc.json").read_text())
    (root / "meter.json").write_text((ROOT / "hardware" / "meters" / "eastron_sdm120.json").read_text())
    cfg = json.loads((ROOT / "hardware" / "board" / "config.example.json").read_text())
    (root / "config.json").write_text(json.dumps(cfg))
    app_mod = importlib.import_module("app")
    app = app_mod.App.from_files(str(root) + "/")
    assert (root / "data" / "key.seed").stat().st_size == 32
    assert app.charger.charger_id == "GZ-TH-0001" and app.mqtt.host == "10.10.0.2"
    assert app.ctl.current_ma == 32000 and app.ctl.ventilation is False
    assert hw.uarts[2].config["baudrate"] == 2400 and hw.pwms[25].freq() == 1000
    assert __import__("ntptime").host == "cn.pool.ntp.org"
    hw.adcs[36].pwm_pin = 25
    hw.uarts[2].de_pin = 4
    app.ctl.meter_tick(app.ticks_ms())
    # no tariff yet (the bureau pushes it): the charge point says so and offers nothing
    assert app.ctl.state == "unavailable" and app.ctl.error == "no_tariff" and hw.pwms[25].duty_u16() == 0
    assert app.watch.last_wh == 1_000_000
    del cfg["meter_serial"]
    (root / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="meter_serial"):
        app_mod.App.from_files(str(root) + "/")
