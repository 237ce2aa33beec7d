"""Wallet rules at authorization (docs/authorization.md): a wallet in debt is refused `in_debt`
(a card and a phone start alike) until a top-up settles it; a blocked card is refused
`card_blocked` and is off the signed offline list the chargers get; an unbound card is unknown."""

from __future__ import annotations

from nacl.signing import SigningKey

from bureau.api.auth import authorization_header
from bureau.authz import wire
from tests.integration.test_authorization import ask, enroll, fast_lists, open_wallet  # noqa: F401

CARD, OTHER = "04D0D0D0D0D001", "04D0D0D0D0D002"


def _list_uids(bureau) -> list[str]:
    """The card UIDs of the signed offline list as the node builds it for chargers."""
    env, pages, manifest = bureau.node.authz.service.build_list()
    keys = {v.id: v.public_key for v in bureau.node.genesis.validators}
    wire.verify_manifest(env, keys, bureau.node.genesis.chain_id)
    return [e.uid for page in pages for e in wire.decode_page(page)]


def _start(bureau, driver, wallet_id, charger_id):
    path = f"/v1/wallets/{wallet_id}/start?charger_id={charger_id}&cap_fen=1000"
    hdr = authorization_header(driver, wallet_id, "POST", path, node_id=bureau.settings.node_id)
    return bureau.client.post(path, headers={"Authorization": hdr})


def test_a_wallet_in_debt_is_refused_until_a_top_up_settles_it(bureau, replies):
    enroll(bureau, "CH-D", SigningKey.generate())
    driver = SigningKey.generate()
    open_wallet(bureau, "W-D", driver, [CARD], 1_000)
    assert bureau.operator("adjust", {"wallet_id": "W-D", "delta_fen": -1_500, "reason": "bill of a meter fault",
                                      "reference": "adj:W-D"})["status"] == "committed"
    r = ask(replies, "CH-D", token=CARD)
    assert (r["decision"], r["reason"], r["wallet_id"]) == ("reject", "in_debt", "W-D") and "500 fen" in r["detail"]
    refused = _start(bureau, driver, "W-D", "CH-D")
    assert (refused.status_code, refused.json()["error"]) == (409, "in_debt")
    assert CARD not in _list_uids(bureau)
    assert bureau.operator("top_up", {"wallet_id": "W-D", "amount_fen": 600, "reference": "bank:W-D-2"})["status"] \
        == "committed"
    r = ask(replies, "CH-D", token=CARD)
    assert (r["decision"], r["authorized_fen"]) == ("accept", 100)


def test_a_blocked_card_is_refused_and_off_the_offline_list_until_unblocked(bureau, replies):
    enroll(bureau, "CH-K", SigningKey.generate())
    open_wallet(bureau, "W-K", SigningKey.generate(), [CARD], 4_000)
    assert bureau.operator("bind_card", {"wallet_id": "W-K", "card": OTHER})["status"] == "committed"
    assert _list_uids(bureau) == [CARD, OTHER]
    assert bureau.operator("block_card", {"card": CARD, "reason": "reported lost"})["status"] == "committed"
    r = ask(replies, "CH-K", token=CARD)
    assert (r["decision"], r["reason"]) == ("reject", "card_blocked")
    assert _list_uids(bureau) == [OTHER]  # and the other card's limit is the wallet's whole balance
    assert bureau.node.authz.service.list_entries()[1][0].limit_fen == 4_000
    refused = bureau.operator("block_card", {"card": CARD, "reason": "again"})
    assert (refused["status"], refused["reason"]) == ("refused", "card_blocked")
    assert bureau.operator("unblock_card", {"card": CARD})["status"] == "committed"
    assert ask(replies, "CH-K", token=CARD)["decision"] == "accept"
    assert bureau.operator("unbind_card", {"card": OTHER})["status"] == "committed"
    assert ask(replies, "CH-K", token=OTHER)["reason"] == "unknown_card"
    assert OTHER not in _list_uids(bureau)
