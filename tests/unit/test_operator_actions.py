"""Operator actions in the ledger state: payment references credit once, an action is decided
once (a refusal is final), and its time must fit the block time. Pure state machine, plus the
storage round trip a restarted node goes through, on SQLite and PostgreSQL."""

from nacl.signing import SigningKey

from bureau.ledger import merkle
from bureau.ledger.block import Block, Header
from bureau.ledger.genesis import Genesis
from bureau.ledger.state import DECIDED_KEPT_MS, LedgerState
from bureau.ledger.tx import ACTION_MAX_AGE_S, ACTION_MAX_SKEW_S, decode_operator, operator_action, tx_hash
from bureau.storage import Repository
from tests.support.fleet import FLEET_SPAN_S, FLEET_START

OPERATOR = SigningKey(b"\x07" * 32)
NODE = SigningKey(b"\x08" * 32)
# block times of these tests, UTC ms: yesterday 08:53:20 UTC, after the fleet's sessions and
# within the staleness bound of them (tests/support/fleet.py)
T0_MS = (FLEET_START + FLEET_SPAN_S + 32_000) * 1000


def _genesis(tariffs: tuple[dict, ...] = ()) -> Genesis:
    doc = {"v": 1, "chain_id": "ev-test", "genesis_time_ms": T0_MS - 1000,
           "validators": [{"id": "bureau-1", "public_key": NODE.verify_key.encode().hex()}],
           "operators": [{"id": "operator-1", "public_key": OPERATOR.verify_key.encode().hex()}]}
    return Genesis.from_doc({**doc, "tariffs": list(tariffs)} if tariffs else doc)


