"""Memory and disk against history: a node's chain (bureau.chain.Chain, its state and its storage,
the objects a node process holds) commits blocks of real signed receipts from a fixed fleet of
chargers and wallets; RSS is read after 10,000 committed receipts and at each checkpoint up to
`--receipts` (default 1,000,000). Goal: RSS after 1M within 10% of RSS after 10k,
since memory is O(chargers + wallets + open work), not O(receipts). Then a fresh process opens
each stored chain as a restarted node does (load_state, map rebuild, state-root check) and reports
its RSS, and bytes on disk per receipt are measured on SQLite (the run's database) and on
PostgreSQL (a throwaway cluster, `--pg-receipts` receipts).

Signatures are made here and handed to execution as checked at ingest (as a proposer does):
this measures what history costs in memory and on disk, not verification.
Prints a summary and, last, one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from nacl.signing import SigningKey  # noqa: E402

from bureau.chain import Chain  # noqa: E402
from bureau.ledger.certificate import Certificate, precommit_bytes  # noqa: E402
from bureau.ledger.genesis import Genesis  # noqa: E402
from bureau.ledger.tariff import Tariff  # noqa: E402
from bureau.ledger.tx import operator_action, receipt_tx, tx_hash  # noqa: E402
from bureau.receipts.codec import Receipt, seal  # noqa: E402
from bureau.storage import Repository  # noqa: E402
from bureau.tools.network import DEFAULT_TARIFF  # noqa: E402

PER_BLOCK = 500
T0_S = 1_790_000_000  # first block time (UTC s); sessions end before their block
SESSIONS_FROM_S = T0_S - 25 * 86400  # within the ledger's 30-day staleness bound of every block
SESSION_S = 600  # each charger's sessions 10 minutes apart in simulated time, one per block


def rss_kib(pid: str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Fleet:
    """A fixed set of chargers and wallets, and the validators and operator of their chain."""

    def __init__(self, chargers: int, wallets: int) -> None:
        self.validators = [SigningKey(hashlib.sha256(b"validator %d" % i).digest()) for i in range(4)]
        self.operator = SigningKey(hashlib.sha256(b"operator").digest())
        self.chargers = [(f"CH-{i:05d}", SigningKey(hashlib.sha256(b"charger %d" % i).digest())) for i in range(chargers)]
        self.wallets = [f"W-{i:05d}" for i in range(wallets)]
        self.tariff = Tariff.from_doc(DEFAULT_TARIFF)
        self.genesis = Genesis.from_doc({
            "v": 1, "chain_id": "ev-bench", "genesis_time_ms": (T0_S - 1) * 1000, "tariffs": [DEFAULT_TARIFF],
            "validators": [{"id": f"bureau-{i + 1}", "public_key": k.verify_key.encode().hex()}
                           for i, k in enumerate(self.validators)],
            "operators": [{"id": "operator-1", "public_key": self.operator.verify_key.encode().hex()}]})
        self.next_seq = 0  # receipts made so far; receipt n is charger n % C's seq n // C + 1

    def setup_txs(self, now_s: int) -> list[bytes]:
        def act(action, args):
            return operator_action(self.operator, "operator-1", action, args, now=now_s)
        txs = [act("enroll_charger", {"charger_id": c, "public_key": k.verify_key.encode().hex()})
               for c, k in self.chargers]
        txs += [act("open_wallet", {"wallet_id": w, "public_key": "ab" * 32}) for w in self.wallets]
        txs += [act("top_up", {"wallet_id": w, "amount_fen": 10**12, "reference": f"bench:{w}"}) for w in self.wallets]
        return txs

    def receipts(self, count: int) -> list[bytes]:
        out = []
        for n in range(self.next_seq, self.next_seq + count):
            cid, key = self.chargers[n % len(self.chargers)]
            seq = n // len(self.chargers) + 1
            end = SESSIONS_FROM_S + seq * SESSION_S
            wh = 500 + n % 7000
            periods = ((self.tariff.kind_at(end), wh),)
            out.append(seal(Receipt(
                charger_id=cid, seq=seq, session_id=hashlib.sha256(b"%d" % n).digest()[:16], auth_method=1,
                id_token="04AABBCC", wallet_id=self.wallets[n % len(self.wallets)], authorized_fen=10**6,
                auth_ref="bench", start_time=end - 300, end_time=end, time_flags=3, meter_serial=f"M-{cid}",
                meter_start_wh=seq * 10**5, meter_end_wh=seq * 10**5 + wh, meter_status=0, stop_reason="L",
                tariff_id="GD-2026-A", tariff_version=1, periods=periods,
                amount_fen=self.tariff.amount_fen(periods), firmware_version="fw-1.0.0"), key))
        self.next_seq += count
        return out


def commit(chain: Chain, fleet: Fleet, txs: list[bytes], time_ms: int, verified: set[bytes]) -> None:
    block, ex = chain.build(txs, "bureau-1", time_ms, verified)
    if ex.refused:
        raise SystemExit(f"bench block refused a transaction: {ex.refused[0].reason}: {ex.refused[0].detail}")
    message = precommit_bytes(fleet.genesis.chain_id, block.height, 0, block.hash)
    sigs = tuple((f"bureau-{i + 1}", k.sign(message).signature) for i, k in enumerate(fleet.validators[:3]))
    chain.commit(block, Certificate(block.height, 0, block.hash, sigs).encode(), ex)


def grow(url: str, fleet: Fleet, receipts: int, checkpoints: list[int], progress: bool) -> tuple[list[dict], float]:
    """Commit `receipts` receipts on a new chain at `url`; RSS at each checkpoint."""
    chain = Chain(fleet.genesis, Repository(url))
    commit(chain, fleet, fleet.setup_txs(T0_S), T0_S * 1000, set())
    points, done, t0 = [], 0, time.perf_counter()
    time_ms = T0_S * 1000
    while done < receipts:
        envelopes = fleet.receipts(min(PER_BLOCK, receipts - done))
        txs = [receipt_tx(e) for e in envelopes]
        time_ms += 1000
        commit(chain, fleet, txs, time_ms, {tx_hash(tx) for tx in txs})
        done += len(txs)
        if done in checkpoints:
            gc.collect()
            points.append({"receipts": done, "rss_kib": rss_kib(), "seconds": round(time.perf_counter() - t0, 1)})
            if progress:
                print(f"  {done:>9,} receipts  RSS {points[-1]['rss_kib'] / 1024:7.1f} MiB  "
                      f"{points[-1]['seconds']:7.1f} s", file=sys.stderr)
    chain.repo.close()
    return points, time.perf_counter() - t0


def reopened_rss_kib(url: str, fleet_args: list[str]) -> int:
    """RSS of a fresh process that opens the stored chain as a restarting node does."""
    code = ("import sys; sys.argv = [''] + sys.argv[1:]; sys.path.insert(0, 'bench'); import history_memory as h; "
            "h.reopen_main()")
    out = subprocess.run([sys.executable, "-c", code, url, *fleet_args], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=1800)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        cause = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "no output")
        raise SystemExit(f"reopening {url} failed: {cause}")
    return int(out.stdout.strip())


def reopen_main() -> None:
    url, chargers, wallets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    chain = Chain(Fleet(chargers, wallets).genesis, Repository(url, create=False))
    assert chain.state.state_root  # the rebuilt map matched the head's root, or Chain refused to open
    gc.collect()
    print(rss_kib())


def sqlite_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def pg_bytes(url: str) -> int:
    import sqlalchemy as sa
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        conn.execute(sa.text("CHECKPOINT"))
        size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
    engine.dispose()
    return size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--receipts", type=int, default=1_000_000)
    ap.add_argument("--pg-receipts", type=int, default=100_000, help="0 skips PostgreSQL")
    ap.add_argument("--chargers", type=int, default=2_000)
    ap.add_argument("--wallets", type=int, default=1_000)
    args = ap.parse_args()
    if args.receipts < 20_000 or args.receipts % PER_BLOCK:
        ap.error(f"--receipts must be at least 20,000 and a multiple of {PER_BLOCK}")
    checkpoints = sorted({10_000, *(c for c in (100_000, 300_000) if c < args.receipts), args.receipts})
    fleet_args = [str(args.chargers), str(args.wallets)]
    result: dict = {"chargers": args.chargers, "wallets": args.wallets, "per_block": PER_BLOCK}
    with tempfile.TemporaryDirectory(prefix="history-bench-") as tmp:
        small, big = Path(tmp) / "small.db", Path(tmp) / "big.db"
        print(f"history: {args.chargers:,} chargers, {args.wallets:,} wallets, blocks of {PER_BLOCK}", file=sys.stderr)
        points, seconds = grow(f"sqlite:///{big}", Fleet(args.chargers, args.wallets), args.receipts, checkpoints,
                               progress=True)
        first, last = points[0], points[-1]
        result["rss_in_run"] = points
        result["rss_growth_vs_10k"] = round(last["rss_kib"] / first["rss_kib"] - 1, 4)
        result["commit_receipts_per_s"] = round(args.receipts / seconds)
        grow(f"sqlite:///{small}", Fleet(args.chargers, args.wallets), 10_000, [10_000], progress=False)
        result["sqlite_bytes_per_receipt"] = round((sqlite_bytes(big) - sqlite_bytes(small)) / (args.receipts - 10_000))
        result["reopened_rss_kib"] = {"10k": reopened_rss_kib(f"sqlite:///{small}", fleet_args),
                                      f"{args.receipts // 1000}k": reopened_rss_kib(f"sqlite:///{big}", fleet_args)}
        if args.pg_receipts:
            from bureau.tools.postgres import PostgresCluster
            with PostgresCluster() as pg:  # (its own folder, which the server user can reach)
                sizes = {}
                for n in (10_000, args.pg_receipts):
                    url = pg.database(f"h{n}")
                    grow(url, Fleet(args.chargers, args.wallets), n, [n], progress=False)
                    sizes[n] = pg_bytes(url)
                result["postgres_bytes_per_receipt"] = round((sizes[args.pg_receipts] - sizes[10_000])
                                                             / (args.pg_receipts - 10_000))
    ok = result["rss_growth_vs_10k"] <= 0.10
    print(f"RSS after {first['receipts']:,} receipts: {first['rss_kib'] / 1024:.1f} MiB; after {last['receipts']:,}: "
          f"{last['rss_kib'] / 1024:.1f} MiB ({result['rss_growth_vs_10k']:+.1%}; goal within 10%: "
          f"{'met' if ok else 'NOT met'})")
    print(f"a restarted node's chain on {first['receipts']:,} / {last['receipts']:,} receipts: "
          + " / ".join(f"{v / 1024:.1f} MiB" for v in result["reopened_rss_kib"].values()))
    print(f"bytes on disk per receipt: SQLite {result['sqlite_bytes_per_receipt']}"
          + (f", PostgreSQL {result['postgres_bytes_per_receipt']}" if args.pg_receipts else ""))
    print(f"committed {result['commit_receipts_per_s']:,} receipts/s in process (signatures made here, not verified)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
