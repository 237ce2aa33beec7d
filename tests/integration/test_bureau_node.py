"""One bureau node end to end through a real mosquitto: enroll, top up, publish a receipt,
commit, ack, balance; and every kind of bad receipt refused with its reason."""

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from bureau.ledger.audit import audit_chain
from bureau.ledger.tariff import Tariff
from bureau.receipts.ack import verify_ack
from bureau.receipts.codec import MAX_ENVELOPE, ReceiptError, decode, receipt_id, seal
from bureau.receipts.reject import verify_reject
from tests.support.bureau import TestBureau
from bureau.tools.sessiontime import recent
from tests.vectors.generate import TARIFF_DOC, session_receipt

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def _setup(bureau, charger_key, driver_key, top_up=100_000):
    assert bureau.operator("enroll_charger", {"charger_id": "GZ-TH-0001",
                                              "public_key": charger_key.verify_key.encode().hex()})["status"] == "committed"
    assert bureau.operator("open_wallet", {"wallet_id": "W-1001", "public_key": driver_key.verify_key.encode().hex(),
                                           "cards": ["04A1B2C3D4E5F6"]})["status"] == "committed"
    assert bureau.operator("top_up", {"wallet_id": "W-1001", "amount_fen": top_up, "reference": "bank:1"})["status"] == "committed"


def _receipt(seq=1, **changes):
    r = replace(session_receipt(seq), **changes)
    return replace(r, amount_fen=Tariff.from_doc(TARIFF_DOC).amount_fen(r.periods))


def test_publish_commit_ack_balance_history_proof(bureau, replies):
    charger, driver = SigningKey.generate(), SigningKey.generate()
    _setup(bureau, charger, driver)
    env = seal(_receipt(1), charger)
    replies.publish("ev/v1/charger/GZ-TH-0001/receipt", env)
    topic, ack = replies.next()
    assert topic == "ev/v1/charger/GZ-TH-0001/reply"
    assert ack["type"] == "ack" and ack["seq"] == 1 and ack["receipt"] == receipt_id(env) and ack["height"] >= 1
    # signed by the admitting bureau for this chain and charger, naming the block that holds it
    keys = {v.id: v.public_key for v in bureau.node.genesis.validators}
    raw_ack = json.dumps(ack).encode()
    assert verify_ack(raw_ack, bureau.node.genesis.chain_id, keys)["bureau"] == "bureau-1"
    assert ack["charger"] == "GZ-TH-0001" and ack["block"] == bureau.node.repo.block(ack["height"])[0].hash.hex()

    resp = bureau.driver_get(driver, "W-1001", "/v1/wallets/W-1001")
    assert resp.status_code == 200, resp.text
    assert resp.json()["balance_fen"] == 100_000 - 910

    hist = bureau.driver_get(driver, "W-1001", "/v1/wallets/W-1001/history?limit=10").json()["entries"]
    assert [e["kind"] for e in hist] == ["receipt", "top_up", "open_wallet"]
    assert hist[0]["delta_fen"] == -910 and hist[0]["energy_wh"] == 7000

    proof = bureau.driver_get(driver, "W-1001", "/v1/receipts/GZ-TH-0001/1/proof").json()
    from bureau.ledger import merkle
    from bureau.ledger.tx import receipt_tx
    leaf = merkle.leaf_hash(receipt_tx(bytes.fromhex(proof["receipt"]["envelope"])))
    assert merkle.verify_inclusion(leaf, proof["leaf_index"], proof["tree_size"],
                                   [bytes.fromhex(p) for p in proof["audit_path"]],
                                   bytes.fromhex(proof["header"]["tx_root"]))

    # a resend after commit is acked again and never counted twice
    replies.publish("ev/v1/charger/GZ-TH-0001/receipt", env)
    _, again = replies.next()
    assert again["type"] == "ack" and again["receipt"] == ack["receipt"]
    # the re-ack is signed too and names the same block, fetched from storage
    verify_ack(json.dumps(again).encode(), bureau.node.genesis.chain_id, keys)
    assert (again["height"], again["block"]) == (ack["height"], ack["block"])
    assert bureau.driver_get(driver, "W-1001", "/v1/wallets/W-1001").json()["balance_fen"] == 100_000 - 910
    report = audit_chain(bureau.node.genesis, bureau.node.repo)
    assert report["chain_valid"] and report["receipts"] == 1


