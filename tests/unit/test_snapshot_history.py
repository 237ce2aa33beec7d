"""A snapshot's history bounded by the chargers and the billing horizon (snapshot v2,
docs/consensus.md "Joining from a snapshot"): a node that joined from a snapshot at H, holding
only each charger's seq window and the bills since the horizon, decides every receipt of the
blocks after H as the node that holds the whole chain; and a snapshot carries nothing of the
sessions beyond the bound, so it does not grow with them."""

import hashlib
import json
import random
import shutil
import time
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from nacl.signing import SigningKey

from bureau.chain import Chain
from bureau.ledger import snapshot
from bureau.ledger.canonical import dumps
from bureau.ledger.genesis import Genesis
from bureau.ledger.history import SEQ_WINDOW
from bureau.ledger.state import MAX_RECEIPT_AGE_S, billed_horizon_ms
from bureau.ledger.tariff import Tariff
from bureau.ledger.tx import operator_action, receipt_tx
from bureau.receipts.codec import Receipt, decode, seal
from bureau.storage import Repository
from bureau.tools.network import DEFAULT_TARIFF
from tests.support.proofchain import OPERATOR, certificate, genesis_doc

TARIFF = Tariff.from_doc(DEFAULT_TARIFF)
DAY = 86400
WALLET = "W-HIST"
KEYS = {"HS-A": SigningKey(b"\x41" * 32), "HS-B": SigningKey(b"\x42" * 32)}


def _receipt(cid: str, seq: int, end: int, session: bytes | None = None, tag: str = "") -> bytes:
    """A receipt of `cid` at `seq` ending at `end`; readings by seq, so any order of seqs fits the meter."""
    session = session or hashlib.sha256(f"{cid}/{seq}/{end}/{tag}".encode()).digest()[:16]
    periods = ((TARIFF.kind_at(end), 500),)
    r = Receipt(charger_id=cid, seq=seq, session_id=session, auth_method=1, id_token="04AA", wallet_id=WALLET,
                authorized_fen=10**6, auth_ref="hist", start_time=end - 600, end_time=end, time_flags=3,
                meter_serial=f"M-{cid}", meter_start_wh=seq * 1000, meter_end_wh=seq * 1000 + 500, meter_status=0,
                stop_reason="L", tariff_id="GD-2026-A", tariff_version=1, periods=periods, amount_fen=0,
                firmware_version="fw-1.0.0")
    return seal(replace(r, amount_fen=TARIFF.amount_fen(periods)), KEYS[cid])


class Committed:
    """What the test committed, to build the cases from: envelopes, (charger, session) pairs, and
    the seq HS-A's window leaves out."""

    def __init__(self) -> None:
        self.envelopes: list[bytes] = []
        self.sessions: list[tuple[str, bytes]] = []
        self.gap = 0


def _commit(chain: Chain, doc: dict, txs: list[bytes], time_ms: int, committed: Committed | None = None):
    block, ex = chain.build(txs, "bureau-1", time_ms)
    assert not ex.refused, ex.refused[:3]
    chain.commit(block, certificate(doc["chain_id"], block.height, block.hash), ex)
    if committed is not None:
        for tx in txs:
            committed.envelopes.append(tx[1:])
            r = decode(tx[1:])[0]
            committed.sessions.append((r.charger_id, r.session_id))
    return block


