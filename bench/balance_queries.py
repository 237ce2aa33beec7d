"""Driver balance queries under ingest load: authenticated `GET /v1/wallets/{id}` per second and
their latency at one bureau while four bureaus ingest receipts at a steady rate.

The query load runs in its own process, so it does not share the publisher's interpreter: it
signs every request beforehand (a fresh nonce each, as a phone does; the node's replay guard
sees each once) and sends them over keep-alive HTTP/1.1 connections, several in flight. Goal:
>= 3,000 queries/s with p99 <= 20 ms while 1,000 receipts/s are ingested.

Prints a summary and, last, one JSON object. Figures are ratios within one run; the machine is
shared, so absolute numbers move between runs.
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


def _query_process(args: tuple, out: mp.Queue, go) -> None:
    port, node_id, wallets, seconds, concurrency, max_rate = args
    requests = _signed_requests(wallets, node_id, f"127.0.0.1:{port}", int(seconds * max_rate))
    out.put(("ready", None))
    go.wait()  # once ingest is steady and the CPU counters are read
    out.put(("result", asyncio.run(_query_load(port, requests, seconds, concurrency))))


def run(nodes: int, wallets: int, rate: int, seconds: float, concurrency: int, max_rate: int,
        profile_dir: Path | None = None) -> dict:
    n = int(rate * (seconds + 10))  # ingest runs before, during and after the query window
    receipts, keys = make_receipts(max(n, 1), 200)
    receipts = receipts[:n]
    phones = [(f"W-Q{i:04d}", SigningKey.generate()) for i in range(wallets)]
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
            out, go = ctx.Queue(), ctx.Event()
            target = stack.nodes[0]
            query = ctx.Process(target=_query_process, args=((target.http_port, target.node_id,
                                                               [(w, k.encode()) for w, k in phones], seconds,
                                                               concurrency, max_rate), out, go))
            query.start()
            assert out.get(timeout=300)[0] == "ready"

            window: list[float] = []
            result: dict = {}

            def publish() -> None:
                t0 = time.perf_counter()
                for i, (cid, _, env) in enumerate(receipts):  # (none with --rate 0: queries alone)
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    pub.publish(f"ev/v1/charger/{cid}/receipt", env, qos=1)

            publisher = threading.Thread(target=publish, daemon=True)
            publisher.start()
            time.sleep(5)  # ingest reaches its steady state before the queries start
            window.append(time.perf_counter())
            profile = None if profile_dir is None else Profile(profile_dir, {"node": target.proc.pid})
            node_cpu = [_cpu_s(target.proc.pid), _cpu_s(query.pid)]
            go.set()
            kind, result = out.get(timeout=seconds + 120)
            node_cpu = [_cpu_s(target.proc.pid) - node_cpu[0], _cpu_s(query.pid) - node_cpu[1]]
            if profile is not None:
                profile.stop()
            window.append(time.perf_counter())
            query.join(30)
            publisher.join(seconds + 60)
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
    by_component = {} if profile is None else {
        "node_cpu_us_per_query_by_component": profile.breakdown(["node"], max(result["queries"], 1))}
    in_window = sum(1 for t in acked if window[0] <= t <= window[1])
    return {"bench": "balance_queries", "nodes": nodes, "wallets": wallets, "ingest_rate": rate,
            "receipts_acked": len(acked), "receipts_sent": n,
            "ingest_per_s_during_queries": round(in_window / (window[1] - window[0])), "concurrency": concurrency,
            **result,
            # CPU per answered query, of the bureau answering them (with its share of ingest) and of the load generator
            "node_cpu_us_per_query": round(1e6 * node_cpu[0] / max(result["queries"], 1)),
            "client_cpu_us_per_query": round(1e6 * node_cpu[1] / max(result["queries"], 1)), **by_component}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--wallets", type=int, default=500)
    p.add_argument("--rate", type=int, default=1000, help="receipts per second published during the run")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the query window")
    p.add_argument("--concurrency", type=int, default=8, help="queries in flight")
    p.add_argument("--max-rate", type=int, default=6000, help="queries signed beforehand per second of window")
    p.add_argument("--profile", type=Path, help="sample the answering bureau with py-spy into this folder during "
                   "the query window; adds its CPU per query by component")
    args = p.parse_args()
    r = run(args.nodes, args.wallets, args.rate, args.seconds, args.concurrency, args.max_rate, args.profile)
    ok = r["statuses"].get(200, 0) == r["queries"]
    print(f"balance queries at one of {r['nodes']} bureaus while they ingest {r['ingest_rate']} receipts/s "
          f"({r['ingest_per_s_during_queries']}/s acked during the window): {r['queries_per_s']} queries/s "
          f"(goal >= 3000), p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms (goal <= 20), {r['concurrency']} in flight; "
          f"CPU per query: bureau {r['node_cpu_us_per_query']} us, load generator {r['client_cpu_us_per_query']} us; "
          f"answers {r['statuses']}; {r['receipts_acked']}/{r['receipts_sent']} receipts acked")
    print(json.dumps(r))
    return 0 if ok and r["receipts_acked"] == r["receipts_sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
