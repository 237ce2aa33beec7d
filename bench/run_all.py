"""`just bench`: every benchmark, one after another, then one table of the product's goals
beside what this run measured.

Each benchmark runs as its own process (its output goes by as it runs) and prints one JSON
object last; the table reads those. Figures are ratios within this one run: the machine is
shared, so absolute numbers move between runs. The exit status is 0 when every benchmark ran,
whether or not every goal was met (the table says which were not); 1 when one failed to run.

    python bench/run_all.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (name, arguments): the runs the goals are read from
RUNS: list[tuple[str, list[str]]] = [
    ("ingest_1", ["ingest.py", "--receipts", "20000", "--chargers", "200", "--nodes", "1"]),
    ("ingest_4", ["ingest.py", "--receipts", "20000", "--chargers", "200", "--nodes", "4", "--profile", "{tmp}"]),
    ("ingest_4_paced", ["ingest.py", "--receipts", "20000", "--chargers", "200", "--nodes", "4", "--rate", "4000"]),
    ("balance_queries", ["balance_queries.py", "--nodes", "4", "--rate", "1000"]),
    ("phone_verify", ["phone_verify.py"]),
    ("firmware_sign", ["firmware_sign.py"]),
    ("firmware_heap", ["firmware_heap.py"]),
    ("peer_link", ["peer_link.py"]),
    ("state_map", ["state_map.py"]),
    ("history_memory", ["history_memory.py"]),
    ("audit", ["audit.py", "--receipts", "50000"]),
]


def _get(results: dict, path: str):
    """results["run"]["key"]["sub"]... for "run.key.sub"; None where a part is missing."""
    node = results
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def goals(r: dict) -> list[tuple[str, str, object, bool | None]]:
    """(goal, how it is read, measured, met: True/False, None when not measured)."""
    def at_least(v, goal):
        return None if v is None else v >= goal

    def at_most(v, goal):
        return None if v is None else v <= goal

    verify = _get(r, "ingest_4.verify_per_s_one_core")
    limit = None if verify is None else round(2 * verify / 4)
    read_p99 = _get(r, "balance_queries.under_ingest.p99_ms")
    rows = [
        ("4 bureaus commit >= 5,000 receipts/s (burst)",
         "committed/s" + ("" if verify is None else f"; verify limit 2 cores x {verify} / 4 = {limit}"),
         _get(r, "ingest_4.committed_per_s"), at_least(_get(r, "ingest_4.committed_per_s"), 5000)),
        ("p99 publish-to-ack <= 1,000 ms paced at 4,000/s", "p99 ms (committed/s in brackets)",
         _fmt_pair(_get(r, "ingest_4_paced.p99_ms"), _get(r, "ingest_4_paced.committed_per_s")),
         at_most(_get(r, "ingest_4_paced.p99_ms"), 1000)),
        ("no receipt lost in the bursts", "lost (1 node, 4 nodes, paced)",
         _fmt_list([_get(r, f"{k}.lost") for k in ("ingest_1", "ingest_4", "ingest_4_paced")]),
         _all_zero([_get(r, f"{k}.lost") for k in ("ingest_1", "ingest_4", "ingest_4_paced")])),
        ("audit on every core >= 80% of cores x verify rate",
         "ratio, audit of a 50,000-receipt chain on one process per core",
         _get(r, "audit.one_per_core.ratio_to_jobs_x_verify"),
         at_least(_get(r, "audit.one_per_core.ratio_to_jobs_x_verify"), 0.8)),
        ("balance queries >= 3,000/s under 1,000 receipts/s", "queries/s (receipts/s acked meanwhile in brackets)",
         _fmt_pair(_get(r, "balance_queries.under_ingest.queries_per_s"),
                   _get(r, "balance_queries.under_ingest.ingest_per_s")),
         at_least(_get(r, "balance_queries.under_ingest.queries_per_s"), 3000)),
        ("balance query p99 <= 20 ms under the same load", "p99 ms (the queries alone in brackets)",
         None if read_p99 is None else f"{read_p99} ({_get(r, 'balance_queries.alone.p99_ms')} ms)",
         at_most(read_p99, 20)),
        ("node RSS 10k -> 1M receipts within 10%", "growth",
         _get(r, "history_memory.rss_growth_vs_10k"), at_most(_get(r, "history_memory.rss_growth_vs_10k"), 0.10)),
        ("whole firmware in <= 64 KB of heap", "KB (smallest heap less the port's fakes)",
         _get(r, "firmware_heap.app.firmware_min_kb"), at_most(_get(r, "firmware_heap.app.firmware_min_kb"), 64)),
        ("charger signing >= 5x the double-and-add signer", "speedup (MicroPython)",
         _get(r, "firmware_sign.speedup"), at_least(_get(r, "firmware_sign.speedup"), 5)),
    ]
    return rows


def _fmt_pair(a, b):
    return None if a is None else f"{a} ({b}/s)"


def _fmt_list(values):
    return None if all(v is None for v in values) else ", ".join("-" if v is None else str(v) for v in values)


def _all_zero(values):
    present = [v for v in values if v is not None]
    return None if not present else all(v == 0 for v in present)


def run_one(name: str, args: list[str], tmp: Path) -> tuple[dict | None, float]:
    argv = [sys.executable, str(HERE / args[0]), *(a.replace("{tmp}", str(tmp / name)) for a in args[1:])]
    print(f"\n== {name}: {' '.join(args)}", flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, bufsize=1, cwd=HERE.parent)
    last_json = None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.startswith("{"):
            try:
                last_json = json.loads(line)
            except ValueError:
                pass  # a line of output that only starts like JSON
    proc.wait()
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        print(f"== {name} failed (exit {proc.returncode}) after {seconds:.0f} s", flush=True)
        return None, seconds
    return last_json, seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", metavar="NAME", help="run only these: " + ", ".join(n for n, _ in RUNS))
    args = ap.parse_args(argv)
    runs = [(n, a) for n, a in RUNS if not args.only or n in args.only]
    if args.only and len(runs) != len(args.only):
        unknown = sorted(set(args.only) - {n for n, _ in RUNS})
        print(f"bench: no benchmark named {', '.join(unknown)}; known: {', '.join(n for n, _ in RUNS)}",
              file=sys.stderr)
        return 2
    results: dict[str, dict] = {}
    failed = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for name, a in runs:
            out, seconds = run_one(name, a, Path(tmp))
            if out is None:
                failed.append(name)
            else:
                results[name] = out
            print(f"== {name}: {seconds:.0f} s", flush=True)
    rows = goals(results)
    print("\nGoals, this run:")
    width = max(len(g) for g, *_ in rows)
    for goal, how, measured, met in rows:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[met]
        print(f"  {goal:<{width}}  {verdict:<12}  {'-' if measured is None else measured}  ({how})")
    if failed:
        print(f"benchmarks that did not run to the end: {', '.join(failed)}")
    print(json.dumps({"bench": "all", "goals": [
        {"goal": g, "measured": m, "met": ok} for g, _, m, ok in rows], "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
