"""`just fleet N`: N simulated chargers running the firmware's own code through a simulated day
of charging against four bureau processes and mosquitto, with drivers' phones querying at the
same time.

Chargers are multiplexed: a few worker processes (chargerhost.fleet), each driving its share of
the chargers on one thread over their own non-blocking MQTT connections (the firmware's client,
one broker login per charger: the registry's derived passwords, as real chargers have). The day
runs on a simulated clock `--day-s` wall seconds long; sessions arrive by a daily profile
(chargerhost.dayplan: few at night, most in the evening peak) and each runs the firmware session
from start to stop, metered every `--interval-s` simulated seconds across the tariff periods.
Phones (fleet_phones) send signed balance, history and proof requests to every bureau and check a
sample of the proofs against the genesis.

A progress bar on a terminal shows the simulated time, receipts issued and committed, the
backlog and the p99 publish-to-ack latency. After the day and a drain, every node's ledger is
tallied: each receipt committed exactly once on every node, every wallet at its top-ups minus
its bills. Prints a report and, last, one JSON object (also `report.json` beside the plots in
`--out`); exits non-zero when a receipt was lost or doubled, a wallet or chain is wrong, or a
proof failed its check."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from nacl.signing import SigningKey

import chargerhost  # noqa: F401  (the firmware library on sys.path)
from chargerhost.dayplan import DAY_S, LOCAL_OFFSET_S, local_midnight
from chargerhost.fleet import worker_main
from bureau.api.auth import authorization_header
from bureau.ledger.genesis import Genesis
from bureau.ledger.tx import operator_action
from bureau.tools.actions import ActionRefused
from bureau.tools.network import DEFAULT_TARIFF
from bureau.tools.sessiontime import recent
from bureau.tools.progress import ProgressBar
from bureau.tools.stack import OPERATOR_ID, Stack
from bureau.tools.tally import Issued, read_ledger, tally

from fleet_phones import phones_main
from fleet_report import latency_summary, plot, print_report
from soak import RssSampler

NODES = 4
DAY_START = local_midnight(recent(1_793_491_200))  # a UTC+8 midnight of a recent day: the day is over by now
TOP_UP_FEN = 10**9
SAMPLE_EVERY_S = 1.0
ROOT = Path(__file__).resolve().parents[1]


def operate(stack: Stack, actions: list[tuple[str, dict]], timeout: float) -> None:
    """Submit the operator's signed actions and wait until each is committed, over one
    keep-alive connection pool (bureau.tools.actions opens a client per request: thousands of
    enrollments would spend most of their time making TLS contexts)."""
    node, key = stack.nodes[0], stack.operator_key
    with httpx.Client(base_url=node.url, timeout=30, verify=stack.verify) as http:
        def submit(act: tuple[str, dict]) -> str:
            tx = operator_action(key, OPERATOR_ID, *act).hex()
            while True:
                resp = http.post("/v1/operator/actions", json={"tx": tx})
                if resp.status_code == 202:
                    return resp.json()["tx_hash"]
                body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
                if body.get("error") != "busy":
                    raise ActionRefused(str(body.get("error", resp.status_code)), str(body.get("detail", resp.text)))
                time.sleep(0.2)  # the mempool is full: it empties with the next blocks

        with ThreadPoolExecutor(4) as pool:
            waiting = list(pool.map(submit, actions))
        deadline = time.monotonic() + timeout
        while waiting:
            path = f"/v1/operator/actions/{waiting[-1]}"
            auth = authorization_header(key, OPERATOR_ID, "GET", path, node_id=node.node_id, principal="operator")
            st = http.get(path, headers={"Authorization": auth}).json()
            if st.get("status") == "committed":
                waiting.pop()
            elif st.get("status") == "refused" or "error" in st:
                raise ActionRefused(str(st.get("reason") or st.get("error")), str(st.get("detail")))
            elif time.monotonic() > deadline:
                raise TimeoutError(f"{len(waiting)} operator actions not committed within {timeout:.0f} s")
            else:
                time.sleep(0.2)


def charger_ids(n: int) -> list[str]:
    return [f"FL-{i:05d}" for i in range(n)]


class Fleet:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.t0 = time.monotonic()
        self.ctx = mp.get_context("spawn")
        self.stack: Stack | None = None
        self.workers: list[tuple] = []  # (process, connection)
        self.latest: list[dict | None] = []
        self.done: list[dict | None] = []
        self.samples: list[dict] = []
        self.latencies: list[float] = []
        self.phones = self.phone_stop = self.phone_out = self.rss = None
        # the chargers' flash in RAM (chargerhost.fleet.RamFlash)
        shm = Path("/dev/shm")
        self.flash_root = Path(tempfile.mkdtemp(prefix="evfleet-flash-", dir=shm if os.access(shm, os.W_OK) else workdir))

    def log(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", flush=True)

    # ---- set-up ----------------------------------------------------------------------------

    def start(self) -> None:
        a = self.args
        self.stack = Stack(self.workdir / "stack", nodes_count=NODES, registry_logins=True).start()
        self.log(f"{NODES} bureaus {', '.join(n.url for n in self.stack.nodes)}; mosquitto on "
                 f"127.0.0.1:{self.stack.broker.port}")
        ids = charger_ids(a.chargers)
        self.wallets = [(f"W-FL-{i:04d}", SigningKey.generate()) for i in range(a.wallets)]
        shares = [ids[w::a.workers] for w in range(a.workers)]
        keys: dict[str, str] = {}
        planned = 0
        for w, share in enumerate(shares):
            parent, child = self.ctx.Pipe()
            spec = {"chargers": [(cid, self.stack.broker_login(cid)) for cid in share],
                    "broker_port": self.stack.broker.port, "genesis": self.stack.genesis, "tariff": DEFAULT_TARIFF,
                    "day_start": DAY_START, "interval_s": a.interval_s, "sessions_per_day": a.sessions_per_charger,
                    "wallets": [wid for wid, _ in self.wallets], "seed": a.seed,
                    "flash_root": str(self.flash_root / f"worker-{w}"),
                    "profile": str(Path(a.profile) / f"worker-{w}.prof") if a.profile else None}
            proc = self.ctx.Process(target=worker_main, args=(child, spec), name=f"fleet-worker-{w}")
            proc.start()
            self.workers.append((proc, parent))
        for proc, conn in self.workers:
            kind, found, n = self._recv(conn, 600)
            keys.update(found)
            planned += n
        self.planned = planned
        self.latest = [None] * len(self.workers)
        self.done = [None] * len(self.workers)
        self.log(f"{len(keys)} chargers booted in {a.workers} workers (keys made on their flash); "
                 f"{planned} sessions planned for the day")
        actions = [("enroll_charger", {"charger_id": cid, "public_key": pk}) for cid, pk in keys.items()]
        actions += [("open_wallet", {"wallet_id": w, "public_key": k.verify_key.encode().hex()})
                    for w, k in self.wallets]
        actions += [("top_up", {"wallet_id": w, "amount_fen": TOP_UP_FEN, "reference": f"fleet:{w}"})
                    for w, _ in self.wallets]
        operate(self.stack, actions, timeout=600)
        self.top_ups = {w: TOP_UP_FEN for w, _ in self.wallets}
        last = ids[-1]
        deadline = time.monotonic() + 120
        while self.stack.broker.connack(*self.stack.broker_login(last)) != 0:  # the registry reached the broker
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker still refuses {last} two minutes after its enrollment")
            time.sleep(0.2)
        self.log(f"enrolled {len(keys)} chargers, opened and topped up {len(self.wallets)} wallets; the broker "
                 "takes every charger's login")

    def _recv(self, conn, timeout: float):
        if not conn.poll(timeout):
            raise TimeoutError(f"a fleet worker said nothing for {timeout:.0f} s")
        return conn.recv()

    def connect(self) -> None:
        for _, conn in self.workers:
            conn.send("connect")
        deadline = time.monotonic() + 180
        while True:
            self._poll_workers(0.2)
            up = sum(s["connected"] for s in self.latest if s)
            if up == self.args.chargers:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {up} of {self.args.chargers} chargers connected within 180 s")
        self.log(f"all {self.args.chargers} chargers connected to the broker")

    def _poll_workers(self, wait: float) -> None:
        time.sleep(wait)
        for i, (proc, conn) in enumerate(self.workers):
            while self.done[i] is None and conn.poll():
                try:
                    kind, body = conn.recv()
                except EOFError:
                    break
                if kind == "stats":
                    self.latest[i] = body
                    self.latencies += body["latencies_ms"]
                    self._pending_lat[i] += body["latencies_ms"]
                elif kind == "done":
                    self.done[i] = body
            if not proc.is_alive() and self.done[i] is None and not conn.poll():
                raise RuntimeError(f"fleet worker {i} died (exit code {proc.exitcode})")

    # ---- the day ---------------------------------------------------------------------------

    def start_phones(self) -> None:
        a = self.args
        self.phone_out, self.phone_stop = self.ctx.Queue(), self.ctx.Event()
        nodes = [(n.node_id, n.url) for n in self.stack.nodes]
        self.phones = self.ctx.Process(target=phones_main, name="fleet-phones", args=(
            (nodes, [(w, k.encode()) for w, k in self.wallets], self.stack.genesis, a.proof_sample, a.seed,
             a.phone_rate), self.phone_out, self.phone_stop))
        self.phones.start()

    def run_day(self) -> None:
        a = self.args
        speed = DAY_S / a.day_s
        self.day_t0 = time.monotonic() + 1.0
        for _, conn in self.workers:
            conn.send(("go", self.day_t0, speed))
        self.start_phones()
        bar = ProgressBar()
        drain_deadline = None
        self.drained = False
        next_sample = self.day_t0
        try:
            while True:
                self._poll_workers(0.1)
                now = time.monotonic()
                stats = [s for s in self.latest if s]
                if now >= next_sample and len(stats) == len(self.workers):
                    next_sample = now + SAMPLE_EVERY_S
                    self._sample(now, stats, speed)
                    s = self.samples[-1]
                    day_frac = min(DAY_S, max(0, int((now - self.day_t0) * speed)))
                    p99 = s["p99_ms"]
                    behind = f" (simulation {s['behind_s']:.0f} s behind)" if s["behind_s"] >= 1 else ""
                    bar(day_frac, DAY_S, detail=(
                        f"sim {s['clock']}{behind}  issued {s['issued']}  committed {s['acked']}  backlog {s['pending']}  "
                        f"charging {s['charging']}  p99 {'-' if p99 is None else f'{p99:.0f}'} ms").ljust(110))
                day_done = len(stats) == len(self.workers) and all(s["day_done"] for s in stats)
                if day_done and drain_deadline is None:
                    drain_deadline = now + a.drain_s
                    bar.close()
                    self.log(f"day over: {sum(s['issued'] for s in stats)} receipts issued, "
                             f"{sum(s['pending'] for s in stats)} not yet acked; draining (up to {a.drain_s:g} s)")
                if drain_deadline is not None and (sum(s["pending"] for s in stats) == 0 or now > drain_deadline):
                    self.drained = sum(s["pending"] for s in stats) == 0
                    break
        finally:
            bar.close()
        self.phone_stop.set()
        for _, conn in self.workers:
            conn.send("finish")
        deadline = time.monotonic() + 120
        while any(d is None for d in self.done):
            if time.monotonic() > deadline:
                raise TimeoutError("a fleet worker did not finish within 120 s")
            self._poll_workers(0.1)
        self.phone_result = self.phone_out.get(timeout=120)
        self.log(f"drain {'done' if self.drained else 'NOT done'}; heights {self.stack.heights()}")

    def _sample(self, now: float, stats: list[dict], speed: float) -> None:
        lat = [v for i in range(len(self.workers)) for v in self._pending_lat[i]]
        self._pending_lat = [[] for _ in self.workers]
        sim = min((s["sim"] for s in stats if s["sim"] is not None), default=None)
        local = None if sim is None else (sim + LOCAL_OFFSET_S) % DAY_S
        days = 0 if sim is None else (sim - DAY_START) // DAY_S
        clock = "--:--" if sim is None else (f"+{days}d " if days else "") + f"{local // 3600:02d}:{local % 3600 // 60:02d}"
        hour = None if sim is None or sim >= DAY_START + DAY_S else (sim - DAY_START) / 3600
        s = {"t": round(now - self.day_t0, 2), "sim": sim, "clock": clock, "hour": hour,
             **{k: sum(x[k] for x in stats) for k in ("issued", "acked", "pending", "charging")},
             "behind_s": max(x["behind_s"] for x in stats),
             "latencies_ms": lat, "p99_ms": latency_summary(lat)["p99"]}
        self.samples.append(s)

    # ---- the end ---------------------------------------------------------------------------

    def run(self) -> dict:
        self._pending_lat: list[list[float]] = []
        try:
            self.start()
            self._pending_lat = [[] for _ in self.workers]
            self.rss = RssSampler(self.stack)
            self.rss.start()
            self.connect()
            self.run_day()
        finally:
            self.close()
        return self.result()

    def close(self) -> None:
        if self.phone_stop is not None:
            self.phone_stop.set()
        for proc, conn in self.workers:
            if proc.is_alive() and self.done[self.workers.index((proc, conn))] is None:
                try:
                    conn.send("finish")
                except OSError:
                    pass
        for proc, _ in self.workers:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        if self.phones is not None:
            self.phones.join(30)
            if self.phones.is_alive():
                self.phones.kill()
        if self.rss is not None:
            self.rss.stop()
        if self.stack is not None:
            self.stack.stop()
        shutil.rmtree(self.flash_root, ignore_errors=True)

    def result(self) -> dict:
        a = self.args
        envs = [env for d in self.done for _, _, env in d["issued_receipts"]]
        issued = [Issued.of(env) for env in envs]
        genesis = Genesis.load(self.stack.genesis_path)
        ledgers = [read_ledger(n.node_id, n.settings.database_url, genesis) for n in self.stack.nodes]
        t = tally(issued, ledgers, self.top_ups)
        ours = {i.receipt_id for i in issued}
        ph = self.phone_result
        requests = [v for vs in ph["latencies_ms"].values() for v in vs]
        out_dir = Path(a.out)
        title = f"{a.chargers} chargers, a day in {a.day_s:g} s"
        plots = plot(self.samples, out_dir, title)
        failures = len(ph["failures"])
        phone_window = (ph["timeline"][-1][0] - ph["timeline"][0][0]) if len(ph["timeline"]) > 1 else 0
        sum_of = lambda k: sum(d[k] for d in self.done)  # noqa: E731
        stops: dict[str, int] = {}
        for d in self.done:
            for k, v in d["stop_reasons"].items():
                stops[k] = stops.get(k, 0) + v
        r = {
            "chargers": a.chargers, "workers": a.workers, "nodes": NODES, "day_s": a.day_s, "speed": DAY_S / a.day_s,
            "interval_s": a.interval_s, "sessions_per_charger": a.sessions_per_charger, "seed": a.seed,
            "planned_sessions": self.planned, "sessions": sum_of("sessions"), "start_failed": sum_of("start_failed"),
            "start_failure_examples": [f for d in self.done for f in d["start_failures"]][:5],
            "stop_reasons": stops, "receipts_issued": len(issued), "receipts_acked": sum_of("acked"),
            "receipts_committed": t["receipts_committed"], "receipts_lost": t["receipts_lost"],
            "receipts_doubled": t["receipts_doubled"], "lost_examples": t["lost_examples"],
            "doubled_examples": t["doubled_examples"],
            "receipts_refused": sum(len(d["refused"]) for d in self.done), "refused_examples":
                [f for d in self.done for f in d["refused"]][:5], "receipts_rejected": sum_of("rejected"),
            "committed_by_node": {led.node_id: sum(1 for rid in led.receipts if rid in ours) for led in ledgers},
            "drained": self.drained,
            **{k: t[k] for k in ("wallets_checked", "wallets_consistent", "wallet_problems", "chains_valid",
                                 "chain_problems", "state_roots_agree", "heights")},
            "publish_to_ack_ms": latency_summary(self.latencies),
            "peak_backlog": max((s["pending"] for s in self.samples), default=0),
            "peak_charging": max((s["charging"] for s in self.samples), default=0),
            "worker_lag_s": max(d["lag_s"] for d in self.done),
            "worker_cpu_s": [d["cpu_s"] for d in self.done], "worker_rss_kib": [d["rss_kib"] for d in self.done],
            "phones": {"queries": ph["queries"], "requests": len(requests),
                       "rate_per_s": round(len(requests) / phone_window, 1) if phone_window else None,
                       "latency_ms": latency_summary(requests),
                       "latency_ms_by_kind": {k: latency_summary(v) for k, v in ph["latencies_ms"].items()},
                       "statuses": ph["statuses"], "verified": ph["verified"], "verification_failures": failures,
                       "failure_examples": ph["failures"][:5], "errors": ph["error_count"],
                       "error_examples": ph["errors"][:5]},
            "rss_kib": self.rss.summary(), "plots": plots, "out": str(out_dir),
            "seconds": round(time.monotonic() - self.t0, 1),
        }
        r["passed"] = passed(r)
        return r


def passed(r: dict) -> bool:
    ph = r["phones"]
    return (r["receipts_lost"] == 0 and r["receipts_doubled"] == 0 and r["receipts_issued"] > 0
            and r["receipts_committed"] == r["receipts_issued"] and r["wallets_consistent"] and r["chains_valid"]
            and r["state_roots_agree"] and ph["verification_failures"] == 0 and sum(ph["verified"].values()) > 0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chargers", type=int, default=2000)
    p.add_argument("--day-s", type=float, default=300.0,
                   help="wall seconds for the simulated day: the rate; sized so that four bureaus on two cores "
                        "keep up with 2,000 chargers (default 300: a day in five minutes)")
    p.add_argument("--sessions-per-charger", type=float, default=4.0,
                   help="drivers arriving per charger per day (some find it taken and go elsewhere)")
    p.add_argument("--interval-s", type=int, default=300,
                   help="simulated seconds between a session's meter readings (a common OCPP meter-value interval)")
    p.add_argument("--workers", type=int, default=2, help="processes the chargers are spread over")
    p.add_argument("--wallets", type=int, default=200, help="drivers' wallets (each with its phone's key)")
    p.add_argument("--phone-rate", type=float, default=10.0, help="phone queries per second over all bureaus")
    p.add_argument("--proof-sample", type=float, default=0.5, help="share of fetched bill proofs verified")
    p.add_argument("--drain-s", type=float, default=180.0, help="deadline after the day for the last acks")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "var" / "fleet-report"), help="directory of the plots and report.json")
    p.add_argument("--profile", metavar="DIR", help="run each worker under cProfile; statistics to DIR/worker-N.prof")
    p.add_argument("--keep", action="store_true", help="keep the work directory (node logs and databases)")
    args = p.parse_args()
    if args.chargers < 1 or args.workers < 1 or args.day_s <= 0 or args.interval_s < 1 or args.wallets < 1 \
            or args.phone_rate <= 0 or not 0 <= args.proof_sample <= 1:
        p.error("need --chargers, --workers, --wallets >= 1, --day-s, --phone-rate > 0, --interval-s >= 1 and "
                "--proof-sample in 0..1")
    args.workers = min(args.workers, args.chargers)
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="evfleet-"))
    try:
        result = Fleet(args, workdir).run()
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "report.json").write_text(json.dumps(result, indent=1) + "\n")
    print_report(result)
    print(json.dumps(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
