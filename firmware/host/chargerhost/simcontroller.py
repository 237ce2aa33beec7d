"""A simulated charge point running the charger's own glue on a host.

The firmware side is `chargepoint.ChargePoint` of firmware/lib, the same object the ESP32's
main.py runs: the meter driver for the chosen register map under a `meter.MeterWatch`,
`charger.Charger` (sessions, receipts, flash outbox), `controller.Controller` with a
`pilot.PilotMonitor`, the RC522 driver and `authflow.AuthFlow` with `authz.Authz`, and
`uplink.Uplink` over the firmware's MQTT client. `SimBoard` gives it the hardware of
hardware/hwsim in place of firmware/device/board.py: the pilot circuit (`PilotSim`), a Modbus
RTU or DL/T 645 meter (`ModbusMeterSim` / `Dlt645MeterSim` over the in-process transport), an
emulated MFRC522 (`Rc522Sim`), a stop button, LEDs, plus a vehicle model and a contactor whose
position decides whether energy flows into the meter's register.

Time is simulated: `run(ms)` advances in steps of `step_ms` (the device's pilot period) and runs
the device's steps in the order of its tasks: the control step every step (the meter and the
session every second inside it), then the display every DISPLAY_MS and the card reader with
the authorization flow every CARD_MS. The controller's millisecond ticks start just below the
2**30 wrap (by default), so every run crosses it. The uplink (`pump()`) runs on real time: the
broker and the bureau on the other side of it do.

Card authorization comes in two kinds. By default a tap is answered by the simulation itself
from `wallets` after `auth_delay_ms` (no bureau needed). After `enable_authz(genesis)` (before
`attach_mqtt`) the firmware's own path runs: the charge point's card step polls the emulated
MFRC522 through `rc522.RC522`, a tap holds the card in its field for `tap_ms`, and the flow
asks the bureau over MQTT, falls back to the signed offline list, takes phone starts, the list
and the tariff push.

The vehicle behaves like a J1772/IEC 61851 vehicle: plugged in it shows B, and it asks for
energy (C, or D with `ventilation`) only while the EVSE offers current with PWM and it still
wants energy; it draws min(offered current, its own limit). Faults override it: `short()`
(E), `remove_diode()`, `pilot_glitch(volts)`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from . import FIRMWARE_LIB  # noqa: F401  (puts firmware/lib on sys.path)

import authz as fw_authz  # noqa: E402
import chargepoint as fw_chargepoint  # noqa: E402
import controller as fw_controller  # noqa: E402
import ed25519  # noqa: E402
import pilot as fw_pilot  # noqa: E402
import rc522 as fw_rc522  # noqa: E402
import receipt as fw_receipt  # noqa: E402
import trust as fw_trust  # noqa: E402
import uplink as fw_uplink  # noqa: E402
from flash import Flash  # noqa: E402

from hwsim.cardreader import CardReaderSim, Rc522Sim  # noqa: E402
from hwsim.meters import Dlt645MeterSim, EnergyCounter, LoopbackTransport, ModbusMeterSim  # noqa: E402
from hwsim.pilot import PilotSim  # noqa: E402

REGMAPS = Path(__file__).resolve().parents[3] / "hardware" / "meters"
FIRMWARE_VERSION = "fw-1.1.0"
TICKS_WRAP = 1 << 30


class SimClock:
    """Charger clock: Unix seconds that advance only when the simulation steps."""

    def __init__(self, start: int, synced: bool = True) -> None:
        self.t = start
        self.is_synced = synced

    def now(self) -> int:
        return self.t

    def synced(self) -> bool:
        return self.is_synced


class SimOutputs:
    """The pilot stage and the contactor of the simulated board, in the roles board.py's
    PilotDriver and Contactor play on the device: the PWM the controller sets, the pilot's
    plateaus sampled from the circuit model with the vehicle's state, the relay and its aux
    contact. `log` records (sim ms, what, value) in order, shared with the flash log."""

    def __init__(self, sim: "ControllerSim") -> None:
        self.sim = sim
        self.duty: int | None = None
        self.closed = False
        self.closures = 0
        self.pos_mv = 0
        self.neg_mv = 0

    def pilot(self, duty_u16: int) -> None:
        self.duty = duty_u16
        ps = self.sim.pilot_sim
        if duty_u16 == fw_controller.PILOT_HIGH:
            ps.set_evse("+12")
        elif duty_u16 == fw_controller.PILOT_LOW:
            ps.set_evse("-12")
        else:
            ps.set_evse("pwm")
        self.sim.log.append((self.sim.t_ms, "pilot", duty_u16))

    def sample(self) -> None:
        sim = self.sim
        sim.pilot_sim.set_vehicle(sim.vehicle_state(), sim.vehicle.diode)
        pos, neg = sim.pilot_sim.read()
        if sim.vehicle.glitch_v is not None:
            pos = round(sim.pilot_sim.adc_volts(sim.vehicle.glitch_v) * 1000)
        self.pos_mv = pos
        self.neg_mv = neg if neg is not None else pos  # steady +-12 V: both plateaus alike

    def calibration(self):
        return fw_pilot.PilotCalibration()

    def contactor(self, closed: bool) -> None:
        self.closed = bool(closed)
        if closed:
            self.closures += 1
        self.sim.log.append((self.sim.t_ms, "contactor", self.closed))

    def feedback(self):
        if not self.sim.feedback:
            return None
        return self.closed or self.sim.welded


class SimButton:
    """The driver's stop button: `press()` is one debounced press."""

    def __init__(self) -> None:
        self.presses = 0

    def press(self) -> None:
        self.presses += 1

    def pressed(self, now_ms: int) -> bool:
        if not self.presses:
            return False
        self.presses -= 1
        return True


