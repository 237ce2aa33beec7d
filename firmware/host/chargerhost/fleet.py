"""Many simulated chargers in one process, on one thread: a worker of the fleet simulator
(scripts/fleet.py).

Each charger is a SimulatedCharger: the firmware's own charge point (firmware/core, drivers and
shell: controller, session, tariff periods, signing, flash outbox, uplink) on hwsim hardware,
with its own MQTT connection through the firmware's MQTT client and its own broker login. That
client never blocks (non-blocking socket, `poll()` does what is due), so no charger needs a
thread: one epoll on every charger's socket says whose bytes arrived, and every charger is
also visited every few seconds for what its uplink does on time (keepalive, status, resends).

Time: the fleet shares one simulated clock, `day_start + (monotonic() - t0) * speed`. A
charger's own clock (ControllerSim's) is moved to it only when the charger has something to do:
the plug-in, the contactor closing and the stop run at the simulation's 100 ms control step, a
running session is stepped once per metered interval (the device reads its meter every second;
here every `interval_s` simulated seconds, the same session and tariff code on coarser
readings), and an idle charger is moved in one step. Each charger's day is a plan of sessions
(dayplan.plan_day).

Flash is the firmware's Flash on a RAM file system without its os.sync(): that call flushes the
whole machine's disks, once per write, which two thousand chargers cannot afford; the order of
writes and renames, which power-cut safety rests on, is the firmware's unchanged.

The worker talks to its parent over a multiprocessing connection: ("keys", ...) after boot,
then "connect", ("go", t0, speed), "finish"; it sends ("stats", {...}) every second and
("done", {...}) with every receipt it issued at the end."""

from __future__ import annotations

import heapq
import os
import random
import select
import time
from collections import deque
from pathlib import Path

from . import LIB_DIRS  # noqa: F401  (puts the firmware library on sys.path)
from .dayplan import DAY_S, Planned, plan_day
from .simcharger import SimulatedCharger

from flash import Flash  # noqa: E402
from mqtt_client import MQTTError  # noqa: E402

STATS_EVERY_S = 1.0
VISIT_EVERY_S = 5.0  # every charger's uplink runs at least this often (keepalive 30 s, status 30 s, resend 20 s)
CONNECT_VISIT_S = 0.5  # while the fleet connects: the CONNECT goes out at the first visit after the TCP handshake
SESSION_BUDGET_S = 0.05  # session work per loop round before the network is served again
POWERS_W = (7_000, 11_000, 18_400)  # single phase 230 V at 32, 48 and 80 A


class RamFlash(Flash):
    """The firmware's flash files (write, then rename over) on a RAM file system; nothing to
    flush there (see the module docstring)."""

    def _sync(self):
        pass


