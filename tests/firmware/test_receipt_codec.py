"""Firmware receipt codec and tariff arithmetic against the shared vectors, under CPython and
under real MicroPython."""

import json
from pathlib import Path

import receipt as fw_receipt
import tariff as fw_tariff

from tests.support.micropython import run_micropython

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
GOOD = json.loads((VECTORS / "receipts.json").read_text())
TARIFF = json.loads((VECTORS / "tariff.json").read_text())

# The same check runs under both interpreters: VECTORS_JSON / TARIFF_JSON are bound first.
CHECK = r"""
import json, binascii
import receipt, tariff, ed25519

def fields_to_dict(f):
    d = dict(f)
    d['session_id'] = binascii.unhexlify(f['session_id'])
    d['periods'] = [tuple(p) for p in f['periods']]
    return d

checked = 0
for vec in json.loads(VECTORS_JSON):
    r = fields_to_dict(vec['fields'])
    body = receipt.encode_body(r)
    assert binascii.hexlify(body).decode() == vec['body'], vec['label']
    seed = binascii.unhexlify(vec['seed'])
    assert binascii.hexlify(ed25519.public_key(seed)).decode() == vec['public_key']
    env = receipt.seal(r, seed, ed25519.sign)
    assert binascii.hexlify(env).decode() == vec['envelope'], vec['label']
    assert receipt.receipt_id(env) == vec['receipt_id']
    back, b2, sig = receipt.decode_envelope(env)
    assert back == r and b2 == body
    assert ed25519.verify(ed25519.public_key(seed), receipt.signed_message(body), sig)
    checked += 1

t = json.loads(TARIFF_JSON)
tf = tariff.Tariff(t['tariff'])
for case in t['amounts']:
    assert tf.amount_fen([tuple(p) for p in case['periods']]) == case['amount_fen'], case
for case in t['kinds']:
    assert tf.kind_at(case['unix_s']) == case['kind'], case
for bad in (b'', b'\x02' + bytes(80), binascii.unhexlify(json.loads(VECTORS_JSON)[0]['envelope'])[:60] + bytes(64)):
    try:
        receipt.decode_envelope(bad)
        raise AssertionError('accepted a broken envelope')
    except receipt.ReceiptError:
        pass
print('vectors ok', checked)
"""


def _bindings() -> str:
    return f"VECTORS_JSON = {json.dumps(json.dumps(GOOD))}\nTARIFF_JSON = {json.dumps(json.dumps(TARIFF))}\n"


def test_vectors_under_cpython():
    scope: dict = {}
    exec(_bindings() + CHECK, scope)
    assert scope["checked"] == len(GOOD)


def test_vectors_under_micropython():
    out = run_micropython(_bindings() + CHECK)
    assert f"vectors ok {len(GOOD)}" in out


def test_period_boundaries_and_running_cost():
    tf = fw_tariff.Tariff(TARIFF["tariff"])
    day = 1_793_462_400  # local midnight
    assert tf.next_boundary(day) == day + 480 * 60
    assert tf.next_boundary(day + 1380 * 60) == day + 86400
    assert fw_tariff.periods_of([0, 0, 3000, 4000]) == [(2, 3000), (3, 4000)]
    assert tf.amount_fen(fw_tariff.periods_of([0, 0, 3000, 4000])) == 910


def test_firmware_refuses_bad_tariff():
    import pytest
    with pytest.raises(fw_tariff.TariffError):
        fw_tariff.Tariff({"v": 1, "tariff_id": "X", "version": 1, "prices": [[2, 1, 1]], "schedule": [[0, 3]]})
    assert fw_receipt.MAX_ENVELOPE == 1024
