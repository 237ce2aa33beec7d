"""`just soak MINUTES`: simulated chargers running the firmware code send paced receipts through a
real mosquitto to four bureau node processes while a seeded schedule of faults hits them one
bureau at a time (kill -9 and restart from disk, SIGSTOP/SIGCONT, a partition from its peers)
with broker restarts between, and hostile traffic runs throughout. After a drain with a deadline
every node's ledger is tallied: each receipt committed exactly once on every node, every wallet
at its top-ups minus its committed bills. Prints a report and, last, one JSON object; exits
non-zero on a lost or doubled receipt, a wallet mismatch or a node that never recovered."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from nacl.signing import SigningKey

import chargerhost  # noqa: F401  (the firmware library on sys.path)
from chargerhost.pacedload import PacedChargers
from bureau.ledger.genesis import Genesis
from bureau.tools.faults import KINDS, NODE_FAULTS, Episode, FaultPlanner, percentile
from bureau.tools.hostile import HostileTraffic
from bureau.tools.netproxy import LinkProxies
from bureau.tools.network import DEFAULT_TARIFF
from bureau.tools.sessiontime import recent
from bureau.tools.stack import NodeProcess, Stack
from bureau.tools.tally import Issued, read_ledger, tally

NODES = 4
WALLETS = [f"W-SOAK-{i}" for i in range(1, 5)]
TOP_UP_FEN = 10**9
RECOVERY_TIMEOUT_S = 90.0
RSS_EVERY_S = 3.0


def head_height(node: NodeProcess, timeout: float = 1.0) -> int | None:
    if not node.alive:
        return None
    try:
        return httpx.get(node.url + "/v1/chain/head", timeout=timeout).json()["height"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """VmRSS of every node process (whichever process runs it now) every few seconds."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(name="rss", daemon=True)
        self.stack = stack
        self.samples: dict[str, list[tuple[float, int]]] = {n.node_id: [] for n in stack.nodes}
        self.samples["mosquitto"] = []
        self._done = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        while not self._done.wait(RSS_EVERY_S):
            self.sample()

    def sample(self) -> None:
        t = round(time.monotonic() - self._t0, 1)
        procs = [(n.node_id, n.proc) for n in self.stack.nodes] + [("mosquitto", self.stack.broker.proc)]
        for name, proc in procs:
            kib = rss_kib(proc.pid) if proc is not None and proc.poll() is None else None
            if kib is not None:
                self.samples[name].append((t, kib))

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join(5)
        self.sample()

    def summary(self) -> dict[str, dict[str, int]]:
        return {name: {"min": min(k for _, k in s), "max": max(k for _, k in s), "last": s[-1][1], "samples": len(s)}
                for name, s in self.samples.items() if s}


