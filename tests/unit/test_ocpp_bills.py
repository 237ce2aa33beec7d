"""OCPP charge points on the ledger (docs/ocpp.md): the enrollment keeps only the password's
digest; a bill (tx kind 4) signed by a validator's node key is billed by the receipts' rules
(tariff in force, periods from the readings, the tariff's amount, one bill per (charge point,
transaction id)); an OCMF record must verify with the meter key enrolled and match the readings;
a restarted node reads it all back to the same state root."""

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from nacl.signing import SigningKey

from bureau.ledger import ocppbill
from bureau.ledger.state import BILLED_KEPT_S, MAX_RECEIPT_AGE_S
from bureau.ledger.tariff import Tariff
from bureau.ocpp import password
from bureau.storage import Repository
from bureau.tools.network import DEFAULT_TARIFF
from tests.support.ocmf_meter import OcmfMeter
from tests.unit.test_operator_actions import NODE, T0_MS, Ledger, _action, _kinds, _top_up

TARIFF = Tariff.from_doc(DEFAULT_TARIFF)
CP = "CP-OCPP-1"
T0 = T0_MS // 1000
DIGEST = password.make_digest("correct horse battery", log2_n=10)


def _ledger(repo=None, ocmf_key=None):
    ledger = Ledger(repo, tariffs=(DEFAULT_TARIFF,))
    args = {"charger_id": CP, "ocpp_version": "1.6", "password_digest": DIGEST}
    if ocmf_key:
        args["ocmf_key"] = ocmf_key
    ledger.block([_action("enroll_ocpp_charger", args),
                  _action("open_wallet", {"wallet_id": "W-1", "public_key": "ab" * 32}), _top_up("bank:1", 10_000)],
                 T0_MS)
    return ledger


def _doc(tid="7", readings=None, ocmf=None, **over):
    readings = readings or [[T0 - 3600, 1000], [T0 - 1800, 5000], [T0 - 60, 9000]]
    periods = ocppbill.periods_of(TARIFF, readings)
    doc = {"v": 1, "bureau": "bureau-1", "charger_id": CP, "ocpp": "1.6", "transaction_id": tid,
           "id_token": "04A1B2C3", "wallet_id": "W-1", "auth_ref": "auth:0123456789abcdef",
           "start_time": readings[0][0], "end_time": readings[-1][0], "readings": readings,
           "tariff_id": TARIFF.tariff_id, "tariff_version": TARIFF.version, "periods": periods,
           "amount_fen": TARIFF.amount_fen(periods), "stop_reason": "Local", "ocmf": ocmf}
    return {**doc, **over}


def test_the_enrollment_holds_the_digest_and_a_bill_is_billed_once():
    ledger = _ledger()
    assert ledger.state.ocpp_chargers[CP].password_digest == DIGEST
    assert password.check("correct horse battery", DIGEST) and not password.check("correct horse batterY", DIGEST)
    doc = _doc()
    ex = ledger.block([ocppbill.bill_tx(NODE, doc)], T0_MS + 1000)
    assert _kinds(ex) == [("ocpp_bill", None)]
    assert ex.effects[0].detail == {"transaction_id": "7", "verified_by": "bureau-1"}
    assert ledger.balance() == 10_000 - doc["amount_fen"] and doc["amount_fen"] > 0
    # the same transaction again, even built otherwise (another reading), is refused
    again = ledger.block([ocppbill.bill_tx(NODE, _doc(readings=[[T0 - 3600, 1000], [T0 - 60, 9000]]))], T0_MS + 2000)
    assert _kinds(again) == [("dropped", "session_billed")]