def test_bad_receipts_are_refused_with_reasons_and_change_nothing(bureau, replies):
    bad = json.loads((VECTORS / "receipts-bad.json").read_text())
    charger = SigningKey(bytes.fromhex(json.loads((VECTORS / "receipts.json").read_text())[0]["seed"]))
    driver = SigningKey.generate()
    _setup(bureau, charger, driver)
    height = bureau.node.chain.height
    keys = {v.id: v.public_key for v in bureau.node.genesis.validators}

    def signed_reject(reply: dict, charger_id: str, envelope: bytes) -> None:
        # signed by the node for the charger of the topic, naming the receipt when it could be read
        verify_reject(json.dumps(reply).encode(), bureau.node.genesis.chain_id, keys)
        assert reply["charger"] == charger_id and reply["bureau"] == "bureau-1"
        try:
            if len(envelope) > MAX_ENVELOPE:
                raise ReceiptError("oversized", "not read")
            seq = decode(envelope)[0].seq
        except ReceiptError:
            assert (reply["seq"], reply["receipt"]) == (None, None), reply
        else:
            assert (reply["seq"], reply["receipt"]) == (seq, receipt_id(envelope)), reply

    for vec in bad:
        envelope = bytes.fromhex(vec["envelope"])
        if vec["reason"] == "wrong_amount":  # a ledger rule, checked after the staleness bound: on a recent day
            r = decode(envelope)[0]
            envelope = seal(replace(r, start_time=recent(r.start_time), end_time=recent(r.start_time) + r.end_time
                                    - r.start_time), charger)
        replies.publish("ev/v1/charger/GZ-TH-0001/receipt", envelope)
        _, reply = replies.next()
        assert reply["type"] == "reject", vec["label"]
        assert reply["reason"] == vec["reason"], (vec["label"], reply)
        signed_reject(reply, "GZ-TH-0001", envelope)
    stranger = SigningKey.generate()
    cases = [
        ("ev/v1/charger/NOPE-1/receipt", seal(_receipt(5, charger_id="NOPE-1"), stranger), "unknown_charger"),
        ("ev/v1/charger/OTHER/receipt", seal(_receipt(5), charger), "wrong_topic"),
        ("ev/v1/charger/GZ-TH-0001/receipt", seal(_receipt(6, wallet_id="W-404"), charger), "unknown_wallet"),
        ("ev/v1/charger/GZ-TH-0001/receipt", seal(_receipt(7, tariff_version=9), charger), "unknown_tariff"),
    ]
    for topic, env, reason in cases:
        replies.publish(topic, env)
        _, reply = replies.next()
        assert reply["type"] == "reject" and reply["reason"] == reason, (reason, reply)
        signed_reject(reply, topic.split("/")[3], env)
    # refused ones that passed admission leave at most empty blocks: no transaction got in
    chain = bureau.node.chain
    assert all(chain.repo.block(h)[0].txs == () for h in range(height + 1, chain.height + 1))
    assert bureau.node.metrics.total("rejected") == len(bad) + len(cases)

    # seq reuse: commit seq 8, then a different receipt with seq 8
    replies.publish("ev/v1/charger/GZ-TH-0001/receipt", seal(_receipt(8), charger))
    assert replies.next()[1]["type"] == "ack"
    replies.publish("ev/v1/charger/GZ-TH-0001/receipt", seal(_receipt(8, stop_reason="R"), charger))
    assert replies.next()[1]["reason"] == "seq_reused"
    # and the node still works
    replies.publish("ev/v1/charger/GZ-TH-0001/receipt", seal(_receipt(9), charger))
    assert replies.next()[1]["type"] == "ack"
    # the billing rules, each with its signed reject: a session billed again, a meter run back,
    # energy in a period the session never touched (peak, 10:00-11:30 local), an end in the future
    nine, ten = session_receipt(9), session_receipt(10)
    billing = [(_receipt(10, session_id=nine.session_id), "session_billed"),
               (_receipt(10, meter_start_wh=nine.meter_end_wh - 1, meter_end_wh=ten.meter_end_wh - 1), "meter_rollback"),
               (_receipt(10, periods=((1, 3000), (3, 4000))), "period_mismatch"),
               (_receipt(10, end_time=int(time.time()) + 3600), "from_future")]
    for receipt, reason in billing:
        env = seal(receipt, charger)
        replies.publish("ev/v1/charger/GZ-TH-0001/receipt", env)
        _, reply = replies.next()
        assert reply["type"] == "reject" and reply["reason"] == reason, (reason, reply)
        signed_reject(reply, "GZ-TH-0001", env)
    assert bureau.driver_get(driver, "W-1001", "/v1/wallets/W-1001").json()["balance_fen"] == 100_000 - 2 * 910


