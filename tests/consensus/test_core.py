"""The consensus core, driven by hand: validator 0 under test, the other three validators' signed
messages made by the test. At height 1 the proposers of rounds 0, 1, 2, 3 are v1, v2, v3, v0."""

import pytest

from bureau.ledger import certificate
from bureau.consensus import (
    NIL, Core, LastSigned, Proposal, ServeRequest, SyncEntry, SyncRequest, SyncResponse, Vote,
    WalDecision, WalLock, decode_record, encode_record,
)

from .helpers import (
    CHAIN, GENESIS, PRECOMMIT, PREVOTE, App, Cluster, bhash, cert_for, config, drain, keys, make_block, persisted,
    pol_for, proposal, sent, vote, vset,
)

KS = keys(4)
VS = vset(KS)
A = make_block(1, GENESIS, b"block A")
B = make_block(1, GENESIS, b"block B")
HA, HB = bhash(A), bhash(B)


class One:
    """Validator 0 with a shell that handles every Ready at once."""

    def __init__(self, app=None, core_cls=Core, **kw):
        self.app = app or App()
        cfg = kw.pop("cfg", {})
        self.core = core_cls(config(**cfg), VS, KS[0], block_hash=bhash, now_ms=0, **kw)
        self.now = kw.get("now_ms", 0)
        self.core.tick(self.now)        # round 0 of the first height starts at the first tick
        self.readies = drain(self.core, self.app)
        self.verdicts = []

    def feed(self, *msgs):
        new = []
        for m in msgs:
            if isinstance(m, Vote):
                peer = m.validator
            elif isinstance(m, Proposal):
                peer = VS.proposer(m.height, m.round)
            else:
                peer = 1
            self.verdicts.append(self.core.step(m, peer))
            new += drain(self.core, self.app)
        self.readies += new
        return sent(new)

    def tick(self, ms):
        self.now += ms
        self.core.tick(self.now)
        new = drain(self.core, self.app)
        self.readies += new
        return sent(new)

    def my(self, kind, round_):
        return [m for m in sent(self.readies, kind) if m.validator == 0 and m.round == round_]


def votes(kind, round_, bh, idxs, h=1):
    return [vote(KS[i], i, kind, h, round_, bh) for i in idxs]


def to_round(d, r):
    """Everyone else precommits nil in the current round; the precommit timeout moves on."""
    cur = d.core.round
    d.feed(*votes(PRECOMMIT, cur, NIL, [1, 2, 3]))
    d.tick(config().timeouts.precommit(cur))
    assert d.core.round == r


# ------------------------------------------------------------------ whole protocol

def test_four_nodes_commit_the_same_blocks_with_valid_certificates():
    c = Cluster(4, commit_delay_ms=10)
    c.run_until(6)
    chains = [[b for b, _ in a.chain[:6]] for a in c.apps]
    assert all(ch == chains[0] for ch in chains)
    for h, (block, cert) in enumerate(c.apps[0].chain[:6], 1):
        assert certificate.verify(c.vs, CHAIN, h, bhash(block), cert)
    assert {block[41:43] for block in chains[0]} >= {b"n0", b"n1", b"n2", b"n3"}  # proposers rotate


def test_weighted_validators_commit():
    c = Cluster(4, powers=[3, 1, 1, 1], commit_delay_ms=10)
    c.run_until(4)
    assert len({a.chain[3][0] for a in c.apps}) == 1


def test_one_down_of_four_still_commits_and_two_down_does_not():
    c = Cluster(4, commit_delay_ms=10)
    c.cut = {3}
    c.run_until(4)
    c2 = Cluster(4, commit_delay_ms=10)
    c2.cut = {2, 3}
    with pytest.raises(AssertionError, match="no progress"):
        c2.run_until(1, max_ms=3000)


def test_a_single_validator_commits_alone():
    ks = keys(1)
    app = App()
    core = Core(config(commit_delay_ms=10), vset(ks), ks[0], block_hash=bhash)
    drain(core, app)
    for t in range(10, 60, 10):
        core.tick(t)
        drain(core, app)
    assert len(app.chain) >= 5
    assert certificate.verify(vset(ks), CHAIN, 1, bhash(app.chain[0][0]), app.chain[0][1])