class DayCharger:
    """One simulated charger living through its plan of sessions on the fleet's clock."""

    def __init__(self, charger_id: str, flash_root: Path, broker_port: int, login: tuple[str, str], *,
                 genesis: dict, tariff: dict, day_start: int, power_w: int, plan: list[Planned],
                 interval_s: int) -> None:
        self.charger_id = charger_id
        flash_dir = Path(flash_root) / charger_id
        flash_dir.mkdir(parents=True, exist_ok=True)
        self.c = SimulatedCharger(charger_id, flash_dir, broker_port, start_time=day_start, power_w=power_w,
                                  tariff=tariff, mqtt_username=login[0], mqtt_password=login[1], genesis=genesis,
                                  card_reader=False, flash=RamFlash(str(flash_dir)))
        self.sim = self.c.sim
        self.core = self.c.core
        self.plan = deque(plan)
        self.planned = len(plan)
        self.interval_s = interval_s
        self.session: Planned | None = None
        self.sessions = 0
        self.start_failures: list[str] = []
        self.issued: list[tuple[int, bytes]] = []  # (seq, envelope)
        self.unsent: dict[int, float] = {}  # seq -> wall time it was issued
        self.unacked: dict[int, float] = {}  # seq -> wall time it was first published
        self.acked = 0
        self.latencies_ms: list[float] = []  # publish -> ack, taken by the worker
        self.stops: dict[str, int] = {}
        self.fd = -1
        self.last_visit = 0.0

    # ---- the simulated day -----------------------------------------------------------------

    def now(self) -> int:
        return self.sim.clock.now()

    def _run_to(self, unix_s: int) -> None:
        """One step of the charge point's loop covering the time up to `unix_s`."""
        ms = (unix_s - self.now()) * 1000 - self.sim.t_ms % 1000
        if ms <= 0:
            return
        sim = self.sim
        step = sim.step_ms
        sim.step_ms = ms
        try:
            sim.step()
        finally:
            sim.step_ms = step

    def next_due(self) -> int | None:
        """The simulated time of this charger's next piece of work; None when its day is done."""
        if self.session is not None:
            return min(self.now() + self.interval_s, self.session.end)
        return self.plan[0].start if self.plan else None

    def advance(self, until: int, wall: float) -> int:
        """Run the plan up to simulated time `until`; returns the receipts issued meanwhile."""
        issued = 0
        while True:
            if self.session is None:
                if not self.plan or self.plan[0].start > until:
                    return issued
                p = self.plan.popleft()
                self._run_to(p.start)
                try:
                    self.c.plug_in_and_start(p.wallet_id, p.authorized_fen, id_token="04F1EE7%04d" % (self.sessions % 10_000),
                                             method=1, auth_ref=f"fleet:{self.charger_id}:{self.sessions}")
                except RuntimeError as e:  # the charge point would not take it (its display says why)
                    self.start_failures.append(str(e))
                    continue
                self.session = p
                self.sessions += 1
                continue
            step_to = min(self.now() + self.interval_s, self.session.end)
            if step_to > until:
                return issued
            ended = self.sim.ctl.sessions
            self._run_to(step_to)
            if self.sim.ctl.sessions == ended and self.now() >= self.session.end:
                self.c.stop("L")  # the driver comes back and presses stop
            if self.sim.ctl.sessions != ended:
                self._issued(wall)
                issued += 1

    def _issued(self, wall: float) -> None:
        seq = self.core.next_seq - 1  # the seq the receipt just took
        self.issued.append((seq, self.core.outbox.get(seq)))
        self.unsent[seq] = wall
        reason = self.sim.ctl.last[2]
        self.stops[reason] = self.stops.get(reason, 0) + 1
        self.session = None

    @property
    def charging(self) -> bool:
        return self.session is not None

    # ---- the network -----------------------------------------------------------------------

    def pump(self, wall: float) -> None:
        """One round of the uplink; notes first publishes and acks with their wall times."""
        uplink = self.sim.uplink
        acks = uplink.acked
        self.last_visit = wall
        self.sim.pump()
        if self.unsent:
            sent = self.core.sent_at
            for seq in [s for s in self.unsent if s in sent]:
                del self.unsent[seq]
                self.unacked[seq] = wall
        if uplink.acked != acks:
            pending = set(self.core.outbox.pending())
            for seq in [s for s in self.unacked if s not in pending]:
                self.latencies_ms.append(1000 * (wall - self.unacked.pop(seq)))
                self.acked += 1
            for seq in [s for s in self.unsent if s not in pending]:  # acked within the round it went out
                del self.unsent[seq]
                self.latencies_ms.append(0.0)
                self.acked += 1

    @property
    def pending(self) -> int:
        return len(self.unsent) + len(self.unacked)

    @property
    def sock_fd(self) -> int:
        client = self.sim.client
        sock = client.sock if client is not None else None
        try:
            return sock.fileno() if sock is not None else -1
        except OSError:
            return -1