def test_a_transaction_stopped_beyond_the_staleness_bound_is_refused_and_counts_as_billed_within_it():
    ledger = _ledger()
    block_s = (T0_MS + 1000) // 1000
    edge = block_s - MAX_RECEIPT_AGE_S
    stale = ocppbill.bill_tx(NODE, _doc("8", readings=[[edge - 3600, 1000], [edge - 1, 9000]]))
    in_time = ocppbill.bill_tx(NODE, _doc("9", readings=[[edge - 3600, 1000], [edge, 9000]]))
    ex = ledger.block([stale, in_time], T0_MS + 1000)
    assert _kinds(ex) == [("ocpp_bill", None), ("dropped", "too_old")]
    assert ex.refused[0].detail == f"end_time {edge - 1} is more than {MAX_RECEIPT_AGE_S} s before the block time " \
                                   f"{block_s}"
    # billed: a second bill of transaction 9 is refused while its block is within the horizon, and
    # the state forgets it after (a bill of it is too old by then anyway)
    again = ocppbill.bill_tx(NODE, _doc("9", readings=[[T0 - 3600, 1000], [T0 - 60, 9000]]))
    assert _kinds(ledger.block([again], T0_MS + 2000)) == [("dropped", "session_billed")]
    past = T0_MS + 1000 + (BILLED_KEPT_S + 1) * 1000
    ledger.block([], past)
    assert (CP, "9") not in ledger.state.ocpp_bills


@pytest.mark.parametrize("change, reason", [
    ({"amount_fen": 1}, "wrong_amount"),
    ({"periods": [[3, 8000]]}, "period_mismatch"),
    ({"tariff_version": 9}, "unknown_tariff"),
    ({"charger_id": "CP-NOT-ENROLLED"}, "unknown_charger"),
    ({"wallet_id": "W-NONE"}, "unknown_wallet"),
    ({"bureau": "bureau-9"}, "unknown_bureau"),
    ({"readings": [[T0 - 60, 9000], [T0 - 3600, 1000]]}, "malformed"),
    ({"end_time": T0 + 3600, "readings": [[T0 - 3600, 1000], [T0 + 3600, 9000]], "periods": [[1, 8000]],
      "amount_fen": TARIFF.amount_fen([(1, 8000)])}, "from_future"),
])
def test_a_bill_that_breaks_a_billing_rule_is_refused(change, reason):
    ledger = _ledger()
    ex = ledger.block([ocppbill.bill_tx(NODE, {**_doc(), **change})], T0_MS + 1000)
    assert _kinds(ex) == [("dropped", reason)]
    assert ledger.balance() == 10_000


def test_a_bill_signed_by_another_key_is_refused():
    ledger = _ledger()
    ex = ledger.block([ocppbill.bill_tx(SigningKey(b"\x09" * 32), _doc())], T0_MS + 1000)
    assert _kinds(ex) == [("dropped", "bad_signature")]


def test_the_enrollment_refuses_a_plain_password_and_a_taken_id():
    ledger = _ledger()
    plain = {"charger_id": "CP-2", "ocpp_version": "2.0.1", "password_digest": "correct horse battery"}
    ex = ledger.block([_action("enroll_ocpp_charger", plain),
                       _action("enroll_ocpp_charger", {**plain, "password_digest": DIGEST, "ocpp_version": "1.5"}),
                       _action("enroll_charger", {"charger_id": CP, "public_key": "cd" * 32})], T0_MS + 1000)
    assert _kinds(ex) == [("refused_action", "malformed"), ("refused_action", "malformed"),
                          ("refused_action", "charger_exists")]


def test_an_ocmf_record_must_verify_with_the_enrolled_meter_key_and_match_the_readings():
    meter = OcmfMeter()
    ledger = _ledger(ocmf_key=meter.public_key_hex)
    good = ledger.block([ocppbill.bill_tx(NODE, _doc("1", ocmf=meter.record(1000, 9000)))], T0_MS + 1000)
    assert _kinds(good) == [("ocpp_bill", None)] and good.effects[0].detail["verified_by"] == "ocmf"
    bad = ledger.block([ocppbill.bill_tx(NODE, _doc("2", ocmf=meter.record(1000, 9000, tamper=True))),
                        ocppbill.bill_tx(NODE, _doc("3", ocmf=meter.record(1000, 8000))),
                        ocppbill.bill_tx(NODE, _doc("4", ocmf=OcmfMeter(2).record(1000, 9000)))], T0_MS + 2000)
    assert _kinds(bad) == [("dropped", "bad_meter_signature"), ("dropped", "meter_mismatch"),
                           ("dropped", "bad_meter_signature")]


