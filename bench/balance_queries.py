"""Driver balance queries under ingest load: authenticated `GET /v1/wallets/{id}` per second and
their latency at one bureau while four bureaus ingest receipts at a steady rate.

The query load runs in its own process, so it does not share the publisher's interpreter: it
signs every request beforehand (a fresh nonce each, as a phone does; the node's replay guard
sees each once) and sends them over keep-alive HTTP/1.1 connections, several in flight. Goal:
>= 3,000 queries/s with p99 <= 20 ms while 1,000 receipts/s are ingested.

The same stack first answers the queries alone (their HTTP cost), then while it ingests (the
cost of sharing the node's interpreter and the machine's cores with ingest). Prints a summary
and, last, one JSON object. Figures are ratios within one run; the machine is shared, so
absolute numbers move between runs (the load average at the start and end says how much).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

from nacl.signing import SigningKey

from bureau.api.auth import authorization_header
from bureau.tools.stack import Stack

from cpu_profile import Profile
from ingest import fleet_clients, make_receipts

GOAL = {"queries_per_s": 3000, "p99_ms": 20, "ingest_per_s": 1000}


def _signed_requests(wallets: list[tuple[str, bytes]], node_id: str, host: str, count: int) -> list[bytes]:
    keys = [(w, SigningKey(seed)) for w, seed in wallets]
    out = []
    for i in range(count):
        wallet_id, key = keys[i % len(keys)]
        path = f"/v1/wallets/{wallet_id}"
        auth = authorization_header(key, wallet_id, "GET", path, node_id=node_id)
        out.append(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\r\n".encode())
    return out


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def _query_load(port: int, requests: list[bytes], seconds: float, concurrency: int) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_request = iter(requests)
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                request = next(next_request, None)
                if request is None:
                    return
                t = time.perf_counter()
                writer.write(request)
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - t)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    latencies.sort()

    def pct(q: float) -> float | None:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2) if latencies else None

    return {"queries": len(latencies), "queries_per_s": round(len(latencies) / elapsed), "statuses": statuses,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0), "seconds": round(elapsed, 1),
            "requests_presigned": len(requests)}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _query_process(args: tuple, go: mp.Queue, out: mp.Queue) -> None:
    port, node_id, wallets, seconds, concurrency, max_rate, windows = args
    per_window = int(seconds * max_rate)
    requests = _signed_requests(wallets, node_id, f"127.0.0.1:{port}", windows * per_window)
    out.put(("ready", None))
    for w in range(windows):
        go.get()  # once the CPU counters are read (and, under ingest, ingest is steady)
        out.put(("result", asyncio.run(_query_load(port, requests[w * per_window:(w + 1) * per_window],
                                                   seconds, concurrency))))


def _window(go: mp.Queue, out: mp.Queue, node_pid: int, query_pid: int, seconds: float,
            profile_dir: Path | None) -> dict:
    """One query window: its answers and latencies, and the CPU the answering bureau (with its
    share of any ingest) and the load generator used per answered query."""
    profile = None if profile_dir is None else Profile(profile_dir, {"node": node_pid})
    cpu = [_cpu_s(node_pid), _cpu_s(query_pid)]
    t0 = time.perf_counter()
    go.put("go")
    kind, result = out.get(timeout=seconds + 120)
    t1 = time.perf_counter()
    cpu = [_cpu_s(node_pid) - cpu[0], _cpu_s(query_pid) - cpu[1]]
    if profile is not None:
        profile.stop()
    answered = max(result["queries"], 1)
    result.update(window=(t0, t1), node_cpu_us_per_query=round(1e6 * cpu[0] / answered),
                  client_cpu_us_per_query=round(1e6 * cpu[1] / answered))
    if profile is not None:
        result["node_cpu_us_per_query_by_component"] = profile.breakdown(["node"], answered)
    return result


def run(nodes: int, wallets: int, rate: int, seconds: float, concurrency: int, max_rate: int,
        profile_dir: Path | None = None) -> dict:
    """Queries alone, then (with a rate) the same load while the bureaus ingest, on one stack."""
    n = int(rate * (seconds + 10))  # ingest runs before, during and after its query window
    receipts, keys = make_receipts(max(n, 1), 200)
    receipts = receipts[:n]
    phones = [(f"W-Q{i:04d}", SigningKey.generate()) for i in range(wallets)]
    windows = ["alone"] + (["under_ingest"] if rate else [])
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="evbench-") as tmp:
        stack = Stack(Path(tmp), nodes_count=nodes).start()
        try:
            actions = [("enroll_charger", {"charger_id": c, "public_key": k.verify_key.encode().hex()})
                       for c, k in keys.items()]
            actions += [("open_wallet", {"wallet_id": "W-BENCH",
                                         "public_key": SigningKey.generate().verify_key.encode().hex()}),
                        ("top_up", {"wallet_id": "W-BENCH", "amount_fen": 10**10, "reference": "bench"})]
            actions += [("open_wallet", {"wallet_id": w, "public_key": k.verify_key.encode().hex()}) for w, k in phones]
            stack.operator(actions)
            acks: queue.Queue = queue.Queue()
            sub, pub = fleet_clients(stack, acks)

            ctx = mp.get_context("spawn")
            go, out = ctx.Queue(), ctx.Queue()
            target = stack.nodes[0]
            query = ctx.Process(target=_query_process, args=((target.http_port, target.node_id,
                                                               [(w, k.encode()) for w, k in phones], seconds,
                                                               concurrency, max_rate, len(windows)), go, out))
            query.start()
            assert out.get(timeout=300)[0] == "ready"
            results = {}

            def measure(name: str) -> None:
                results[name] = _window(go, out, target.proc.pid, query.pid, seconds,
                                        None if profile_dir is None else profile_dir / name)

            measure("alone")

            def publish() -> None:
                t0 = time.perf_counter()
                for i, (cid, _, env) in enumerate(receipts):  # (none with --rate 0: queries alone)
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    pub.publish(f"ev/v1/charger/{cid}/receipt", env, qos=1)

            publisher = threading.Thread(target=publish, daemon=True)
            if rate:
                publisher.start()
                time.sleep(5)  # ingest reaches its steady state before the queries start
                measure("under_ingest")
                publisher.join(seconds + 60)
            query.join(30)
            acked = []
            deadline = time.monotonic() + 60
            while len(acked) < n and time.monotonic() < deadline:
                try:
                    acked.append(acks.get(timeout=1)[0])
                except queue.Empty:
                    continue
            sub.loop_stop()
            pub.loop_stop()
        finally:
            stack.stop()
    load.append(os.getloadavg()[0])
    if rate:
        w0, w1 = results["under_ingest"].pop("window")
        results["under_ingest"]["ingest_per_s"] = round(sum(1 for t in acked if w0 <= t <= w1) / (w1 - w0))
    results["alone"].pop("window")
    return {"bench": "balance_queries", "nodes": nodes, "wallets": wallets, "ingest_rate": rate,
            "concurrency": concurrency, "goal": GOAL, **results,
            "receipts_acked": len(acked), "receipts_sent": n,
            # the machine is shared: what else ran (1-minute load average at the start and the end)
            "load_average": load, "cores": os.cpu_count()}


def _line(name: str, r: dict) -> str:
    ingest = f", {r['ingest_per_s']} receipts/s acked (goal {GOAL['ingest_per_s']})" if "ingest_per_s" in r else ""
    return (f"{name}: {r['queries_per_s']} queries/s (goal >= {GOAL['queries_per_s']}), p50 {r['p50_ms']} ms, "
            f"p99 {r['p99_ms']} ms (goal <= {GOAL['p99_ms']}){ingest}; CPU per query: bureau "
            f"{r['node_cpu_us_per_query']} us, load generator {r['client_cpu_us_per_query']} us; answers {r['statuses']}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--wallets", type=int, default=500)
    p.add_argument("--rate", type=int, default=1000, help="receipts per second published during the second window "
                   "(0: the queries alone only)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each query window")
    p.add_argument("--concurrency", type=int, default=8, help="queries in flight")
    p.add_argument("--max-rate", type=int, default=6000, help="queries signed beforehand per second of window")
    p.add_argument("--profile", type=Path, help="sample the answering bureau with py-spy into this folder during "
                   "each query window; adds its CPU per query by component")
    args = p.parse_args()
    r = run(args.nodes, args.wallets, args.rate, args.seconds, args.concurrency, args.max_rate, args.profile)
    windows = [w for w in ("alone", "under_ingest") if w in r]
    print(f"balance queries at one of {r['nodes']} bureaus, {r['concurrency']} in flight, on {r['cores']} cores "
          f"(load average {r['load_average'][0]:.1f} at the start, {r['load_average'][1]:.1f} at the end)")
    for w in windows:
        print(_line(w.replace("_", " "), r[w]))
    print(f"{r['receipts_acked']}/{r['receipts_sent']} receipts acked")
    print(json.dumps(r))
    ok = all(r[w]["statuses"].get(200, 0) == r[w]["queries"] for w in windows)
    return 0 if ok and r["receipts_acked"] == r["receipts_sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
