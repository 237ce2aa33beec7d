"""The Tendermint consensus core, sans I/O, in the shape of etcd raft's RawNode.

It implements Algorithm 1 of Buchman, Kwon, Milosevic, "The latest gossip on BFT consensus"
(2018); comments cite its line numbers (L11 StartRound, L22/L28 prevote on a proposal, L34/L47
timeout scheduling, L36 lock on a polka, L44 precommit nil, L49 decide, L55 round skip,
L57/L61/L65 timeouts). `docs/consensus.md` describes it in prose.

Driving it:

    core = Core(config, validators, signing_key, block_hash=hash_fn, height=next_height,
                now_ms=clock(), last_signed=..., wal=[...records of the current height...])
    loop:
        core.step(decode_message(data), peer)   # a message from the network
        core.tick(clock())                      # time passes (also: core.next_deadline())
        while core.has_ready():
            rd = core.ready()
            make rd.persist durable (fsync) -> send rd.messages -> apply rd.committed
            -> answer rd.serve from the block store
            -> rd.propose: core.propose(block built from the mempool)
            -> rd.validate: core.validated(block_hash, ok)   (these two may also come later)
            core.advance()

The core never calls the application, never reads a clock (time enters only through tick()),
never does I/O, and never signs two different things at one (height, round, step): all signing
goes through SafeSigner, seeded with the last-signed record and the node's own signed messages
from the WAL. The only application code it runs is `block_hash`, a pure function of the bytes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..ledger import certificate
from ..ledger.valset import Schedule
from .signing import DoubleSignError, SafeSigner, SignatureCache
from .types import (
    MAX_BLOCK_BYTES, MAX_MESSAGE_BYTES, MAX_SYNC_BATCH, NIL, BlockHash, Certificate, Committed, Evidence,
    LastSigned, Outbound, Proposal, ProposeRequest, Ready, Record, ServeRequest, Step, SyncEntry, SyncRequest,
    SyncResponse, ValidateRequest, ValidatorSet, Vote, WalDecision, WalLock, WalMessage, WalRound, chain_id_bytes,
    proposal_sign_bytes, vote_sign_bytes,
)

PROPOSE, PREVOTE, PRECOMMIT = Step.PROPOSE, Step.PREVOTE, Step.PRECOMMIT


@dataclass(frozen=True)
class Timeouts:
    """Round timeouts grow linearly: base + round * delta (milliseconds)."""
    propose_ms: int = 3000
    propose_delta_ms: int = 500
    prevote_ms: int = 1000
    prevote_delta_ms: int = 500
    precommit_ms: int = 1000
    precommit_delta_ms: int = 500

    def propose(self, round_: int) -> int:
        return self.propose_ms + round_ * self.propose_delta_ms

    def prevote(self, round_: int) -> int:
        return self.prevote_ms + round_ * self.prevote_delta_ms

    def precommit(self, round_: int) -> int:
        return self.precommit_ms + round_ * self.precommit_delta_ms


@dataclass(frozen=True)
class Config:
    chain_id: str
    timeouts: Timeouts = field(default_factory=Timeouts)
    rebroadcast_ms: int = 1000        # own messages of the current round go out again this often
    sync_grace_ms: int = 1000         # behind a peer this long before asking it for blocks
    sync_retry_ms: int = 1000         # between two sync requests
    sync_batch: int = 16              # blocks asked for / served per sync message
    retain_commits: int = 64          # committed (block, certificate) kept in memory to serve peers
    max_round_ahead: int = 64         # messages more rounds ahead than this are dropped
    max_proposals_per_round: int = 4  # kept per round (more than one = an equivocating proposer)
    max_block_bytes: int = MAX_BLOCK_BYTES
    commit_delay_ms: int = 0          # after a commit is applied, wait this long before round 0 of
                                      # the next height (lets transactions gather; CometBFT's timeout_commit)

    def __post_init__(self) -> None:
        chain_id_bytes(self.chain_id)
        if not 1 <= self.sync_batch <= MAX_SYNC_BATCH:
            raise ValueError(f"sync_batch must be in 1..{MAX_SYNC_BATCH}")
        if min(self.rebroadcast_ms, self.sync_grace_ms, self.sync_retry_ms, self.retain_commits,
               self.max_round_ahead, self.max_proposals_per_round) < 1 or self.commit_delay_ms < 0:
            raise ValueError("intervals and limits must be positive")


class _VoteSet:
    """Prevotes or precommits of one round. Algorithm 1 counts messages per value, so a
    validator that equivocates counts for each value it signed (`for_hash`, `by_hash`), while
    "+2/3 of anything" (L34, L47) counts each validator once (`first`, `total`)."""
    __slots__ = ("first", "for_hash", "by_hash", "total", "values")

    def __init__(self) -> None:
        self.first: dict[int, Vote] = {}
        self.for_hash: dict[bytes, dict[int, Vote]] = {}
        self.by_hash: dict[bytes, int] = {}
        self.total = 0
        self.values: dict[int, int] = {}   # distinct values signed, per validator

    def has(self, idx: int, bh: bytes) -> bool:
        bucket = self.for_hash.get(bh)
        return bucket is not None and idx in bucket

    def signatures_for(self, bh: bytes) -> list[tuple[int, bytes]]:
        return sorted((i, v.signature) for i, v in self.for_hash.get(bh, {}).items())


class _Round:
    __slots__ = ("proposals", "prevotes", "precommits", "senders", "sender_power",
                 "prevote_timer", "precommit_timer", "polka_done")

    def __init__(self) -> None:
        self.proposals: list[tuple[Proposal, bytes]] = []
        self.prevotes = _VoteSet()
        self.precommits = _VoteSet()
        self.senders: set[int] = set()
        self.sender_power = 0
        self.prevote_timer = False
        self.precommit_timer = False
        self.polka_done = False


class _Height:
    __slots__ = ("height", "round", "step", "locked_round", "locked_block", "locked_hash", "valid_round",
                 "valid_block", "valid_hash", "rounds", "blocks", "validity", "asked", "own", "commit_quorums",
                 "skip_rounds", "persisted_round")

    def __init__(self, height: int) -> None:
        self.height = height
        self.round = 0
        self.step = PROPOSE
        self.locked_round, self.locked_block, self.locked_hash = -1, None, None
        self.valid_round, self.valid_block, self.valid_hash = -1, None, None
        self.rounds: dict[int, _Round] = {}
        self.blocks: dict[bytes, bytes] = {}
        self.validity: dict[bytes, bool] = {}
        self.asked: set[bytes] = set()          # validation asked of the shell, not answered yet
        self.own: dict[tuple[int, int], Proposal | Vote] = {}
        self.commit_quorums: list[tuple[int, bytes]] = []
        self.skip_rounds: list[int] = []
        self.persisted_round = 0

    def at(self, r: int) -> _Round:
        rs = self.rounds.get(r)
        if rs is None:
            rs = self.rounds[r] = _Round()
        return rs


class Core:
    """One validator's (or observer's, with signing_key=None) consensus state machine."""

    def __init__(self, config: Config, validators: ValidatorSet | Schedule, signing_key: Any, *,
                 block_hash: BlockHash, height: int = 1, now_ms: int = 0, last_signed: LastSigned | None = None,
                 wal: list[Record] | tuple = (), verifier: Any = None) -> None:
        """`validators` is one set for every height, or the chain's `Schedule` of sets, which the
        shell extends as it applies blocks (a set decided at height d is in force from d + 2, so
        the sets of this height and the next are known once the height before was applied).
        With a schedule, a signing key outside the set in force makes this node an observer at
        that height."""
        if height < 1:
            raise ValueError("heights start at 1")
        self.config = config
        self.chain_id = config.chain_id
        self._static = isinstance(validators, ValidatorSet)
        self.schedule = Schedule.genesis(validators) if self._static else validators
        self._block_hash = block_hash
        self.verifier = verifier if verifier is not None else SignatureCache()
        self.signer: SafeSigner | None = None
        self.index: int | None = None  # this node's index in the set in force at `height`
        if signing_key is not None:
            self.signer = SafeSigner(signing_key, last_signed)
            if self._static and validators.index_of_key(self.signer.public_key) is None:
                raise ValueError("the signing key is not one of the validators' keys")
        self.now = now_ms
        self.stats: Counter = Counter()
        self._persist: list[Record] = []
        self._messages: list[Outbound] = []
        self._committed: list[Committed] = []
        self._serve: list[ServeRequest] = []
        self._evidence: list[Evidence] = []
        self._validate: list[ValidateRequest] = []
        self._propose_out: ProposeRequest | None = None   # for the next Ready
        self._propose_asked: ProposeRequest | None = None # asked, not answered yet
        self._outstanding: Ready | None = None
        self._awaiting_apply = False
        # Set by a shell that has nothing to propose yet: a height not started yet (after a
        # commit, or at start-up) waits (CometBFT's create_empty_blocks = false); cleared when
        # transactions or the height's messages arrive.
        self.hold_start = False
        self._start_at: int | None = None     # commit delay: when round 0 of this height starts
        self._timers: list[tuple[int, int, int, int]] = []
        self._next_rebroadcast = now_ms + config.rebroadcast_ms
        self._peer_heights: dict[Any, int] = {}
        self._lag_since: int | None = None
        self._want_since: int | None = None
        self._next_sync = now_ms
        self._sync_rr = 0
        self._sync_pending: dict[int, tuple[bytes, bytes]] = {}
        self._recent: dict[int, tuple[bytes, bytes]] = {}
        self.height = height
        self._hs = _Height(height)
        self._next_hs: _Height | None = None
        self.index = self._own_index(height)
        self._restore(list(wal), last_signed)

    # ------------------------------------------------------------------ introspection

    @property
    def round(self) -> int:
        return self._hs.round

    @property
    def step_name(self) -> str:
        return Step(self._hs.step).name.lower()

    @property
    def current_step(self) -> int:
        return self._hs.step

    @property
    def locked_round(self) -> int:
        return self._hs.locked_round

    @property
    def locked_hash(self) -> bytes | None:
        return self._hs.locked_hash

    @property
    def valid_round(self) -> int:
        return self._hs.valid_round

    @property
    def valid_hash(self) -> bytes | None:
        return self._hs.valid_hash

    @property
    def awaiting_apply(self) -> bool:
        return self._awaiting_apply

    @property
    def started(self) -> bool:
        """False between a commit and the start of round 0 of the next height."""
        return not self._awaiting_apply and self._start_at is None

    @property
    def validators(self) -> ValidatorSet:
        """The set in force at the height being decided."""
        return self.schedule.at(self.height)

    def validators_at(self, height: int) -> ValidatorSet:
        return self.schedule.at(height)

    def _known_through(self) -> int:
        """The last height whose validator set the schedule is sure of: with a schedule, the
        height after the last applied one + 1."""
        if self._static:
            return certificate.MAX_HEIGHT
        return self.height if self._awaiting_apply else self.height + 1

    def _own_index(self, height: int) -> int | None:
        if self.signer is None:
            return None
        return self.schedule.at(height).index_of_key(self.signer.public_key)

    def proposer(self, height: int, round_: int) -> int:
        return self.schedule.at(height).proposer(height, round_)

    def sync_status(self) -> dict:
        """What a lagging node knows: its height, peers known to be ahead and the best height
        seen, and whether it misses the block of a commit quorum it holds."""
        ahead = {p: h for p, h in self._peer_heights.items() if h > self.height}
        return {"height": self.height, "lagging": bool(ahead) or self._want_since is not None,
                "best_peer_height": max(self._peer_heights.values(), default=0),
                "peers_ahead": ahead, "missing_block": self._want_since is not None,
                "pending_blocks": sorted(self._sync_pending)}

    def next_deadline(self) -> int:
        """The earliest local time at which tick() has something to do."""
        t = self._next_rebroadcast
        if self._start_at is not None and self._start_at < t:
            t = self._start_at
        for d, *_ in self._timers:
            if d < t:
                t = d
        since = self._lag_since if self._lag_since is not None else self._want_since
        if since is not None and not self._awaiting_apply:
            t = min(t, max(since + self.config.sync_grace_ms, self._next_sync))
        return t

    # ------------------------------------------------------------------ RawNode interface

    def has_ready(self) -> bool:
        return bool(self._persist or self._messages or self._committed or self._serve or self._evidence
                    or self._validate or self._propose_out is not None)

    def ready(self) -> Ready:
        if self._outstanding is not None:
            raise RuntimeError("advance() the previous Ready before asking for the next one")
        rd = Ready(self._persist, self._messages, self._committed, self._serve, self._evidence,
                   self._propose_out, self._validate)
        self._persist, self._messages, self._committed, self._serve, self._evidence = [], [], [], [], []
        self._propose_out, self._validate = None, []
        self._outstanding = rd
        return rd

    def advance(self) -> None:
        """The last Ready was handled: persisted, sent, its commits applied by the application."""
        rd = self._outstanding
        if rd is None:
            raise RuntimeError("advance() without a Ready")
        self._outstanding = None
        if rd.committed and self._awaiting_apply and not self._committed:
            self._awaiting_apply = False
            if self.config.commit_delay_ms:
                self._start_at = self.now + self.config.commit_delay_ms
            else:
                self._evaluate(start=True)

    def step(self, msg: Any, peer: Any = None) -> str:
        """Feed one decoded message from `peer` (an opaque, hashable id the shell can answer).
        Returns a short verdict: "ok", "duplicate", "bad_signature", "stale_height", ..."""
        if isinstance(msg, Vote):
            verdict = self._on_vote(msg, peer)
        elif isinstance(msg, Proposal):
            verdict = self._on_proposal(msg, peer)
        elif isinstance(msg, SyncRequest):
            verdict = self._on_sync_request(msg, peer)
        elif isinstance(msg, SyncResponse):
            verdict = self._on_sync_response(msg, peer)
        else:
            raise TypeError(f"not a consensus message: {type(msg).__name__}")
        self.stats[verdict] += 1
        return verdict

    def tick(self, now_ms: int) -> None:
        """Time is now `now_ms` (any monotonic millisecond clock): fire due timeouts, re-send own
        messages of the current round, ask peers for blocks when behind."""
        if now_ms > self.now:
            self.now = now_ms
        now = self.now
        if self._start_at is not None and now >= self._start_at and not self.hold_start:
            self._start_at = None
            self._evaluate(start=True)
        if self._timers and min(t[0] for t in self._timers) <= now:
            due = sorted(t for t in self._timers if t[0] <= now)
            self._timers = [t for t in self._timers if t[0] > now]
            for _, kind, h, r in due:
                self._on_timeout(kind, h, r)
        if now >= self._next_rebroadcast:
            self._next_rebroadcast = now + self.config.rebroadcast_ms
            self._rebroadcast()
        self._maybe_request_sync()

    def propose(self, block: bytes) -> bool:
        """The shell's answer to `Ready.propose`: the block to propose. A block the shell built
        counts as valid without a validate request. Returns False (and ignores the block) when
        the round it was asked for is over; raises ValueError on a block of bad size."""
        req, self._propose_asked = self._propose_asked, None
        hs = self._hs
        if (req is None or not self.started or req.height != self.height or req.round != hs.round
                or hs.step != PROPOSE or (req.round, PROPOSE) in hs.own):
            self.stats["stale_proposal"] += 1
            return False
        if not isinstance(block, bytes) or not 1 <= len(block) <= self.config.max_block_bytes:
            raise ValueError(f"proposed {type(block).__name__} of bad size for height {self.height}")
        bh = self._hash(block)
        hs.validity[bh] = True
        self._sign_proposal(req.round, block, -1, bh)
        self._evaluate()
        return True

    def validated(self, block_hash: bytes, ok: bool) -> bool:
        """The shell's answer to a `Ready.validate` request. Returns False (and ignores it) when
        the core no longer waits for it (the height was decided meanwhile)."""
        hs = self._hs
        if block_hash not in hs.asked:
            self.stats["stale_validation"] += 1
            return False
        hs.asked.discard(block_hash)
        hs.validity[block_hash] = bool(ok)
        if not ok:
            self.stats["invalid_blocks_seen"] += 1
        self._evaluate()
        return True

    def handle_block_sync(self, entries: list[SyncEntry], peer: Any = None) -> str:
        """Hand the core committed (height, block, certificate) entries obtained any way."""
        return self.step(SyncResponse(tuple(entries)), peer)

    # ------------------------------------------------------------------ restart

    def _restore(self, wal: list[Record], last_signed: LastSigned | None) -> None:
        H = self.height
        hs = self._hs
        decisions: dict[int, WalDecision] = {}
        lock: WalLock | None = None
        max_round = last_signed.round if last_signed is not None and last_signed.height == H else 0
        own: list[Proposal | Vote] = []
        for rec in wal:
            if isinstance(rec, LastSigned):
                if self.signer is not None:
                    self.signer.observe(rec)
                if rec.height == H:
                    max_round = max(max_round, rec.round)
                continue
            if rec.height < H:
                continue
            if isinstance(rec, WalDecision):
                decisions[rec.height] = rec
            elif isinstance(rec, WalMessage):
                if rec.height == H:
                    own.append(rec.message)
                self._observe_own(rec.message)
            elif rec.height != H:
                continue
            elif isinstance(rec, WalRound):
                max_round = max(max_round, rec.round)
            elif isinstance(rec, WalLock):
                lock = rec
        # decided but maybe not applied before the crash: hand them out again
        h = H
        while h in decisions and h <= self._known_through():
            d = decisions[h]
            bh = self._peer_hash(d.block)
            if bh is None or not self._certifies(h, bh, d.certificate):
                self.stats["wal_bad_decision"] += 1
                break
            self._committed.append(Committed(h, d.block, d.certificate))
            self._remember(h, d.block, d.certificate)
            h += 1
        if h > H:
            self._awaiting_apply = True
            self._enter_height(h)
            return
        for m in own:
            max_round = max(max_round, m.round)
            if isinstance(m, Vote):
                rs = hs.at(m.round)
                vset = rs.prevotes if m.kind == PREVOTE else rs.precommits
                if not vset.has(m.validator, m.block_hash):
                    self._add_vote(hs, rs, m)
            else:
                bh = self._hash(m.block)
                hs.at(m.round).proposals.append((m, bh))
                hs.blocks.setdefault(bh, m.block)
            hs.own[(m.round, m.step)] = m
        if lock is not None:
            if lock.locked_block is not None:
                hs.locked_round, hs.locked_block = lock.locked_round, lock.locked_block
                hs.locked_hash = self._hash(lock.locked_block)
                hs.blocks.setdefault(hs.locked_hash, hs.locked_block)
            if lock.valid_block is not None:
                hs.valid_round, hs.valid_block = lock.valid_round, lock.valid_block
                hs.valid_hash = self._hash(lock.valid_block)
                hs.blocks.setdefault(hs.valid_hash, hs.valid_block)
                rs = hs.at(hs.valid_round)
                for idx, sig in lock.valid_pol:
                    v = Vote(PREVOTE, H, hs.valid_round, hs.valid_hash, idx, sig)
                    if idx < len(self.validators_at(H)) and not rs.prevotes.has(idx, v.block_hash) and self._verify_vote(v):
                        self._add_vote(hs, rs, v)
        hs.persisted_round = max_round
        if not own and lock is None and max_round == 0:
            # nothing done at this height yet: round 0 starts at the first tick(), like a
            # height after a commit (so hold_start applies after a restart too)
            self._start_at = self.now
            return
        self._start_round(max_round)
        self._rebroadcast()
        self._evaluate()

    def _observe_own(self, m: Proposal | Vote) -> None:
        if self.signer is None:
            return
        if isinstance(m, Vote):
            sb = m.sign_bytes(self.chain_id)
        else:
            sb = m.sign_bytes(self.chain_id, self._hash(m.block))
        self.signer.observe(LastSigned(m.height, m.round, m.step, sb, m.signature))

    # ------------------------------------------------------------------ inputs

    def _verify_vote(self, v: Vote) -> bool:
        vals = self.schedule.at(v.height)
        return v.validator < len(vals) and self.verifier.verify(vals[v.validator].public_key,
                                                                v.sign_bytes(self.chain_id), v.signature)

    def _hash(self, block: bytes) -> bytes:
        bh = self._block_hash(block)
        if not isinstance(bh, bytes) or len(bh) != 32 or bh == NIL:
            raise ValueError("block_hash must return 32 bytes, not all zero")
        return bh

    def _peer_hash(self, block: bytes) -> bytes | None:
        """Hash of a block a peer sent; None if the application cannot make sense of it."""
        try:
            return self._hash(block)
        except Exception:
            return None

    def _height_state(self, h: int) -> _Height:
        if h == self.height:
            return self._hs
        if self._next_hs is None:
            self._next_hs = _Height(h)
        return self._next_hs

    def _note_peer(self, peer: Any, h: int) -> None:
        if peer is None:
            return
        if h > self._peer_heights.get(peer, 0):
            self._peer_heights[peer] = h
        if h > self.height and self._lag_since is None:
            self._lag_since = self.now

    def _on_vote(self, v: Vote, peer: Any) -> str:
        if v.kind not in (PREVOTE, PRECOMMIT):
            return "bad_message"
        H = self.height
        if v.height < H:
            return "stale_height"
        if v.validator >= len(self.schedule.at(v.height)):
            return "unknown_validator"
        if v.height > H + 1 or v.height > self._known_through():
            if not self._verify_vote(v):
                return "bad_signature"
            self._note_peer(peer, v.height)
            return "future_height"
        hs = self._height_state(v.height)
        if v.round > (hs.round if v.height == H else 0) + self.config.max_round_ahead:
            return "round_too_far"
        rs = hs.at(v.round)
        vset = rs.prevotes if v.kind == PREVOTE else rs.precommits
        if vset.has(v.validator, v.block_hash):
            return "duplicate"
        old = vset.first.get(v.validator)
        if old is not None and vset.values[v.validator] >= 2 and v.block_hash not in hs.blocks:
            # an equivocator's third value for a block nobody proposed: not worth memory
            return "equivocation_dropped"
        if not self._verify_vote(v):
            return "bad_signature"
        self._note_peer(peer, v.height)
        self._add_vote(hs, rs, v)
        verdict = "ok"
        if old is not None:
            self._evidence.append(Evidence(v.height, v.round, v.kind, v.validator, old, v))
            verdict = "equivocation"
        if v.height == H:
            self._evaluate()
        return verdict

    def _add_vote(self, hs: _Height, rs: _Round, v: Vote) -> None:
        idx = v.validator
        vals = self.schedule.at(hs.height)
        power = vals.power(idx)
        vset = rs.prevotes if v.kind == PREVOTE else rs.precommits
        if idx not in vset.first:
            vset.first[idx] = v
            vset.total += power
            vset.values[idx] = 1
            self._note_sender(hs, rs, v.round, idx)
        else:
            vset.values[idx] += 1
        bucket = vset.for_hash.get(v.block_hash)
        if bucket is None:
            bucket = vset.for_hash[v.block_hash] = {}
        bucket[idx] = v
        p = vset.by_hash.get(v.block_hash, 0) + power
        vset.by_hash[v.block_hash] = p
        if v.kind == PRECOMMIT and v.block_hash != NIL:
            q = vals.quorum_power
            if p >= q > p - power:
                hs.commit_quorums.append((v.round, v.block_hash))

    def _note_sender(self, hs: _Height, rs: _Round, r: int, idx: int) -> None:
        if idx in rs.senders:
            return
        rs.senders.add(idx)
        vals = self.schedule.at(hs.height)
        power = vals.power(idx)
        rs.sender_power += power
        third = vals.skip_power
        if rs.sender_power >= third > rs.sender_power - power:
            hs.skip_rounds.append(r)

    def _on_proposal(self, p: Proposal, peer: Any) -> str:
        H = self.height
        if p.height < H:
            return "stale_height"
        if not -1 <= p.pol_round < p.round:
            return "bad_pol_round"
        if len(p.block) > self.config.max_block_bytes:
            return "block_too_large"
        vals = self.schedule.at(p.height)
        proposer = vals.proposer(p.height, p.round)
        if p.height > H + 1 or p.height > self._known_through():
            bh = self._peer_hash(p.block)
            if bh is None:
                return "bad_block"
            if not self.verifier.verify(vals[proposer].public_key, p.sign_bytes(self.chain_id, bh),
                                        p.signature):
                return "bad_signature"
            self._note_peer(peer, p.height)
            return "future_height"
        hs = self._height_state(p.height)
        if p.round > (hs.round if p.height == H else 0) + self.config.max_round_ahead:
            return "round_too_far"
        rs = hs.at(p.round)
        for q, _ in rs.proposals:
            if q.signature == p.signature and q.pol_round == p.pol_round and q.block == p.block:
                return "duplicate"
        if len(rs.proposals) >= self.config.max_proposals_per_round:
            return "too_many_proposals"
        bh = self._peer_hash(p.block)
        if bh is None:
            return "bad_block"
        if not self.verifier.verify(vals[proposer].public_key, p.sign_bytes(self.chain_id, bh),
                                    p.signature):
            return "bad_signature"
        self._note_peer(peer, p.height)
        if rs.proposals:
            self._evidence.append(Evidence(p.height, p.round, PROPOSE, proposer, rs.proposals[0][0], p))
        rs.proposals.append((p, bh))
        hs.blocks.setdefault(bh, p.block)
        self._note_sender(hs, rs, p.round, proposer)
        if p.pol:
            vrs = hs.at(p.pol_round)
            n = len(vals)
            for idx, sig in p.pol:
                if idx >= n or vrs.prevotes.has(idx, bh):
                    continue
                v = Vote(PREVOTE, p.height, p.pol_round, bh, idx, sig)
                if self._verify_vote(v):
                    self._add_vote(hs, vrs, v)
                else:
                    self.stats["bad_pol_signature"] += 1
        if p.height == H:
            self._evaluate()
        return "ok"

    def _on_sync_request(self, req: SyncRequest, peer: Any) -> str:
        if peer is None:
            return "no_peer"
        n = min(req.max_count, self.config.sync_batch)
        h = req.from_height
        entries: list[SyncEntry] = []
        size = 64
        while len(entries) < n and h < self.height:
            item = self._recent.get(h)
            if item is None:
                break
            block, cert = item
            size += len(block) + len(cert) + 16
            if entries and size > MAX_MESSAGE_BYTES:
                break
            entries.append(SyncEntry(h, block, cert))
            h += 1
        if entries:
            self._messages.append(Outbound(peer, SyncResponse(tuple(entries))))
            self.stats["sync_served"] += 1
            return "ok"
        if h < self.height:
            self._serve.append(ServeRequest(peer, h, n, self.height))
            return "ok"
        return "nothing_to_serve"

    def _certifies(self, height: int, block_hash: bytes, cert: bytes) -> bool:
        try:
            certificate.verify(self.schedule.at(height), self.chain_id, height, block_hash, cert,
                               verifier=self.verifier)
        except certificate.CertificateError:
            return False
        return True

    def _on_sync_response(self, resp: SyncResponse, peer: Any) -> str:
        accepted = 0
        window = self.height + 4 * self.config.sync_batch
        for e in resp.entries:
            if e.height < self.height or e.height in self._sync_pending:
                continue
            if e.height >= window:
                break
            if len(e.block) > self.config.max_block_bytes:
                return "block_too_large"
            bh = self._peer_hash(e.block)
            if bh is None:
                return "bad_block"
            # a height whose set is not known yet is checked when it is (`_apply_synced`)
            if e.height <= self._known_through() and not self._certifies(e.height, bh, e.certificate):
                return "bad_certificate"
            self._sync_pending[e.height] = (e.block, e.certificate)
            self._note_peer(peer, e.height + 1)
            accepted += 1
        if not accepted:
            return "nothing_new"
        self._evaluate()
        return "ok"

    # ------------------------------------------------------------------ timers

    def _schedule(self, delay: int, kind: int, r: int) -> None:
        self._timers.append((self.now + delay, kind, self.height, r))

    def _on_timeout(self, kind: int, h: int, r: int) -> None:
        hs = self._hs
        if not self.started or h != self.height or r != hs.round:
            return
        if kind == PROPOSE and hs.step == PROPOSE:        # L57
            self.stats["timeout_propose"] += 1
            self._vote(PREVOTE, NIL)
        elif kind == PREVOTE and hs.step == PREVOTE:      # L61
            self.stats["timeout_prevote"] += 1
            self._vote(PRECOMMIT, NIL)
        elif kind == PRECOMMIT:                           # L65
            self.stats["timeout_precommit"] += 1
            self._start_round(r + 1)
        else:
            return
        self._evaluate()

    def _rebroadcast(self) -> None:
        """Own messages of the current and the previous round again, and own precommits for a
        block from any round of the height (a commit of an older round needs them).

        Lost messages are what this repairs. The previous round matters for liveness: a node
        that entered round r on a precommit timeout did so on +2/3 precommits of round r-1, so at
        least f+1 correct nodes sit in round r-1 or r and keep repeating their round r-1 votes;
        a correct node left further behind receives f+1 round r-1 messages and skips (L55), and
        every correct node ends up with the votes it needs to time out into the same round."""
        if not self.started:
            return
        hs = self._hs
        prev = hs.round - 1
        for (r, step), m in hs.own.items():
            if r >= prev or (step == PRECOMMIT and m.block_hash != NIL):
                self._messages.append(Outbound(None, m))

    def _maybe_request_sync(self) -> None:
        if self._awaiting_apply:
            return
        since = self._lag_since if self._lag_since is not None else self._want_since
        if since is None:
            return
        now = self.now
        if now < since + self.config.sync_grace_ms or now < self._next_sync:
            return
        H = self.height
        floor = H + 1 if self._lag_since is not None else H
        peers = sorted((p for p, h in self._peer_heights.items() if h >= floor), key=repr)
        if not peers:
            return
        peer = peers[self._sync_rr % len(peers)]
        self._sync_rr += 1
        self._next_sync = now + self.config.sync_retry_ms
        self.stats["sync_requests"] += 1
        self._messages.append(Outbound(peer, SyncRequest(H, self.config.sync_batch)))

    # ------------------------------------------------------------------ the algorithm

    def _enter_height(self, h: int) -> None:
        self.height = h
        self.index = self._own_index(h)
        nxt = self._next_hs
        self._hs = nxt if nxt is not None and nxt.height == h else _Height(h)
        self._next_hs = None
        self._timers = []
        self._propose_out = self._propose_asked = None
        self._validate = [v for v in self._validate if v.height >= h]
        self._want_since = None
        self._lag_since = self.now if any(ph > h for ph in self._peer_heights.values()) else None
        for k in [k for k in self._sync_pending if k < h]:
            del self._sync_pending[k]

    def _start_round(self, r: int) -> None:                # L11 StartRound
        hs = self._hs
        hs.round = r
        self._propose_out = self._propose_asked = None     # a question of an earlier round is void
        if r > hs.persisted_round:
            hs.persisted_round = r
            self._persist.append(WalRound(self.height, r))
        # after a restart the WAL may say we already voted in this round
        hs.step = PRECOMMIT if (r, PRECOMMIT) in hs.own else PREVOTE if (r, PREVOTE) in hs.own else PROPOSE
        if hs.step != PROPOSE:
            return
        self._schedule(self.config.timeouts.propose(r), PROPOSE, r)
        if self.index is not None and self.proposer(self.height, r) == self.index:
            if (r, PROPOSE) in hs.own:       # a restored own proposal goes out with _rebroadcast
                return
            if hs.valid_block is not None:   # L15: re-propose the valid value
                self._sign_proposal(r, hs.valid_block, hs.valid_round, hs.valid_hash)
            else:                            # L18: getValue() is the shell's
                self._propose_out = self._propose_asked = ProposeRequest(self.height, r)

    def _sign_proposal(self, r: int, block: bytes, vr: int, bh: bytes) -> None:
        hs = self._hs
        h = self.height
        sig, rec = self._sign(h, r, PROPOSE, proposal_sign_bytes(self.chain_id, h, r, bh, vr))
        if sig is None:
            return
        pol: tuple = ()
        if vr >= 0:
            pol = tuple(hs.at(vr).prevotes.signatures_for(bh))
        p = Proposal(h, r, vr, block, sig, pol)
        rs = hs.at(r)
        rs.proposals.append((p, bh))
        hs.blocks.setdefault(bh, block)
        hs.own[(r, PROPOSE)] = p
        self._note_sender(hs, rs, r, self.index)
        self._persist.append(WalMessage(p))
        if rec is not None:
            self._persist.append(rec)
        self._messages.append(Outbound(None, p))
        self.stats["proposed"] += 1

    def _sign(self, h: int, r: int, step: int, sb: bytes) -> tuple[bytes | None, LastSigned | None]:
        if self.signer is None:
            return None, None
        try:
            return self.signer.sign(h, r, step, sb)
        except DoubleSignError:
            self.stats["double_sign_refused"] += 1
            return None, None

    def _vote(self, kind: int, bh: bytes) -> None:
        hs = self._hs
        h, r = self.height, hs.round
        hs.step = kind
        if self.index is None:
            return
        sig, rec = self._sign(h, r, kind, vote_sign_bytes(self.chain_id, kind, h, r, bh))
        if sig is None:
            return
        v = Vote(kind, h, r, bh, self.index, sig)
        rs = hs.at(r)
        if not (rs.prevotes if kind == PREVOTE else rs.precommits).has(self.index, bh):
            self._add_vote(hs, rs, v)
        hs.own[(r, kind)] = v
        self._persist.append(WalMessage(v))
        if rec is not None:
            self._persist.append(rec)
        self._messages.append(Outbound(None, v))

    def _valid(self, hs: _Height, bh: bytes) -> bool | None:
        """valid(v) of Algorithm 1: the shell's answer, or None (and a request) until it came."""
        ok = hs.validity.get(bh)
        if ok is None and bh not in hs.asked:
            hs.asked.add(bh)
            self._validate.append(ValidateRequest(hs.height, bh, hs.blocks[bh]))
        return ok

    def _lock_allows(self, hs: _Height, bh: bytes, vr: int) -> bool:
        """L23: lockedRound = -1 or lockedValue = v (for vr = -1); L29: lockedRound <= vr or
        lockedValue = v. (A test subclass overrides this to prove the simulator catches it.)"""
        return hs.locked_round <= vr or hs.locked_hash == bh

    def _persist_lock(self, hs: _Height) -> None:
        pol: tuple = ()
        if hs.valid_round >= 0:
            pol = tuple(hs.at(hs.valid_round).prevotes.signatures_for(hs.valid_hash))
        self._persist.append(WalLock(hs.height, hs.locked_round, hs.locked_block, hs.valid_round, hs.valid_block, pol))

    def _evaluate(self, start: bool = False) -> None:
        """Run the upon-rules of Algorithm 1 until none fires."""
        if self._awaiting_apply or (self._start_at is not None and not start):
            return
        q = self.validators.quorum_power
        if start:
            if self.height in self._sync_pending and self._apply_synced():
                return
            self._start_round(0)
        while True:
            if self.height in self._sync_pending and self._apply_synced():
                return
            hs = self._hs
            if hs.skip_rounds:                             # L55: f+1 messages of a higher round
                best = max(hs.skip_rounds)
                hs.skip_rounds = []
                if best > hs.round:
                    self.stats["round_skips"] += 1
                    self._start_round(best)
                    continue
            if hs.commit_quorums and self._try_decide(hs):  # L49
                return
            r = hs.round
            rs = hs.rounds.get(r)
            if rs is None:
                return
            if hs.step == PROPOSE and rs.proposals:
                for p, bh in rs.proposals:
                    vr = p.pol_round
                    if vr >= 0:                             # L28: proposal with a polka in round vr
                        vrs = hs.rounds.get(vr)
                        if vrs is None or vrs.prevotes.by_hash.get(bh, 0) < q:
                            continue
                    valid = self._valid(hs, bh)             # L22 (vr = -1) and L28
                    if valid is None:
                        break                               # the shell's answer re-evaluates
                    ok = valid and self._lock_allows(hs, bh, vr)
                    self._vote(PREVOTE, bh if ok else NIL)
                    break
                if hs.step != PROPOSE:
                    continue
            if hs.step >= PREVOTE and not rs.polka_done and rs.proposals:  # L36
                fired = False
                for p, bh in rs.proposals:
                    if rs.prevotes.by_hash.get(bh, 0) >= q and self._valid(hs, bh):
                        rs.polka_done = fired = True
                        block = hs.blocks[bh]
                        if hs.step == PREVOTE:
                            hs.locked_round, hs.locked_block, hs.locked_hash = r, block, bh
                        hs.valid_round, hs.valid_block, hs.valid_hash = r, block, bh
                        self._persist_lock(hs)
                        if hs.step == PREVOTE:
                            self._vote(PRECOMMIT, bh)
                        break
                if fired:
                    continue
            if hs.step == PREVOTE:
                if not rs.prevote_timer and rs.prevotes.total >= q:   # L34
                    rs.prevote_timer = True
                    self._schedule(self.config.timeouts.prevote(r), PREVOTE, r)
                if rs.prevotes.by_hash.get(NIL, 0) >= q:              # L44
                    self._vote(PRECOMMIT, NIL)
                    continue
            if not rs.precommit_timer and rs.precommits.total >= q:   # L47
                rs.precommit_timer = True
                self._schedule(self.config.timeouts.precommit(r), PRECOMMIT, r)
            return

    def _try_decide(self, hs: _Height) -> bool:
        for r, bh in hs.commit_quorums:
            block = hs.blocks.get(bh)
            if block is None:
                if self._want_since is None:
                    self._want_since = self.now   # +2/3 precommits for a block we never got
                continue
            valid = self._valid(hs, bh)
            if not valid:
                if valid is not None:
                    self.stats["certified_block_invalid"] += 1
                continue
            vals = self.schedule.at(hs.height)
            sigs = tuple(sorted((vals[i].id, sig) for i, sig in hs.rounds[r].precommits.signatures_for(bh)))
            self._decide(block, Certificate(hs.height, r, bh, sigs).encode())
            return True
        return False

    def _apply_synced(self) -> bool:
        block, cert = self._sync_pending[self.height]
        bh = self._hash(block)
        if not self._static and not self._certifies(self.height, bh, cert):
            # taken before this height's set was known (or checked again now that it is)
            del self._sync_pending[self.height]
            self.stats["bad_certificate"] += 1
            return False
        hs = self._hs
        hs.blocks.setdefault(bh, block)
        valid = self._valid(hs, bh)
        if valid is None:
            return False
        del self._sync_pending[self.height]
        if not valid:
            # a certificate for an invalid block means more than 1/3 of the power is faulty
            self.stats["certified_block_invalid"] += 1
            return False
        self.stats["synced"] += 1
        self._decide(block, cert)
        return True

    def _decide(self, block: bytes, cert: bytes) -> None:
        h = self.height
        self._persist.append(WalDecision(h, block, cert))
        self._committed.append(Committed(h, block, cert))
        self._remember(h, block, cert)
        self.stats["decided"] += 1
        self._awaiting_apply = True
        self._enter_height(h + 1)

    def _remember(self, h: int, block: bytes, cert: bytes) -> None:
        self._recent[h] = (block, cert)
        while len(self._recent) > self.config.retain_commits:
            del self._recent[next(iter(self._recent))]