def test_a_fresh_height_starts_at_the_first_tick_unless_held():
    core = Core(config(), VS, KS[3], block_hash=bhash)     # v3 proposes round 0 of height 2
    assert not core.started and not core.has_ready()
    core.hold_start = True                                # the shell has nothing to propose
    core.tick(5)
    assert not core.started
    core.hold_start = False
    core.tick(6)
    assert core.started and core.round == 0


def test_next_height_starts_only_after_the_commit_was_applied():
    d = One()
    d.feed(proposal(KS[1], 1, 0, A), *votes(PREVOTE, 0, HA, [1, 2]), *votes(PRECOMMIT, 0, HA, [1]))
    d.core.step(vote(KS[2], 2, PRECOMMIT, 1, 0, HA), 2)
    rd = d.core.ready()
    assert [c.height for c in rd.committed] == [1] and isinstance(rd.persist[-1], WalDecision)
    assert not d.core.started and d.core.height == 2
    with pytest.raises(RuntimeError):
        d.core.ready()
    d.app.apply(rd.committed[0])
    d.core.advance()            # App.propose/validate assert the block was applied first
    assert d.core.started
    with pytest.raises(RuntimeError):
        d.core.advance()


# ------------------------------------------------------------------ rules of Algorithm 1

def test_prevote_the_proposal_then_lock_on_a_polka():
    d = One()
    out = d.feed(proposal(KS[1], 1, 0, A))
    assert [(m.kind, m.block_hash) for m in out] == [(PREVOTE, HA)]
    out = d.feed(*votes(PREVOTE, 0, HA, [1, 2]))
    assert [(m.kind, m.block_hash) for m in out] == [(PRECOMMIT, HA)]
    assert (d.core.locked_round, d.core.locked_hash, d.core.valid_round) == (0, HA, 0)
    lock = [r for r in persisted(d.readies) if isinstance(r, WalLock)][-1]
    assert lock.locked_block == A and len(lock.valid_pol) == 3


def test_locked_node_prevotes_nil_for_another_block_and_relocks_on_a_newer_polka():
    d = One()
    d.feed(proposal(KS[1], 1, 0, A), *votes(PREVOTE, 0, HA, [1, 2]))
    to_round(d, 1)
    out = d.feed(proposal(KS[2], 1, 1, B))                # fresh proposal, no proof of lock
    assert [(m.kind, m.round, m.block_hash) for m in out] == [(PREVOTE, 1, NIL)]
    out = d.feed(*votes(PREVOTE, 1, HB, [1, 2, 3]))       # a polka for B in round 1 > 0
    assert [(m.kind, m.round, m.block_hash) for m in out] == [(PRECOMMIT, 1, HB)]
    assert (d.core.locked_round, d.core.locked_hash) == (1, HB)


def test_proof_of_lock_from_a_newer_round_unlocks():
    d = One()
    d.feed(proposal(KS[1], 1, 0, A), *votes(PREVOTE, 0, HA, [1, 2]))
    to_round(d, 1)
    d.feed(proposal(KS[2], 1, 1, B))                       # prevote nil: locked on A
    to_round(d, 2)
    out = d.feed(proposal(KS[3], 1, 2, B, 1, pol_for(KS, [1, 2, 3], 1, 1, B)))
    assert [(m.kind, m.round, m.block_hash) for m in out] == [(PREVOTE, 2, HB)]   # L28: 0 <= vr = 1


def test_proof_of_lock_older_than_the_lock_does_not_unlock_and_proposer_reproposes_valid_value():
    d = One()
    to_round(d, 1)                                         # round 0 passes without a proposal
    d.feed(proposal(KS[2], 1, 1, A), *votes(PREVOTE, 1, HA, [2, 3]))
    assert (d.core.locked_round, d.core.locked_hash) == (1, HA)
    to_round(d, 2)
    out = d.feed(proposal(KS[3], 1, 2, B, 0, pol_for(KS, [1, 2, 3], 1, 0, B)))
    assert [(m.kind, m.round, m.block_hash) for m in out] == [(PREVOTE, 2, NIL)]  # vr = 0 < locked 1
    cur = d.core.round
    d.feed(*votes(PRECOMMIT, cur, NIL, [1, 2, 3]))
    out = d.tick(config().timeouts.precommit(cur))         # round 3: validator 0 proposes
    props = [m for m in out if isinstance(m, Proposal)]
    assert len(props) == 1
    p = props[0]
    assert (p.round, p.pol_round, p.block) == (3, 1, A)
    assert {i for i, _ in p.pol} >= {0, 2, 3}