class SimLed:
    def __init__(self) -> None:
        self.on = 0

    def value(self, v) -> None:
        self.on = 1 if v else 0


class SimBoard:
    """What chargepoint.ChargePoint asks of its board (see firmware/device/board.py), made of
    hwsim parts."""

    def __init__(self, sim: "ControllerSim") -> None:
        self.sim = sim
        self.green = SimLed()
        self.red = SimLed()

    def rs485(self, serial: dict) -> LoopbackTransport:
        return LoopbackTransport(self.sim.meter_sim)

    def pilot(self) -> SimOutputs:
        return self.sim.outputs

    def contactor(self) -> SimOutputs:
        return self.sim.outputs

    def stop_button(self) -> SimButton:
        return self.sim.button

    def card_reader(self):
        return self.sim.reader  # None until enable_authz fits the RC522

    def display_config(self):
        return None

    def leds(self):
        return self.green, self.red


class SimChargePoint(fw_chargepoint.ChargePoint):
    """The charge point with its log kept in the simulation instead of printed."""

    def __init__(self, sim: "ControllerSim", *args, **kwargs) -> None:
        self.sim = sim
        super().__init__(*args, **kwargs)

    def log(self, msg):
        self.sim.flow_log.append(msg)


class LoggedFlash:
    """A flash that logs each write and remove into the simulation's log (to check that the
    contactor opened before a receipt reached flash)."""

    def __init__(self, inner, log: list, sim: "ControllerSim") -> None:
        self.inner = inner
        self.log = log
        self.sim = sim

    def mkdir(self, name):
        return self.inner.mkdir(name)

    def read(self, name):
        return self.inner.read(name)

    def write_atomic(self, name, data):
        self.inner.write_atomic(name, data)
        self.log.append((self.sim.t_ms, "write", name))

    def remove(self, name):
        self.inner.remove(name)
        self.log.append((self.sim.t_ms, "remove", name))

    def rename(self, old, new):
        self.inner.rename(old, new)
        self.log.append((self.sim.t_ms, "rename", new))

    def listdir(self, name):
        return self.inner.listdir(name)


class Vehicle:
    def __init__(self, max_current_ma: int = 32000, ventilation: bool = False) -> None:
        self.plugged = False
        self.wants = True
        self.max_current_ma = max_current_ma
        self.ventilation = ventilation
        self.override: str | None = None  # "E" forces the short
        self.diode = True
        self.glitch_v: float | None = None