def test_driver_reads_only_own_wallet_and_cannot_replay(bureau):
    charger, driver, other = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    _setup(bureau, charger, driver)
    assert bureau.operator("open_wallet", {"wallet_id": "W-2002", "public_key": other.verify_key.encode().hex()})["status"] == "committed"
    assert bureau.client.get("/v1/wallets/W-1001").json()["error"] == "missing_auth"
    r = bureau.driver_get(other, "W-2002", "/v1/wallets/W-1001")
    assert r.status_code == 403 and r.json()["error"] == "not_your_wallet"
    r = bureau.driver_get(other, "W-1001", "/v1/wallets/W-1001")  # claims W-1001 with the wrong key
    assert r.status_code == 401 and r.json()["error"] == "bad_signature"
    from bureau.api.auth import authorization_header
    hdr = authorization_header(driver, "W-1001", "GET", "/v1/wallets/W-1001", node_id="bureau-1")
    assert bureau.client.get("/v1/wallets/W-1001", headers={"Authorization": hdr}).status_code == 200
    r = bureau.client.get("/v1/wallets/W-1001", headers={"Authorization": hdr})
    assert r.status_code == 401 and r.json()["error"] == "replayed"
    old = authorization_header(driver, "W-1001", "GET", "/v1/wallets/W-1001", node_id="bureau-1", ts=1_000_000)
    assert bureau.client.get("/v1/wallets/W-1001", headers={"Authorization": old}).json()["error"] == "stale_request"


