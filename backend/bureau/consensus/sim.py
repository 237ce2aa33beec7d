"""Deterministic simulation of a cluster of bureau nodes running the real consensus core.

One seed = one run: n validators (plus a twin), a toy application, a seeded scheduler
(`random.Random(seed)` is the only source of randomness, simulated time the only clock) that
delays, reorders, duplicates, drops and corrupts messages, partitions the network and heals
it, crashes nodes (also in the middle of writing a Ready's records) and restarts them from what
they had made durable, and answers the core's propose/validate requests at once or (in some
seeds) a random while later, while one validator is Byzantine:

    twins       two copies of one validator, same key, running independently (equivocation)
    equivocate  a validator that attacks locks: fresh proposals instead of its valid value,
                different blocks and votes to different peers, its precommit to one peer only,
                votes for any block other than its lock
    invalid     a validator whose proposals are invalid blocks and which prevotes anything
    silent      a validator that never sends
    none        all validators correct

Checks: honest nodes never commit two different blocks at one height (safety), every
committed block is valid, every certificate verifies against the genesis validator set, no
correct validator ever signs two different things at one (height, round, step) (watched on
the wire), and after the faults heal all correct nodes reach the target height within a
bound (liveness). A failing seed replays exactly: `python -m bureau.consensus.sim --seeds 1
--start SEED --nodes N`.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import random
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from ..ledger import certificate
from .core import Config, Core, Timeouts
from .signing import SignatureCache
from .types import (
    NIL, Committed, DecodeError, LastSigned, Proposal, ProposeRequest, Step, SyncEntry, SyncResponse, Validator,
    ValidatorSet, Vote, decode_message, decode_record, encode_message, encode_record, proposal_sign_bytes,
    vote_sign_bytes,
)

CHAIN_ID = "sim-chain-1"
GENESIS_HASH = hashlib.sha256(b"sim-genesis").digest()
MODES = ("twins", "equivocate", "invalid", "silent", "none")

_BLOCK = struct.Struct(">4sQ32sHB")
_BLOCK_MAGIC = b"TOY1"

_DELIVER, _TICK, _CRASH, _RESTART, _ANSWER = 0, 1, 2, 3, 4


def sim_config() -> Config:
    return Config(
        chain_id=CHAIN_ID,
        timeouts=Timeouts(propose_ms=60, propose_delta_ms=20, prevote_ms=30, prevote_delta_ms=10,
                          precommit_ms=30, precommit_delta_ms=10),
        rebroadcast_ms=50, sync_grace_ms=150, sync_retry_ms=50, sync_batch=16, retain_commits=8, commit_delay_ms=5)


_KEYS: dict[int, list[SigningKey]] = {}


def validator_keys(n: int) -> list[SigningKey]:
    if n not in _KEYS:
        _KEYS[n] = [SigningKey(hashlib.sha256(b"sim-validator-%d" % i).digest()) for i in range(n)]
    return _KEYS[n]


def validator_set(n: int) -> ValidatorSet:
    return ValidatorSet(Validator(f"bureau-{i}", k.verify_key.encode()) for i, k in enumerate(validator_keys(n)))


# ---------------------------------------------------------------------------- toy application

def make_block(height: int, parent: bytes, proposer: int, valid: bool, payload: bytes) -> bytes:
    return _BLOCK.pack(_BLOCK_MAGIC, height, parent, proposer, 1 if valid else 0) + payload


def parse_block(block: bytes) -> tuple[int, bytes, int, int, bytes] | None:
    if len(block) < _BLOCK.size:
        return None
    magic, height, parent, proposer, marker = _BLOCK.unpack_from(block, 0)
    if magic != _BLOCK_MAGIC:
        return None
    return height, parent, proposer, marker, block[_BLOCK.size:]


def block_hash(block: bytes) -> bytes:
    return hashlib.sha256(block).digest()


class Disk:
    """What survives a crash: WAL records (height, bytes), the last-signed record, the chain."""

    __slots__ = ("wal", "last_signed", "chain")

    def __init__(self) -> None:
        self.wal: list[tuple[int, bytes]] = []
        self.last_signed: bytes | None = None
        self.chain: list[tuple[bytes, bytes]] = []


class ToyApp:
    """The shell's side of the chain. Blocks are bytes: magic, height, parent hash, proposer,
    valid marker, payload. Valid means the height is next, the parent is the last committed
    block, and the marker is 1."""

    def __init__(self, sim: "Simulation", proc: "Proc") -> None:
        self.sim, self.proc = sim, proc

    @property
    def head(self) -> bytes:
        chain = self.proc.disk.chain
        return block_hash(chain[-1][0]) if chain else GENESIS_HASH

    def propose(self, height: int) -> bytes:
        payload = self.sim.rng.getrandbits(64).to_bytes(8, "big") * self.sim.rng.randint(1, 4)
        return make_block(height, self.head, self.proc.vindex, self.proc.role != "invalid", payload)

    def validate(self, height: int, block: bytes) -> bool:
        parsed = parse_block(block)
        if parsed is None:
            return False
        if self.proc.role == "invalid":
            return True  # the Byzantine validator prevotes anything
        h, parent, _, marker, _ = parsed
        return h == height == len(self.proc.disk.chain) + 1 and parent == self.head and marker == 1

    def apply(self, c: Committed) -> None:
        self.proc.disk.chain.append((c.block, c.certificate))


# ---------------------------------------------------------------------------- processes

@dataclass
class Proc:
    pid: int
    vindex: int
    key: SigningKey
    role: str                      # honest | twin | equivocate | invalid | silent
    disk: Disk = field(default_factory=Disk)
    core: Any = None
    app: Any = None
    alive: bool = False
    clock_offset: int = 0
    tick_at: int | None = None
    dying_until: int | None = None  # set by a crash: die at the next Ready (torn write) or then
    restarts: int = 0

    @property
    def checked(self) -> bool:     # runs correct code end to end: its commits must be right
        return self.role in ("honest", "twin")


@dataclass
class Plan:
    mode: str
    byz: int | None
    fault_end: int
    drop_p: float
    dup_p: float
    corrupt_p: float
    delay: tuple[int, int]
    partitions: list[tuple[int, int, frozenset, frozenset]]  # start, end, one side, cut one-way links
    crashes: list[tuple[int, int, int, bool]]   # pid, at, restart_at, torn
    defer_p: float = 0.0                         # a propose/validate answer comes later


@dataclass
class SeedResult:
    seed: int
    nodes: int
    mode: str
    ok: bool
    violations: list[str]
    liveness_failure: str | None
    target: int
    min_height: int
    sim_ms: int
    heal_to_target_ms: int | None
    counts: dict
    digest: str


class Simulation:
    def __init__(self, seed: int, nodes: int = 4, heights: int = 10, byzantine: str | None = None,
                 core_cls: type = Core, liveness_bound_ms: int = 30_000, max_events: int = 3_000_000,
                 fault_window: tuple[int, int] = (150, 700), churn: float = 0.4, isolate: float = 0.5,
                 churn_ms: tuple[int, int] = (20, 80), link_cut: float = 0.15,
                 max_delays: tuple[int, ...] = (5, 20, 60), shared_verify_cache: bool = False) -> None:
        if nodes < 1:
            raise ValueError("need at least one node")
        self.seed, self.n, self.heights, self.core_cls = seed, nodes, heights, core_cls
        self.bound = liveness_bound_ms
        self.max_events = max_events
        self.fault_window, self.churn, self.isolate, self.churn_ms = fault_window, churn, isolate, churn_ms
        self.link_cut, self.max_delays = link_cut, max_delays
        self.shared_verify_cache = shared_verify_cache
        self.rng = random.Random(seed)
        self.cfg = sim_config()
        self.vs = validator_set(nodes)
        self.cache = SignatureCache()   # the checker's; node caches are per process unless shared
        self.now = 0
        self.seq = 0
        self.events: list = []
        self.counts = {"messages": 0, "delivered": 0, "dropped": 0, "duplicated": 0, "corrupted": 0,
                       "partitioned": 0, "decode_errors": 0, "crashes": 0, "torn_writes": 0, "restarts": 0,
                       "partitions": 0, "equivocations_sent": 0, "evidence": 0, "rejected": 0,
                       "sync_served_from_disk": 0, "commits": 0, "deferred_answers": 0}
        self.violations: list[str] = []
        self.canonical: dict[int, bytes] = {}
        self.cert_ok: dict[bytes, bool] = {}
        self.signed: dict[tuple, bytes] = {}
        self.byz_proposed: dict[tuple[int, int], dict[int, bytes]] = {}
        self.byz_favoured: dict[tuple[int, int], list[int]] = {}
        self.plan = self._make_plan(byzantine)
        self.procs = self._make_procs()
        self.digest = hashlib.sha256()

    # ------------------------------------------------------------------ setup

    def _make_plan(self, byzantine: str | None) -> Plan:
        rng = self.rng
        mode = byzantine or MODES[self.seed % len(MODES)]
        if mode not in MODES:
            raise ValueError(f"unknown Byzantine mode {mode!r}; one of {', '.join(MODES)}")
        byz = rng.randrange(self.n) if mode != "none" and self.n >= 4 else None
        if byz is None:
            mode = "none"
        fault_end = rng.randint(*self.fault_window)
        return Plan(mode=mode, byz=byz, fault_end=fault_end,
                    drop_p=rng.choice((0.0, 0.05, 0.15, 0.3)), dup_p=rng.choice((0.0, 0.05, 0.2)),
                    corrupt_p=rng.choice((0.0, 0.0, 0.01)), delay=(1, rng.choice(self.max_delays)),
                    partitions=[], crashes=[], defer_p=rng.choice((0.0, 0.0, 0.3)))

    def _make_procs(self) -> list[Proc]:
        keys = validator_keys(self.n)
        plan = self.plan
        procs = []
        for i in range(self.n):
            role = "honest"
            if i == plan.byz:
                role = "twin" if plan.mode == "twins" else plan.mode
            procs.append(Proc(len(procs), i, keys[i], role))
        if plan.mode == "twins":
            procs.append(Proc(len(procs), plan.byz, keys[plan.byz], "twin"))
        rng = self.rng
        pids = [p.pid for p in procs]
        twins = [p.pid for p in procs if p.role == "twin"]
        if rng.random() < self.churn:
            # churn: back-to-back random partitions, each a few message delays long (the Twins
            # approach: every round may see a different split of the cluster)
            t = rng.randint(0, 60)
            while t < plan.fault_end:
                end = min(plan.fault_end, t + rng.randint(*self.churn_ms))
                cut = frozenset((a, b) for a in pids for b in pids if a != b and rng.random() < self.link_cut)
                plan.partitions.append((t, end, self._random_side(pids, twins), cut))
                t = end + rng.randint(0, 20)
        else:
            for _ in range(rng.randint(0, 2)):
                start = rng.randint(0, plan.fault_end)
                end = min(plan.fault_end, start + rng.randint(30, 300))
                plan.partitions.append((start, end, self._random_side(pids, twins), frozenset()))
        honest = [p.pid for p in procs if p.role == "honest"]
        for _ in range(rng.randint(0, 2)):
            pid = rng.choice(honest)
            at = rng.randint(0, plan.fault_end)
            plan.crashes.append((pid, at, min(plan.fault_end, at + rng.randint(10, 200)), rng.random() < 0.5))
        for p in procs:
            p.clock_offset = rng.randint(0, 10 ** 9)
        return procs

    def _random_side(self, pids: list[int], twins: list[int]) -> frozenset:
        """One side of a partition: a single node cut off (with probability `isolate`), else a
        random split; with twins, the two copies always end up on different sides (the
        partitions in which twins can make the two halves see different things)."""
        rng = self.rng
        if twins:
            t1, t2 = twins
            rest = [x for x in pids if x not in twins]
            rng.shuffle(rest)
            return frozenset([t1] + rest[:rng.randint(0, len(rest))])
        if rng.random() < self.isolate:
            return frozenset((rng.choice(pids),))
        side = pids[:]
        rng.shuffle(side)
        return frozenset(side[:rng.randint(1, len(side) - 1)])

    def _push(self, t: int, kind: int, pid: int, data: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, pid, data))

    # ------------------------------------------------------------------ processes

    def _start(self, p: Proc) -> None:
        records = [decode_record(b) for _, b in p.disk.wal]
        last = decode_record(p.disk.last_signed) if p.disk.last_signed is not None else None
        p.app = ToyApp(self, p)
        p.core = self.core_cls(self.cfg, self.vs, p.key, block_hash=block_hash, height=len(p.disk.chain) + 1,
                               now_ms=self.now + p.clock_offset, last_signed=last, wal=records,
                               verifier=self.cache if self.shared_verify_cache else SignatureCache())
        p.alive = True
        p.dying_until = None
        p.tick_at = None
        self._drain(p)
        self._schedule_tick(p)

    def _die(self, p: Proc) -> None:
        p.alive = False
        p.core = None
        p.tick_at = None
        p.dying_until = None

    def _schedule_tick(self, p: Proc) -> None:
        if not p.alive:
            return
        t = max(self.now, p.core.next_deadline() - p.clock_offset)
        if p.tick_at is None or t < p.tick_at:
            p.tick_at = t
            self._push(t, _TICK, p.pid)

    def _drain(self, p: Proc) -> None:
        core = p.core
        while p.alive and core.has_ready():
            rd = core.ready()
            if p.dying_until is not None and rd.persist:
                # crash in the middle of making this Ready durable: a prefix survives, nothing is sent
                k = self.rng.randint(0, len(rd.persist))
                self._persist(p, rd.persist[:k])
                self.counts["torn_writes"] += 1
                self._die(p)
                return
            self._persist(p, rd.persist)
            for out in rd.messages:
                self._send(p, out.to, out.message)
            for c in rd.committed:
                self._check_commit(p, c)
                p.app.apply(c)
            if rd.committed:
                h = len(p.disk.chain) + 1
                p.disk.wal = [(rh, b) for rh, b in p.disk.wal if rh >= h]
            for s in rd.serve:
                chain = p.disk.chain
                entries = tuple(SyncEntry(h, chain[h - 1][0], chain[h - 1][1])
                                for h in range(s.from_height, min(s.below, s.from_height + s.max_count, len(chain) + 1)))
                if entries:
                    self.counts["sync_served_from_disk"] += 1
                    self._send(p, s.peer, SyncResponse(entries))
            self.counts["evidence"] += len(rd.evidence)
            for req in ([rd.propose] if rd.propose is not None else []) + rd.validate:
                if self.plan.defer_p and self.rng.random() < self.plan.defer_p:
                    self.counts["deferred_answers"] += 1
                    self._push(self.now + self.rng.randint(1, 20), _ANSWER, p.pid, (p.restarts, req))
                else:
                    self._answer(p, req)
            core.advance()

    def _answer(self, p: Proc, req: Any) -> None:
        """The shell's answer to a request, from the chain as it stands now (a late answer to a
        question the core no longer asks is ignored by it)."""
        if isinstance(req, ProposeRequest):
            p.core.propose(p.app.propose(req.height))
        else:
            p.core.validated(req.block_hash, p.app.validate(req.height, req.block))

    def _persist(self, p: Proc, records: list) -> None:
        for rec in records:
            if isinstance(rec, LastSigned):
                p.disk.last_signed = encode_record(rec)
            else:
                p.disk.wal.append((rec.height, encode_record(rec)))

    # ------------------------------------------------------------------ network

    def _blocked(self, a: int, b: int, t: int) -> bool:
        if t >= self.plan.fault_end:
            return False
        for start, end, side, cut in self.plan.partitions:
            if start <= t < end and ((a in side) != (b in side) or (a, b) in cut):
                return True
        return False

    def _send(self, p: Proc, to: Any, msg: Any) -> None:
        if p.role == "silent":
            return
        if p.role == "honest" and isinstance(msg, (Proposal, Vote)):
            self._watch_signing(p, msg)
        if p.role == "equivocate" and isinstance(msg, (Proposal, Vote)) and to is None:
            self._equivocate(p, msg)
            return
        data = encode_message(msg)
        if to is None:
            for q in self.procs:
                if q.pid != p.pid:
                    self._transmit(p.pid, q.pid, data)
        else:
            self._transmit(p.pid, to, data)

    def _transmit(self, src: int, dst: int, data: bytes) -> None:
        rng = self.rng
        plan = self.plan
        self.counts["messages"] += 1
        faulty = self.now < plan.fault_end
        if faulty and plan.drop_p and rng.random() < plan.drop_p:
            self.counts["dropped"] += 1
            return
        copies = 1
        if plan.dup_p and rng.random() < (plan.dup_p if faulty else 0.02):
            copies = 2
            self.counts["duplicated"] += 1
        lo, hi = plan.delay if faulty else (1, 8)
        for _ in range(copies):
            d = data
            if faulty and plan.corrupt_p and rng.random() < plan.corrupt_p:
                i = rng.randrange(len(d))
                d = d[:i] + bytes([d[i] ^ (1 << rng.randrange(8))]) + d[i + 1:]
                self.counts["corrupted"] += 1
            self._push(self.now + rng.randint(lo, hi), _DELIVER, dst, (src, d))

    def _equivocate(self, p: Proc, msg: Proposal | Vote) -> None:
        """The Byzantine strategy that attacks locking hardest, signing with the validator's key
        directly (no safe signer). Per (height, round) it favours a random set of peers just
        big enough to make a quorum with it (the others are the f it leaves out).
        - As proposer it never re-proposes its valid value: it sends a fresh block (pol_round
          -1) to the favoured peers and a different fresh block to the others, and prevotes
          for what each peer got; its precommit for the favoured block reaches one peer only.
          That is how one node commits while the rest go on to the next round without the
          block, some of them locked on it.
        - Once locked, it backs any other block proposed to it with prevotes and precommits to
          everyone: the votes that, with one forgotten lock, commit a second block.
        - Otherwise its real votes reach the favoured peers (a precommit for a block only one of
          them), the others get nil or a made-up hash, now and then for a higher round."""
        rng = self.rng
        peers = [q.pid for q in self.procs if q.pid != p.pid]
        self.counts["equivocations_sent"] += 1
        h, r = msg.height, msg.round
        favoured = self.byz_favoured.get((h, r))
        if favoured is None:
            k = max(1, min(len(peers), self.vs.quorum_power - self.vs.power(p.vindex)))
            favoured = self.byz_favoured[(h, r)] = rng.sample(peers, k)

        def vote(kind: int, round_: int, bh: bytes) -> bytes:
            sb = vote_sign_bytes(CHAIN_ID, kind, h, round_, bh)
            return encode_message(Vote(kind, h, round_, bh, p.vindex, p.key.sign(sb).signature))

        if isinstance(msg, Proposal):
            parsed = parse_block(msg.block)
            parent = parsed[1] if parsed else GENESIS_HASH
            variants = []
            for _ in range(2):
                blk = make_block(h, parent, p.vindex, True, rng.getrandbits(64).to_bytes(8, "big"))
                bh = block_hash(blk)
                sb = proposal_sign_bytes(CHAIN_ID, h, r, bh, -1)
                variants.append((bh, encode_message(Proposal(h, r, -1, blk, p.key.sign(sb).signature))))
            sent = {}
            for q in peers:
                bh, data = variants[0 if q in favoured else 1]
                sent[q] = bh
                self._transmit(p.pid, q, data)
            self.byz_proposed[(h, r)] = sent
            return
        sent = self.byz_proposed.get((h, r))
        if sent is not None:
            if msg.kind == Step.PRECOMMIT:
                first = favoured[0]
                for q in peers:
                    self._transmit(p.pid, q, vote(msg.kind, r, sent[q] if q == first else NIL))
            else:
                votes = {bh: vote(msg.kind, r, bh) for bh in set(sent.values())}
                for q in peers:
                    self._transmit(p.pid, q, votes[sent[q]])
            return
        hs = p.core._hs if p.core is not None and p.core.height == h else None
        if hs is not None and hs.locked_hash is not None:
            rs = hs.rounds.get(r)
            other = [bh for _, bh in rs.proposals if bh != hs.locked_hash] if rs is not None else []
            if other:
                data = vote(msg.kind, r, other[0])
                for q in peers:
                    self._transmit(p.pid, q, data)
                return
        real = encode_message(msg)
        if msg.kind == Step.PRECOMMIT and msg.block_hash != NIL:
            chosen = {favoured[0]}
            alt = vote(msg.kind, r, NIL)
        else:
            chosen = set(favoured)
            r2 = r + (rng.randint(1, 3) if rng.random() < 0.1 else 0)
            alt = vote(msg.kind, r2, rng.randbytes(32) if msg.block_hash == NIL or rng.random() < 0.3 else NIL)
        for q in peers:
            self._transmit(p.pid, q, real if q in chosen else alt)

    # ------------------------------------------------------------------ checks

    def _watch_signing(self, p: Proc, msg: Proposal | Vote) -> None:
        if isinstance(msg, Vote):
            key, what = (p.vindex, msg.height, msg.round, msg.kind), msg.block_hash
        else:
            key, what = (p.vindex, msg.height, msg.round, 1), block_hash(msg.block) + msg.pol_round.to_bytes(4, "big", signed=True)
        old = self.signed.setdefault(key, what)
        if old != what:
            self.violations.append(f"double_sign: validator {p.vindex} (pid {p.pid}) signed two different "
                                   f"{Step(key[3]).name.lower()} messages at height {key[1]} round {key[2]}")

    def _check_commit(self, p: Proc, c: Committed) -> None:
        self.counts["commits"] += 1
        bh = block_hash(c.block)
        self.digest.update(struct.pack(">IQ", p.pid, c.height) + bh)
        if not p.checked:
            return
        h = c.height
        if h != len(p.disk.chain) + 1:
            self.violations.append(f"out_of_order: pid {p.pid} committed height {h} at chain length {len(p.disk.chain)}")
            return
        first = self.canonical.setdefault(h, bh)
        if first != bh:
            self.violations.append(f"safety: two blocks committed at height {h} ({first.hex()[:12]} and "
                                   f"{bh.hex()[:12]}, the second by pid {p.pid})")
        parsed = parse_block(c.block)
        parent = self.canonical.get(h - 1, GENESIS_HASH) if h > 1 else GENESIS_HASH
        if parsed is None or parsed[0] != h or parsed[1] != parent or parsed[3] != 1:
            self.violations.append(f"invalid_commit: pid {p.pid} committed an invalid block at height {h}")
        ok = self.cert_ok.get(c.certificate)
        if ok is None:
            try:
                certificate.verify(self.vs, CHAIN_ID, h, bh, c.certificate, verifier=self.cache)
                ok = True
            except certificate.CertificateError:
                ok = False
            self.cert_ok[c.certificate] = ok
        if not ok:
            self.violations.append(f"bad_certificate: pid {p.pid} height {h}")

    def _honest_heights(self) -> list[int]:
        return [len(p.disk.chain) for p in self.procs if p.role == "honest"]

    # ------------------------------------------------------------------ main loop

    def run(self) -> SeedResult:
        plan = self.plan
        for pid, at, restart_at, torn in plan.crashes:
            self._push(at, _CRASH, pid, torn)
            self._push(max(restart_at, at + 1), _RESTART, pid)
        self.counts["partitions"] = len(plan.partitions)
        for p in self.procs:
            self._start(p)
        heal_height = None
        target = self.heights
        deadline = None
        reached_at = None
        liveness = None
        events = 0
        by_pid = self.procs
        while True:
            if heal_height is None and (not self.events or self.events[0][0] >= plan.fault_end):
                self.now = max(self.now, plan.fault_end)
                heal_height = max(self._honest_heights(), default=0)
                target = max(self.heights, heal_height + 2)
                deadline = plan.fault_end + self.bound
            if self.violations:
                break   # the first safety violation decides the seed; replay it to study it
            if heal_height is not None and min(self._honest_heights(), default=target) >= target:
                reached_at = self.now
                break
            if not self.events:
                liveness = "no events left before the target height"
                break
            t, _, kind, pid, data = heapq.heappop(self.events)
            if deadline is not None and t > deadline:
                liveness = f"honest nodes at heights {self._honest_heights()} did not reach {target} within {self.bound} ms after healing"
                break
            events += 1
            if events > self.max_events:
                liveness = f"event budget of {self.max_events} exhausted"
                break
            self.now = t
            p = by_pid[pid]
            if p.alive and p.dying_until is not None and t >= p.dying_until:
                self._die(p)
            if kind == _DELIVER:
                if not p.alive:
                    continue
                src, raw = data
                if self._blocked(src, pid, t):
                    self.counts["partitioned"] += 1
                    continue
                try:
                    msg = decode_message(raw)
                except DecodeError:
                    self.counts["decode_errors"] += 1
                    continue
                self.counts["delivered"] += 1
                verdict = p.core.step(msg, src)
                if verdict not in ("ok", "duplicate", "stale_height", "future_height", "nothing_new"):
                    self.counts["rejected"] += 1
            elif kind == _TICK:
                if not p.alive or p.tick_at != t:
                    continue
                p.tick_at = None
                p.core.tick(t + p.clock_offset)
            elif kind == _ANSWER:
                generation, req = data
                if not p.alive or p.restarts != generation:
                    continue
                self._answer(p, req)
            elif kind == _CRASH:
                if not p.alive:
                    continue
                self.counts["crashes"] += 1
                if data:
                    p.dying_until = t + 30
                else:
                    self._die(p)
                    continue
            elif kind == _RESTART:
                if p.alive and p.dying_until is not None:
                    self._die(p)
                if not p.alive:
                    self.counts["restarts"] += 1
                    p.restarts += 1
                    self._start(p)
                continue
            if p.alive:
                self._drain(p)
                self._schedule_tick(p)
        heights = self._honest_heights()
        self.counts["events"] = events
        self.counts["heights_committed"] = min(heights, default=0)
        self.digest.update(json.dumps([self.violations, heights, events]).encode())
        return SeedResult(
            seed=self.seed, nodes=self.n, mode=plan.mode, ok=not self.violations and liveness is None,
            violations=self.violations, liveness_failure=liveness, target=target, min_height=min(heights, default=0),
            sim_ms=self.now, heal_to_target_ms=(reached_at - plan.fault_end) if reached_at is not None else None,
            counts=self.counts, digest=self.digest.hexdigest()[:16])


def run_seed(seed: int, nodes: int = 4, heights: int = 10, byzantine: str | None = None,
             core_cls: type = Core, **kw: Any) -> SeedResult:
    return Simulation(seed, nodes, heights, byzantine, core_cls, **kw).run()


def replay_command(seed: int, nodes: int = 4, heights: int = 10, byzantine: str | None = None) -> str:
    cmd = f"python -m bureau.consensus.sim --seeds 1 --start {seed} --nodes {nodes}"
    if heights != 10:
        cmd += f" --heights {heights}"
    if byzantine:
        cmd += f" --byzantine {byzantine}"
    return cmd + " --verbose"


def run_seeds(seeds: range | list[int], nodes: int = 4, heights: int = 10, byzantine: str | None = None,
              core_cls: type = Core, out=None, on_result=None, **kw: Any) -> dict:
    """Run seeds and return the summary dict (the JSON last line of the CLI); failures are
    described on `out`, and `on_result(SeedResult)` is called after every seed."""
    t0 = time.perf_counter()
    total = {"seeds": 0, "nodes": nodes, "safety_violations": 0, "liveness_failures": 0,
             "heights_committed": 0, "messages": 0, "faults_injected": {}, "byzantine_modes": {},
             "failed_seeds": [], "max_heal_to_target_ms": 0}
    digest = hashlib.sha256()
    fault_keys = ("dropped", "duplicated", "corrupted", "partitions", "crashes", "torn_writes", "restarts",
                  "equivocations_sent")
    for k in fault_keys:
        total["faults_injected"][k] = 0
    for seed in seeds:
        r = run_seed(seed, nodes, heights, byzantine, core_cls, **kw)
        if on_result is not None:
            on_result(r)
        digest.update(r.digest.encode())
        total["seeds"] += 1
        total["safety_violations"] += len(r.violations)
        total["liveness_failures"] += r.liveness_failure is not None
        total["heights_committed"] += r.counts["heights_committed"]
        total["messages"] += r.counts["messages"]
        total["byzantine_modes"][r.mode] = total["byzantine_modes"].get(r.mode, 0) + 1
        for k in fault_keys:
            total["faults_injected"][k] += r.counts[k]
        if r.heal_to_target_ms is not None:
            total["max_heal_to_target_ms"] = max(total["max_heal_to_target_ms"], r.heal_to_target_ms)
        if not r.ok:
            total["failed_seeds"].append(seed)
            if out is not None:
                for v in r.violations[:5]:
                    print(f"seed {seed} ({r.mode}): {v}", file=out)
                if r.liveness_failure:
                    print(f"seed {seed} ({r.mode}): liveness: {r.liveness_failure}", file=out)
                print(f"  replay: {replay_command(seed, nodes, heights, byzantine)}", file=out)
    dt = time.perf_counter() - t0
    total["digest"] = digest.hexdigest()[:16]
    total["seconds"] = round(dt, 3)
    total["seeds_per_second"] = round(total["seeds"] / dt, 1) if dt > 0 else None
    total["failed_seeds"] = total["failed_seeds"][:100]
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bureau.consensus.sim", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=100, help="number of seeds to run")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--nodes", type=int, default=4, help="validators (4 and 7 are the tested sizes)")
    ap.add_argument("--heights", type=int, default=10, help="target height for every correct node")
    ap.add_argument("--byzantine", choices=MODES, default=None, help="fix the Byzantine mode (default: by seed)")
    ap.add_argument("--verbose", action="store_true", help="one line per seed")
    ap.add_argument("--shared-verify-cache", action="store_true",
                    help="one signature memo for all simulated nodes (about 2x faster; same results, since a "
                         "memo hit is exactly what libsodium answered for the same key, message and signature)")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.nodes < 1:
        ap.error("--seeds and --nodes must be positive")
    seeds = range(args.start, args.start + args.seeds)

    def line(r: SeedResult) -> None:
        print(f"seed {r.seed}: {r.mode:10s} ok={r.ok} height={r.min_height}/{r.target} sim_ms={r.sim_ms} "
              f"heal->target={r.heal_to_target_ms} events={r.counts['events']} digest={r.digest}", flush=True)

    summary = run_seeds(seeds, args.nodes, args.heights, args.byzantine, out=sys.stdout,
                        on_result=line if args.verbose else None, shared_verify_cache=args.shared_verify_cache)
    print(f"{summary['seeds']} seeds, {args.nodes} nodes: {summary['safety_violations']} safety violations, "
          f"{summary['liveness_failures']} liveness failures, {summary['heights_committed']} heights committed, "
          f"{summary['messages']} messages, {summary['seeds_per_second']} seeds/s")
    print(json.dumps(summary, sort_keys=True))
    return 0 if summary["safety_violations"] == 0 and summary["liveness_failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
