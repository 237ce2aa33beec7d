"""Ingest benchmark: receipts/s end to end (MQTT publish -> verified -> committed -> ack) and
publish->ack latency, beside the PyNaCl signature-verification rate measured in the same run.

Prints a summary and, last, one JSON object. Figures are ratios within one run; the machine
is shared, so absolute numbers move between runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey, VerifyKey

from bureau.ledger.audit import audit_chain
from bureau.ledger.genesis import Genesis
from bureau.ledger.tariff import Tariff
from bureau.storage import Repository
from bureau.receipts.codec import Receipt, seal, signed_message
from bureau.tools.httpclient import shared_client
from bureau.tools.network import DEFAULT_TARIFF
from bureau.tools.sessiontime import recent
from bureau.tools.stack import Stack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_profile import Profile  # noqa: E402


def make_receipts(n: int, chargers: int) -> tuple[list[tuple[str, int, bytes]], dict[str, SigningKey]]:
    tariff = Tariff.from_doc(DEFAULT_TARIFF)
    start = recent(1_793_487_600)  # a recent day's 07:00 local
    keys = {f"BENCH-{i:04d}": SigningKey.generate() for i in range(chargers)}
    base = Receipt(charger_id="", seq=1, session_id=bytes(16), auth_method=1, id_token="04AA", wallet_id="W-BENCH",
                   authorized_fen=10**6, auth_ref="bench", start_time=start, end_time=start + 7200,
                   time_flags=3, meter_serial="SDM-BENCH", meter_start_wh=1000, meter_end_wh=8000, meter_status=0,
                   stop_reason="L", tariff_id="GD-2026-A", tariff_version=1, periods=((2, 3000), (3, 4000)),
                   amount_fen=0, firmware_version="fw-1.0.0")
    base = replace(base, amount_fen=tariff.amount_fen(base.periods))
    out = []
    ids = list(keys)
    for i in range(n):
        cid = ids[i % chargers]
        seq = i // chargers + 1
        # 07:00-09:00 local, valley then flat; each session's meter carries on from the last
        r = replace(base, charger_id=cid, seq=seq, session_id=i.to_bytes(16, "big"),
                    meter_start_wh=seq * base.energy_wh, meter_end_wh=(seq + 1) * base.energy_wh)
        out.append((cid, seq, seal(r, keys[cid])))
    return out, keys


def fleet_clients(stack: Stack, replies: queue.Queue) -> tuple[mqtt.Client, mqtt.Client]:
    """The bench speaks for all its chargers: two fleet logins (one per connection; a client id
    is its user name), one subscribed to every charger's replies (put on `replies` as (time,
    payload)), one publishing their receipts. Both loops are started."""
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub")
    sub.username_pw_set(*stack.broker_login("bench-sub", role="fleet"))
    sub.on_message = lambda c, u, m: replies.put((time.perf_counter(), m.payload))
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", stack.broker.port)
    sub.loop_start()
    sub.subscribe("ev/v1/charger/+/reply", qos=1)
    subscribed.wait(5)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
    pub.username_pw_set(*stack.broker_login("bench-pub", role="fleet"))
    pub.max_inflight_messages_set(0)  # (a limit makes paho rescan its in-flight messages on every PUBACK)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", stack.broker.port)
    pub.loop_start()
    return sub, pub


def verify_rate(receipts: list[tuple[str, int, bytes]], keys: dict[str, SigningKey], seconds: float = 2.0) -> float:
    vks = {c: VerifyKey(k.verify_key.encode()) for c, k in keys.items()}
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for cid, _, env in receipts[:2000]:
            vks[cid].verify(signed_message(env[:-64]), env[-64:])
        done += min(2000, len(receipts))
    return done / (time.perf_counter() - start)


QUIET_S = 60  # the wait for answers ends after this long without one
DROP_LINE = re.compile(r"Outgoing messages are being dropped for client (\S+?)\.?$", re.M)


def broker_drops(log_text: str) -> list[str]:
    """The clients mosquitto logged dropping messages for (a full queue; logged at notice, which
    the project's brokers log): a receipt or an ack lost there never reaches its reader."""
    return sorted(set(DROP_LINE.findall(log_text)))


def nodes_received(stack: Stack) -> int:
    """Receipts the nodes' ingest links took from the broker (bureau_received_total, summed)."""
    total = 0
    for i in range(len(stack.nodes)):
        for line in stack.operator_get("/metrics", i).text.splitlines():
            if line.startswith("bureau_received_total "):
                total += int(float(line.split()[1]))
    return total


def run(n: int, chargers: int, nodes: int, rate: int, profile_dir: Path | None = None) -> dict:
    receipts, keys = make_receipts(n, chargers)
    cores = os.cpu_count() or 1
    verify_per_s = verify_rate(receipts, keys)
    with tempfile.TemporaryDirectory(prefix="evbench-") as tmp:
        stack = Stack(Path(tmp), nodes_count=nodes).start()
        try:
            actions = [("enroll_charger", {"charger_id": c, "public_key": k.verify_key.encode().hex()}) for c, k in keys.items()]
            actions += [("open_wallet", {"wallet_id": "W-BENCH", "public_key": SigningKey.generate().verify_key.encode().hex()}),
                        ("top_up", {"wallet_id": "W-BENCH", "amount_fen": 10**10, "reference": "bench"})]
            stack.operator(actions)
            acks: queue.Queue = queue.Queue()
            sub, pub = fleet_clients(stack, acks)
            ids = [hashlib.sha256(env).hexdigest() for _, _, env in receipts]
            sent: dict[str, float] = {}
            node_names = [f"node-{i + 1}" for i in range(nodes)]
            profile = None if profile_dir is None else Profile(
                profile_dir, {**{name: node.proc.pid for name, node in zip(node_names, stack.nodes)},
                              "bench": os.getpid()})
            t0 = time.perf_counter()
            for i, (cid, seq, env) in enumerate(receipts):
                if rate:
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                sent[ids[i]] = time.perf_counter()
                pub.publish(f"ev/v1/charger/{cid}/receipt", env, qos=1)
            t_published = time.perf_counter()
            latencies: list[float] = []
            rejects: dict[str, int] = {}
            last = t0
            # A loaded stack commits slowly, not never: wait while answers keep coming, and give
            # up only after QUIET_S without any (what is missing then is lost, not late).
            quiet_until = time.monotonic() + QUIET_S
            while len(latencies) + sum(rejects.values()) < n and time.monotonic() < quiet_until:
                try:
                    t, payload = acks.get(timeout=1)
                except queue.Empty:
                    continue
                quiet_until = time.monotonic() + QUIET_S
                msg = json.loads(payload)
                if msg["type"] == "ack" and msg["receipt"] in sent:
                    latencies.append(t - sent.pop(msg["receipt"]))
                    last = t
                elif msg["type"] == "reject":
                    rejects[msg["reason"]] = rejects.get(msg["reason"], 0) + 1
            if profile is not None:
                profile.stop()
            sub.loop_stop()
            pub.loop_stop()
            received_by_nodes = nodes_received(stack)
            dropped_for = broker_drops((stack.broker.workdir / "mosquitto.log").read_text(errors="replace"))
            heights = [shared_client().get(node.url + "/v1/chain/head", timeout=5).json()["height"] for node in stack.nodes]
        finally:
            stack.stop()
        # Audit: full re-verification of one node's stored chain (certificates, Merkle roots,
        # every receipt signature, state replay) against the same verification limit, in one
        # process and on one worker process per core.
        repo = Repository(f"sqlite:///{stack.nodes[0].data_dir / 'ledger.db'}")
        genesis = Genesis.load(stack.genesis_path)
        a0 = time.perf_counter()
        report = audit_chain(genesis, repo)
        audit_s = time.perf_counter() - a0
        a0 = time.perf_counter()
        parallel = audit_chain(genesis, repo, jobs=cores)
        parallel_s = time.perf_counter() - a0
        repo.close()
    latencies.sort()

    def pct(q: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) if latencies else None

    committed_per_s = len(latencies) / (last - t0) if latencies else 0.0
    cpu = {} if profile is None else {"cpu_ms_per_1000_nodes": profile.breakdown(node_names, len(latencies)),
                                      "cpu_ms_per_1000_bench": profile.breakdown(["bench"], len(latencies))}
    return {**cpu, "bench": "ingest", "nodes": nodes, "receipts": n, "chargers": chargers, "committed": len(latencies),
            "rejected": rejects, "lost": n - len(latencies) - sum(rejects.values()),
            "received_by_nodes": received_by_nodes, "broker_dropped_for": dropped_for,
            "publish_per_s": round(n / (t_published - t0)), "committed_per_s": round(committed_per_s),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0),
            "verify_per_s_one_core": round(verify_per_s),
            "ratio_to_verify_limit": round(committed_per_s / verify_per_s, 3), "heights": heights,
            "audit_chain_valid": report["chain_valid"], "audit_receipts_per_s": round(report["receipts"] / audit_s),
            "audit_ratio_to_verify_limit": round(report["receipts"] / audit_s / verify_per_s, 3),
            "cores": cores, "parallel_audit_chain_valid": parallel["chain_valid"] and parallel == report,
            "parallel_audit_receipts_per_s": round(parallel["receipts"] / parallel_s),
            "parallel_audit_ratio_to_cores_verify_limit": round(parallel["receipts"] / parallel_s
                                                                / (cores * verify_per_s), 3)}