class Soak:
    def __init__(self, workdir: Path, minutes: float, seed: int, rate: float, chargers: int, drain_s: float,
                 kinds: tuple[str, ...] = KINDS) -> None:
        self.workdir, self.minutes, self.seed, self.rate, self.n_chargers = workdir, minutes, seed, rate, chargers
        self.drain_s, self.kinds = drain_s, kinds
        self.t0 = time.monotonic()
        self.faults: list[dict] = []
        self._hostile_stop = threading.Event()
        self.stack = self.proxies = self.chargers = self.hostile = self.rss = None

    def log(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", flush=True)

    # ---- set-up ----------------------------------------------------------------------------

    def start(self) -> None:
        self.stack = Stack(self.workdir, nodes_count=NODES).prepare()
        self.proxies = LinkProxies(self.stack.genesis)  # peers dial each other through these
        self.stack.launch(node_env=self.proxies.node_env, healthy_timeout=120)  # the machine may be busy
        login = self.stack.broker_login
        self.log(f"{NODES} bureaus {', '.join(n.url for n in self.stack.nodes)}; mosquitto on "
                 f"127.0.0.1:{self.stack.broker.port}; work directory {self.workdir}")
        self.chargers = PacedChargers(self.workdir / "chargers", self.stack.broker.port, chargers=self.n_chargers,
                                      rate=self.rate, wallets=WALLETS, tariff=DEFAULT_TARIFF,
                                      rng=random.Random(f"{self.seed}:load"), login=login,
                                      genesis=self.stack.genesis,
                                      # simulated clocks run ahead of the wall's: room for weeks of
                                      # them before a session would end in the future
                                      start_time=recent(1_793_491_200, days=25))
        drivers = [(w, SigningKey.generate()) for w in WALLETS]
        rogue_enrolled, rogue_forger = SigningKey.generate(), SigningKey.generate()
        actions = [("enroll_charger", {"charger_id": c.charger_id, "public_key": c.core.public_key().hex()})
                   for c in self.chargers.chargers]
        actions.append(("enroll_charger", {"charger_id": "HX-ROGUE",
                                           "public_key": rogue_enrolled.verify_key.encode().hex()}))
        actions += [("open_wallet", {"wallet_id": w, "public_key": k.verify_key.encode().hex()}) for w, k in drivers]
        actions += [("top_up", {"wallet_id": w, "amount_fen": TOP_UP_FEN, "reference": f"soak:{w}"}) for w in WALLETS]
        self.stack.wait_committed([self.stack.submit(a, args) for a, args in actions], timeout=120)
        self.top_ups = {w: TOP_UP_FEN for w in WALLETS}
        self.hostile = HostileTraffic(
            random.Random(f"{self.seed}:hostile"), broker_port=self.stack.broker.port, login=login,
            peer_ports=[int(v["address"].rsplit(":", 1)[1]) for v in self.stack.genesis["validators"]],
            apis=[(n.node_id, n.url) for n in self.stack.nodes], victims=self.chargers.snapshot,
            rogue=("HX-ROGUE", rogue_forger), drivers=drivers)
        self.rss = RssSampler(self.stack)
        self.log(f"enrolled {self.n_chargers} simulated chargers and HX-ROGUE; {len(WALLETS)} wallets topped up")

    def _hostile_loop(self) -> None:
        rng = random.Random(f"{self.seed}:hostile-timing")
        while not self._hostile_stop.wait(rng.uniform(0.2, 1.0)):
            if rng.random() < 0.3:
                self.chargers.request_replay()
                self.hostile.counts["replayed_by_charger"] += 1
            self.hostile.act()

    # ---- faults ----------------------------------------------------------------------------

    def heights(self) -> list[int | None]:
        return [head_height(n) for n in self.stack.nodes]

    def _others_min(self, target: int | None) -> int | None:
        hs = [h for i, h in enumerate(self.heights()) if i != target and h is not None]
        return min(hs) if hs else None

    def _wait_recovered(self, ep: Episode, since: float, acked_before: int) -> float | None:
        """Seconds until the affected node is back at the network's height (for the broker:
        until acks reach the chargers again), or None by the deadline."""
        while time.monotonic() < since + RECOVERY_TIMEOUT_S:
            if ep.target is None:
                if self.chargers.acked > acked_before and all(n.alive for n in self.stack.nodes):
                    return time.monotonic() - since
            else:
                hs = self.heights()
                others = [h for i, h in enumerate(hs) if i != ep.target and h is not None]
                if hs[ep.target] is not None and others and hs[ep.target] >= min(others):
                    return time.monotonic() - since
            time.sleep(0.2)
        return None

    def run_episode(self, ep: Episode) -> bool:
        """One fault: apply, hold, undo, wait for recovery. False if it never recovered."""
        time.sleep(ep.gap_s)
        node = self.stack.nodes[ep.target] if ep.target is not None else None
        name = node.node_id if node else "mosquitto"
        before = self._others_min(ep.target)
        if ep.kind == "kill":
            node.kill()
        elif ep.kind == "pause":
            os.kill(node.proc.pid, signal.SIGSTOP)
        elif ep.kind == "partition":
            self.proxies.isolate(node.node_id)
        elif ep.kind == "broker_restart":
            self.stack.broker.stop()
        time.sleep(ep.hold_s)
        during = self._others_min(ep.target) if ep.kind in NODE_FAULTS else None
        acked_before = self.chargers.acked
        undone = time.monotonic()
        if ep.kind == "kill":
            node.start()
        elif ep.kind == "pause":
            os.kill(node.proc.pid, signal.SIGCONT)
        elif ep.kind == "partition":
            self.proxies.heal()
        elif ep.kind == "broker_restart":
            self.stack.broker.start()
        recovered = self._wait_recovered(ep, undone, acked_before)
        progressed = None if during is None or before is None else during > before
        self.faults.append({"kind": ep.kind, "node": name, "hold_s": ep.hold_s,
                            "recovery_s": None if recovered is None else round(recovered, 2),
                            "network_committed_meanwhile": progressed})
        self.log(f"{ep.kind:<14} {name} for {ep.hold_s:.1f}s: "
                 + (f"back at the network's height {recovered:.2f}s after" if recovered is not None
                    else f"NOT recovered within {RECOVERY_TIMEOUT_S:.0f}s")
                 + ("" if progressed is None else f"; the others {'kept' if progressed else 'did NOT keep'} committing"))
        return recovered is not None

    # ---- the run ---------------------------------------------------------------------------

    def run(self) -> dict:
        hostile = threading.Thread(target=self._hostile_loop, name="hostile", daemon=True)
        try:
            self.start()
            self.chargers.start()
            self.rss.start()
            hostile.start()
            planner = FaultPlanner(self.seed, NODES, self.kinds)
            load_started = time.monotonic()
            end = load_started + self.minutes * 60
            self.log(f"load {self.rate:g} receipts/s from {self.n_chargers} chargers for {self.minutes:g} min")
            healthy = True
            while time.monotonic() < end or not planner.first_round_done:  # each kind at least once
                ep = planner.next()
                if not healthy and ep.kind in NODE_FAULTS:
                    time.sleep(ep.gap_s)
                    continue  # a node is still out: taking another would exceed f = 1
                healthy = self.run_episode(ep) and healthy
            self._hostile_stop.set()
            hostile.join(10)
            load_s = time.monotonic() - load_started
            drained = self.chargers.drain(self.drain_s)
            heights_agree = self._wait_heights_agree(60)
            self.log(f"drain {'done' if drained else 'NOT done'}: {self.chargers.pending()} receipts still in "
                     f"chargers' flash; heights {self.heights()}")
            issued = [Issued.of(env) for _, _, env in self.chargers.snapshot()]
            acked, refused, replayed = self.chargers.acked, self.chargers.refused(), self.chargers.replayed
        finally:
            self.close()
        genesis = Genesis.load(self.stack.genesis_path)
        ledgers = [read_ledger(n.node_id, n.settings.database_url, genesis)
                   for n in self.stack.nodes]
        result = tally(issued, ledgers, self.top_ups)
        recoveries = [f["recovery_s"] for f in self.faults if f["recovery_s"] is not None]
        return {
            "soak_minutes": self.minutes, "seed": self.seed, "nodes": NODES, "chargers": self.n_chargers,
            "rate_per_s": self.rate, "achieved_per_s": round(result["receipts_sent"] / load_s, 1), **{k: result[k] for k in ("receipts_sent", "receipts_committed",
                                                               "receipts_doubled", "receipts_lost")},
            "receipts_acked": acked, "receipts_refused": len(refused), "refused_examples": refused[:5],
            "replays_by_chargers": replayed, "drained": drained, "heights_agree": heights_agree,
            **{k: result[k] for k in ("wallets_checked", "wallets_consistent", "wallet_problems", "chains_valid",
                                      "chain_problems", "state_roots_agree", "heights", "lost_examples",
                                      "doubled_examples")},
            "faults": dict(Counter(f["kind"] for f in self.faults)),
            "faults_unrecovered": sum(1 for f in self.faults if f["recovery_s"] is None),
            "faults_network_stalled": sum(1 for f in self.faults if f["network_committed_meanwhile"] is False),
            "recovery_s": {"count": len(recoveries), "p50": percentile(recoveries, 0.5),
                           "max": max(recoveries) if recoveries else None},
            "recovery_s_by_kind": {k: {"p50": percentile(v, 0.5), "max": max(v)} for k in sorted({f["kind"] for f in self.faults})
                                   if (v := [f["recovery_s"] for f in self.faults if f["kind"] == k and f["recovery_s"] is not None])},
            "hostile": dict(self.hostile.counts), "hostile_http_answers": dict(self.hostile.http_status),
            "hostile_http_5xx": dict(self.hostile.server_errors), "hostile_not_done": dict(self.hostile.errors),
            "rss_kib": self.rss.summary(), "seconds": round(time.monotonic() - self.t0, 1),
        }

    def close(self) -> None:
        """Stop whatever was started, a paused node included."""
        self._hostile_stop.set()
        if self.rss is not None:
            self.rss.stop()
        if self.hostile is not None:
            self.hostile.close()
        if self.chargers is not None:
            self.chargers.close()
        if self.stack is not None:
            for node in self.stack.nodes:
                if node.alive:
                    os.kill(node.proc.pid, signal.SIGCONT)
            self.stack.stop()
        if self.proxies is not None:
            self.proxies.close()

    def _wait_heights_agree(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hs = self.heights()
            if None not in hs and len(set(hs)) == 1:
                return True
            time.sleep(0.5)
        return False


def passed(r: dict) -> bool:
    return (r["receipts_lost"] == 0 and r["receipts_doubled"] == 0 and r["wallets_consistent"]
            and r["faults_unrecovered"] == 0 and r["chains_valid"] and r["state_roots_agree"])


def print_report(r: dict) -> None:
    print(f"\nload: {r['achieved_per_s']} receipts/s of the {r['rate_per_s']:g}/s asked for")
    print(f"receipts: {r['receipts_sent']} sent, {r['receipts_committed']} committed exactly once on every node, "
          f"{r['receipts_doubled']} doubled, {r['receipts_lost']} lost ({r['receipts_refused']} refused by a bureau, "
          f"{r['replays_by_chargers']} duplicated deliveries)")
    print(f"wallets: {r['wallets_checked']} checked (balance = top-ups - committed bills, every wallet on every node): "
          + ("consistent" if r["wallets_consistent"] else "MISMATCH " + "; ".join(r["wallet_problems"])))
    print(f"chains: {'valid' if r['chains_valid'] else 'INVALID ' + str(r['chain_problems'])}, state roots "
          f"{'agree' if r['state_roots_agree'] else 'DISAGREE'}, heights {r['heights']}")
    rec = r["recovery_s"]
    print(f"faults: {r['faults']}; recovery p50 {rec['p50']}s, max {rec['max']}s; {r['faults_unrecovered']} never "
          f"recovered; {r['faults_network_stalled']} with the other bureaus not committing")
    print(f"hostile traffic: {r['hostile']}; HTTP answers {r['hostile_http_answers']}"
          + (f"; server errors {r['hostile_http_5xx']}" if r["hostile_http_5xx"] else ""))
    for name, m in r["rss_kib"].items():
        print(f"memory {name}: RSS min {m['min'] / 1024:.1f} MiB, max {m['max'] / 1024:.1f} MiB, "
              f"last {m['last'] / 1024:.1f} MiB ({m['samples']} samples)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=None, help="fault schedule and load choices (default: random)")
    # each session runs the device's control loop for a minute or two of simulated time, about
    # 0.1 s of one core: the load thread keeps up with a few per second
    p.add_argument("--rate", type=float, default=5.0, help="receipts per second from all chargers")
    p.add_argument("--chargers", type=int, default=16)
    p.add_argument("--drain-s", type=float, default=120.0, help="deadline for the last receipts to be acked")
    p.add_argument("--faults", default=",".join(KINDS), help=f"fault kinds to draw from (of {', '.join(KINDS)})")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases, flash)")
    args = p.parse_args()
    kinds = tuple(k for k in args.faults.split(",") if k)
    if not kinds or set(kinds) - set(KINDS):
        p.error(f"--faults takes a comma-separated list of {', '.join(KINDS)}")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    print(f"soak seed {seed} (again with --seed {seed})", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="evsoak-"))
    try:
        result = Soak(workdir, args.minutes, seed, args.rate, args.chargers, args.drain_s, kinds).run()
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result["passed"] = passed(result)
    print_report(result)
    print(json.dumps(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
