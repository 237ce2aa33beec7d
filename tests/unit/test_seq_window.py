"""The ledger's memory of committed receipts (ledger/history.py, docs/ledger.md, Memory): a seq
window per charger in memory decides whether a seq is new, and refuses one at or below its floor
(`seq_too_old`) whatever storage holds, at execution and at admission, before and after a
restart; and the state's structures stay bounded however many receipts commit."""

import pytest

from bureau.ingest.admission import AlreadyCommitted, Refused, admit_receipt
from bureau.ledger.history import SEQ_WINDOW, MemoryHistory, SeqWindows
from bureau.ledger.tx import receipt_tx
from bureau.receipts.codec import decode, receipt_id
from bureau.storage import Repository
from bureau.storage.repository import StoredHistory
from bureau.tools.network import DEFAULT_TARIFF
from tests.support.fleet import WALLET, fleet_receipts
from tests.unit.test_billing_rules import _changed, _enrolled
from tests.unit.test_operator_actions import T0_MS, Ledger, _action, _kinds


def test_a_window_knows_its_seqs_and_marks_older_ones_below_its_floor():
    w = SeqWindows(width=8)
    assert w.committed("C", 5) is False  # no receipt of C yet
    for seq in (3, 5, 4, 9):  # out of order, as blocks may commit them
        w.add("C", seq)
    assert w.high("C") == 9
    assert [w.committed("C", s) for s in (10, 9, 8, 5, 4, 3, 2, 1, 0)] == \
        [False, True, False, True, True, True, False, None, None]
    w.add("C", 1)  # below the window: the window does not change
    assert w.committed("C", 1) is None and w.high("C") == 9
    w.add("C", 9 + 2**31)  # a jump past the whole window keeps only the new seq
    assert w.committed("C", 9 + 2**31) is True and w.committed("C", 9 + 2**31 - 1) is False
    assert w.committed("C", 9) is None and len(w) == 1


def test_a_window_goes_over_the_wire_as_its_gaps():
    w = SeqWindows(width=8)
    for seq in (1, 2, 3, 5):
        w.add("C", seq)
    (_, high, bits), = w.items()
    assert w.gaps(high, bits) == "2"  # seq 4 (bit 1) missing; seqs start at 1: nothing below
    assert w.from_gaps(high, "2") == bits
    for seq in range(6, 30):
        w.add("C", seq)
    (_, high, bits), = w.items()
    assert w.gaps(high, bits) == "0" and w.from_gaps(high, "0") == bits  # full: the same whatever its age
    for bad in ("1", "100", "02", "x"):  # the highest missing, outside the window, not canonical, not hex
        with pytest.raises(ValueError):
            w.from_gaps(high, bad)


class CountingHistory(MemoryHistory):
    def __init__(self) -> None:
        super().__init__()
        self.receipt_lookups = 0

    def receipt_id(self, charger_id, seq):
        self.receipt_lookups += 1
        return super().receipt_id(charger_id, seq)


def test_new_receipts_in_seq_order_need_no_receipt_lookup():
    ledger, key, envs = _enrolled()
    ledger.state.history = history = CountingHistory()
    ex = ledger.block([receipt_tx(e) for e in envs], T0_MS + 1000)
    assert _kinds(ex) == [("receipt", None)] * 3 and history.receipt_lookups == 0
    ex = ledger.block([receipt_tx(envs[1])], T0_MS + 2000)  # in the window: the id tells duplicate
    assert _kinds(ex) == [("dropped", "duplicate")] and history.receipt_lookups == 1


