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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nacl.signing import VerifyKey  # noqa: E402

from bureau.ledger.audit import audit_chain  # noqa: E402
from bureau.receipts.codec import decode, signed_message  # noqa: E402
from bureau.storage import Repository  # noqa: E402
from history_memory import PER_BLOCK, Fleet, grow  # noqa: E402

GOAL = 0.80  # of cores x one core's verify rate


def verify_rate(fleet: Fleet, envelopes: list[bytes], seconds: float = 2.0) -> float:
    """One core's `VerifyKey.verify` per second over the chain's own receipts."""
    keys = {cid: VerifyKey(k.verify_key.encode()) for cid, k in fleet.chargers}
    work = [(keys[r.charger_id], signed_message(body), sig) for r, body, sig in map(decode, envelopes)]
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for vk, message, sig in work:
            vk.verify(message, sig)
        done += len(work)
    return done / (time.perf_counter() - start)


def timed_audit(genesis, url: str, jobs: int) -> tuple[dict, float]:
    repo = Repository(url, create=False)
    try:
        t0 = time.perf_counter()
        report = audit_chain(genesis, repo, jobs=jobs)
        return report, time.perf_counter() - t0
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
        for jobs in sorted({1, cores}):
            verify_per_s = verify_rate(fleet, sample)
            report, seconds = timed_audit(fleet.genesis, url, jobs)
            if not report["chain_valid"] or report["receipts"] != args.receipts:
                print(f"audit with {jobs} process(es) did not verify the chain: {report['problem']}")
                return 1
            rate = report["receipts"] / seconds
            result[f"jobs_{jobs}"] = {"receipts_per_s": round(rate), "verify_per_s_one_core": round(verify_per_s),
                                      "ratio_to_jobs_x_verify": round(rate / (jobs * verify_per_s), 3),
                                      "ratio_to_goal": round(rate / (GOAL * jobs * verify_per_s), 3)}
    for jobs in sorted({1, cores}):
        r = result[f"jobs_{jobs}"]
        print(f"audit of {args.receipts:,} receipts with {jobs} process(es): {r['receipts_per_s']:,} receipts/s; "
              f"one core verifies {r['verify_per_s_one_core']:,}/s, so {r['ratio_to_jobs_x_verify']} of {jobs} x "
              f"that rate ({r['ratio_to_goal']} of the {GOAL:.0%} goal)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
