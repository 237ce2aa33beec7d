"""A simulated charger for the demo, `just up` and the end-to-end tests: a `ControllerSim` (the
device's own glue, `chargepoint.ChargePoint`, on hwsim hardware) with a vehicle that plugs in
and charges, attached to a broker with the firmware's MQTT client.

Time is simulated so that an hour of charging passes in a fraction of a second: each `step()`
runs `step_s` seconds of the device's control, display and card steps. The network runs on
real time (`pump()`), and so does an online card authorization (`authorize_card`), because the
bureau answering it does.
"""

from __future__ import annotations

import time
from pathlib import Path

from . import LIB_DIRS  # noqa: F401  (puts the firmware library on sys.path)

import broker_tls  # noqa: E402
import charger as fw_charger  # noqa: E402

from hwsim.meters import EnergyCounter  # noqa: E402

from .simcontroller import FIRMWARE_VERSION, ControllerSim, SimClock  # noqa: E402,F401 (SimClock: callers' import)

VOLTAGE = 230.0
# The device samples the pilot every 25 ms (chargepoint.PILOT_MS); a simulated hour at that rate
# costs seconds of CPU, so these chargers take coarser steps of the same code (the meter and
# the session still every second, the debounced pilot within 0.3 s).
CONTROL_STEP_MS = 100
START_LIMIT_MS = 10_000  # from the authorization to the contactor closing