def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--receipts", type=int, default=20000)
    p.add_argument("--chargers", type=int, default=200)
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--rate", type=int, default=0, help="publish rate per second (0 = as fast as possible)")
    p.add_argument("--profile", type=Path, help="sample the nodes and the bench with py-spy into this folder and "
                                                "report CPU-ms per 1,000 committed receipts by component")
    args = p.parse_args()
    result = run(args.receipts, args.chargers, args.nodes, args.rate, args.profile)
    print(f"ingest, {result['nodes']} node(s): {result['committed']}/{result['receipts']} receipts committed and acked, "
          f"{result['committed_per_s']}/s end to end (publisher {result['publish_per_s']}/s); "
          f"publish->ack p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; "
          f"PyNaCl verify limit {result['verify_per_s_one_core']}/s on one core "
          f"(ratio {result['ratio_to_verify_limit']}); audit re-verified the chain at "
          f"{result['audit_receipts_per_s']} receipts/s (ratio {result['audit_ratio_to_verify_limit']}, "
          f"valid {result['audit_chain_valid']}), on {result['cores']} processes at "
          f"{result['parallel_audit_receipts_per_s']} receipts/s (ratio to {result['cores']} x the limit "
          f"{result['parallel_audit_ratio_to_cores_verify_limit']}, valid {result['parallel_audit_chain_valid']})")
    for who in ("nodes", "bench"):
        parts = result.get(f"cpu_ms_per_1000_{who}")
        if parts:
            print(f"CPU-ms per 1,000 committed receipts, {who} ({parts['total']} in all): "
                  + "; ".join(f"{c} {ms}" for c, ms in parts.items() if c != "total"))
    if result["lost"]:
        print(f"LOST {result['lost']} receipts (neither acked nor rejected): the nodes took "
              f"{result['received_by_nodes']} of {result['receipts']} from the broker; "
              + (f"the broker logged dropping messages for {', '.join(result['broker_dropped_for'])}"
                 if result["broker_dropped_for"] else "the broker logged no drops")
              + f"; no answer came in the last {QUIET_S} s")
    print(json.dumps(result))
    return 0 if result["lost"] == 0 and result["audit_chain_valid"] and result["parallel_audit_chain_valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