def _action(action: str, args: dict, at_ms: int = T0_MS, **kw) -> bytes:
    return operator_action(OPERATOR, "operator-1", action, args, now=at_ms // 1000, **kw)


def _open(wallet="W-1"):
    return _action("open_wallet", {"wallet_id": wallet, "public_key": "ab" * 32})


def _top_up(reference: str, amount=1000, wallet="W-1", at_ms=T0_MS):
    return _action("top_up", {"wallet_id": wallet, "amount_fen": amount, "reference": reference}, at_ms)


class Ledger:
    """A state that applies blocks one after another, optionally stored like a node does."""

    def __init__(self, repo: Repository | None = None, tariffs: tuple[dict, ...] = ()) -> None:
        self.state = LedgerState(_genesis(tariffs))  # genesis tariffs are in force from time 0
        self.repo = repo
        if repo is not None:
            repo.load_state(self.state)

    def block(self, txs: list[bytes], time_ms: int):
        ex = self.state.execute(txs, time_ms)
        s = self.state
        header = Header("ev-test", s.height + 1, s.last_hash, time_ms, merkle.root(ex.txs), ex.state_root,
                        "bureau-1", len(ex.txs))
        block = Block(header, tuple(ex.txs))
        if self.repo is not None:
            self.repo.commit_block(block, b"{}", ex, s)
        s.apply(ex, header.height, block.hash, time_ms)
        return ex

    def balance(self, wallet="W-1") -> int:
        return self.state.wallets[wallet].balance


def _kinds(ex):
    return [(e.kind, (e.detail or {}).get("reason")) for e in ex.effects] + [("dropped", r.reason) for r in ex.refused]


def test_a_payment_reference_credits_once_across_blocks_and_within_one():
    ledger = Ledger()
    ledger.block([_open(), _top_up("bank:42")], T0_MS)
    assert ledger.balance() == 1000
    again = ledger.block([_top_up("bank:42", 5000)], T0_MS + 1000)  # a new action, the same payment
    assert _kinds(again) == [("refused_action", "duplicate_payment")]
    assert ledger.balance() == 1000
    twice = ledger.block([_top_up("bank:43"), _top_up("bank:43")], T0_MS + 2000)
    assert _kinds(twice) == [("top_up", None), ("refused_action", "duplicate_payment")]
    assert ledger.balance() == 2000


def test_a_top_up_needs_its_payment_reference():
    ledger = Ledger()
    ledger.block([_open()], T0_MS)
    for args in ({"wallet_id": "W-1", "amount_fen": 5}, {"wallet_id": "W-1", "amount_fen": 5, "reference": ""},
                 {"wallet_id": "W-1", "amount_fen": 5, "reference": "a=b"}):
        ex = ledger.block([_action("top_up", args)], T0_MS + 1000 + len(args))
        assert _kinds(ex) == [("refused_action", "malformed")]
    assert ledger.balance() == 0


def test_payment_references_survive_a_restart(database_urls):
    url = database_urls("ledger")
    first = Ledger(Repository(url))
    first.block([_open(), _top_up("bank:7")], T0_MS)
    root = first.state.state_root
    first.repo.close()
    again = Ledger(Repository(url))
    assert again.state.state_root == root and again.balance() == 1000
    ex = again.block([_top_up("bank:7")], T0_MS + 1000)
    assert _kinds(ex) == [("refused_action", "duplicate_payment")] and again.balance() == 1000


def test_a_refused_action_never_commits_later():
    ledger = Ledger()
    early = _top_up("bank:1")  # before its wallet exists
    ex = ledger.block([early], T0_MS)
    assert _kinds(ex) == [("refused_action", "unknown_wallet")]
    assert ex.txs == [early]  # in the block: every node knows it is decided
    ledger.block([_open()], T0_MS + 1000)
    ex = ledger.block([early], T0_MS + 2000)
    assert _kinds(ex) == [("dropped", "duplicate")] and not ex.txs
    assert ledger.balance() == 0
    assert decode_operator(early)  # still a well-formed action: only the ledger's memory refuses it


def test_an_action_commits_only_inside_its_time_window():
    ledger = Ledger()
    stale = _open("W-old")
    ex = ledger.block([stale], T0_MS + (ACTION_MAX_AGE_S + 1) * 1000)
    assert _kinds(ex) == [("dropped", "expired")] and not ex.txs  # refused by time, nothing to remember
    future = _action("open_wallet", {"wallet_id": "W-new", "public_key": "cd" * 32},
                     at_ms=T0_MS + (ACTION_MAX_AGE_S + ACTION_MAX_SKEW_S + 5) * 1000)
    ex = ledger.block([future], T0_MS + (ACTION_MAX_AGE_S + 2) * 1000)
    assert _kinds(ex) == [("refused_action", "too_early")]
    ex = ledger.block([future], T0_MS + (ACTION_MAX_AGE_S + ACTION_MAX_SKEW_S + 5) * 1000)
    assert _kinds(ex) == [("dropped", "duplicate")]  # its clock caught up, the refusal stands
    assert "W-new" not in ledger.state.wallets


def test_decided_hashes_are_forgotten_once_their_window_has_passed(database_urls):
    url = database_urls("ledger")
    ledger = Ledger(Repository(url))
    opened = _open()
    ledger.block([opened], T0_MS)
    assert tx_hash(opened) in ledger.state.operator_txs
    later = T0_MS + DECIDED_KEPT_MS + 1
    ledger.block([_top_up("bank:9", at_ms=later)], later)
    assert tx_hash(opened) not in ledger.state.operator_txs and len(ledger.state.operator_txs) == 1
    ex = ledger.block([opened], later + 1000)
    assert _kinds(ex) == [("dropped", "expired")]  # the window alone refuses it now
    kept = dict(ledger.state.operator_txs)
    ledger.repo.close()
    assert Ledger(Repository(url)).state.operator_txs == kept  # a restarted node keeps the same set


def test_deeply_nested_arguments_are_malformed_not_a_crash():
    nested: list = []
    for _ in range(200):
        nested = [nested]
    tx = _action("publish_tariff", {"tariff": nested})
    ledger = Ledger()
    ex = ledger.block([tx], T0_MS)
    assert _kinds(ex) == [("dropped", "malformed")]
    assert "nests deeper" in ex.refused[0].detail


def test_a_retired_charger_stays_retired_its_receipts_refused_and_survives_a_restart(tmp_path):
    from tests.support.fleet import WALLET, fleet_receipts
    from bureau.ledger.tx import receipt_tx

    keys, receipts, _ = fleet_receipts(1, 2)
    (cid, key), = keys.items()
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(Repository(url))
    early = ledger.block([_action("retire_charger", {"charger_id": cid})], T0_MS)
    assert _kinds(early) == [("refused_action", "unknown_charger")]
    enroll = _action("enroll_charger", {"charger_id": cid, "public_key": key.verify_key.encode().hex()})
    ledger.block([enroll, _open(WALLET), receipt_tx(receipts[0][1])], T0_MS + 1000)
    assert ledger.state.active_chargers() == [cid]
    ex = ledger.block([_action("retire_charger", {"charger_id": cid}), receipt_tx(receipts[1][1]),
                       _action("retire_charger", {"charger_id": cid})], T0_MS + 2000)
    assert _kinds(ex) == [("retire_charger", None), ("refused_action", "charger_retired"),
                          ("dropped", "charger_retired")]
    again = Ledger(Repository(url))
    assert again.state.retired == {cid} and again.state.active_chargers() == []
    assert again.state.chargers[cid] == key.verify_key.encode()  # its committed receipts stay verifiable
    assert again.state.state_root == ledger.state.state_root
    back = again.block([_action("enroll_charger", {"charger_id": cid, "public_key": "cd" * 32})], T0_MS + 3000)
    assert _kinds(back) == [("refused_action", "charger_retired")]
