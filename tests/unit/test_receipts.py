"""Backend receipt codec against the shared vectors (tests/vectors/*.json)."""

import json
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
from nacl.signing import VerifyKey

from bureau.ledger.tariff import Tariff, TariffError
from bureau.receipts.codec import ReceiptError, decode, encode_body, receipt_id, signed_message
from tests.vectors import generate

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
GOOD = json.loads((VECTORS / "receipts.json").read_text())
BAD = json.loads((VECTORS / "receipts-bad.json").read_text())
TARIFF = json.loads((VECTORS / "tariff.json").read_text())


def test_committed_vectors_are_what_the_generator_makes():
    def fresh(data):
        return json.loads(json.dumps(data))

    assert fresh(generate.receipts()) == GOOD
    assert fresh(generate.bad_receipts()) == BAD
    assert fresh(generate.tariff_vectors()) == TARIFF


@pytest.mark.parametrize("vec", GOOD, ids=lambda v: v["label"])
def test_good_vector_decodes_to_its_fields_and_verifies(vec):
    env = bytes.fromhex(vec["envelope"])
    receipt, body, sig = decode(env)
    assert body.hex() == vec["body"] and sig.hex() == vec["signature"]
    assert encode_body(receipt) == body
    fields = generate.as_json(receipt)
    assert fields == vec["fields"]
    VerifyKey(bytes.fromhex(vec["public_key"])).verify(signed_message(body), sig)
    assert receipt_id(env) == vec["receipt_id"]
    tariff = Tariff.from_doc(TARIFF["tariff"])
    assert tariff.amount_fen(receipt.periods) == receipt.amount_fen


@pytest.mark.parametrize("vec", GOOD, ids=lambda v: v["label"])
def test_a_decoded_receipt_pickles_to_the_same_fields(vec):
    """The audit's workers send decoded receipts to the replay pickled."""
    receipt = decode(bytes.fromhex(vec["envelope"]))[0]
    back = pickle.loads(pickle.dumps(receipt))
    assert back == receipt and generate.as_json(back) == vec["fields"] and encode_body(back) == encode_body(receipt)


@pytest.mark.parametrize("vec", [v for v in BAD if v["reason"] in {"malformed", "oversized", "unsupported_version", "inconsistent"}],
                         ids=lambda v: v["label"])
def test_bad_vector_refused_by_the_codec_with_its_reason(vec):
    with pytest.raises(ReceiptError) as err:
        decode(bytes.fromhex(vec["envelope"]))
    assert err.value.reason == vec["reason"]


def test_every_single_byte_truncation_is_refused():
    env = bytes.fromhex(GOOD[0]["envelope"])
    body = env[:-64]
    for n in range(1, len(body)):
        with pytest.raises(ReceiptError) as err:
            decode(body[:n] + env[-64:])
        assert err.value.reason == "malformed", n
    with pytest.raises(ReceiptError, match="2 bytes after the last field"):
        decode(body + b"ab" + env[-64:])


def test_check_rejects_out_of_range_fields():
    receipt, _, _ = decode(bytes.fromhex(GOOD[0]["envelope"]))
    for bad in (replace(receipt, charger_id="has space"), replace(receipt, seq=0), replace(receipt, time_flags=4),
                replace(receipt, auth_method=9), replace(receipt, periods=((3, 4000), (2, 3000)))):
        with pytest.raises(ReceiptError):
            bad.check()


def test_tariff_amounts_and_periods_match_vectors():
    tariff = Tariff.from_doc(TARIFF["tariff"])
    for case in TARIFF["amounts"]:
        assert tariff.amount_fen(case["periods"]) == case["amount_fen"]
    for case in TARIFF["kinds"]:
        assert tariff.kind_at(case["unix_s"]) == case["kind"]


@pytest.mark.parametrize("doc", [
    {"v": 2},
    {"v": 1, "tariff_id": "X", "version": 1, "prices": [[2, 1, 1]], "schedule": [[0, 3]]},
    {"v": 1, "tariff_id": "X", "version": 1, "prices": [[2, 1, 1]], "schedule": [[10, 2]]},
    {"v": 1, "tariff_id": "X", "version": 1, "prices": [[2, -1, 1]], "schedule": [[0, 2]]},
    {"v": 1, "tariff_id": "X", "version": 0, "prices": [[2, 1, 1]], "schedule": [[0, 2]]},
])
def test_bad_tariff_documents_are_refused(doc):
    with pytest.raises(TariffError):
        Tariff.from_doc(doc)
