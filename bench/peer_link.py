"""Peer link benchmark: relayed transaction batches over one logged-in link between two
in-process transports on loopback, in batches/s, transactions/s and MB/s of payload.

Prints one JSON object. The machine is shared, so compare figures taken in the same minute.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

from nacl.signing import SigningKey

from bureau.ledger.genesis import Genesis
from bureau.peers.gossip import MAX_BATCH_TXS, encode_batch
from bureau.peers.handshake import CH_TXS
from bureau.peers.transport import PeerTransport
from bureau.tools.mosquitto import free_port


def _genesis(keys: list[SigningKey], ports: list[int]) -> Genesis:
    return Genesis.from_doc({
        "v": 1, "chain_id": "bench-chain", "genesis_time_ms": 0,
        "validators": [{"id": f"n{i}", "public_key": k.verify_key.encode().hex(), "power": 1,
                        "address": f"127.0.0.1:{ports[i]}"} for i, k in enumerate(keys)],
        "operators": [{"id": "op", "public_key": SigningKey.generate().verify_key.encode().hex()}]})


def run(batches: int, txs_per_batch: int, tx_bytes: int, in_flight: int) -> dict:
    keys = [SigningKey.generate() for _ in range(2)]
    ports = [free_port() for _ in range(2)]
    genesis = _genesis(keys, ports)
    payload = encode_batch([os.urandom(tx_bytes) for _ in range(txs_per_batch)])
    received = threading.Semaphore(0)
    sender = PeerTransport(genesis, "n0", keys[0], f"127.0.0.1:{ports[0]}", lambda p, c, d: None)
    receiver = PeerTransport(genesis, "n1", keys[1], f"127.0.0.1:{ports[1]}",
                             lambda p, c, d: received.release() if c == CH_TXS and len(d) == len(payload) else None)
    receiver.start()
    sender.start()
    try:
        deadline = time.monotonic() + 10
        while "n1" not in sender.connected_peers():
            if time.monotonic() > deadline:
                raise RuntimeError("the link did not come up")
            time.sleep(0.01)
        start = time.perf_counter()
        sent = done = 0
        while done < batches:
            while sent < batches and sent - done < in_flight:
                if not sender.send("n1", CH_TXS, payload):
                    raise RuntimeError("a batch was dropped")
                sent += 1
            if not received.acquire(timeout=30):
                raise RuntimeError("a batch never arrived")
            done += 1
        elapsed = time.perf_counter() - start
    finally:
        sender.stop()
        receiver.stop()
    return {"batches": batches, "txs_per_batch": txs_per_batch, "tx_bytes": tx_bytes,
            "batch_bytes": len(payload), "seconds": round(elapsed, 3),
            "batches_per_s": round(batches / elapsed, 1), "txs_per_s": round(batches * txs_per_batch / elapsed),
            "payload_mb_per_s": round(batches * len(payload) / elapsed / 1e6, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--txs", type=int, default=2000, help=f"transactions per batch (at most {MAX_BATCH_TXS})")
    ap.add_argument("--tx-bytes", type=int, default=300)
    ap.add_argument("--in-flight", type=int, default=8, help="batches sent ahead of the last one received")
    args = ap.parse_args()
    print(json.dumps(run(args.batches, args.txs, args.tx_bytes, args.in_flight)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
