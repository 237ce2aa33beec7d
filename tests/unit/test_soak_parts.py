"""The soak's pure parts: the seeded fault schedule and the ledger tally."""

from collections import Counter

from nacl.signing import SigningKey

from bureau.tools.faults import HOLD_S, KINDS, NODE_FAULTS, FaultPlanner, percentile
from bureau.tools.hostile import hostile_receipt
from bureau.tools.tally import Issued, NodeLedger, tally


def test_a_seed_names_one_schedule_and_every_round_has_every_kind():
    p, q = FaultPlanner(7, 4), FaultPlanner(7, 4)
    a = [p.next() for _ in range(40)]
    assert a == [q.next() for _ in range(40)]
    assert a != [FaultPlanner(8, 4).next() for _ in range(40)]
    for i in range(0, 40, len(KINDS)):
        assert sorted(e.kind for e in a[i:i + len(KINDS)]) == sorted(KINDS)
    for e in a:
        assert (e.target is not None) == (e.kind in NODE_FAULTS)
        assert e.target is None or 0 <= e.target < 4
        assert HOLD_S[e.kind][0] <= e.hold_s <= HOLD_S[e.kind][1]


def test_first_round_done_after_every_kind():
    p = FaultPlanner(1, 4)
    for _ in KINDS:
        assert not p.first_round_done
        p.next()
    assert p.first_round_done


def test_percentile():
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 1.0) == 4.0


def _issued(n: int) -> list[Issued]:
    key = SigningKey.generate()
    return [Issued.of(hostile_receipt("C-1", seq, key, "W-1")) for seq in range(1, n + 1)]


def _ledger(node: str, issued: list[Issued], top_up: int, times: Counter | None = None) -> NodeLedger:
    led = NodeLedger(node, chain_valid=True, state_root="r")
    for i in issued:
        n = (times or Counter())[i.receipt_id] or 1
        led.receipts[i.receipt_id] += n
        led.sessions[(i.charger_id, i.session_id)] += n
        led.bills[i.wallet_id] += n * i.amount_fen
    led.top_ups["W-1"] = top_up
    led.balances["W-1"] = top_up - led.bills["W-1"]
    return led


def test_tally_of_clean_ledgers():
    issued = _issued(5)
    r = tally(issued, [_ledger("a", issued, 10**6), _ledger("b", issued, 10**6)], {"W-1": 10**6})
    assert (r["receipts_sent"], r["receipts_committed"], r["receipts_doubled"], r["receipts_lost"]) == (5, 5, 0, 0)
    assert r["wallets_consistent"] and r["wallets_checked"] == 2


def test_tally_finds_a_receipt_missing_on_one_node_and_one_committed_twice():
    issued = _issued(5)
    twice = Counter({issued[0].receipt_id: 2})
    r = tally(issued, [_ledger("a", issued, 10**6, twice), _ledger("b", issued[1:], 10**6)], {"W-1": 10**6})
    assert r["receipts_doubled"] == 1 and r["receipts_lost"] == 1 and r["receipts_committed"] == 4
    # node a billed the doubled receipt twice and node b lacks one: neither matches what was issued
    assert not r["wallets_consistent"] and len(r["wallet_problems"]) == 2


def test_tally_finds_a_balance_that_is_not_top_ups_minus_bills():
    issued = _issued(3)
    led = _ledger("a", issued, 10**6)
    led.balances["W-1"] += 1
    r = tally(issued, [led], {"W-1": 10**6})
    assert not r["wallets_consistent"] and "balance" in r["wallet_problems"][0]
