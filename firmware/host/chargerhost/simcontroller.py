"""A simulated charge point running the firmware's controller on a host.

The firmware side is the real code of firmware/lib: `controller.Controller` with a
`pilot.PilotMonitor`, a `meter.MeterWatch`, the meter driver for the chosen register map and
`charger.Charger` (sessions, receipts, flash outbox), and optionally `uplink.Uplink` over the
firmware's MQTT client. The hardware side comes from hardware/hwsim: the pilot circuit
(`PilotSim`), a Modbus RTU or DL/T 645 meter (`ModbusMeterSim` / `Dlt645MeterSim` over the
in-process transport), the card reader (`CardReaderSim`), plus a vehicle model and a contactor
whose position decides whether energy flows into the meter's register.

Card authorization comes in two kinds. By default a tap is answered by the simulation itself
from `wallets` after `auth_delay_ms` (no bureau needed). After `enable_authz(genesis)` (before
`attach_mqtt`) the firmware's own path runs: the RC522 driver (`rc522.RC522`) polls an emulated
MFRC522 (`Rc522Sim`) every `card_poll_ms`, a tap holds the card in its field for `tap_ms`, and
`authflow.AuthFlow` with `authz.Authz` asks the bureau over MQTT, falls back to the signed
offline list, takes phone starts, the list and the tariff push - the glue the device runs.

Time is simulated: `run(ms)` advances in steps of `step_ms` (the device's pilot period), with
a meter tick every second like the device's control loop. The controller's millisecond ticks
start just below the 2**30 wrap (by default), so every run crosses it.

The vehicle behaves like a J1772/IEC 61851 vehicle: plugged in it shows B, and it asks for
energy (C, or D with `ventilation`) only while the EVSE offers current with PWM and it still
wants energy; it draws min(offered current, its own limit). Faults override it: `short()`
(E), `remove_diode()`, `pilot_glitch(volts)`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import FIRMWARE_LIB  # noqa: F401  (puts firmware/lib on sys.path)

import authflow as fw_authflow  # noqa: E402
import authz as fw_authz  # noqa: E402
import charger as fw_charger  # noqa: E402
import controller as fw_controller  # noqa: E402
import ed25519  # noqa: E402
import meter as fw_meter  # noqa: E402
import pilot as fw_pilot  # noqa: E402
import rc522 as fw_rc522  # noqa: E402
import receipt as fw_receipt  # noqa: E402
import status as fw_status  # noqa: E402
import trust as fw_trust  # noqa: E402
import uplink as fw_uplink  # noqa: E402
from flash import Flash  # noqa: E402

from hwsim.cardreader import CardReaderSim, Rc522Sim  # noqa: E402
from hwsim.meters import Dlt645MeterSim, EnergyCounter, LoopbackTransport, ModbusMeterSim  # noqa: E402
from hwsim.pilot import PilotSim  # noqa: E402

from .simcharger import SimClock  # noqa: E402

REGMAPS = Path(__file__).resolve().parents[3] / "hardware" / "meters"
FIRMWARE_VERSION = "fw-1.1.0"
TICKS_WRAP = 1 << 30


class SimOutputs:
    """The controller's outputs on simulated hardware: the pilot driver and the contactor.
    `log` records (sim ms, what, value) in order, shared with the flash log."""

    def __init__(self, sim: "ControllerSim") -> None:
        self.sim = sim
        self.duty: int | None = None
        self.closed = False
        self.closures = 0

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

    def contactor(self, closed: bool) -> None:
        self.closed = bool(closed)
        if closed:
            self.closures += 1
        self.sim.log.append((self.sim.t_ms, "contactor", self.closed))


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
    def __init__(self, flash_dir: Path | str | None = None, *, charger_id: str = "SIM-CP-1", tariff: dict,
                 start_time: int, flash=None, regmap: str = "eastron_sdm120.json", meter_wh: int = 2_000_000,
                 wallets: dict | None = None, auth_delay_ms: int = 300, current_ma: int = 16000,
                 voltage: float = 230.0, step_ms: int = 25, debounce: int = 3, pilot_noise_mv: float = 0.0,
                 seed: int = 0, signer=ed25519, urandom=os.urandom, ticks0: int = TICKS_WRAP - 2500,
                 firmware_version: str = FIRMWARE_VERSION, feedback: bool = True, genesis: dict | None = None,
                 **controller_options) -> None:
        self.log: list[tuple[int, str, object]] = []
        self.t_ms = 0
        self.ticks0 = ticks0
        self.step_ms = step_ms
        self.start_time = start_time
        self.clock = SimClock(start_time)
        self.voltage = voltage
        regmap_doc = json.loads((REGMAPS / regmap).read_text())
        self.counter = EnergyCounter(wh=meter_wh)
        identify = None
        if regmap_doc["protocol"] == "dlt645_2007":
            self.meter_sim = Dlt645MeterSim(counter=self.counter)
            self.driver = fw_meter.Dlt645Meter(LoopbackTransport(self.meter_sim), regmap=regmap_doc)
            identify = self._dlt_address
        else:
            self.meter_sim = ModbusMeterSim(regmap_doc, counter=self.counter)
            self.driver = fw_meter.ModbusMeter(LoopbackTransport(self.meter_sim), regmap_doc)
        self.watch = fw_meter.MeterWatch(lost_after=fw_charger.LOST_AFTER)
        self.meter = fw_controller.WatchedMeter(self.driver, self.watch, identify)
        if flash is None:
            Path(flash_dir).mkdir(parents=True, exist_ok=True)
            flash = Flash(str(flash_dir))
        self.flash = LoggedFlash(flash, self.log, self)
        if genesis is not None:  # the bureau keys acks and replies are checked with (bureau.json)
            fw_trust.provision(self.flash, genesis)
        self.charger = fw_charger.Charger(charger_id, self.flash, self.meter, self.clock, signer, urandom,
                                          firmware_version, "MTR-" + charger_id, default_tariff=tariff)
        self.charger.boot()
        self.pilot_sim = PilotSim(noise_mv=pilot_noise_mv, seed=seed)
        self.outputs = SimOutputs(self)
        self.monitor = fw_pilot.PilotMonitor(debounce=debounce)
        self.ctl = fw_controller.Controller(self.charger, self.monitor, self.watch, self.meter, self.outputs,
                                            current_ma=current_ma, **controller_options)
        self.vehicle = Vehicle()
        self.cards = CardReaderSim()
        self.wallets = dict(wallets or {})  # card UID hex -> (wallet_id, authorized_fen): the backend's answers
        self.auth_delay_ms = auth_delay_ms
        self.feedback = feedback
        self.welded = False  # the contactor's contacts stick closed
        self._auth_pending: tuple[int, str] | None = None
        self._auth_count = 0
        self._next_meter = 1000
        self._commands: list[tuple[str, str | None]] = []
        self.firmware_version = firmware_version
        self.uplink: fw_uplink.Uplink | None = None
        self.client = None
        self.energy_delivered_wh = 0.0  # into the vehicle while the contactor was closed
        self.authz: fw_authz.Authz | None = None
        self.flow: fw_authflow.AuthFlow | None = None
        self.rc522_sim: Rc522Sim | None = None
        self.reader: fw_rc522.RC522 | None = None
        self.card_poll_ms = 100
        self.flow_log: list[str] = []
        self._card_away_at: int | None = None
        self._urandom = urandom

    # ---- the simulated world ---------------------------------------------------------------

    @property
    def now_ms(self) -> int:
        return (self.ticks0 + self.t_ms) % TICKS_WRAP

    def _dlt_address(self):
        return self.driver.meter_address

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
        self._commands.append(("L", None))

    def remote_stop(self, session_id: str | None = None) -> None:
        self._commands.append(("R", session_id))

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
        """One pilot period of simulated time."""
        dt = self.step_ms
        power = self.power_w()
        self.counter.set_power(power)
        self.counter.advance(dt / 1000.0)
        self.energy_delivered_wh += power * dt / 3_600_000.0
        self.t_ms += dt
        self.clock.t = self.start_time + self.t_ms // 1000
        now = self.now_ms
        self.pilot_sim.set_vehicle(self.vehicle_state(), self.vehicle.diode)
        pos, neg = self.pilot_sim.read()
        if self.vehicle.glitch_v is not None:
            pos = round(self.pilot_sim.adc_volts(self.vehicle.glitch_v) * 1000)
        ctl = self.ctl
        ctl.pilot(pos, neg if neg is not None else pos, now)
        if self.feedback:
            ctl.feedback(self.outputs.closed or self.welded, now)
        while self._commands:
            reason, sid = self._commands.pop(0)
            ctl.stop_request(reason, now, sid)
        if self.flow is not None:
            self._card_step(now)
            uid = None
        else:
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
        if self.t_ms >= self._next_meter:
            self._next_meter += 1000
            ctl.meter_tick(now)

    def _card_step(self, now: int) -> None:
        assert self.flow is not None and self.reader is not None and self.rc522_sim is not None
        if self._card_away_at is not None and self.t_ms >= self._card_away_at:
            self.rc522_sim.remove()
            self._card_away_at = None
        if self.t_ms % self.card_poll_ms == 0:
            uid = self.reader.poll()
            if uid is not None:
                self.flow.card(uid, now)
        self.flow.poll(now)

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
        self.authz = fw_authz.Authz(self.charger.charger_id, self.flash, ed25519.verify, self._urandom)
        self.authz.load()
        self.charger.authz = self.authz
        self.rc522_sim = Rc522Sim()
        self.reader = fw_rc522.RC522(self.rc522_sim.spi, self.rc522_sim.cs, self.rc522_sim.rst)
        self.reader.init()

    def attach_mqtt(self, host: str, port: int, **client_options) -> None:
        from mqtt_client import MQTTClient

        cid = self.charger.charger_id
        self.client = MQTTClient(host, port, client_id="charger-" + cid, keepalive=30,
                                 will=fw_uplink.will(cid, self.firmware_version), max_inflight=24,
                                 **client_options)
        prov = fw_status.Provisioning(self.flash, cid, self.charger.public_key(), self.charger.meter_serial,
                                      self.firmware_version)
        client = self.client
        if self.authz is not None:
            self.flow = fw_authflow.AuthFlow(self.authz, self.charger, self.ctl, self.client,
                                             lambda: self.now_ms, self.flow_log.append)
            client = self.flow.client
        self.uplink = fw_uplink.Uplink(client, self.charger, self.ctl, prov, self.clock, self.firmware_version,
                                       on_stop=self.remote_stop)
        self.client.connect()

    def pump(self) -> None:
        """One round of network work on real time (the broker runs on real time)."""
        import time

        assert self.uplink is not None
        self.uplink.step(int(time.monotonic() * 1000) % TICKS_WRAP)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
