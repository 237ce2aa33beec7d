"""Binding a phone to a wallet through a node (docs/ledger.md, Binding a phone): the operator
issues a binding code's key, the phone's `bind_phone` transaction (signed with the key the code
derives) goes in by POST /v1/driver/bind, and the wallet answers the phone's key from then on;
every refusal is the ledger's own, at admission."""

from __future__ import annotations

import time

from nacl.signing import SigningKey

from bureau.ledger import binding
from bureau.ledger.tx import bind_phone_tx


def _issue(bureau, wallet_id: str, valid_s: int = 3600) -> str:
    code = binding.new_code()
    status = bureau.operator("issue_binding_code", {"wallet_id": wallet_id, "expires": int(time.time()) + valid_s,
                                                    "binding_key": binding.binding_key(wallet_id, code).hex()})
    assert status["status"] == "committed", status
    return code


def _bind(bureau, tx: bytes):
    return bureau.client.post("/v1/driver/bind", json={"tx": tx.hex()})


def _wait_bound(bureau, phone: SigningKey, wallet_id: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = bureau.driver_get(phone, wallet_id, f"/v1/wallets/{wallet_id}")
        if resp.status_code == 200:
            return resp.json()
        time.sleep(0.05)
    raise TimeoutError(f"the phone's key of {wallet_id} is not in effect after {timeout} s")


def test_a_phone_binds_with_a_code_once_and_its_signed_requests_are_answered(bureau):
    genesis = bytes.fromhex(bureau.client.get("/v1/chain/head").json()["genesis_hash"])
    assert bureau.operator("open_wallet", {"wallet_id": "W-PH"})["status"] == "committed"  # no phone yet
    phone = SigningKey.generate()
    assert bureau.driver_get(phone, "W-PH", "/v1/wallets/W-PH").status_code == 401
    code = _issue(bureau, "W-PH")
    typed = binding.display(code).lower().replace("0", "o")  # as a driver may type it
    tx = bind_phone_tx(binding.signing_key("W-PH", typed), "W-PH", phone.verify_key.encode(), genesis)
    resp = _bind(bureau, tx)
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "pending"
    assert _wait_bound(bureau, phone, "W-PH")["balance_fen"] == 0
    assert bureau.node.chain.state.bindings.get("W-PH") is None  # the code is used up

    replay = _bind(bureau, tx)
    assert (replay.status_code, replay.json()["error"]) == (409, "duplicate")
    other_phone = SigningKey.generate()
    again = bind_phone_tx(binding.signing_key("W-PH", code), "W-PH", other_phone.verify_key.encode(), genesis)
    refused = _bind(bureau, again)
    assert (refused.status_code, refused.json()["error"]) == (404, "no_binding_code")
    assert _wait_bound(bureau, phone, "W-PH")  # still the first phone's wallet


def test_a_bind_is_refused_for_another_chain_a_wrong_code_an_expired_code_or_an_old_signature(bureau):
    genesis = bytes.fromhex(bureau.client.get("/v1/chain/head").json()["genesis_hash"])
    assert bureau.operator("open_wallet", {"wallet_id": "W-RF"})["status"] == "committed"
    phone = SigningKey.generate().verify_key.encode()
    refused = _bind(bureau, bind_phone_tx(binding.signing_key("W-RF", binding.new_code()), "W-RF", phone, genesis))
    assert refused.json()["error"] == "no_binding_code"
    code = _issue(bureau, "W-RF", valid_s=2)

    def reason(tx: bytes) -> str:
        resp = _bind(bureau, tx)
        assert resp.status_code >= 400, resp.text
        return resp.json()["error"]

    key = binding.signing_key("W-RF", code)
    assert reason(bind_phone_tx(key, "W-RF", phone, bytes(32))) == "wrong_chain"
    assert reason(bind_phone_tx(binding.signing_key("W-RF", binding.new_code()), "W-RF", phone, genesis)) \
        == "bad_signature"
    assert reason(bind_phone_tx(key, "W-RF", phone, genesis, now=int(time.time()) - 7200)) == "expired"
    assert reason(bind_phone_tx(key, "W-RF", phone, genesis, now=int(time.time()) + 7200)) == "too_early"
    assert reason(b"\x03" + b"\x00\x02{}" + bytes(64)) == "unsupported_version"
    deadline = time.monotonic() + 10
    while int(time.time()) < bureau.node.chain.state.bindings["W-RF"][1]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert reason(bind_phone_tx(key, "W-RF", phone, genesis)) == "binding_expired"
    renewed = _issue(bureau, "W-RF")  # a new code replaces the old one; the old one's key is refused
    assert reason(bind_phone_tx(key, "W-RF", phone, genesis)) == "bad_signature"
    assert _bind(bureau, bind_phone_tx(binding.signing_key("W-RF", renewed), "W-RF", phone, genesis)).status_code == 202


def test_a_bind_sent_twice_goes_in_once_and_one_signed_with_another_wallets_code_is_refused(bureau):
    genesis = bytes.fromhex(bureau.client.get("/v1/chain/head").json()["genesis_hash"])
    for wallet in ("W-A", "W-B"):
        assert bureau.operator("open_wallet", {"wallet_id": wallet})["status"] == "committed"
    code_a, code_b = _issue(bureau, "W-A"), _issue(bureau, "W-B")
    phone = SigningKey.generate()
    # W-B's code on a bind of W-A: the binding key on chain is W-A's, and the code derives per wallet
    stolen = bind_phone_tx(binding.signing_key("W-B", code_b), "W-A", phone.verify_key.encode(), genesis)
    assert _bind(bureau, stolen).json()["error"] == "bad_signature"
    stolen = bind_phone_tx(binding.signing_key("W-A", code_b), "W-A", phone.verify_key.encode(), genesis)
    assert _bind(bureau, stolen).json()["error"] == "bad_signature"
    tx = bind_phone_tx(binding.signing_key("W-A", code_a), "W-A", phone.verify_key.encode(), genesis)
    first = _bind(bureau, tx)
    assert first.status_code == 202
    again = _bind(bureau, tx)  # at once: still waiting it is the same transaction, once committed a duplicate
    assert (again.status_code, again.json().get("tx_hash") or again.json()["error"]) in (
        (202, first.json()["tx_hash"]), (409, "duplicate"))
    assert _wait_bound(bureau, phone, "W-A")["balance_fen"] == 0
    replay = _bind(bureau, tx)
    assert (replay.status_code, replay.json()["error"]) == (409, "duplicate")
    assert bureau.driver_get(phone, "W-B", "/v1/wallets/W-B").status_code == 401  # W-B has no phone yet
    assert bureau.node.chain.state.bindings.get("W-B") is not None  # and its code is still unused
