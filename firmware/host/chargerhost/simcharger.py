"""A simulated charger: the real firmware core (`charger.Charger`), the firmware's own MQTT
client and a simulated Modbus meter from hardware/, driven on a host.

Time is simulated so that an hour of charging passes in a fraction of a second: each `step()`
advances the charger's clock and the meter's energy counter by `step_s` seconds.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from . import FIRMWARE_LIB  # noqa: F401  (puts firmware/lib on sys.path)

import charger as fw_charger  # noqa: E402
import ed25519  # noqa: E402
import meter as fw_meter  # noqa: E402
import trust as fw_trust  # noqa: E402
from flash import Flash  # noqa: E402
from mqtt_client import MQTTClient  # noqa: E402
import mqtt_session  # noqa: E402

from hwsim.meters import EnergyCounter, LoopbackTransport, ModbusMeterSim  # noqa: E402

REGMAPS = Path(__file__).resolve().parents[3] / "hardware" / "meters"
FIRMWARE_VERSION = "fw-1.0.0"


class SimClock:
    """Charger clock: Unix seconds that advance only when the simulation steps."""

    def __init__(self, start: int, synced: bool = True) -> None:
        self.t = start
        self.is_synced = synced

    def now(self) -> int:
        return self.t

    def synced(self) -> bool:
        return self.is_synced


class SimulatedCharger:
    def __init__(self, charger_id: str, flash_dir: Path, broker_port: int, *, start_time: int | None = None,
                 power_w: float = 7000.0, regmap: str = "eastron_sdm120.json", tariff: dict | None = None,
                 broker_host: str = "127.0.0.1", step_s: int = 30, mqtt_username: str | None = None,
                 mqtt_password: str | None = None, resend_ms: int = fw_charger.RESEND_MS,
                 counter: EnergyCounter | None = None, genesis: dict | None = None) -> None:
        self.charger_id = charger_id
        self.clock = SimClock(start_time if start_time is not None else int(time.time()) - 86400)
        # the meter outlives the controller: a power cut of the ESP32 passes it a running counter
        self.counter = counter or EnergyCounter(wh=1_000_000 + sum(charger_id.encode()) * 1000, power_w=0.0)
        regmap_doc = json.loads((REGMAPS / regmap).read_text())
        self.meter_sim = ModbusMeterSim(regmap_doc, counter=self.counter)
        self.meter = fw_meter.ModbusMeter(LoopbackTransport(self.meter_sim), regmap_doc)
        self.power_w = power_w
        self.step_s = step_s
        Path(flash_dir).mkdir(parents=True, exist_ok=True)
        flash = Flash(str(flash_dir))
        if genesis is not None:  # provisioned as the technician's tool does: acks are checked with these keys
            fw_trust.provision(flash, genesis)
        self.core = fw_charger.Charger(charger_id, flash, self.meter, self.clock, ed25519, os.urandom,
                                       FIRMWARE_VERSION, f"SDM-{charger_id}", default_tariff=tariff)
        self.core.boot()
        self.core.resend_ms = resend_ms
        self.mqtt = MQTTClient(broker_host, broker_port, client_id=f"charger-{charger_id}", keepalive=30,
                               clean_session=False, username=mqtt_username, password=mqtt_password)
        self.mqtt.subscribe(self.core.reply_topic, 1)
        self.acked: list[int] = []
        self.rejected: list[tuple[int, str]] = []
        self._lock = threading.RLock()

    # ---- charging --------------------------------------------------------------------------

    def plug_in_and_start(self, wallet_id: str, authorized_fen: int, id_token: str = "", method: int = 1,
                          auth_ref: str = "") -> None:
        with self._lock:
            self.core.start(method, id_token, wallet_id, authorized_fen, auth_ref)
            self.counter.set_power(self.power_w)

    def step(self) -> str | None:
        """Advance simulated time by step_s while charging; returns the stop reason if it ended."""
        with self._lock:
            if self.core.session is None:
                return None
            self.clock.t += self.step_s
            self.counter.advance(self.step_s)
            reason = self.core.tick()
            if reason is not None:
                self.counter.set_power(0.0)
            return reason

    def stop(self, reason: str = "L") -> None:
        with self._lock:
            self.core.stop(reason)
            self.counter.set_power(0.0)

    # ---- network ---------------------------------------------------------------------------

    def connect(self) -> None:
        self.mqtt.connect()

    def pump(self, wait_ms: int = 0) -> None:
        """One round of network work: read replies, publish what is due."""
        now = int(time.monotonic() * 1000)
        for event in self.mqtt.poll(wait_ms=wait_ms):
            kind = event[0]
            if kind == mqtt_session.CONNECTED_EVENT:
                with self._lock:
                    self.core.connection_up()
            elif kind == mqtt_session.MESSAGE and event[1] == self.core.reply_topic:
                with self._lock:
                    result, seq = self.core.on_reply(event[2])
                if result == "ack":
                    self.acked.append(seq)
                elif result == "reject":
                    self.rejected.append((seq, json.loads(event[2]).get("reason", "")))
        if self.mqtt.connected:
            with self._lock:
                due = self.core.due(now)
            for topic, env in due:
                self.mqtt.publish(topic, env, qos=1)

    def pending(self) -> list[int]:
        return self.core.outbox.pending()

    def deliver(self, timeout: float = 30.0) -> bool:
        """Pump the network until the outbox is empty (every receipt acked) or `timeout`."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            self.pump(wait_ms=20)
        return not self.pending()

    def power_cut(self) -> None:
        """The controller loses power: no stop, no goodbye to the broker, RAM gone."""
        self.mqtt.abort("power_cut")
        self.counter.set_power(0.0)  # the contactor drops out with the controller

    def close(self) -> None:
        self.mqtt.close()
