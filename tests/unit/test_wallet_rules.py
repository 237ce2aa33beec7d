"""Wallet rules of the ledger (docs/ledger.md): refunds and adjustments with a reason and a
reference counted once (with top-ups), debt on the wallet record when a bill takes the balance
below zero, and cards bound, unbound, blocked and unblocked on chain; a restart reads it back."""

from dataclasses import replace

from bureau.ledger import records
from bureau.ledger.tx import receipt_tx
from bureau.receipts.codec import decode, seal
from bureau.storage import Repository
from bureau.tools.network import DEFAULT_TARIFF
from tests.support.fleet import WALLET, fleet_receipts
from tests.unit.test_operator_actions import T0_MS, Ledger, _action, _kinds


def test_refund_and_adjust_move_the_balance_once_per_reference():
    ledger = Ledger()
    ex = ledger.block([_action("open_wallet", {"wallet_id": "W-1"}),
                       _action("top_up", {"wallet_id": "W-1", "amount_fen": 1000, "reference": "bank:1"}),
                       _action("refund", {"wallet_id": "W-1", "amount_fen": 250, "reason": "session cut short",
                                          "reference": "refund:1"}),
                       _action("adjust", {"wallet_id": "W-1", "delta_fen": -400, "reason": "meter fault credit undone",
                                          "reference": "adj:1"}),
                       _action("refund", {"wallet_id": "W-1", "amount_fen": 250, "reason": "again",
                                          "reference": "refund:1"}),
                       _action("adjust", {"wallet_id": "W-1", "delta_fen": 5, "reason": "x", "reference": "bank:1"}),
                       _action("refund", {"wallet_id": "W-9", "amount_fen": 1, "reason": "x", "reference": "r:9"}),
                       _action("adjust", {"wallet_id": "W-1", "delta_fen": 0, "reason": "x", "reference": "a:0"}),
                       _action("refund", {"wallet_id": "W-1", "amount_fen": 1, "reason": "", "reference": "r:2"}),
                       _action("refund", {"wallet_id": "W-1", "amount_fen": -1, "reason": "x", "reference": "r:3"})],
                      T0_MS)
    assert _kinds(ex) == [("open_wallet", None), ("top_up", None), ("refund", None), ("adjust", None),
                          ("refused_action", "duplicate_payment"), ("refused_action", "duplicate_payment"),
                          ("refused_action", "unknown_wallet"), ("refused_action", "malformed"),
                          ("refused_action", "malformed"), ("refused_action", "malformed")]
    assert ledger.balance("W-1") == 850
    refund = ex.effects[2]
    assert (refund.delta_fen, refund.balance_after, refund.detail) == (250, 1250, {"reference": "refund:1",
                                                                                  "note": "session cut short"})


def test_a_bill_above_the_balance_is_debt_until_a_top_up_settles_it(database_urls):
    url = database_urls("debt")
    keys, receipts, _ = fleet_receipts(1, 1)
    (cid, key), = keys.items()
    ledger = Ledger(Repository(url), tariffs=(DEFAULT_TARIFF,))
    ledger.block([_action("enroll_charger", {"charger_id": cid, "public_key": key.verify_key.encode().hex()}),
                  _action("open_wallet", {"wallet_id": WALLET, "public_key": "ab" * 32}),
                  _action("top_up", {"wallet_id": WALLET, "amount_fen": 10, "reference": "bank:1"})], T0_MS)
    (_, env), = receipts
    amount = decode(env)[0].amount_fen
    assert amount > 10
    ex = ledger.block([receipt_tx(env)], T0_MS + 1000)
    assert _kinds(ex) == [("receipt", None)] and ledger.balance(WALLET) == 10 - amount
    assert ledger.state.state_map.get(f"w/{WALLET}") == records.wallet(10 - amount, bytes.fromhex("ab" * 32))
    assert f'"debt_fen":{amount - 10}' in ledger.state.state_map.get(f"w/{WALLET}")
    restarted = Ledger(Repository(url), tariffs=(DEFAULT_TARIFF,))
    assert restarted.state.state_root == ledger.state.state_root
    restarted.block([_action("top_up", {"wallet_id": WALLET, "amount_fen": amount, "reference": "bank:2"},
                             at_ms=T0_MS + 2000)], T0_MS + 2000)
    assert '"debt_fen":0' in restarted.state.state_map.get(f"w/{WALLET}")


def test_cards_are_bound_unbound_blocked_and_unblocked_on_chain(database_urls):
    url = database_urls("cards")
    ledger = Ledger(Repository(url))
    ex = ledger.block([_action("open_wallet", {"wallet_id": "W-1", "cards": ["CARD-1"]}),
                       _action("open_wallet", {"wallet_id": "W-2"}),
                       _action("bind_card", {"wallet_id": "W-2", "card": "CARD-2"}),
                       _action("bind_card", {"wallet_id": "W-2", "card": "CARD-1"}),
                       _action("bind_card", {"wallet_id": "W-9", "card": "CARD-9"}),
                       _action("block_card", {"card": "CARD-1", "reason": "reported stolen"}),
                       _action("block_card", {"card": "CARD-1", "reason": "twice"}),
                       _action("block_card", {"card": "CARD-9", "reason": "never bound"}),
                       _action("unblock_card", {"card": "CARD-2"}),
                       _action("unbind_card", {"card": "CARD-9"}),
                       _action("block_card", {"card": "CARD-2", "reason": ""})], T0_MS)
    assert _kinds(ex) == [("open_wallet", None), ("open_wallet", None), ("bind_card", None),
                          ("refused_action", "card_in_use"), ("refused_action", "unknown_wallet"),
                          ("block_card", None), ("refused_action", "card_blocked"),
                          ("refused_action", "unknown_card"), ("refused_action", "card_not_blocked"),
                          ("refused_action", "unknown_card"), ("refused_action", "malformed")]
    s = ledger.state
    assert s.cards == {"CARD-1": "W-1", "CARD-2": "W-2"} and s.blocked_cards == {"CARD-1"}
    assert s.state_map.get("k/CARD-1") == records.card("W-1", True)
    assert s.state_map.get("k/CARD-2") == records.card("W-2", False)
    restarted = Ledger(Repository(url))
    assert restarted.state.blocked_cards == {"CARD-1"} and restarted.state.state_root == s.state_root
    at = T0_MS + 1000
    ex = restarted.block([_action("unblock_card", {"card": "CARD-1"}, at_ms=at),
                          _action("unbind_card", {"card": "CARD-2"}, at_ms=at),
                          _action("bind_card", {"wallet_id": "W-1", "card": "CARD-2"}, at_ms=at),
                          _action("block_card", {"card": "CARD-2", "reason": "lost"}, at_ms=at),
                          _action("unbind_card", {"card": "CARD-2"}, at_ms=at)], at)
    assert [k for k, _ in _kinds(ex)] == ["unblock_card", "unbind_card", "bind_card", "block_card", "unbind_card"]
    s = restarted.state
    assert s.cards == {"CARD-1": "W-1"} and not s.blocked_cards and s.state_map.get("k/CARD-2") is None
    again = Ledger(Repository(url))
    assert again.state.cards == s.cards and not again.state.blocked_cards and again.state.state_root == s.state_root
