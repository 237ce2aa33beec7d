"""A hold a committed receipt settles is released by the transaction that writes the block
(docs/authorization.md, Holds): a node that stops right after the commit, before any
bookkeeping of its own, finds the hold ended when it starts again."""

import sqlalchemy as sa

from bureau.authz.holds import Hold, HoldBook
from bureau.ledger.tx import receipt_tx
from bureau.receipts.codec import decode
from bureau.storage import Repository
from bureau.storage.tables import authz_holds
from bureau.tools.network import DEFAULT_TARIFF
from tests.support.fleet import WALLET, fleet_receipts
from tests.unit.test_operator_actions import T0_MS, Ledger, _action, _kinds

T0_S = T0_MS // 1000


def test_the_block_commit_releases_the_hold_its_receipt_settles(database_urls):
    url = database_urls("holds")
    keys, receipts, _ = fleet_receipts(1, 1)
    (cid, key), = keys.items()
    ledger = Ledger(Repository(url), tariffs=(DEFAULT_TARIFF,))
    ledger.block([_action("enroll_charger", {"charger_id": cid, "public_key": key.verify_key.encode().hex()}),
                  _action("open_wallet", {"wallet_id": WALLET, "public_key": "ab" * 32}),
                  _action("top_up", {"wallet_id": WALLET, "amount_fen": 10**6, "reference": "bank:1"})], T0_MS)
    (_, env), = receipts
    r = decode(env)[0]
    engine = ledger.repo.engine
    book = HoldBook(engine)
    book.add(Hold(r.auth_ref, WALLET, cid, "card", "04AA", 5000, T0_S, T0_S + 43_200))
    book.add(Hold("auth:other", WALLET, cid, "card", "04AA", 5000, T0_S, T0_S + 43_200))
    ex = ledger.block([receipt_tx(env)], T0_MS + 1000)  # the commit, and then the node stops
    assert _kinds(ex) == [("receipt", None)]
    restarted = HoldBook(engine)
    assert restarted.load(T0_S + 2) == 1
    assert restarted.get(r.auth_ref) is None and restarted.get("auth:other") is not None
    assert ex.effects[0].auth_ref == r.auth_ref
    with engine.connect() as conn:
        row = conn.execute(sa.select(authz_holds).where(authz_holds.c.auth_ref == r.auth_ref)).one()
    assert (row.released_s, row.release_reason) == (T0_S + 1, "committed")
    assert [h.auth_ref for h in book.settled([(r.auth_ref, cid), ("auth:other", "ANOTHER")])] == [r.auth_ref]
    assert book.get("auth:other") is not None