def _decisions(ledger: Ledger, key, envs, high_seq: int) -> list:
    """What execution and admission decide on resends and reuses of seq 1 and `high_seq`."""
    cid, first = decode(envs[0])[0].charger_id, decode(envs[0])[0]
    high = _changed(envs[1], key, seq=high_seq)
    txs = [envs[0],                                                        # byte-identical resend
           _changed(envs[2], key, seq=1),                                  # another receipt on seq 1
           _changed(envs[2], key, seq=high_seq + 1, session_id=first.session_id),  # seq 1's session again
           high, _changed(envs[2], key, seq=high_seq)]                     # the same at the top
    out = []
    for env in txs:
        decision = admit_receipt(env, ledger.state, cid)
        out.append(("ack", decision.receipt_id == receipt_id(env)) if isinstance(decision, AlreadyCommitted)
                   else (decision.reason if isinstance(decision, Refused) else "admitted"))
    ex = ledger.block([receipt_tx(env) for env in txs], T0_MS + 3000)
    return out + _kinds(ex)


def _committed_far_apart(repo, high_seq: int):
    ledger, key, envs = _enrolled(repo)
    ex = ledger.block([receipt_tx(envs[0]), receipt_tx(_changed(envs[1], key, seq=high_seq))], T0_MS + 1000)
    assert _kinds(ex) == [("receipt", None)] * 2
    return ledger, key, envs


def test_below_the_floor_a_seq_is_refused_whatever_storage_holds(database_urls):
    high_seq = 1 + SEQ_WINDOW + 10  # seq 1 lies below the window of the highest
    # admission leaves sessions to the block (one batched lookup per block)
    expected = ["seq_too_old", "seq_too_old", "admitted", ("ack", True), "seq_reused",
                ("dropped", "seq_too_old"), ("dropped", "seq_too_old"), ("dropped", "session_billed"),
                ("dropped", "duplicate"), ("dropped", "seq_reused")]
    in_memory, key, envs = _committed_far_apart(None, high_seq)
    assert isinstance(in_memory.state.history, MemoryHistory)
    assert _decisions(in_memory, key, envs, high_seq) == expected

    url = database_urls("window")
    stored, key, envs = _committed_far_apart(Repository(url), high_seq)
    cid = decode(envs[0])[0].charger_id
    assert isinstance(stored.state.history, StoredHistory)
    assert stored.state.seq_windows.committed(cid, 1) is None  # below the floor, though the receipts table holds it
    assert _decisions(stored, key, envs, high_seq) == expected
    restarted = Ledger(Repository(url), tariffs=(DEFAULT_TARIFF,))
    assert restarted.state.seq_windows == stored.state.seq_windows
    assert restarted.state.state_root == stored.state.state_root
    assert _decisions(restarted, key, envs, high_seq) == expected


def _entries(state) -> dict[str, int]:
    """Entries of every container the state holds (not bytes: entries grow with history)."""
    out = {name: len(v) for name, v in vars(state).items() if isinstance(v, (dict, set, list, SeqWindows))}
    out["window bits"] = max(bits.bit_length() for _, bits in state.seq_windows._windows.values())
    return out


def test_the_state_stays_bounded_however_many_receipts_commit(database_urls):
    chargers, per_charger = 3, 1500
    keys, receipts, _ = fleet_receipts(chargers, per_charger, spacing_s=1200)
    ledger = Ledger(Repository(database_urls("bounded")), tariffs=(DEFAULT_TARIFF,))
    setup = [_action("enroll_charger", {"charger_id": c, "public_key": k.verify_key.encode().hex()})
             for c, k in keys.items()]
    ledger.block(setup + [_action("open_wallet", {"wallet_id": WALLET, "public_key": "ab" * 32})], T0_MS)
    sizes = []
    for i in range(0, len(receipts), 500):
        ex = ledger.block([receipt_tx(env) for _, env in receipts[i:i + 500]], T0_MS + 1000 + i)
        assert not ex.refused
        sizes.append(_entries(ledger.state))
    assert ledger.repo.count_receipts() == chargers * per_charger
    bits = [s.pop("window bits") for s in sizes]
    assert sizes[0]["seq_windows"] == chargers and all(s == sizes[0] for s in sizes)  # no entry per receipt
    assert bits[0] <= 500 // chargers + 1 and bits[-1] == SEQ_WINDOW == max(bits)  # a window fills, then slides