def test_operator_actions_are_checked(bureau):
    from bureau.ledger.tx import operator_action
    forged = operator_action(SigningKey.generate(), "operator-1", "top_up", {"wallet_id": "W-1", "amount_fen": 5})
    r = bureau.client.post("/v1/operator/actions", json={"tx": forged.hex()})
    assert r.status_code == 400 and r.json()["error"] == "bad_signature"
    r = bureau.client.post("/v1/operator/actions", json={"tx": "zz"})
    assert r.status_code == 400 and r.json()["error"] == "malformed"
    status = bureau.operator("top_up", {"wallet_id": "W-none", "amount_fen": 5, "reference": "bank:x"})
    assert status["status"] == "refused" and status["reason"] == "unknown_wallet"
    assert bureau.client.get("/schema/openapi.json").status_code == 200


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_restart_from_storage_keeps_state_and_reacks(tmp_path, mosquitto, replies, backend, request):
    db_url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    charger, driver = SigningKey.generate(), SigningKey.generate()
    b = TestBureau(tmp_path, mosquitto, db_url)
    try:
        _setup(b, charger, driver)
        envs = [seal(_receipt(seq), charger) for seq in (1, 2, 3)]
        for env in envs:
            replies.publish("ev/v1/charger/GZ-TH-0001/receipt", env)
        assert sorted(replies.next()[1]["seq"] for _ in envs) == [1, 2, 3]
        height, root = b.node.chain.height, b.node.chain.state.state_root
    finally:
        b.close()
    b = TestBureau(tmp_path, mosquitto, db_url)  # same data dir, same database
    try:
        assert b.node.chain.height == height and b.node.chain.state.state_root == root
        assert b.driver_get(driver, "W-1001", "/v1/wallets/W-1001").json()["balance_fen"] == 100_000 - 3 * 910
        replies.publish("ev/v1/charger/GZ-TH-0001/receipt", envs[1])  # ack lost, charger resends
        _, reply = replies.next()
        assert reply["type"] == "ack" and reply["seq"] == 2
        replies.publish("ev/v1/charger/GZ-TH-0001/receipt", seal(_receipt(4), charger))
        assert replies.next()[1]["seq"] == 4
        report = audit_chain(b.node.genesis, b.node.repo)
        assert report["chain_valid"] and report["receipts"] == 4
        assert report["balances_fen"] == 100_000 - 4 * 910
    finally:
        b.close()


def _submit(bureau, tx: bytes):
    return bureau.client.post("/v1/operator/actions", json={"tx": tx.hex()})


def _wait_decided(bureau, tx_hash_hex: str) -> dict:
    import time
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = bureau.operator_get(f"/v1/operator/actions/{tx_hash_hex}").json()
        if status["status"] != "pending":
            return status
        time.sleep(0.02)
    raise TimeoutError(tx_hash_hex)


def test_a_payment_reference_is_credited_once(bureau):
    charger, driver = SigningKey.generate(), SigningKey.generate()
    _setup(bureau, charger, driver, top_up=100_000)  # reference bank:1
    status = bureau.operator("top_up", {"wallet_id": "W-1001", "amount_fen": 100_000, "reference": "bank:1"})
    assert status["status"] == "refused" and status["reason"] == "duplicate_payment", status
    assert bureau.driver_get(driver, "W-1001", "/v1/wallets/W-1001").json()["balance_fen"] == 100_000


def test_a_refused_operator_action_cannot_commit_when_sent_again(bureau):
    from bureau.ledger.tx import operator_action
    driver = SigningKey.generate()
    early = operator_action(bureau.operator_key, "operator-1", "top_up",
                            {"wallet_id": "W-7", "amount_fen": 5_000, "reference": "bank:7"})
    r = _submit(bureau, early)
    assert r.status_code == 202, r.text
    assert _wait_decided(bureau, r.json()["tx_hash"])["reason"] == "unknown_wallet"
    assert bureau.operator("open_wallet", {"wallet_id": "W-7", "public_key": driver.verify_key.encode().hex()})["status"] == "committed"
    r = _submit(bureau, early)  # the same signed bytes, now that the wallet exists
    assert r.status_code == 409 and r.json()["error"] == "duplicate", r.text
    assert bureau.driver_get(driver, "W-7", "/v1/wallets/W-7").json()["balance_fen"] == 0


def test_an_operator_action_outside_its_time_window_is_refused(bureau):
    import time
    from bureau.ledger.tx import ACTION_MAX_AGE_S, ACTION_MAX_SKEW_S, operator_action
    key = SigningKey.generate().verify_key.encode().hex()
    for offset, reason in ((-ACTION_MAX_AGE_S - 60, "expired"), (ACTION_MAX_SKEW_S + 60, "too_early")):
        tx = operator_action(bureau.operator_key, "operator-1", "open_wallet", {"wallet_id": "W-8", "public_key": key},
                             now=int(time.time()) + offset)
        r = _submit(bureau, tx)
        assert r.status_code == 400 and r.json()["error"] == reason, r.text
    assert "W-8" not in bureau.node.chain.state.wallets


