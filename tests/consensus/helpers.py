"""Test fixtures for the consensus core: keys, a validator set, a toy application, signed
messages from any validator, and a synchronous in-memory cluster."""

from __future__ import annotations

import hashlib
import struct
from collections import deque

from nacl.signing import SigningKey

from bureau.consensus import (
    NIL, Certificate, Proposal, Ready, Step, Validator, ValidatorSet, Vote, decode_message, encode_message, proposal_sign_bytes,
    vote_sign_bytes,
)
from bureau.consensus.core import Config, Core, Timeouts

CHAIN = "test-chain-1"
GENESIS = hashlib.sha256(b"test-genesis").digest()
PREVOTE, PRECOMMIT = Step.PREVOTE, Step.PRECOMMIT


def keys(n: int) -> list[SigningKey]:
    return [SigningKey(hashlib.sha256(b"test-key-%d" % i).digest()) for i in range(n)]


def vset(ks: list[SigningKey], powers: list[int] | None = None) -> ValidatorSet:
    return ValidatorSet(Validator(f"v{i}", k.verify_key.encode(), powers[i] if powers else 1) for i, k in enumerate(ks))


def config(**kw) -> Config:
    base = dict(chain_id=CHAIN, timeouts=Timeouts(100, 50, 100, 50, 100, 50), rebroadcast_ms=10 ** 9,
                sync_grace_ms=100, sync_retry_ms=100)
    base.update(kw)
    return Config(**base)


def make_block(height: int, parent: bytes, payload: bytes) -> bytes:
    return b"B" + struct.pack(">Q", height) + parent + payload


def bhash(block: bytes) -> bytes:
    return hashlib.sha256(block).digest()


class App:
    """Blocks: b"B" | u64 height | parent hash | payload; a payload starting with b"BAD" is
    invalid. propose/validate insist that the previous block was applied first."""

    def __init__(self, name: bytes = b"x") -> None:
        self.name = name
        self.chain: list[tuple[bytes, bytes]] = []
        self.n = 0

    @property
    def head(self) -> bytes:
        return bhash(self.chain[-1][0]) if self.chain else GENESIS

    def propose(self, height: int) -> bytes:
        assert height == len(self.chain) + 1, f"propose({height}) with {len(self.chain)} blocks applied"
        self.n += 1
        return make_block(height, self.head, self.name + b"-%d" % self.n)

    def validate(self, height: int, block: bytes) -> bool:
        assert height == len(self.chain) + 1, f"validate({height}) with {len(self.chain)} blocks applied"
        return (len(block) > 41 and block[0:1] == b"B" and struct.unpack(">Q", block[1:9])[0] == height
                and block[9:41] == self.head and not block[41:].startswith(b"BAD"))

    def apply(self, c) -> None:
        assert c.height == len(self.chain) + 1
        self.chain.append((c.block, c.certificate))


def vote(k: SigningKey, idx: int, kind: int, h: int, r: int, bh: bytes = NIL) -> Vote:
    return Vote(kind, h, r, bh, idx, k.sign(vote_sign_bytes(CHAIN, kind, h, r, bh)).signature)


def proposal(k: SigningKey, h: int, r: int, block: bytes, pol_round: int = -1, pol=()) -> Proposal:
    sig = k.sign(proposal_sign_bytes(CHAIN, h, r, bhash(block), pol_round)).signature
    return Proposal(h, r, pol_round, block, sig, tuple(pol))


def pol_for(ks: list[SigningKey], idxs, h: int, vr: int, block: bytes) -> tuple:
    bh = bhash(block)
    return tuple((i, ks[i].sign(vote_sign_bytes(CHAIN, PREVOTE, h, vr, bh)).signature) for i in sorted(idxs))


def cert_for(ks: list[SigningKey], vs: ValidatorSet, idxs, h: int, r: int, block: bytes, chain: str = CHAIN) -> bytes:
    bh = bhash(block)
    sigs = tuple(sorted((vs[i].id, ks[i].sign(vote_sign_bytes(chain, PRECOMMIT, h, r, bh)).signature) for i in idxs))
    return Certificate(h, r, bh, sigs).encode()


def answer(core: Core, app: App, rd: Ready) -> None:
    """The shell's answers to a Ready's questions, from `app`."""
    if rd.propose is not None:
        core.propose(app.propose(rd.propose.height))
    for req in rd.validate:
        core.validated(req.block_hash, app.validate(req.height, req.block))


def drain(core: Core, app: App | None = None) -> list[Ready]:
    """Handle every Ready as a shell would (apply commits to `app`, answer its propose and
    validate requests before advancing), return them."""
    out = []
    while core.has_ready():
        rd = core.ready()
        if app is not None:
            for c in rd.committed:
                app.apply(c)
            answer(core, app, rd)
        core.advance()
        out.append(rd)
    return out


def sent(readies: list[Ready], kind=None) -> list:
    msgs = [o.message for rd in readies for o in rd.messages]
    if kind is None:
        return msgs
    return [m for m in msgs if isinstance(m, Vote) and m.kind == kind]


def persisted(readies: list[Ready]) -> list:
    return [rec for rd in readies for rec in rd.persist]


class Cluster:
    """Cores wired by a FIFO in-memory network that delivers everything (optionally not to or
    from cut-off nodes); time moves only when asked."""

    def __init__(self, n: int, powers: list[int] | None = None, core_cls=Core, **cfg) -> None:
        self.keys = keys(n)
        self.vs = vset(self.keys, powers)
        self.cfg = config(**cfg)
        self.apps = [App(b"n%d" % i) for i in range(n)]
        self.now = 0
        self.cores = [core_cls(self.cfg, self.vs, self.keys[i], block_hash=bhash, now_ms=0) for i in range(n)]
        for c in self.cores:
            c.tick(0)                      # round 0 of the first height starts at the first tick
        self.queue: deque = deque()
        self.cut: set[int] = set()
        self.log: list = []   # (sender, message) of everything sent

    def pump(self, limit: int = 100_000) -> None:
        for i, c in enumerate(self.cores):
            self._out(i)
        steps = 0
        while self.queue and steps < limit:
            steps += 1
            src, dst, msg = self.queue.popleft()
            if src in self.cut or dst in self.cut:
                continue
            self.cores[dst].step(decode_message(encode_message(msg)), src)
            self._out(dst)

    def _out(self, i: int) -> None:
        core = self.cores[i]
        for rd in drain(core, self.apps[i]):
            for o in rd.messages:
                self.log.append((i, o.message))
                targets = range(len(self.cores)) if o.to is None else [o.to]
                for j in targets:
                    if j != i:
                        self.queue.append((i, j, o.message))

    def advance_time(self, ms: int) -> None:
        self.now += ms
        for c in self.cores:
            c.tick(self.now)
        self.pump()

    def run_until(self, height: int, max_ms: int = 60_000, step_ms: int = 10) -> None:
        self.pump()
        while min(len(a.chain) for i, a in enumerate(self.apps) if i not in self.cut) < height:
            if self.now > max_ms:
                raise AssertionError(f"no progress: heights {[len(a.chain) for a in self.apps]}")
            self.advance_time(step_ms)