def test_a_proposal_with_a_proof_of_lock_waits_for_the_polka():
    d = One()
    out = d.feed(proposal(KS[2], 1, 1, B, 0))              # round 1 proposal (skip not reached)
    assert out == [] and d.core.round == 0
    to_round(d, 1)
    assert d.my(PREVOTE, 1) == []                          # no polka for B in round 0 known
    out = d.feed(*votes(PREVOTE, 0, HB, [1, 2, 3]))
    assert [(m.kind, m.round, m.block_hash) for m in out] == [(PREVOTE, 1, HB)]


def test_invalid_block_gets_a_nil_prevote():
    d = One()
    bad = make_block(1, GENESIS, b"BAD block")
    out = d.feed(proposal(KS[1], 1, 0, bad))
    assert [(m.kind, m.block_hash) for m in out] == [(PREVOTE, NIL)]
    d.feed(*votes(PREVOTE, 0, bhash(bad), [1, 2, 3]))      # even a "polka" does not lock it
    assert d.core.locked_round == -1 and d.my(PRECOMMIT, 0) == []


def test_the_core_asks_the_shell_and_waits_for_its_answers():
    core = Core(config(), VS, KS[0], block_hash=bhash)
    core.tick(0)
    core.step(proposal(KS[1], 1, 0, A), 1)
    rd = core.ready()
    core.advance()
    assert [(v.height, v.block_hash, v.block) for v in rd.validate] == [(1, HA, A)] and rd.propose is None
    assert not [m for m in sent([rd]) if isinstance(m, Vote)]          # no prevote before the answer
    core.step(vote(KS[2], 2, PREVOTE, 1, 0, HA), 2)
    assert not core.ready().validate                                   # asked once
    core.advance()
    assert core.validated(HA, True)
    rd = core.ready()
    core.advance()
    assert [(m.kind, m.block_hash) for m in sent([rd])] == [(PREVOTE, HA)]
    assert not core.validated(HA, True)                                # nothing waits for it now
    # proposer of round 3: asked to propose, and an answer after the round ended is ignored
    asked = []
    for r in range(3):
        for i in (1, 2, 3):
            core.step(vote(KS[i], i, PRECOMMIT, 1, r, NIL), i)
        core.tick(core.now + config().timeouts.precommit(r))
        while core.has_ready():
            rd = core.ready()
            core.advance()
            asked.append(rd.propose)
    rd = next(p for p in asked if p is not None)
    assert core.round == 3 and (rd.height, rd.round) == (1, 3) and asked.count(rd) == 1
    core.tick(core.now + config().timeouts.propose(3))                 # prevote nil: too late
    assert not core.propose(A) and core.stats["stale_proposal"] == 1


def test_a_wrong_parent_is_invalid():
    d = One()
    out = d.feed(proposal(KS[1], 1, 0, make_block(1, bytes(32), b"orphan")))
    assert out[0].block_hash == NIL


def test_nil_polka_precommits_nil_and_mixed_prevotes_time_out():
    d = One()
    d.tick(100)                                            # no proposal: prevote nil
    assert d.my(PREVOTE, 0)[0].block_hash == NIL
    out = d.feed(*votes(PREVOTE, 0, NIL, [1, 2]))
    assert [(m.kind, m.block_hash) for m in out] == [(PRECOMMIT, NIL)]
    d = One()
    d.feed(proposal(KS[1], 1, 0, A))
    d.feed(vote(KS[1], 1, PREVOTE, 1, 0, HA), vote(KS[2], 2, PREVOTE, 1, 0, NIL))  # 3 prevotes, no 2/3 on one
    assert d.my(PRECOMMIT, 0) == []
    assert d.core.next_deadline() == d.now + config().timeouts.prevote(0)
    d.tick(config().timeouts.prevote(0))
    assert d.my(PRECOMMIT, 0)[0].block_hash == NIL


def test_commit_on_precommits_of_an_older_round():
    d = One()
    d.feed(proposal(KS[1], 1, 0, A))
    to_round(d, 1)
    to_round(d, 2)
    d.feed(*votes(PRECOMMIT, 0, HA, [1, 2, 3]))            # late precommits of round 0
    assert [b for b, _ in d.app.chain] == [A]
    assert certificate.verify(VS, CHAIN, 1, HA, d.app.chain[0][1])