def test_hostile_api_input_gets_a_reason_never_a_server_error(bureau):
    import struct
    import time
    from bureau.ledger.tx import KIND_OPERATOR, OPERATOR_TAG
    driver = SigningKey.generate()
    assert bureau.operator("open_wallet", {"wallet_id": "W-9", "public_key": driver.verify_key.encode().hex()})["status"] == "committed"
    big = 2**63
    for path in (f"/v1/receipts/GZ-TH-0001/{big}/proof", f"/v1/receipts/GZ-TH-0001/{2**32}/proof",
                 f"/v1/blocks/{big}", f"/v1/blocks/{2**70}", f"/v1/wallets/W-9/history?before={big}"):
        r = bureau.driver_get(driver, "W-9", path)
        assert r.status_code == 400 and r.json()["error"] == "invalid_request", (path, r.text)
    # nested deeper than Python's parser can recurse, within a transaction's 4096 bytes: written
    # by hand as json.dumps cannot recurse that deep either
    raw = (b'{"action":"publish_tariff","args":{"tariff":' + b"[" * 1500 + b"]" * 1500
           + b'},"nonce":"00112233445566778899","operator":"operator-1","time":%d,"v":1}' % int(time.time()))
    tx = (bytes([KIND_OPERATOR]) + struct.pack(">H", len(raw)) + raw
          + bureau.operator_key.sign(OPERATOR_TAG + raw).signature)
    r = bureau.client.post("/v1/operator/actions", json={"tx": tx.hex()})
    assert r.status_code == 400 and r.json()["error"] == "malformed", r.text
    deep = b'{"tx":' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    r = bureau.client.post("/v1/operator/actions", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "too_deep", r.text
    r = bureau.client.post("/v1/operator/actions", json={"tx": "00" * 100_000})
    assert r.status_code == 413 and r.json()["error"] == "too_large", r.text
    assert bureau.client.get("/healthz").json()["ok"]


def test_a_flood_of_bad_receipts_is_counted_and_answered_but_logged_rarely(bureau, replies, caplog):
    import logging
    stranger = SigningKey.generate()
    with caplog.at_level(logging.INFO, logger="bureau.ingest.mqtt"):
        for seq in range(1, 41):
            replies.publish("ev/v1/charger/NOPE-1/receipt", seal(_receipt(seq, charger_id="NOPE-1"), stranger))
        for _ in range(40):
            assert replies.next()[1]["reason"] == "unknown_charger"
    assert bureau.node.metrics.get("rejected", "unknown_charger") == 40
    lines = [r for r in caplog.records if r.name == "bureau.ingest.mqtt" and "rejected receipt" in r.getMessage()]
    assert 1 <= len(lines) <= 4, len(lines)  # one per 10 s of the flood


def test_only_the_bureau_that_took_a_receipt_from_its_charger_answers_a_refusal_in_a_block(bureau):
    from bureau.ledger.state import Refusal
    from bureau.ledger.tx import receipt_tx, tx_hash
    sent = []
    ingest = bureau.node.ingest
    ingest._publish = lambda charger_id, payload: sent.append((charger_id, json.loads(payload)))
    charger = SigningKey.generate()
    mine, relayed = (receipt_tx(seal(_receipt(seq, wallet_id="W-404"), charger)) for seq in (1, 2))
    ingest._origin.remember(tx_hash(mine), time.monotonic())
    ingest.on_refused([Refusal(mine, "unknown_wallet", "gone", "GZ-TH-0001", 1),
                       Refusal(relayed, "unknown_wallet", "gone", "GZ-TH-0001", 2)])
    assert [(c, m["seq"], m["reason"]) for c, m in sent] == [("GZ-TH-0001", 1, "unknown_wallet")]
    assert bureau.node.metrics.get("relayed_rejected", "unknown_wallet") == 1