def test_a_restarted_node_reads_the_enrollment_and_the_bills_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = _ledger(Repository(url))
    ledger.block([ocppbill.bill_tx(NODE, _doc())], T0_MS + 1000)
    again = Ledger(Repository(url), tariffs=(DEFAULT_TARIFF,))
    assert again.state.state_root == ledger.state.state_root
    assert again.state.ocpp_bills == {(CP, "7"): T0_MS + 1000} and again.state.ocpp_chargers == ledger.state.ocpp_chargers
    assert _kinds(again.block([ocppbill.bill_tx(NODE, _doc())], T0_MS + 2000)) == [("dropped", "session_billed")]


def test_boundary_readings_keep_the_periods():
    readings = [[T0 - 7200 + 300 * i, 1000 + 250 * i] for i in range(25)]
    kept = ocppbill.boundary_readings(TARIFF, readings)
    assert len(kept) < len(readings)
    assert ocppbill.periods_of(TARIFF, kept) == ocppbill.periods_of(TARIFF, readings)


@pytest.mark.parametrize("record", [
    "OCMF|" + "[" * 1000 + "]" * 1000 + '|{"SA":"ECDSA-secp256r1-SHA256","SD":"00"}',  # deeper than the parser goes
    'OCMF|{"RD":[]}|' + "[" * 1000 + "]" * 1000,
])
def test_a_hostile_ocmf_record_is_refused_not_raised(record):
    """A bill is built by one bureau and executed by all: its OCMF record must fail as a refusal
    on every node, never as an exception out of the block's execution."""
    meter = OcmfMeter()
    ledger = _ledger(ocmf_key=meter.public_key_hex)
    ex = ledger.block([ocppbill.bill_tx(NODE, _doc("9", ocmf=record))], T0_MS + 1000)
    assert _kinds(ex) == [("dropped", "malformed")]


def test_a_signed_reading_out_of_range_is_refused():
    meter = OcmfMeter()
    ledger = _ledger(ocmf_key=meter.public_key_hex)
    payload = meter.record(1000, 9000).split("|")[1].replace('"RV":9.0', '"RV":1e999999')
    signed = meter.key.sign(payload.encode(), ec.ECDSA(hashes.SHA256())).hex()  # the meter signed it: still refused
    record = f'OCMF|{payload}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"{signed}"}}'
    ex = ledger.block([ocppbill.bill_tx(NODE, _doc("10", ocmf=record))], T0_MS + 1000)
    assert _kinds(ex) == [("dropped", "malformed")]


def test_a_snapshot_carries_the_ocpp_enrollments_and_bills_to_a_joining_node(tmp_path):
    import json
    import time

    from bureau.chain import Chain
    from bureau.ledger import snapshot
    from bureau.ledger.genesis import Genesis
    from bureau.ledger.tx import operator_action
    from tests.support.fleet import WALLET
    from tests.support.proofchain import OPERATOR, VALIDATORS, certificate, proof_chain

    chain, doc, _ = proof_chain(tmp_path)
    now = int(time.time())
    enroll = operator_action(OPERATOR, "operator-1", "enroll_ocpp_charger",
                             {"charger_id": CP, "ocpp_version": "2.0.1", "password_digest": DIGEST,
                              "ocmf_key": OcmfMeter().public_key_hex}, now=now)
    block, ex = chain.build([enroll], "bureau-1", now * 1000 + 10)
    chain.commit(block, certificate(doc["chain_id"], block.height, block.hash), ex)
    bill = ocppbill.bill_tx(VALIDATORS[0], _doc(ocpp="2.0.1", wallet_id=WALLET))
    block, ex = chain.build([bill], "bureau-1", now * 1000 + 20)
    assert not ex.refused, ex.refused
    chain.commit(block, certificate(doc["chain_id"], block.height, block.hash), ex)
    manifest, chunks = snapshot.manifest_and_chunks(chain.repo.take_snapshot(chain.state))
    snap = snapshot.from_wire(json.loads(json.dumps(manifest)), [json.loads(json.dumps(c)) for c in chunks])
    genesis = Genesis.from_doc(doc)
    state = snapshot.restore(genesis, snap)
    assert state.ocpp_chargers == chain.state.ocpp_chargers
    joined = Repository(f"sqlite:///{tmp_path}/joined.sqlite")
    joined.load_snapshot(snap, state, "test")
    follower = Chain(genesis, joined)
    assert follower.state.state_root == chain.state.state_root
    assert follower.state.ocpp_chargers == chain.state.ocpp_chargers
    # the bill committed before the snapshot is known to the joined node: a second one is refused
    (billed_ms,) = follower.state.ocpp_bills.values()
    assert snap.ocpp_bills == [(CP, "7", billed_ms)] and follower.state.ocpp_bills == chain.state.ocpp_bills
    again = ocppbill.bill_tx(VALIDATORS[0], _doc(ocpp="2.0.1", wallet_id=WALLET, readings=[[T0 - 3600, 1000],
                                                                                          [T0 - 60, 9000]]))
    assert [r.reason for r in follower.state.execute([again], now * 1000 + 30).refused] == ["session_billed"]
    chain.repo.close()
    joined.close()


