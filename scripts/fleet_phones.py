"""Drivers' phones during the fleet simulation (scripts/fleet.py): signed balance, history and
bill-proof requests as the phone page makes them (bureau.api.auth's EV-Sig header, a fresh
nonce each), spread over the bureaus at a paced rate, in a process of their own.

Each query is one of: the balance with its state proof (checked against the genesis the way the
phone checks it: drivercli.check_state_answer), the history, or the proof of one of the bills
the history lists (checked for a sample of them: drivercli.check_receipt_proof, the charger's
signature, the Merkle path and the commit certificate). Latency is per HTTP request."""

from __future__ import annotations

import random
import time

import httpx
from nacl.signing import SigningKey

from bureau.api.auth import authorization_header
from bureau.cliparse import CommandError
from bureau.drivercli import check_receipt_proof, check_state_answer
from bureau.ledger.genesis import Genesis

KINDS = ("balance", "history", "proof")
HTTP_TIMEOUT_S = 10.0


class Phones:
    def __init__(self, nodes: list[tuple[str, str]], wallets: list[tuple[str, bytes]], genesis_doc: dict,
                 proof_sample: float, seed: int) -> None:
        """`nodes`: (node id, API URL); `wallets`: (wallet id, the phone's Ed25519 seed)."""
        self.nodes = nodes
        self.keys = [(w, SigningKey(s)) for w, s in wallets]
        self.genesis = Genesis.from_doc(genesis_doc)
        self.proof_sample = proof_sample
        self.rng = random.Random(f"{seed}:phones")
        self.http = {nid: httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S) for nid, url in nodes}
        self.bills: dict[str, list[tuple[str, int]]] = {}  # wallet -> (charger, seq) seen in its history
        self.latencies_ms: dict[str, list[float]] = {k: [] for k in KINDS}
        self.timeline: list[tuple[float, float]] = []  # (wall, ms) of every request
        self.statuses: dict[str, int] = {}
        self.verified = {"balance": 0, "proof": 0}
        self.failures: list[str] = []
        self.errors: list[str] = []
        self.queries = 0

    def _get(self, kind: str, node_id: str, wallet_id: str, key, path: str):
        auth = authorization_header(key, wallet_id, "GET", path, node_id=node_id)
        t = time.perf_counter()
        try:
            resp = self.http[node_id].get(path, headers={"Authorization": auth})
        except httpx.HTTPError as e:
            self.errors.append(f"{kind} at {node_id}: {type(e).__name__}: {e}"[:200])
            return None
        ms = 1000 * (time.perf_counter() - t)
        self.latencies_ms[kind].append(ms)
        self.timeline.append((time.monotonic(), ms))
        self.statuses[str(resp.status_code)] = self.statuses.get(str(resp.status_code), 0) + 1
        if resp.status_code != 200:
            self.errors.append(f"{kind} {path} at {node_id}: HTTP {resp.status_code} {resp.text[:120]}")
            return None
        return resp.json()

    def query(self) -> None:
        wallet_id, key = self.rng.choice(self.keys)
        node_id = self.rng.choice(self.nodes)[0]
        bills = self.bills.get(wallet_id)
        kind = self.rng.choice(KINDS if bills else KINDS[:2])
        self.queries += 1
        if kind == "balance":
            if self._get(kind, node_id, wallet_id, key, f"/v1/wallets/{wallet_id}") is None:
                return
            answer = self._get(kind, node_id, wallet_id, key, f"/v1/state/proof?key=w/{wallet_id}")
            if answer is not None:
                self._check("balance", lambda: check_state_answer(answer, self.genesis), wallet_id)
        elif kind == "history":
            body = self._get(kind, node_id, wallet_id, key, f"/v1/wallets/{wallet_id}/history?limit=20")
            if body is not None:
                seen = [(e["charger_id"], e["seq"]) for e in body["entries"] if e.get("charger_id")]
                if seen:
                    self.bills[wallet_id] = seen
        else:
            charger_id, seq = self.rng.choice(bills)
            proof = self._get(kind, node_id, wallet_id, key, f"/v1/receipts/{charger_id}/{seq}/proof")
            if proof is not None and self.rng.random() < self.proof_sample:
                self._check("proof", lambda: check_receipt_proof(proof, self.genesis), f"{charger_id}#{seq}")

    def _check(self, kind: str, check, what: str) -> None:
        try:
            check()
        except CommandError as e:
            self.failures.append(f"{kind} {what}: {e}"[:300])
            return
        self.verified[kind] += 1

    def run(self, rate: float, stop) -> dict:
        """Queries at `rate` per second until the event `stop` is set."""
        next_at = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if now < next_at:
                stop.wait(next_at - now)
                continue
            next_at = max(next_at + 1.0 / rate, now - 1.0)  # a stall is not caught up with a burst
            self.query()
        for client in self.http.values():
            client.close()
        return {"queries": self.queries, "latencies_ms": self.latencies_ms, "timeline": self.timeline,
                "statuses": self.statuses, "verified": self.verified, "failures": self.failures,
                "errors": self.errors[:10], "error_count": len(self.errors)}


def phones_main(args: tuple, out, stop) -> None:
    """Entry point of the phones' process (multiprocessing, spawn)."""
    nodes, wallets, genesis_doc, proof_sample, seed, rate = args
    out.put(Phones(nodes, wallets, genesis_doc, proof_sample, seed).run(rate, stop))
