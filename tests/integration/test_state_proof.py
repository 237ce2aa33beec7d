"""State proofs through a real node (docs/state.md): a driver's balance, card, payment and the
public records proven against a header the genesis validators certified; another wallet's
records refused alike whether or not they exist; and a restart refuses a database whose entities
do not make the head block's state root."""

import json

import pytest
from nacl.signing import SigningKey

from bureau.chain import Chain
from bureau.ledger import certificate, records
from bureau.ledger.block import Header
from bureau.ledger.stateproof import verify_state_proof
from bureau.ledger.tariff import Tariff
from bureau.receipts.codec import seal
from bureau.storage import Repository
from bureau.storage import tables as t
from bureau.storage.repository import StateRootMismatch
from bureau.api.errors import ApiError
from bureau.api.state import StateProver
from tests.integration.test_bureau_node import _receipt, _setup
from tests.unit.test_operator_actions import Ledger, _genesis, _open, _top_up, T0_MS
from tests.vectors.generate import TARIFF_DOC


def _checked(bureau, answer: dict) -> dict:
    """The answer's record, after checking it as a phone does: header bytes, certificate, proof."""
    genesis = bureau.node.genesis
    header = Header.decode(bytes.fromhex(answer["header"]["encoded"]))
    assert header.height == answer["height"] and header.hash.hex() == answer["header"]["hash"]
    certificate.verify(genesis.validators, genesis.chain_id, header.height, header.hash,
                       answer["certificate"].encode())
    assert answer["proof"]["key"] == answer["key"] and answer["proof"]["value"] == answer["value"]
    assert verify_state_proof(header.state_root, answer["proof"]) == (True, "")
    return json.loads(answer["value"]) if answer["value"] is not None else None


def test_a_driver_proves_their_records_and_is_refused_others(bureau, replies):
    charger, driver, other = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    _setup(bureau, charger, driver)
    assert bureau.operator("open_wallet", {"wallet_id": "W-2002", "public_key": other.verify_key.encode().hex(),
                                           "cards": ["04FFFF"]})["status"] == "committed"
    assert bureau.operator("top_up", {"wallet_id": "W-2002", "amount_fen": 500,
                                      "reference": "bank:2"})["status"] == "committed"
    replies.publish("ev/v1/charger/GZ-TH-0001/receipt", seal(_receipt(1), charger))
    assert replies.next()[1]["type"] == "ack"

    def ask(key, who=driver, wallet="W-1001"):
        return bureau.driver_get(who, wallet, f"/v1/state/proof?key={key}")

    resp = ask("w/W-1001")
    assert resp.status_code == 200, resp.text
    wallet = _checked(bureau, resp.json())
    assert wallet == {"balance_fen": 100_000 - 910, "debt_fen": 0, "public_key": driver.verify_key.encode().hex()}
    assert wallet["balance_fen"] == bureau.driver_get(driver, "W-1001", "/v1/wallets/W-1001").json()["balance_fen"]
    assert _checked(bureau, ask("k/04A1B2C3D4E5F6").json()) == {"wallet_id": "W-1001", "blocked": False}
    assert _checked(bureau, ask("p/bank:1").json()) == {"wallet_id": "W-1001"}
    tariff = Tariff.from_doc(TARIFF_DOC)
    assert _checked(bureau, ask(f"t/{tariff.tariff_id}/{tariff.version}").json()) == json.loads(records.tariff(tariff, 0))
    assert _checked(bureau, ask("c/GZ-TH-0001").json()) == {"public_key": charger.verify_key.encode().hex(),
                                                            "retired": False}
    absent = ask("c/NOPE-1").json()  # a public key the map does not hold: proven absent
    assert absent["value"] is None and _checked(bureau, absent) is None

    refusals = {}
    for key in ("w/W-2002", "w/W-9999", "k/04FFFF", "k/04EEEE", "p/bank:2", "p/bank:9", "b/W-2002"):
        resp = ask(key)
        refusals[key] = (resp.status_code, resp.json()["error"])
    assert set(refusals.values()) == {(403, "not_your_wallet")}, refusals
    # the owner of W-2002 gets its records
    assert _checked(bureau, ask("k/04FFFF", other, "W-2002").json()) == {"wallet_id": "W-2002", "blocked": False}
    for key in ("x/1", "w", "w/"):
        resp = ask(key)
        assert (resp.status_code, resp.json()["error"]) == (400, "bad_key"), (key, resp.text)
    unsigned = bureau.client.get("/v1/state/proof?key=w/W-1001")
    assert unsigned.status_code == 401


def test_no_proof_before_the_first_block(tmp_path):
    repo = Repository(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    try:
        with pytest.raises(ApiError) as refused:
            StateProver(Chain(_genesis(), repo)).proof("W-1", "o/operator-1")
        assert refused.value.reason == "no_block"
    finally:
        repo.close()


def test_a_restart_refuses_a_database_whose_state_is_not_the_head_roots(database_urls):
    url = database_urls("tampered")
    ledger = Ledger(Repository(url))
    ledger.block([_open(), _top_up("bank:1")], T0_MS)
    assert Ledger(Repository(url)).state.state_root == ledger.state.state_root  # as stored, it loads
    with ledger.repo.engine.begin() as conn:
        conn.execute(t.wallets.update().values(balance_fen=10**9))
    with pytest.raises(StateRootMismatch, match="head block 1"):
        Ledger(Repository(url))


def test_a_state_proof_request_replayed_stale_or_for_another_wallet_is_refused(bureau):
    from bureau.api.auth import authorization_header
    charger, driver, other = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    _setup(bureau, charger, driver)
    assert bureau.operator("open_wallet", {"wallet_id": "W-2002", "public_key": other.verify_key.encode().hex()})[
        "status"] == "committed"
    path = "/v1/state/proof?key=w/W-1001"
    hdr = {"Authorization": authorization_header(driver, "W-1001", "GET", path, node_id="bureau-1")}
    assert bureau.client.get(path, headers=hdr).status_code == 200
    r = bureau.client.get(path, headers=hdr)
    assert (r.status_code, r.json()["error"]) == (401, "replayed")
    old = authorization_header(driver, "W-1001", "GET", path, node_id="bureau-1", ts=1_000_000)
    r = bureau.client.get(path, headers={"Authorization": old})
    assert (r.status_code, r.json()["error"]) == (401, "stale_request")
    # W-2002's own signature, asking for W-1001's balance; and W-1001's, claiming to be W-2002
    r = bureau.driver_get(other, "W-2002", path)
    assert (r.status_code, r.json()["error"]) == (403, "not_your_wallet")
    r = bureau.driver_get(driver, "W-2002", "/v1/state/proof?key=w/W-2002")
    assert (r.status_code, r.json()["error"]) == (401, "bad_signature")
    # the query is signed: the same header for another key is refused
    other_key = "/v1/state/proof?key=w/W-2002"
    signed = {"Authorization": authorization_header(driver, "W-1001", "GET", path, node_id="bureau-1")}
    r = bureau.client.get(other_key, headers=signed)
    assert (r.status_code, r.json()["error"]) == (401, "bad_signature")
