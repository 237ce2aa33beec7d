"""Binding codes and the bind_phone transaction (docs/ledger.md, Binding a phone): the shared
vectors (tests/vectors/binding.json) worked out here from the spec's own steps, the ledger's
rules for issue_binding_code and bind_phone, and a restart that reads an unused code back."""

import hashlib
import json
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from bureau.ledger import binding, records
from bureau.ledger.tx import KIND_DRIVER, TxError, bind_phone_tx, decode_driver
from bureau.storage import Repository
from tests.unit.test_operator_actions import T0_MS, Ledger, _action, _kinds

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "binding.json").read_text())
T0_S = T0_MS // 1000
PHONE = SigningKey(b"\x11" * 32)


def test_the_vectors_follow_the_spec_and_binding_py_agrees():
    for v in VECTORS["codes"]:
        by_hand = v["typed"].upper().replace("-", "").replace(" ", "").replace("O", "0").replace("I", "1") \
            .replace("L", "1")
        assert by_hand == v["normalised"] == binding.normalise(v["typed"])
        assert v["display"] == "-".join(by_hand[i:i + 4] for i in range(0, 16, 4)) == binding.display(by_hand)
        seed = hashlib.sha256(f"EV-BIND/v1\n{v['wallet_id']}\n{by_hand}".encode()).digest()
        assert seed.hex() == v["seed"] == binding.seed(v["wallet_id"], v["typed"]).hex()
        assert SigningKey(seed).verify_key.encode().hex() == v["binding_key"]
    for text in VECTORS["not_codes"]:
        with pytest.raises(binding.BindingCodeError):
            binding.normalise(text)
    b = VECTORS["bind_phone"]
    tx = bytes.fromhex(b["tx"])
    d = decode_driver(tx)
    assert tx[0] == KIND_DRIVER and d.raw.decode() == b["json"] and d.signature.hex() == b["signature"]
    assert d.doc == {"v": 1, "action": "bind_phone", "wallet_id": b["wallet_id"], "public_key": b["phone_public_key"],
                     "genesis": b["genesis_hash"], "time": b["time"], "nonce": b["nonce"]}
    assert d.signed_message().hex() == b["signed_message"]
    key = binding.signing_key(b["wallet_id"], b["code"])
    key.verify_key.verify(d.signed_message(), d.signature)
    assert bind_phone_tx(key, b["wallet_id"], bytes.fromhex(b["phone_public_key"]), bytes.fromhex(b["genesis_hash"]),
                         now=b["time"], nonce=b["nonce"]) == tx


def test_a_new_code_is_sixteen_characters_of_the_alphabet_and_never_the_same():
    codes = {binding.new_code() for _ in range(200)}
    assert len(codes) == 200 and all(len(c) == 16 and set(c) <= set(binding.ALPHABET) for c in codes)


@pytest.mark.parametrize("doc_change, reason", [
    ({"action": "top_up"}, "malformed"), ({"v": 2}, "unsupported_version"), ({"public_key": "AB" * 32}, "malformed"),
    ({"nonce": "xyz"}, "malformed"), ({"time": -1}, "malformed"), ({"extra": 1}, "malformed")])
def test_a_malformed_driver_transaction_is_refused_with_its_reason(doc_change, reason):
    from bureau.ledger import canonical
    b = VECTORS["bind_phone"]
    raw = canonical.dumps({**json.loads(b["json"]), **doc_change})
    with pytest.raises(TxError) as e:
        decode_driver(bytes([KIND_DRIVER]) + len(raw).to_bytes(2, "big") + raw + bytes(64))
    assert e.value.reason == reason


def _bind(ledger, code, wallet="W-1", at_s=T0_S + 10, phone=PHONE, **kw):
    return bind_phone_tx(binding.signing_key(wallet, code), wallet, phone.verify_key.encode(),
                         ledger.state.genesis.hash, now=at_s, **kw)


def test_issue_binding_code_and_bind_phone_in_the_ledger_and_after_a_restart(database_urls):
    url = database_urls("binding")
    ledger = Ledger(Repository(url))
    code, later = binding.new_code(), binding.new_code()
    ex = ledger.block([_action("open_wallet", {"wallet_id": "W-1"}),
                       _action("issue_binding_code", {"wallet_id": "W-1", "expires": T0_S + 3600,
                                                      "binding_key": binding.binding_key("W-1", code).hex()}),
                       _action("issue_binding_code", {"wallet_id": "W-2", "expires": T0_S + 3600,
                                                      "binding_key": "ab" * 32}),
                       _action("issue_binding_code", {"wallet_id": "W-1", "expires": T0_S + 7 * 86400 + 1,
                                                      "binding_key": "ab" * 32}),
                       _action("issue_binding_code", {"wallet_id": "W-1", "expires": T0_S,
                                                      "binding_key": "ab" * 32})], T0_MS)
    assert _kinds(ex) == [("open_wallet", None), ("issue_binding_code", None), ("refused_action", "unknown_wallet"),
                          ("refused_action", "malformed"), ("refused_action", "malformed")]
    s = ledger.state
    assert s.wallets["W-1"].public_key is None
    assert s.state_map.get("w/W-1") == records.wallet(0, None)
    assert s.state_map.get("b/W-1") == records.binding(binding.binding_key("W-1", code), T0_S + 3600)
    restarted = Ledger(Repository(url))  # the unused code and the keyless wallet are read back
    assert restarted.state.bindings == s.bindings and restarted.state.state_root == s.state_root
    tx = _bind(restarted, code)
    ex = restarted.block([tx, tx, _bind(restarted, code, nonce="ab" * 8)], T0_MS + 20_000)
    assert _kinds(ex) == [("bind_phone", None), ("dropped", "duplicate"), ("dropped", "no_binding_code")]
    s = restarted.state
    assert s.wallets["W-1"].public_key == PHONE.verify_key.encode() and "W-1" not in s.bindings
    assert s.state_map.get("b/W-1") is None
    assert s.state_map.get("w/W-1") == records.wallet(0, PHONE.verify_key.encode())
    # a new code binds a new phone (a lost phone); the old code's key no longer does
    restarted.block([_action("issue_binding_code", {"wallet_id": "W-1", "expires": T0_S + 3600,
                                                    "binding_key": binding.binding_key("W-1", later).hex()},
                             at_ms=T0_MS + 30_000)], T0_MS + 30_000)
    new_phone = SigningKey(b"\x12" * 32)
    old_code = _bind(restarted, code, at_s=T0_S + 40, phone=new_phone)
    ex = restarted.block([old_code, _bind(restarted, later, at_s=T0_S + 40, phone=new_phone)], T0_MS + 40_000)
    assert _kinds(ex) == [("bind_phone", None), ("dropped", "bad_signature")] and ex.refused[0].tx == old_code
    again = Ledger(Repository(url))
    assert again.state.wallets["W-1"].public_key == new_phone.verify_key.encode()
    assert again.state.state_root == restarted.state.state_root


def test_a_code_past_its_expiry_is_refused():
    ledger = Ledger()
    code = binding.new_code()
    ledger.block([_action("open_wallet", {"wallet_id": "W-1"}),
                  _action("issue_binding_code", {"wallet_id": "W-1", "expires": T0_S + 60,
                                                 "binding_key": binding.binding_key("W-1", code).hex()})], T0_MS)
    ex = ledger.block([_bind(ledger, code, at_s=T0_S + 60)], (T0_S + 60) * 1000)
    assert _kinds(ex) == [("dropped", "binding_expired")]