def test_round_skip_needs_more_than_a_third_of_the_power():
    d = One()
    d.feed(vote(KS[1], 1, PREVOTE, 1, 3))
    assert d.core.round == 0                               # one validator: could be the faulty one
    d.feed(vote(KS[2], 2, PRECOMMIT, 1, 3))
    assert d.core.round == 3
    d = One()
    d.feed(proposal(KS[2], 1, 5, B), vote(KS[3], 3, PREVOTE, 1, 5))   # the proposer counts as a sender
    assert d.core.round == 5
    assert d.my(PREVOTE, 5)[0].block_hash == HB


def test_timeouts_grow_linearly_with_the_round():
    t = config().timeouts
    assert [t.propose(r) for r in range(4)] == [100, 150, 200, 250]
    d = One()
    for r in range(6):
        assert d.core.round == r
        if VS.proposer(1, r) == 0:                         # round 3: it proposes and prevotes its block
            assert d.my(PREVOTE, r)[0].block_hash != NIL
        else:
            assert d.core.step_name == "propose"
            assert d.core.next_deadline() == d.now + t.propose(r)
            d.tick(t.propose(r) - 1)
            assert d.my(PREVOTE, r) == []
            d.tick(1)
            assert d.my(PREVOTE, r)[0].block_hash == NIL
        d.feed(*votes(PREVOTE, r, NIL, [1, 2, 3]), *votes(PRECOMMIT, r, NIL, [1, 2]))
        assert d.core.next_deadline() == d.now + t.precommit(r)
        d.tick(t.precommit(r) - 1)
        assert d.core.round == r
        d.tick(1)
    assert d.core.round == 6


# ------------------------------------------------------------------ bad input

def test_bad_messages_are_refused_with_a_reason():
    d = One()
    forged = vote(KS[2], 1, PREVOTE, 1, 0, HA)             # v2's key, v1's index
    assert d.core.step(forged, 1) == "bad_signature"
    wrong_proposer = proposal(KS[2], 1, 0, A)              # round 0 belongs to v1
    assert d.core.step(wrong_proposer, 2) == "bad_signature"
    assert d.core.step(Vote(PREVOTE, 1, 0, HA, 7, bytes(64)), 1) == "unknown_validator"
    assert d.core.step(vote(KS[1], 1, PREVOTE, 1, 500), 1) == "round_too_far"
    assert d.core.step(vote(KS[1], 1, PREVOTE, 1, 0, HA), 1) == "ok"
    assert d.core.step(vote(KS[1], 1, PREVOTE, 1, 0, HA), 1) == "duplicate"
    assert d.core.step(vote(KS[1], 1, PREVOTE, 9, 0, HA), 1) == "future_height"
    assert d.core.step(SyncResponse((SyncEntry(1, A, b"{}"),)), 1) == "bad_certificate"
    with pytest.raises(TypeError):
        d.core.step(object(), 1)
    assert d.app.chain == [] and d.core.round == 0


def test_equivocation_is_reported_as_evidence():
    d = One()
    d.feed(vote(KS[1], 1, PREVOTE, 1, 0, HA))
    assert d.feed(vote(KS[1], 1, PREVOTE, 1, 0, HB)) == []
    assert d.verdicts[-1] == "equivocation"
    ev = [e for rd in d.readies for e in rd.evidence]
    assert len(ev) == 1 and ev[0].validator == 1 and {ev[0].first.block_hash, ev[0].second.block_hash} == {HA, HB}
    d.feed(proposal(KS[1], 1, 0, A))
    d.feed(proposal(KS[1], 1, 0, B))
    ev = [e for rd in d.readies for e in rd.evidence]
    assert len(ev) == 2 and ev[1].step == 1


# ------------------------------------------------------------------ restart

def restart(d, records=None, app=None, core_cls=Core):
    """A new core for validator 0 from what validator 0 made durable (via the byte codec)."""
    records = persisted(d.readies) if records is None else records
    records = [decode_record(encode_record(r)) for r in records]
    last = [r for r in records if isinstance(r, LastSigned)]
    app = app or d.app
    n = One.__new__(One)
    n.app, n.now, n.verdicts = app, d.now, []
    n.core = core_cls(config(), VS, KS[0], block_hash=bhash, height=len(app.chain) + 1, now_ms=d.now,
                      last_signed=last[-1] if last else None, wal=[r for r in records if not isinstance(r, LastSigned)])
    n.core.tick(d.now)
    n.readies = drain(n.core, app)
    return n