def test_a_password_rotation_replaces_the_digest_on_chain_and_in_storage(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = _ledger(Repository(url))
    new = password.make_digest("a brand new password", log2_n=10)
    before = ledger.state.state_map.get(f"q/{CP}")
    ex = ledger.block([_action("rotate_ocpp_password", {"charger_id": CP, "password_digest": new}),
                       _action("rotate_ocpp_password", {"charger_id": "CP-NONE", "password_digest": new}, T0_MS + 1),
                       _action("rotate_ocpp_password", {"charger_id": CP, "password_digest": "plain"}, T0_MS + 2)],
                      T0_MS + 1000)
    assert [(e.kind, (e.detail or {}).get("reason")) for e in ex.effects] == [
        ("rotate_ocpp_password", None), ("refused_action", "unknown_charger"), ("refused_action", "malformed")]
    assert ledger.state.ocpp_chargers[CP].password_digest == new
    assert ledger.state.state_map.get(f"q/{CP}") != before and new in ledger.state.state_map.get(f"q/{CP}")
    again = Ledger(Repository(url), tariffs=(DEFAULT_TARIFF,))
    assert again.state.ocpp_chargers[CP].password_digest == new
    assert again.state.state_root == ledger.state.state_root
    same = again.block([_action("rotate_ocpp_password", {"charger_id": CP, "password_digest": new}, T0_MS + 3)],
                       T0_MS + 2000)
    assert [(e.kind, (e.detail or {}).get("reason")) for e in same.effects] == [("refused_action", "malformed")]


def test_a_transaction_id_billed_again_after_the_horizon_is_another_bill_and_both_keep_their_rows(tmp_path):
    import sqlalchemy as sa

    from bureau.storage import tables
    repo = Repository(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = _ledger(repo)
    assert _kinds(ledger.block([ocppbill.bill_tx(NODE, _doc())], T0_MS + 1000)) == [("ocpp_bill", None)]
    later_s = T0 + BILLED_KEPT_S + 3600
    readings = [[later_s - 3600, 20_000], [later_s - 60, 24_000]]
    doc = _doc(readings=readings, start_time=readings[0][0], end_time=readings[-1][0],
               periods=ocppbill.periods_of(TARIFF, readings),
               amount_fen=TARIFF.amount_fen(ocppbill.periods_of(TARIFF, readings)))
    assert _kinds(ledger.block([ocppbill.bill_tx(NODE, doc)], later_s * 1000)) == [("ocpp_bill", None)]
    with repo.engine.connect() as conn:
        rows = conn.execute(sa.select(tables.ocpp_bills.c.transaction_id, tables.ocpp_bills.c.energy_wh)
                            .order_by(tables.ocpp_bills.c.height)).all()
    assert [tuple(r) for r in rows] == [("7", 8000), ("7", 4000)]