class SimulatedCharger:
    def __init__(self, charger_id: str, flash_dir: Path, broker_port: int, *, start_time: int | None = None,
                 power_w: float = 7000.0, regmap: str = "eastron_sdm120.json", tariff: dict | None = None,
                 broker_host: str = "127.0.0.1", step_s: int = 30, mqtt_username: str | None = None,
                 mqtt_password: str | None = None, resend_ms: int = fw_charger.RESEND_MS,
                 counter: EnergyCounter | None = None, genesis: dict | None = None,
                 broker_ca: bytes | None = None, flash=None, card_reader: bool = True) -> None:
        """`power_w`: what the vehicle draws (the charge point offers that current); `genesis`
        (GET /v1/genesis) provisions bureau.json as the technician's tool does (acks and replies
        are checked with its keys) and fits the card reader, so `authorize_card` runs the
        firmware's authorization flow against the bureau; `broker_ca` (the network's CA, DER or
        PEM): MQTT over TLS with that CA pinned, through the firmware's broker_tls, the
        broker's certificate naming `broker_host`. `flash`: the charger's flash files in place
        of a `flash.Flash` on `flash_dir`; `card_reader=False` leaves the RC522 out (sessions
        are then authorized with `plug_in_and_start` only; acks are still checked with the
        genesis keys)."""
        self.charger_id = charger_id
        self.step_s = step_s
        self.broker = (broker_host, broker_port, mqtt_username, mqtt_password)
        self.broker_tls = broker_tls.make_context(broker_tls.ca_der(broker_ca)) if broker_ca is not None else None
        Path(flash_dir).mkdir(parents=True, exist_ok=True)
        # the meter outlives the controller: a power cut of the ESP32 passes on a running counter
        counter = counter or EnergyCounter(wh=1_000_000 + sum(charger_id.encode()) * 1000, power_w=0.0)
        current_ma = min(80_000, max(6_000, round(power_w / VOLTAGE * 1000)))
        self.sim = ControllerSim(flash_dir, charger_id=charger_id, tariff=tariff,
                                 start_time=start_time if start_time is not None else int(time.time()) - 86400,
                                 regmap=regmap, counter=counter, current_ma=current_ma, voltage=VOLTAGE,
                                 step_ms=CONTROL_STEP_MS, meter_serial=f"SDM-{charger_id}", ventilation=False,
                                 genesis=genesis, flash=flash)
        self.sim.vehicle.max_current_ma = current_ma
        self.sim.charger.resend_ms = resend_ms
        if genesis is not None and card_reader:
            self.sim.enable_authz()
        self.core = self.sim.charger
        self.counter = counter
        self.meter_sim = self.sim.meter_sim
        self.meter = self.sim.driver  # reads the register without touching the controller's watch
        self.clock = self.sim.clock
        self.acked: list[int] = []  # seqs the bureau acknowledged since this boot

    # ---- charging --------------------------------------------------------------------------

    def _run_ms(self, ms: int) -> None:
        for _ in range(ms // CONTROL_STEP_MS):
            self.sim.step()

    def _plug_and_wait(self) -> None:
        sim = self.sim
        sim.plug_in()
        if not sim.run_until(lambda: sim.ctl.state == "charging", START_LIMIT_MS):
            raise RuntimeError(f"{self.charger_id}: no session started ({sim.ctl.display_state()}, "
                               f"error {sim.ctl.error})")

    def _ready(self) -> None:
        """A vehicle still at the connector from the last session drives off first."""
        if self.sim.vehicle.plugged:
            self.sim.unplug()
            self._run_ms(1000)

    def plug_in_and_start(self, wallet_id: str, authorized_fen: int, id_token: str = "", method: int = 1,
                          auth_ref: str = "") -> None:
        """A session authorized with this decision (what the authorization flow hands the
        controller on an accept); the vehicle plugs in and the contactor closes."""
        self._ready()
        sim = self.sim
        if not sim.ctl.authorize(method, id_token, wallet_id, authorized_fen, auth_ref, sim.now_ms):
            raise RuntimeError(f"{self.charger_id}: authorization not taken ({sim.ctl.display_state()})")
        self._plug_and_wait()

    def authorize_card(self, uid: str, timeout: float = 15.0) -> dict:
        """Tap `uid` at the reader: the firmware's flow asks the bureau (simulated time at the
        pace of real time meanwhile, so the flow's timeouts mean what they mean on a device).
        Returns the flow's decision; on an accept the vehicle plugs in and charging starts."""
        sim = self.sim
        if sim.flow is None or sim.rc522_sim is None:
            raise RuntimeError("authorize_card needs genesis= and connect()")
        self._ready()
        decided = sim.flow.decisions
        sim.tap(uid)
        deadline = time.monotonic() + timeout
        while sim.flow.decisions == decided:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.charger_id}: no decision on card {uid}; log {sim.flow_log[-5:]}")
            sim.step()
            self.pump()
            time.sleep(CONTROL_STEP_MS / 1000)
        decision = dict(sim.flow.last)
        if decision.get("decision") == "accept":
            self._plug_and_wait()
        return decision

    def step(self) -> str | None:
        """Advance simulated time by step_s; returns the stop reason if a session ended."""
        ended = self.sim.ctl.sessions
        self._run_ms(self.step_s * 1000)
        if self.sim.ctl.sessions != ended:
            return self.sim.ctl.last[2]
        return None

    def stop(self, reason: str = "L") -> None:
        """The driver presses the stop button ("L") or a remote stop arrives ("R")."""
        sim = self.sim
        ended = sim.ctl.sessions
        if reason == "L":
            sim.press_stop()
        else:
            sim.remote_stop()
        if not sim.run_until(lambda: sim.ctl.sessions != ended, START_LIMIT_MS):
            raise RuntimeError(f"{self.charger_id}: the session did not stop ({sim.ctl.display_state()})")

    @property
    def charging(self) -> bool:
        return self.core.session is not None

    # ---- network ---------------------------------------------------------------------------

    def connect(self) -> None:
        host, port, username, password = self.broker
        self.sim.attach_mqtt(host, port, clean_session=False, username=username, password=password, tls=self.broker_tls)

    def pump(self, wait_ms: int = 0) -> None:
        """One round of network work: read replies, publish what is due."""
        before = self.pending()
        self.sim.pump()
        left = set(self.pending())
        self.acked += [seq for seq in before if seq not in left]  # only an ack takes a receipt out
        if wait_ms:
            time.sleep(wait_ms / 1000)

    @property
    def uplink(self):
        return self.sim.uplink

    @property
    def announced(self) -> bool:
        """The broker acknowledged the retained enrollment message of this key."""
        prov = self.sim.uplink.provisioning if self.sim.uplink is not None else None
        return prov is not None and prov.packet_id is None and not prov.needed()

    @property
    def rejected(self) -> int:
        return self.sim.uplink.rejected if self.sim.uplink is not None else 0

    def pending(self) -> list[int]:
        return self.core.outbox.pending()

    def deliver(self, timeout: float = 30.0) -> bool:
        """Pump the network until the outbox is empty (every receipt acked) or `timeout`."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            self.pump(wait_ms=20)
        return not self.pending()

    def power_cut(self) -> None:
        """The controller loses power: no stop, no goodbye to the broker, RAM gone (the
        contactor drops out with it: a new SimulatedCharger on the same flash and counter is
        the reboot)."""
        if self.sim.client is not None:
            self.sim.client.abort("power_cut")
        self.counter.set_power(0.0)

    def close(self) -> None:
        self.sim.close()