def test_restart_resends_its_vote_and_never_votes_for_another_block():
    d = One()
    d.feed(proposal(KS[1], 1, 0, A))
    mine = d.my(PREVOTE, 0)
    n = restart(d)
    assert n.core.step_name == "prevote" and n.my(PREVOTE, 0) == mine   # same vote, same signature
    n.feed(proposal(KS[1], 1, 0, B))                       # the proposer equivocates after our restart
    n.tick(1000)
    assert {m.block_hash for m in n.my(PREVOTE, 0)} == {HA}
    # the last-signed record alone (WAL lost) still refuses a different vote
    last = [r for r in persisted(d.readies) if isinstance(r, LastSigned)]
    n = restart(d, records=last)
    n.feed(proposal(KS[1], 1, 0, B))
    n.tick(1000)
    assert all(m.block_hash == HA for m in n.my(PREVOTE, 0))
    assert n.core.stats["double_sign_refused"] >= 1


def test_lock_survives_a_restart():
    d = One()
    d.feed(proposal(KS[1], 1, 0, A), *votes(PREVOTE, 0, HA, [1, 2]))
    n = restart(d)
    assert (n.core.locked_round, n.core.locked_hash, n.core.step_name) == (0, HA, "precommit")
    to_round(n, 1)
    n.feed(proposal(KS[2], 1, 1, B))
    assert n.my(PREVOTE, 1)[0].block_hash == NIL


def test_restart_from_any_torn_write_never_double_signs():
    """Replay a run of validator 0; crash it at every point of making a Ready durable (a prefix
    of its records survives, its messages are not sent); restart and push it to sign other
    things at every step: it must never contradict a message it had sent."""
    script = [
        lambda d: to_round(d, 1),
        lambda d: d.feed(proposal(KS[2], 1, 1, A)),
        lambda d: d.feed(*votes(PREVOTE, 1, HA, [2, 3])),
        lambda d: to_round(d, 2),
        lambda d: d.feed(proposal(KS[3], 1, 2, B, 0, pol_for(KS, [1, 2, 3], 1, 0, B))),
        lambda d: to_round(d, 3),
    ]
    d = One()
    for step in script:
        step(d)
    readies = d.readies
    signed = lambda msgs: {(m.height, m.round, m.kind if isinstance(m, Vote) else 1): m for m in msgs
                           if isinstance(m, (Vote, Proposal))}
    assert any(isinstance(m, Proposal) for m in sent(readies))   # it proposed in round 3
    points = 0
    for i, rd in enumerate(readies):
        before = [rec for r in readies[:i] for rec in r.persist]
        was_sent = signed(o.message for r in readies[:i] for o in r.messages)
        for k in range(len(rd.persist) + 1):
            points += 1
            n = restart(d, records=before + rd.persist[:k], app=App())
            for r in range(4):
                other = make_block(1, GENESIS, b"other %d" % r)
                n.feed(proposal(KS[VS.proposer(1, r)], 1, r, other) if VS.proposer(1, r) else vote(KS[1], 1, PREVOTE, 1, r))
                n.feed(*votes(PREVOTE, r, bhash(other), [1, 2, 3]))
                n.tick(1000)
                n.feed(*votes(PRECOMMIT, r, NIL, [1, 2, 3]))
                n.tick(1000)
            for key, m in signed(sent(n.readies)).items():
                if key in was_sent:
                    assert m == was_sent[key], f"crash point {i}/{k}: signed {key} twice"
    assert points > 20


def test_a_decision_made_durable_is_handed_out_again_after_a_crash():
    d = One()
    d.feed(proposal(KS[1], 1, 0, A), *votes(PREVOTE, 0, HA, [1, 2]), *votes(PRECOMMIT, 0, HA, [1, 2]))
    assert len(d.app.chain) == 1
    n = restart(d, app=App())                              # the application lost the block
    assert [(c.height, c.block) for c in [c for rd in n.readies for c in rd.committed]] == [(1, A)]
    assert n.core.height == 2 and len(n.app.chain) == 1


# ------------------------------------------------------------------ catching up