class FleetWorker:
    """The selector loop over this worker's chargers (see the module docstring)."""

    def __init__(self, conn, spec: dict) -> None:
        self.conn = conn
        self.spec = spec
        self.day_start = spec["day_start"]
        self.chargers: list[DayCharger] = []
        for cid, login in spec["chargers"]:
            rng = random.Random(f"{spec['seed']}:{cid}")
            power = rng.choice(POWERS_W)
            plan = plan_day(rng, self.day_start, sessions_per_day=spec["sessions_per_day"], power_w=power,
                            wallets=spec["wallets"])
            self.chargers.append(DayCharger(cid, Path(spec["flash_root"]), spec["broker_port"], tuple(login),
                                            genesis=spec["genesis"], tariff=spec["tariff"], day_start=self.day_start,
                                            power_w=power, plan=plan, interval_s=spec["interval_s"]))
        self.ep = select.epoll()
        self.by_fd: dict[int, DayCharger] = {}
        self.due: list[tuple[int, int]] = []  # (simulated s, charger index)
        self.t0: float | None = None
        self.speed = 1.0
        self.client_errors = 0
        self.max_lag_s = 0.0
        self._cursor = 0
        self._visit_clock = 0.0

    def sim_now(self, wall: float) -> int | None:
        if self.t0 is None or wall < self.t0:
            return None
        return self.day_start + int((wall - self.t0) * self.speed)

    def _track_socket(self, c: DayCharger) -> None:
        fd = c.sock_fd
        if fd == c.fd:
            return
        if c.fd >= 0 and self.by_fd.get(c.fd) is c:
            del self.by_fd[c.fd]
            try:
                self.ep.unregister(c.fd)
            except (OSError, ValueError):
                pass  # closed with its socket
        c.fd = fd
        if fd >= 0:
            try:
                self.ep.register(fd, select.EPOLLIN)
            except FileExistsError:
                self.ep.modify(fd, select.EPOLLIN)
            self.by_fd[fd] = c

    def _pump(self, c: DayCharger, wall: float) -> None:
        try:
            c.pump(wall)
        except MQTTError:
            self.client_errors += 1  # inflight window full: what is unsent goes at the next round
        self._track_socket(c)

    def _visit_some(self, wall: float) -> None:
        """Round-robin: every charger about once per VISIT_EVERY_S (CONNECT_VISIT_S before the day)."""
        every = VISIT_EVERY_S if self.t0 is not None else CONNECT_VISIT_S
        n = len(self.chargers)
        count = int((wall - self._visit_clock) * n / every)
        if count <= 0:
            return
        self._visit_clock += count * every / n
        if wall - self._visit_clock > every:
            self._visit_clock = wall - every  # behind: never more than one full round at once
        for _ in range(min(count, n)):
            c = self.chargers[self._cursor]
            self._cursor = (self._cursor + 1) % n
            if wall - c.last_visit >= every / 2:
                self._pump(c, wall)

    def _sessions(self, wall: float) -> None:
        until = self.sim_now(wall)
        if until is None:
            return
        budget_end = time.monotonic() + SESSION_BUDGET_S
        while self.due and self.due[0][0] <= until and time.monotonic() < budget_end:
            t, i = heapq.heappop(self.due)
            self.max_lag_s = max(self.max_lag_s, (until - t) / self.speed)
            c = self.chargers[i]
            if c.advance(until, wall):
                self._pump(c, wall)  # the receipt goes out now
            nxt = c.next_due()
            if nxt is not None:
                heapq.heappush(self.due, (nxt, i))

    def stats(self, wall: float) -> dict:
        lat: list[float] = []
        issued = acked = pending = charging = connected = 0
        for c in self.chargers:  # one pass: this runs every second over every charger
            if c.latencies_ms:
                lat += c.latencies_ms
                c.latencies_ms = []
            issued += len(c.issued)
            acked += c.acked
            pending += len(c.unsent) + len(c.unacked)
            charging += c.session is not None
            up = c.sim.uplink
            connected += up is not None and up.up
        return {"wall": wall, "sim": self.sim_now(wall), "issued": issued, "acked": acked, "pending": pending,
                "charging": charging, "connected": connected, "day_done": self.t0 is not None and not self.due,
                "latencies_ms": lat, "behind_s": round(self.behind_s(wall), 2), "lag_s": round(self.max_lag_s, 2),
                "cpu_s": round(time.process_time(), 2), "client_errors": self.client_errors}

    def run(self) -> None:
        conn = self.conn
        conn.send(("keys", [(c.charger_id, c.core.public_key().hex()) for c in self.chargers],
                   sum(c.planned for c in self.chargers)))
        connected = False
        next_stats = 0.0
        while True:
            wall = time.monotonic()
            while conn.poll():
                msg = conn.recv()
                if msg == "connect":
                    for c in self.chargers:
                        c.c.connect()
                        self._track_socket(c)
                    connected = True
                    self._visit_clock = wall
                elif msg[0] == "go":
                    self.t0, self.speed = msg[1], msg[2]
                    self.due = [(c.next_due(), i) for i, c in enumerate(self.chargers) if c.next_due() is not None]
                    heapq.heapify(self.due)
                elif msg == "finish":
                    self.finish()
                    return
            if connected:
                self._sessions(wall)
                wall = time.monotonic()
                for fd, _ in self.ep.poll(0 if self._work_due(wall) else 0.01):
                    c = self.by_fd.get(fd)
                    if c is not None:
                        self._pump(c, wall)
                self._visit_some(time.monotonic())
            else:
                time.sleep(0.05)
            if wall >= next_stats:
                next_stats = wall + STATS_EVERY_S
                conn.send(("stats", self.stats(wall)))

    def behind_s(self, wall: float) -> float:
        """Wall seconds the oldest piece of session work waits past its simulated time: how
        far this worker is behind the fleet's clock."""
        until = self.sim_now(wall)
        if until is None or not self.due or self.due[0][0] >= until:
            return 0.0
        return (until - self.due[0][0]) / self.speed

    def _work_due(self, wall: float) -> bool:
        until = self.sim_now(wall)
        return until is not None and bool(self.due) and self.due[0][0] <= until

    def finish(self) -> None:
        wall = time.monotonic()
        final = self.stats(wall)
        stops: dict[str, int] = {}
        for c in self.chargers:
            for k, v in c.stops.items():
                stops[k] = stops.get(k, 0) + v
        final.update({
            "issued_receipts": [(c.charger_id, seq, env) for c in self.chargers for seq, env in c.issued],
            "sessions": sum(c.sessions for c in self.chargers), "planned": sum(c.planned for c in self.chargers),
            "start_failures": [f for c in self.chargers for f in c.start_failures][:5],
            "start_failed": sum(len(c.start_failures) for c in self.chargers), "stop_reasons": stops,
            "refused": [f"{c.charger_id}/{n}" for c in self.chargers for n in c.core.outbox.refused()],
            "rejected": sum(c.c.rejected for c in self.chargers), "rss_kib": _rss_kib(),
        })
        for c in self.chargers:
            c.c.close()
        self.conn.send(("done", final))


def _rss_kib() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def worker_main(conn, spec: dict) -> None:
    """Entry point of a worker process (multiprocessing, spawn). With spec["profile"] (a
    path) the worker runs under cProfile and writes its statistics there."""
    try:
        if spec.get("profile"):
            import cProfile
            cProfile.runctx("FleetWorker(conn, spec).run()", globals(), {"conn": conn, "spec": spec},
                            spec["profile"])
        else:
            FleetWorker(conn, spec).run()
    finally:
        conn.close()


__all__ = ["DAY_S", "DayCharger", "FleetWorker", "RamFlash", "worker_main"]
