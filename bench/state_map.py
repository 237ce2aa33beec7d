"""State map benchmark (docs/state.md), in process: the map's cost per committed receipt on a map
of `--entities` records, the rebuild at start, and the proof a phone downloads at 10k/100k/1M
wallets (sibling hashes and JSON bytes).

A committed receipt changes two records (its wallet and its meter's mark); a block updates each
changed record once. Proof sizes at the sizes built here are measured on the map; at the larger
sizes they are computed from the same rule on sorted random paths (a key's proof has one sibling
per subtree on its path holding two leaves or more), which the run checks against the map.
Prints a summary and, last, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from bisect import bisect_left
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from bureau.ledger import records  # noqa: E402
from bureau.ledger.statemap import StateMap, key_path  # noqa: E402

KEY = bytes(range(32))


def wallet_key(i: int) -> str:
    return f"w/W-{i:07d}"


def build(entities: int) -> tuple[StateMap, float]:
    """A map of half wallets, half meter marks; and the seconds it took (the rebuild at start)."""
    content = {wallet_key(i): records.wallet(10_000 + i, KEY) for i in range(entities // 2)}
    content.update({f"m/C-{i // 4:06d}/SDM-{i % 4}": records.meter(i, 1000 * i, 1000 * i + 7000)
                    for i in range(entities - entities // 2)})
    t0 = time.perf_counter()
    m = StateMap().update(content)
    return m, time.perf_counter() - t0


def per_receipt_us(m: StateMap, entities: int, blocks: int, per_block: int, rnd: random.Random) -> float:
    """Microseconds of record building and map update per committed receipt."""
    wallets, meters = entities // 2, entities - entities // 2
    spent = 0.0
    for b in range(blocks):
        picks = [(rnd.randrange(wallets), rnd.randrange(meters)) for _ in range(per_block)]
        t0 = time.perf_counter()
        dirty = {}
        for w, c in picks:
            dirty[wallet_key(w)] = records.wallet(rnd.randrange(10**6), KEY)
            dirty[f"m/C-{c // 4:06d}/SDM-{c % 4}"] = records.meter(b, 1000 * b, 1000 * b + 7000)
        m = m.update(dirty)
        spent += time.perf_counter() - t0
    return spent / (blocks * per_block) * 1e6


def proof_json_bytes(key: str, value: str | None, siblings: int, other: bool) -> int:
    proof = {"v": 1, "key": key, "value": value, "siblings": ["ab" * 32] * siblings,
             "other": {"path": "ab" * 32, "value_hash": "ab" * 32} if other else None}
    return len(json.dumps(proof, separators=(",", ":")).encode())


def computed_siblings(paths: list[int], probe: int) -> int:
    """Siblings in the proof of `probe` (in sorted `paths` or not), by the rule alone: the depth of
    the first subtree on its path holding no other leaf (present) or at most one leaf (absent)."""
    i = bisect_left(paths, probe)
    present = i < len(paths) and paths[i] == probe
    after = i + 1 if present else i
    # the leaves sharing the longest prefixes with the probe are the nearest two on either side
    near = [paths[j] for j in (i - 2, i - 1, after, after + 1) if 0 <= j < len(paths)]
    shared = sorted((256 - (p ^ probe).bit_length() for p in near), reverse=True)
    if present:
        return shared[0] + 1 if shared else 0
    return shared[1] + 1 if len(shared) > 1 else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--blocks", type=int, default=100)
    ap.add_argument("--per-block", type=int, default=200, help="receipts per block")
    ap.add_argument("--probes", type=int, default=2000)
    args = ap.parse_args()
    rnd = random.Random(1)

    m, build_s = build(args.entities)
    us = per_receipt_us(m, args.entities, args.blocks, args.per_block, rnd)
    value = records.wallet(123_456, KEY)

    sizes = {}
    for wallets in (10_000, 100_000, 1_000_000):
        paths = sorted(int.from_bytes(key_path(wallet_key(i)), "big") for i in range(wallets))
        probes = [rnd.randrange(wallets) for _ in range(args.probes)]
        present = [computed_siblings(paths, int.from_bytes(key_path(wallet_key(i)), "big")) for i in probes]
        absent = [computed_siblings(paths, int.from_bytes(key_path(f"w/X-{i}"), "big")) for i in range(args.probes)]
        if wallets <= args.entities:  # the rule against the real map
            real = StateMap().update({wallet_key(i): value for i in range(wallets)})
            assert present == [len(real.prove(wallet_key(i))["siblings"]) for i in probes]
            assert absent == [len(real.prove(f"w/X-{i}")["siblings"]) for i in range(args.probes)]
        sizes[wallets] = {
            "hashes_mean": round(statistics.mean(present), 2), "hashes_max": max(present),
            "bytes_mean": round(statistics.mean(proof_json_bytes(wallet_key(0), value, n, False) for n in present)),
            "bytes_max": proof_json_bytes(wallet_key(0), value, max(present), False),
            "absent_hashes_mean": round(statistics.mean(absent), 2),
        }
        del paths

    print(f"map of {args.entities} records: built in {build_s:.2f} s (the rebuild at start)")
    print(f"{us:.1f} us of record building and map update per committed receipt "
          f"({args.blocks} blocks of {args.per_block} receipts, 2 records each)")
    for wallets, s in sizes.items():
        print(f"{wallets:>9} wallets: proof of w/<id> {s['hashes_mean']} hashes mean, {s['hashes_max']} max, "
              f"{s['bytes_mean']} JSON bytes mean, {s['bytes_max']} max; absent key {s['absent_hashes_mean']} hashes")
    print(json.dumps({"entities": args.entities, "build_s": round(build_s, 2), "us_per_receipt": round(us, 1),
                      "proof": sizes}))


if __name__ == "__main__":
    main()