def _served_chain(folder, t: int, old_receipts: int = 3) -> tuple[Chain, dict, Committed]:
    """A chain whose snapshot height H has block time `t`: the wallet and chargers 40 days before,
    `old: = old_receipts` receipts of each charger then (beyond the bound), 1,097 more of HS-A 20
    days before (its seqs up to old + 76 fall below the floor), and a day before, two of HS-A
    that leave a gap in its window, and one of HS-B; at H, one more of HS-B."""
    doc = genesis_doc()
    chain = Chain(Genesis.from_doc(doc), Repository(f"sqlite:///{folder}/chain.sqlite"))
    committed = Committed()
    start = t - 40 * DAY

    def act(action, args, at):
        return operator_action(OPERATOR, "operator-1", action, args, now=at)
    _commit(chain, doc, [act("enroll_charger", {"charger_id": c, "public_key": k.verify_key.encode().hex()}, start)
                         for c, k in KEYS.items()]
            + [act("open_wallet", {"wallet_id": WALLET, "public_key": "ab" * 32}, start),
               act("top_up", {"wallet_id": WALLET, "amount_fen": 10**9, "reference": "bank:hist"}, start)],
            start * 1000)
    old = old_receipts
    _commit(chain, doc, [receipt_tx(_receipt(c, s, start - 600)) for c in KEYS for s in range(1, old + 1)],
            start * 1000 + 1000, committed)
    a = [receipt_tx(_receipt("HS-A", s, t - 20 * DAY - 600)) for s in range(old + 1, old + 1098)]
    _commit(chain, doc, a, (t - 20 * DAY) * 1000, committed)
    committed.gap = old + 1098
    recent = [receipt_tx(_receipt("HS-A", s, t - DAY - 60)) for s in (old + 1099, old + 1100)] \
        + [receipt_tx(_receipt("HS-B", old + 1, t - DAY - 60))]
    _commit(chain, doc, recent, (t - DAY) * 1000, committed)
    _commit(chain, doc, [receipt_tx(_receipt("HS-B", old + 2, t - 60))], t * 1000, committed)
    return chain, doc, committed


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    t = int(time.time()) - 60 * DAY  # H: the later blocks run up to some 50 days after it
    chain, doc, committed = _served_chain(folder, t)
    manifest, chunks = snapshot.manifest_and_chunks(chain.repo.take_snapshot(chain.state))
    snap = snapshot.from_wire(json.loads(json.dumps(manifest)), [json.loads(json.dumps(c)) for c in chunks])
    chain.repo.close()
    yield folder, doc, snap, committed, t


def _cases(rng: random.Random, state, committed: Committed, now: int) -> list[bytes]:
    """One block's receipts: new ones, resends, reused seqs, seqs below the floor, sessions billed
    before (since the horizon and before it), stale and future end times, a seq in a gap."""
    out = []
    for _ in range(rng.randint(1, 8)):
        cid = rng.choice(list(KEYS))
        high = state.seq_windows.high(cid)
        fresh = now - rng.randint(0, 3 * DAY)
        kind = rng.choice(["new", "resend", "reuse", "floor", "rebill", "stale", "edge", "future", "gap"])
        tag = str(rng.random())
        if kind == "new":
            env = _receipt(cid, high + rng.randint(1, 3), fresh, tag=tag)
        elif kind == "resend":
            env = rng.choice(committed.envelopes)
        elif kind == "reuse":
            env = _receipt(cid, high - rng.randint(0, min(high - 1, SEQ_WINDOW - 1)), fresh, tag=tag)
        elif kind == "floor":
            env = _receipt(cid, max(1, high - SEQ_WINDOW - rng.randint(0, 50)), fresh, tag=tag)
        elif kind == "rebill":
            cid, session = rng.choice(committed.sessions)
            env = _receipt(cid, state.seq_windows.high(cid) + 1, fresh, session=session)
        elif kind == "stale":
            env = _receipt(cid, high + 1, now - MAX_RECEIPT_AGE_S - rng.randint(1, DAY), tag=tag)
        elif kind == "edge":
            env = _receipt(cid, high + 1, now - MAX_RECEIPT_AGE_S, tag=tag)
        elif kind == "future":
            env = _receipt(cid, high + 1, now + 301 + rng.randint(0, 600), tag=tag)
        else:
            env = _receipt("HS-A", committed.gap, fresh, tag=tag)
        out.append(receipt_tx(env))
    return out


