"""Audit benchmark: full re-verification of a stored chain (`bureau verify-chain`: certificates,
Merkle roots, every receipt signature, the state replayed block by block) in receipts/s, with 1
process and with one worker process per core, each beside the PyNaCl verification rate of one
core (`VerifyKey.verify` per second) measured in the same run. Goal: >= 80% of cores x that rate.

The chain is built here as bench/history_memory.py builds it (real signed receipts of a fixed
fleet, blocks of 500, certified by three of four validators) on SQLite. Prints a summary and,
last, one JSON object. Figures are ratios within one run; the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nacl.signing import VerifyKey  # noqa: E402

from bureau.ledger.audit import audit_chain  # noqa: E402
from bureau.receipts.codec import decode, signed_message  # noqa: E402
from bureau.storage import Repository  # noqa: E402
from cpu_profile import cpu_ms  # noqa: E402
from history_memory import PER_BLOCK, Fleet, grow  # noqa: E402

GOAL = 0.80  # of cores x one core's verify rate


def verify_rate(fleet: Fleet, envelopes: list[bytes], seconds: float = 2.0) -> tuple[float, float]:
    """One core's `VerifyKey.verify` per second over the chain's own receipts, and the CPU
    seconds of one verification."""
    keys = {cid: VerifyKey(k.verify_key.encode()) for cid, k in fleet.chargers}
    work = [(keys[r.charger_id], signed_message(body), sig) for r, body, sig in map(decode, envelopes)]
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for vk, message, sig in work:
            vk.verify(message, sig)
        done += len(work)
    return done / (time.perf_counter() - start), (time.process_time() - cpu) / done


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue  # the process ended meanwhile
            found += children
            todo += children
    return found


class WorkerCpu:
    """The CPU of this process's descendants (the audit's forkserver and workers), read every
    `every_s` while they run: each one's last reading counts, so a worker's last moments before
    it exits are missed (at most `every_s` of CPU each)."""

    def __init__(self, every_s: float = 0.1) -> None:
        self.every_s = every_s
        self.last_ms: dict[int, float] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.done.wait(self.every_s):
            for pid in descendants(os.getpid()):
                try:
                    self.last_ms[pid] = cpu_ms(pid)
                except (OSError, IndexError):
                    pass  # it exited between the listing and the read: its last figure stands

    def stop(self) -> float:
        """CPU seconds of every descendant seen."""
        self.done.set()
        self.thread.join()
        return sum(self.last_ms.values()) / 1000


def timed_audit(genesis, url: str, jobs: int) -> tuple[dict, float, float, float]:
    """The audit's report, its wall seconds, this process's CPU seconds and its workers'."""
    repo = Repository(url, create=False)
    try:
        watch = WorkerCpu()
        t0, cpu = time.perf_counter(), time.process_time()
        report = audit_chain(genesis, repo, jobs=jobs)
        wall, main_cpu = time.perf_counter() - t0, time.process_time() - cpu
        return report, wall, main_cpu, watch.stop()
    finally:
        repo.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--receipts", type=int, default=50_000)
    ap.add_argument("--chargers", type=int, default=2_000)
    ap.add_argument("--wallets", type=int, default=1_000)
    args = ap.parse_args()
    if args.receipts < PER_BLOCK or args.receipts % PER_BLOCK:
        ap.error(f"--receipts must be a positive multiple of {PER_BLOCK}")
    cores = os.cpu_count() or 1
    fleet = Fleet(args.chargers, args.wallets)
    result: dict = {"bench": "audit", "receipts": args.receipts, "per_block": PER_BLOCK, "cores": cores}
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'ledger.db'}"
        print(f"audit: building a chain of {args.receipts:,} receipts", file=sys.stderr)
        grow(url, fleet, args.receipts, [], progress=False)
        sample = Fleet(args.chargers, args.wallets).receipts(2000)
        for run, jobs in (("one_process", 1), ("one_per_core", cores)):
            # the rate before and after, averaged: other load on the machine moves it
            before, verify_cpu_s = verify_rate(fleet, sample)
            report, seconds, cpu_s, workers_cpu_s = timed_audit(fleet.genesis, url, jobs)
            verify_per_s = (before + verify_rate(fleet, sample)[0]) / 2
            if not report["chain_valid"] or report["receipts"] != args.receipts:
                print(f"audit with {jobs} process(es) did not verify the chain: {report['problem']}")
                return 1
            rate = report["receipts"] / seconds
            result[run] = r = {
                "jobs": jobs, "receipts_per_s": round(rate), "verify_per_s_one_core": round(verify_per_s),
                "ratio_to_jobs_x_verify": round(rate / (jobs * verify_per_s), 3),
                "ratio_to_goal": round(rate / (GOAL * jobs * verify_per_s), 3),
                # CPU per receipt, which other load on the machine moves less than rates: the
                # main process (all the work with one process, the replay with workers), the
                # workers, and one verification beside them; verify / (main + workers) is the
                # share of cores x the verify rate the audit reaches when it has the cores to itself
                "main_cpu_us_per_receipt": round(1e6 * cpu_s / report["receipts"], 1),
                "workers_cpu_us_per_receipt": round(1e6 * workers_cpu_s / report["receipts"], 1),
                "verify_cpu_us": round(1e6 * verify_cpu_s, 1),
                "ratio_verify_to_cpu_per_receipt": round(verify_cpu_s * report["receipts"] / (cpu_s + workers_cpu_s), 3)}
            print(f"audit of {args.receipts:,} receipts with {jobs} process(es): {r['receipts_per_s']:,} receipts/s; "
                  f"one core verifies {r['verify_per_s_one_core']:,}/s, so {r['ratio_to_jobs_x_verify']} of {jobs} x "
                  f"that rate ({r['ratio_to_goal']} of the {GOAL:.0%} goal); CPU-us per receipt: main "
                  f"{r['main_cpu_us_per_receipt']}, workers {r['workers_cpu_us_per_receipt']}, beside "
                  f"{r['verify_cpu_us']} for one verification ({r['ratio_verify_to_cpu_per_receipt']})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
