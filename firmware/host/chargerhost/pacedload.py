"""Paced load from simulated chargers: each session runs the firmware core start to stop
(simulated time, a few metered intervals), so receipts leave at `rate` per second in total;
every charger keeps resending what is not acked, as the firmware does. Used by the soak."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Callable

from .simcharger import SimulatedCharger
from mqtt_client import MQTTError  # noqa: E402  (firmware/shell, on sys.path via the package)

Login = Callable[[str], tuple[str, str]]  # charger id -> broker (username, password)


class PacedChargers:
    def __init__(self, root: Path, broker_port: int, *, chargers: int, rate: float, wallets: list[str],
                 tariff: dict, rng: random.Random, login: Login, genesis: dict, start_time: int,
                 resend_ms: int = 5000) -> None:
        """`genesis` provisions each charger with the bureau keys its acks must be signed by;
        charger i's simulated clock starts at `start_time` + i hours."""
        self.rate, self.wallets, self.rng = rate, wallets, rng
        self.chargers = []
        for i in range(chargers):
            cid = f"SOAK-{i:03d}"
            user, password = login(cid)
            self.chargers.append(SimulatedCharger(
                cid, root / cid, broker_port, start_time=start_time + i * 3_600, power_w=rng.choice((3500, 7000, 11000)),
                tariff=tariff, resend_ms=resend_ms, mqtt_username=user, mqtt_password=password,
                genesis=genesis, step_s=30))
        self.issued: list[tuple[str, int, bytes]] = []  # (charger, seq, envelope) in issue order
        self.replayed = 0
        self.client_errors = 0
        self._replays = 0
        self.issuing = threading.Event()
        self.issuing.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="paced-chargers", daemon=True)

    def start(self) -> "PacedChargers":
        for c in self.chargers:
            c.connect()
        self._thread.start()
        return self

    def _session(self, c: SimulatedCharger) -> None:
        wallet = self.rng.choice(self.wallets)
        # mostly stopped by the driver; some end at the prepaid limit (stop reason Q)
        c.plug_in_and_start(wallet, self.rng.choice((300, 800, 5_000, 50_000)), id_token="04A1B2C3", method=1,
                            auth_ref=f"soak:{len(self.issued)}")
        # a minute or two of the device's control loop (the meter read every second, the
        # session checkpointed to flash every 15 s): what one receipt costs in CPU
        for _ in range(self.rng.randrange(1, 4)):
            if c.step() is not None:
                break
        else:
            c.stop("L")
        seq = c.core.next_seq - 1  # the seq the receipt just took
        with self._lock:
            self.issued.append((c.charger_id, seq, c.core.outbox.get(seq)))

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if not self.issuing.is_set() or now - next_at > 1.0:
                next_at = now  # behind by more than a second: the backlog is dropped, never caught up
            budget_end = now + 0.1  # sessions get at most this much per round: the network work below is never starved
            while self.issuing.is_set() and now >= next_at and time.monotonic() < budget_end:
                self._session(self.rng.choice(self.chargers))
                next_at += 1.0 / self.rate
            while self._replays:
                self._replays -= 1
                self._replay_one()
            for c in self.chargers:
                try:
                    c.pump()
                except MQTTError:
                    self.client_errors += 1  # inflight window full: what is unsent goes at the next resend
            time.sleep(0.01)

    def request_replay(self) -> None:
        """Ask for one duplicated delivery (done on the load thread: the firmware client is
        single-threaded)."""
        self._replays += 1

    def _replay_one(self) -> None:
        """A charger publishes one of its earlier receipts again on its own connection: acked
        or still waiting, it must not be billed twice."""
        with self._lock:
            if not self.issued:
                return
            cid, _, env = self.rng.choice(self.issued)
        c = next(c for c in self.chargers if c.charger_id == cid)
        client = c.sim.client
        if client is not None and client.connected and client.inflight < client.session.max_inflight:
            client.publish(c.core.receipt_topic, env, qos=1)
            self.replayed += 1

    def snapshot(self) -> list[tuple[str, int, bytes]]:
        with self._lock:
            return list(self.issued)

    @property
    def acked(self) -> int:
        return sum(len(c.acked) for c in self.chargers)

    def pending(self) -> int:
        return sum(len(c.pending()) for c in self.chargers)

    def refused(self) -> list[str]:
        """Receipts a bureau refused for good, moved out of the outbox (a real one never should be)."""
        return [f"{c.charger_id}/{name}" for c in self.chargers for name in c.core.outbox.refused()]

    def drain(self, timeout: float) -> bool:
        """Stop new sessions; keep delivering until every outbox is empty or `timeout`."""
        self.issuing.clear()
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.pending() == 0

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for c in self.chargers:
            c.close()