def _decisions(ex) -> list:
    return [(e.kind, e.charger_id, e.seq) for e in ex.effects] + [(r.reason, r.charger_id, r.seq) for r in ex.refused]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_a_node_joined_from_a_v2_snapshot_decides_every_later_receipt_as_the_full_node(served, tmp_path_factory,
                                                                                      seed):
    folder, doc, snap, committed, t = served
    genesis = Genesis.from_doc(doc)
    work = tmp_path_factory.mktemp("example")
    shutil.copy(folder / "chain.sqlite", work / "full.sqlite")
    full = Chain(genesis, Repository(f"sqlite:///{work}/full.sqlite"))
    restored = snapshot.restore(genesis, snap)  # the state `bureau join` verifies, its history in memory
    repo = Repository(f"sqlite:///{work}/joined.sqlite")
    repo.load_snapshot(snap, snapshot.restore(genesis, snap), "test")
    joined = Chain(genesis, repo)  # as the node then runs: its history in its tables
    assert joined.state.seq_windows == full.state.seq_windows == restored.seq_windows
    rng = random.Random(seed)
    cases = Committed()
    cases.envelopes, cases.sessions, cases.gap = list(committed.envelopes), list(committed.sessions), committed.gap
    now = t
    for _ in range(4):
        now += rng.choice([1, DAY, 10 * DAY, 15 * DAY])
        txs = _cases(rng, full.state, cases, now)
        expected = full.state.execute(txs, now * 1000)
        for other in (joined.state, restored):
            got = other.execute(txs, now * 1000)
            assert _decisions(got) == _decisions(expected) and got.state_root == expected.state_root
        block, ex = full.build(txs, "bureau-1", now * 1000)
        cert = certificate(doc["chain_id"], block.height, block.hash)
        full.commit(block, cert, ex)
        joined.commit(block, cert, joined.check(block))
        restored.apply(restored.execute(list(block.txs), block.header.time_ms), block.height, block.hash,
                       block.header.time_ms)
        cases.envelopes += [tx[1:] for tx in block.txs]
    # the history `bureau join` cross-checks, of the joined node's own snapshot, is the full node's
    assert joined.repo.take_snapshot(joined.state).history_digest() == full.repo.take_snapshot(full.state).history_digest()
    full.repo.close()
    repo.close()


def test_a_snapshot_carries_no_session_beyond_the_bound_and_does_not_grow_with_them(tmp_path):
    t = int(time.time())
    sizes = []
    for old in (3, 300):
        folder = tmp_path / f"old-{old}"
        folder.mkdir()
        chain, _, _ = _served_chain(folder, t, old_receipts=old)
        snap = chain.repo.take_snapshot(chain.state)
        horizon = billed_horizon_ms(t * 1000)
        assert all(at >= horizon for *_, at in snap.receipts + snap.sessions)
        assert len(snap.sessions) == 1097 + 2 + 2 and len(snap.windows) == len(KEYS)
        assert len(snap.receipts) == SEQ_WINDOW - 1 + 2  # HS-A's window but its gap, HS-B's two since the horizon
        sizes.append((len(dumps(snap.history_items())), len(snap.receipts)))
        chain.repo.close()
    # 297 more old receipts per charger (each some 160 bytes in a v1 snapshot): the same history
    # but for the seqs' numbers, at most a digit longer each
    (small, carried), (large, _) = sizes
    assert abs(large - small) <= carried + 16, sizes


@pytest.mark.parametrize("tamper", [
    lambda s: s.windows.__setitem__(0, (*s.windows[0][:2], "1")),  # its highest seq missing
    lambda s: s.windows.append(s.windows[0]),  # a second window of one charger
    lambda s: s.receipts.append(("HS-A", 1, "ab" * 32, s.receipts[0][3])),  # below HS-A's window
    lambda s: s.sessions.append(("HS-A", "cd" * 16, billed_horizon_ms(s.sessions[0][2]) - 1)),  # long before
])
def test_history_a_snapshot_could_not_have_is_refused(served, tamper):
    folder, doc, snap, _, _ = served
    bad = snapshot.from_wire(*snapshot.manifest_and_chunks(snap))
    tamper(bad)
    with pytest.raises(snapshot.SnapshotError) as e:
        snapshot.restore(Genesis.from_doc(doc), bad)
    assert e.value.reason == "bad_history", e.value


def test_a_version_1_snapshot_is_refused_with_its_reason(served):
    _, _, snap, _, _ = served
    manifest, chunks = snapshot.manifest_and_chunks(snap)
    with pytest.raises(snapshot.SnapshotError) as e:
        snapshot.from_wire({**manifest, "v": 1}, chunks)
    assert e.value.reason == "unsupported_version" and "reads 2 only" in e.value.detail