def test_lagging_node_asks_for_blocks_and_catches_up():
    c = Cluster(4, commit_delay_ms=10)
    c.cut = {0}
    c.run_until(4)
    assert len(c.apps[0].chain) == 0
    c.cut = set()
    c.run_until(6)
    assert c.cores[0].stats["synced"] >= 3 and c.cores[0].stats["sync_requests"] >= 1
    assert [b for b, _ in c.apps[0].chain[:6]] == [b for b, _ in c.apps[1].chain[:6]]


def test_sync_request_goes_to_a_peer_ahead_after_the_grace_period():
    d = One()
    d.feed(vote(KS[2], 2, PREVOTE, 5, 0))                  # v2 (peer 2) is at height 5
    status = d.core.sync_status()
    assert status["lagging"] and status["peers_ahead"] == {2: 5}
    assert not [m for m in sent(d.readies) if isinstance(m, SyncRequest)]
    d.tick(config().sync_grace_ms)
    reqs = [(o.to, o.message) for rd in d.readies for o in rd.messages if isinstance(o.message, SyncRequest)]
    assert reqs == [(2, SyncRequest(1, 16))]


def test_blocks_with_certificates_are_verified_before_they_commit():
    d = One()
    bad = [
        SyncResponse((SyncEntry(1, A, cert_for(KS, VS, [1, 2], 1, 0, A)),)),          # 2 of 4
        SyncResponse((SyncEntry(1, A, cert_for(KS, VS, [1, 2, 3], 1, 0, B)),)),       # another block
        SyncResponse((SyncEntry(1, A, cert_for(KS, VS, [1, 2, 3], 1, 0, A, chain="x")),)),
    ]
    for resp in bad:
        assert d.core.step(resp, 1) == "bad_certificate"
    assert d.app.chain == []
    invalid = make_block(1, GENESIS, b"BAD but certified")
    d.core.step(SyncResponse((SyncEntry(1, invalid, cert_for(KS, VS, [1, 2, 3], 1, 0, invalid)),)), 1)
    drain(d.core, d.app)
    assert d.app.chain == [] and d.core.stats["certified_block_invalid"] == 1
    A2 = make_block(2, HA, b"two")
    d.feed(SyncResponse((SyncEntry(1, A, cert_for(KS, VS, [1, 2, 3], 1, 4, A)),
                         SyncEntry(2, A2, cert_for(KS, VS, [0, 2, 3], 2, 0, A2)))))
    assert [b for b, _ in d.app.chain] == [A, A2] and d.core.height == 3


def test_missing_block_of_a_commit_quorum_is_requested():
    d = One()
    d.feed(*votes(PRECOMMIT, 0, HA, [1, 2, 3]))            # never saw the proposal of A
    assert d.app.chain == [] and d.core.sync_status()["missing_block"]
    out = d.tick(config().sync_grace_ms)
    assert any(isinstance(m, SyncRequest) for m in out)
    d.feed(SyncResponse((SyncEntry(1, A, cert_for(KS, VS, [1, 2, 3], 1, 0, A)),)))
    assert [b for b, _ in d.app.chain] == [A]


def test_sync_requests_are_served_from_memory_then_from_the_store():
    c = Cluster(4, commit_delay_ms=10, retain_commits=2)
    c.run_until(4)
    core = c.cores[1]
    core.step(SyncRequest(3, 16), "peer-x")
    rd = core.ready()
    core.advance()
    resp = [o for o in rd.messages if o.to == "peer-x"][0].message
    assert [e.height for e in resp.entries][:1] == [3]
    core.step(SyncRequest(1, 16), "peer-x")
    rd = core.ready()
    core.advance()
    assert rd.serve == [ServeRequest("peer-x", 1, 16, core.height)]


def test_an_observer_without_a_key_follows_the_chain():
    c = Cluster(4, commit_delay_ms=10)
    c.run_until(3)
    app = App(b"obs")
    obs = Core(config(), c.vs, None, block_hash=bhash)                 # no commit delay: it never proposes
    obs.tick(0)
    readies = drain(obs, app)
    for t, (src, msg) in enumerate(c.log):
        if not isinstance(msg, (SyncRequest, SyncResponse)):
            obs.step(msg, src)
        obs.tick(t)
        readies += drain(obs, app)
    assert [b for b, _ in app.chain[:3]] == [b for b, _ in c.apps[0].chain[:3]]
    assert obs.index is None
    assert not [m for m in sent(readies) if isinstance(m, (Vote, Proposal))]   # it never signs