class ControllerSim:
    def __init__(self, flash_dir: Path | str | None = None, *, charger_id: str = "SIM-CP-1", tariff: dict | None,
                 start_time: int, flash=None, regmap: str = "eastron_sdm120.json", meter_wh: int = 2_000_000,
                 counter: EnergyCounter | None = None, wallets: dict | None = None, auth_delay_ms: int = 300,
                 current_ma: int = 16000, voltage: float = 230.0, step_ms: int = fw_chargepoint.PILOT_MS,
                 debounce: int = 3, pilot_noise_mv: float = 0.0, seed: int = 0, signer=ed25519,
                 urandom=os.urandom, ticks0: int = TICKS_WRAP - 2500, firmware_version: str = FIRMWARE_VERSION,
                 feedback: bool = True, meter_serial: str | None = None, ventilation: bool = True,
                 genesis: dict | None = None, **controller_options) -> None:
        self.log: list[tuple[int, str, object]] = []
        self.flow_log: list[str] = []
        self.t_ms = 0
        self.ticks0 = ticks0
        self.step_ms = step_ms
        self.start_time = start_time
        self.clock = SimClock(start_time)
        self.voltage = voltage
        regmap_doc = json.loads((REGMAPS / regmap).read_text())
        # the meter outlives the controller: a power cut of the ESP32 passes on a running counter
        self.counter = counter or EnergyCounter(wh=meter_wh)
        if regmap_doc["protocol"] == "dlt645_2007":
            self.meter_sim = Dlt645MeterSim(counter=self.counter)
        else:
            self.meter_sim = ModbusMeterSim(regmap_doc, counter=self.counter)
        if flash is None:
            Path(flash_dir).mkdir(parents=True, exist_ok=True)
            flash = Flash(str(flash_dir))
        self.flash = LoggedFlash(flash, self.log, self)
        if genesis is not None:  # the bureau keys acks and replies are checked with (bureau.json)
            fw_trust.provision(self.flash, genesis)
        self.pilot_sim = PilotSim(noise_mv=pilot_noise_mv, seed=seed)
        self.outputs = SimOutputs(self)
        self.button = SimButton()
        self.vehicle = Vehicle()
        self.feedback = feedback
        self.welded = False  # the contactor's contacts stick closed
        self.rc522_sim: Rc522Sim | None = None
        self.reader: fw_rc522.RC522 | None = None
        self.board = SimBoard(self)
        # config.json as a technician writes it for the device
        cfg = {"charger_id": charger_id, "meter_serial": meter_serial or "MTR-" + charger_id, "tariff": tariff,
               "max_current_ma": current_ma, "ventilation": ventilation, "pilot_debounce": debounce,
               "controller": controller_options}
        self.point = SimChargePoint(self, cfg, regmap_doc, self.board, self.flash, self.clock, self._ticks, signer,
                                    urandom, firmware_version)
        self.charger = self.point.charger
        self.ctl = self.point.ctl
        self.watch = self.point.watch
        self.meter = self.point.meter
        self.driver = self.point.driver
        self.authz: fw_authz.Authz | None = None
        self.cards = CardReaderSim()
        self.wallets = dict(wallets or {})  # card UID hex -> (wallet_id, authorized_fen): the backend's answers
        self.auth_delay_ms = auth_delay_ms
        self._auth_pending: tuple[int, str] | None = None
        self._auth_count = 0
        self._next_card = fw_chargepoint.CARD_MS
        self._next_display = fw_chargepoint.DISPLAY_MS
        self.firmware_version = firmware_version
        self.client = None
        self.energy_delivered_wh = 0.0  # into the vehicle while the contactor was closed
        self._card_away_at: int | None = None

    # ---- the simulated world ---------------------------------------------------------------

    @property
    def now_ms(self) -> int:
        return (self.ticks0 + self.t_ms) % TICKS_WRAP

    def _ticks(self) -> int:
        return self.now_ms

    @property
    def uplink(self) -> fw_uplink.Uplink | None:
        return self.point.uplink

    @property
    def flow(self):
        return self.point.flow

    @flow.setter
    def flow(self, flow) -> None:
        """An authorization flow over a client of the caller's (a scripted one in tests)."""
        self.point.flow = flow

    def plug_in(self, wants: bool = True) -> None:
        self.vehicle.plugged = True
        self.vehicle.wants = wants

    def unplug(self) -> None:
        self.vehicle.plugged = False
        self.vehicle.override = None
        self.vehicle.glitch_v = None
        self.vehicle.diode = True

    def short(self) -> None:
        """CP shorted to PE (state E)."""
        self.vehicle.override = "E"

    def remove_diode(self) -> None:
        self.vehicle.diode = False

    def pilot_glitch(self, cp_volts: float | None) -> None:
        """Force the positive plateau to `cp_volts` (None ends it): a voltage between the
        bands is an invalid pilot."""
        self.vehicle.glitch_v = cp_volts

    def clear_faults(self) -> None:
        self.vehicle.override = None
        self.vehicle.diode = True
        self.vehicle.glitch_v = None

    def tap(self, uid: str, tap_ms: int = 600) -> None:
        """A card at the reader: queued for the simulated answer, or (with enable_authz) held in
        the emulated RC522's field for `tap_ms` of simulated time."""
        if self.rc522_sim is None:
            self.cards.tap(uid)
            return
        self.rc522_sim.remove()
        self.rc522_sim.present(uid)
        self._card_away_at = self.t_ms + tap_ms

    def press_stop(self) -> None:
        self.button.press()

    def remote_stop(self, session_id: str | None = None) -> None:
        """A stop command, as the uplink hands it to the charge point."""
        self.point.remote_stop(session_id)

    def vehicle_state(self) -> str:
        v = self.vehicle
        if not v.plugged:
            return "A"
        if v.override:
            return v.override
        if v.wants and self.pilot_sim.evse == "pwm":
            return "D" if v.ventilation else "C"
        return "B"

    def offered_ma(self) -> int:
        duty = self.outputs.duty
        if duty is None or self.pilot_sim.evse != "pwm":
            return 0
        return fw_pilot.current_ma_from_duty(duty, fw_pilot.FULL_SCALE_U16)

    def power_w(self) -> float:
        contacts_closed = self.outputs.closed or self.welded
        state = self.vehicle_state()
        if not contacts_closed or state not in ("C", "D"):
            return 0.0
        amps = min(self.offered_ma(), self.vehicle.max_current_ma) / 1000.0
        return amps * self.voltage

    def step(self) -> None:
        """One pilot period of simulated time: energy flows, then the device's steps run."""
        dt = self.step_ms
        power = self.power_w()
        self.counter.set_power(power)
        self.counter.advance(dt / 1000.0)
        self.energy_delivered_wh += power * dt / 3_600_000.0
        self.t_ms += dt
        self.clock.t = self.start_time + self.t_ms // 1000
        now = self.now_ms
        point = self.point
        point.control_step(now)
        if self.t_ms >= self._next_display:
            self._next_display += fw_chargepoint.DISPLAY_MS
            point.display_step(now)
        if self.authz is not None and point.flow is not None:
            if self._card_away_at is not None and self.t_ms >= self._card_away_at:
                self.rc522_sim.remove()
                self._card_away_at = None
            if self.t_ms >= self._next_card:
                self._next_card += fw_chargepoint.CARD_MS
                point.card_step(now)
        else:  # no card reader fitted: the simulation plays the bureau's part
            self._simulated_answer(now)

    def _simulated_answer(self, now: int) -> None:
        """Without the authorization flow: the simulation plays the bureau, from `wallets`."""
        ctl = self.ctl
        uid = self.cards.poll_hex()
        if uid is not None:
            ctl.authorizing(now)
            self._auth_pending = (self.t_ms + self.auth_delay_ms, uid)
        if self._auth_pending is not None and self.t_ms >= self._auth_pending[0]:
            uid = self._auth_pending[1]
            self._auth_pending = None
            answer = self.wallets.get(uid)
            if answer is None:
                ctl.deny("unknown_card", now)
            else:
                self._auth_count += 1
                ctl.authorize(fw_receipt.AUTH_CARD_ONLINE, uid, answer[0], answer[1],
                              "sim-auth-%d" % self._auth_count, now)

    def run(self, ms: int) -> None:
        """Advance `ms` of simulated time (and pump the network after each simulated second
        when attached)."""
        end = self.t_ms + ms
        while self.t_ms < end:
            self.step()
            if self.uplink is not None and self.t_ms % 1000 == 0:
                self.pump()

    def run_until(self, predicate, limit_ms: int) -> bool:
        end = self.t_ms + limit_ms
        while self.t_ms < end:
            if predicate():
                return True
            self.step()
        return predicate()

    # ---- what the charger produced --------------------------------------------------------

    def receipts(self) -> list[bytes]:
        """Envelopes in the outbox, oldest first."""
        return [self.charger.outbox.get(seq) for seq in self.charger.outbox.pending()]

    def events(self, what: str) -> list[tuple[int, str, object]]:
        return [e for e in self.log if e[1] == what]

    # ---- network (optional): the firmware's uplink over its own MQTT client ----------------

    def enable_authz(self, genesis: dict | None = None) -> None:
        """Card and phone authorization through the firmware (see the module docstring). With
        `genesis` the charger is provisioned with the bureau's keys (bureau.json), as the
        technician's tool does; without, what is on flash is used."""
        if self.uplink is not None:
            raise RuntimeError("enable_authz before attach_mqtt")
        if genesis is not None:
            fw_authz.provision(self.flash, genesis)
            self.point.authz.load()
        self.authz = self.point.authz
        self.rc522_sim = Rc522Sim()
        self.reader = fw_rc522.RC522(self.rc522_sim.spi, self.rc522_sim.cs, self.rc522_sim.rst)

    def attach_mqtt(self, host: str, port: int, **client_options) -> None:
        """The firmware's MQTT client with the device's last will, attached to the charge point
        (which makes the authorization flow and the uplink over it), then connected."""
        from mqtt_client import MQTTClient

        cid = self.charger.charger_id
        options = {"keepalive": 30, "max_inflight": 24}
        options.update(client_options)
        self.client = MQTTClient(host, port, client_id="charger-" + cid,
                                 will=fw_uplink.will(cid, self.firmware_version), **options)
        self.point.attach(self.client)
        self.client.connect()

    def pump(self) -> None:
        """One round of network work on real time (the broker runs on real time)."""
        assert self.uplink is not None
        self.uplink.step(int(time.monotonic() * 1000) % TICKS_WRAP)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
