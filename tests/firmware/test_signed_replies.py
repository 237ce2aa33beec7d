"""Signed replies to the charger (firmware/core/signed_reply.py): receipt acks and rejects, online
authorization replies and release replies from the shared vectors (tests/vectors/replies.json)
under CPython and real MicroPython with the firmware's own ed25519.verify, the backend's signer
and checker against the same vectors, and the charger core keeping a receipt pending in flash
through every forged, foreign and replayed ack or reject. The vectors also run under the
MicroPython unix port (32- and 64-bit)."""

import json
from pathlib import Path

import pytest
from nacl.signing import SigningKey

import authz as fw_authz
import charger as fw_charger
import trust as fw_trust
from bureau.authz import wire
from bureau.receipts.ack import AckError, ack_message, verify_ack
from bureau.receipts.reject import RejectError, reject_message, verify_reject
from tests.firmware.test_charger_core import Clock, Meter, TARIFF, rng
from tests.support.flashsim import CuttableFlash
from chargerhost import LIB_DIRS
from tests.support.micropython import run_micropython
from tests.support.mp_memflash import MEMFLASH
from tests.support.mpunix import require_interpreter, run_unix
from tests.support.signer import NaclSigner

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
RV = json.loads((VECTORS / "replies.json").read_text())
H = bytes.fromhex

# Runs under both interpreters with REPLIES_JSON bound first: the charger core and the authorizer
# as on the device, over an in-memory flash.
CHECK = MEMFLASH + r"""
import json, binascii
import authz, charger, ed25519, signed_reply, trust
from outbox import receipt_id

V = json.loads(REPLIES_JSON)
U = binascii.unhexlify



class Meter:
    def read_wh(self):
        return 1000


class Clock:
    def now(self):
        return V['now']

    def synced(self):
        return True


A = V['ack']


def charger_holding_the_receipt():
    f = MemFlash()
    trust.provision(f, V['genesis'])
    c = charger.Charger(A['charger_id'], f, Meter(), Clock(), ed25519, lambda n: b'\x07' * n, 'fw-v', 'MTR-V')
    c.outbox.put(A['seq'], U(A['receipt_envelope']))
    c.boot()
    assert receipt_id(c.outbox.get(A['seq'])) == A['receipt_id']
    return c


ch = charger_holding_the_receipt()
good = json.loads(A['payload'])
assert signed_reply.ack_bytes(V['chain_id'], A['charger_id'], good) == U(A['signed_message'])
for case in V['bad_acks']:
    assert ch.on_reply(case['payload'].encode())[0] == 'ignored', case['label']
    assert ch.outbox.pending() == [A['seq']], case['label']
    assert ch.events[-1] == ('ack_refused', (json.loads(case['payload']).get('seq'), case['reason'])), \
        (case['label'], ch.events[-1])
assert sum(ch.refused_acks.values()) == len(V['bad_acks'])
assert ch.on_reply(A['payload'].encode()) == ('ack', A['seq'])
assert ch.outbox.pending() == []
assert ch.on_reply(A['payload'].encode()) == ('ignored', A['seq'])  # a repeat finds nothing to remove
acks = len(V['bad_acks'])

R = V['reject']
ch = charger_holding_the_receipt()
assert signed_reply.reject_bytes(V['chain_id'], A['charger_id'], json.loads(R['payload'])) == U(R['signed_message'])
assert ch.on_reply(R['unnamed'].encode()) == ('ignored', None) and ch.refused_rejects == {}
for case in V['bad_rejects']:
    assert ch.on_reply(case['payload'].encode())[0] == 'ignored', case['label']
    assert ch.outbox.pending() == [A['seq']] and ch.outbox.refused() == [], case['label']
    assert ch.events[-1] == ('reject_refused', (json.loads(case['payload']).get('seq'), case['reason'])), \
        (case['label'], ch.events[-1])
assert sum(ch.refused_rejects.values()) == len(V['bad_rejects'])
assert ch.on_reply(R['payload'].encode()) == ('reject', A['seq'])
assert ch.outbox.pending() == [] and ch.outbox.refused() == ['%010d.unknown_wallet' % A['seq']]
assert ch.on_reply(R['payload'].encode()) == ('ignored', A['seq'])  # a repeat finds nothing to move
rejects = len(V['bad_rejects'])

AU = V['auth']
replies = 0
for vec in AU['replies'] + V['bad_auth_replies']:
    f = MemFlash()
    trust.provision(f, V['genesis'])
    a = authz.Authz(AU['charger_id'], f, ed25519.verify, lambda n: U(AU['req'])[:n])
    a.load()
    req = json.loads(a.request('card', AU['token'], V['now'], 0)[2])['req']
    assert req == AU['req']
    out = a.on_reply(vec['payload'].encode(), V['now'], 10, ch)
    msg = json.loads(vec['payload'])
    if 'reason' in vec:
        assert out == [('event', ('auth_reply_refused', req, vec['reason']))], (vec['label'], out)
        assert req in a.pending and a.refused_replies == {vec['reason']: 1}, vec['label']
    else:
        assert signed_reply.auth_reply_bytes(V['chain_id'], AU['charger_id'], msg) == U(vec['signed_message'])
        assert len(out) == 1 and out[0][0] == 'decision', (vec['label'], out)
        d = out[0][1]
        assert d['decision'] == msg['decision'] and a.pending == {}, vec['label']
        if msg['decision'] == 'accept':
            assert (d['wallet_id'], d['authorized_fen'], d['auth_ref']) == (msg['wallet_id'], msg['authorized_fen'], msg['auth_ref'])
    replies += 1

RL = V['release']
a = authz.Authz(AU['charger_id'], f, ed25519.verify, lambda n: U(RL['req'])[:n])
a.load()
assert json.loads(a.release(RL['auth_ref'])[2])['req'] == RL['req']
good = json.loads(RL['payload'])
assert signed_reply.release_bytes(V['chain_id'], AU['charger_id'], good) == U(RL['signed_message'])
for case in V['bad_releases']:
    out = a.on_reply(case['payload'].encode(), V['now'], 10, ch)
    assert out == [('event', ('release_reply_refused', json.loads(case['payload']).get('req'), case['reason']))], \
        (case['label'], out)
    assert a.releasing == [(RL['req'], RL['auth_ref'])], case['label']
assert sum(a.refused_replies.values()) == len(V['bad_releases'])
assert a.on_reply(RL['payload'].encode(), V['now'], 10, ch) == [('event', ('released', RL['auth_ref'], True))]
assert a.releasing == []
assert a.on_reply(RL['payload'].encode(), V['now'], 10, ch)[0][1][2] == 'not_pending'  # replayed
releases = len(V['bad_releases'])
print('reply vectors ok', acks, rejects, replies, releases)
"""


def _bindings() -> str:
    return f"REPLIES_JSON = {json.dumps(json.dumps(RV))}\n"


def _counts() -> tuple[int, int, int, int]:
    return (len(RV["bad_acks"]), len(RV["bad_rejects"]), len(RV["auth"]["replies"]) + len(RV["bad_auth_replies"]),
            len(RV["bad_releases"]))


def test_vectors_under_cpython():
    scope: dict = {}
    exec(_bindings() + CHECK, scope)
    assert (scope["acks"], scope["rejects"], scope["replies"], scope["releases"]) == _counts()


def test_vectors_under_micropython():
    out = run_micropython(_bindings() + CHECK)
    assert "reply vectors ok %d %d %d %d" % _counts() in out


@pytest.mark.parametrize("bits", [32, 64])
def test_vectors_under_the_unix_port(bits):
    # 2 MB of heap: the vectors' JSON alone is tens of KB, and the firmware's ed25519 builds its
    # table at import
    out = run_unix(require_interpreter(bits), _bindings() + CHECK, heap="2M", path=list(LIB_DIRS)).stdout
    assert "reply vectors ok %d %d %d %d" % _counts() in out


def test_backend_signer_and_checker_match_the_vectors():
    from tests.vectors.generate import reply_vectors
    assert json.loads(json.dumps(reply_vectors())) == RV  # the committed file is what the generator makes
    keys = {v["id"]: H(v["public_key"]) for v in RV["genesis"]["validators"]}
    a = RV["ack"]
    msg = verify_ack(a["payload"].encode(), RV["chain_id"], keys)
    assert (msg["seq"], msg["receipt"], msg["height"], msg["block"]) == (a["seq"], a["receipt_id"], a["height"],
                                                                          a["block_hash"])
    for case in RV["bad_acks"]:
        if case["reason"] in ("wrong_charger", "wrong_receipt", "not_pending"):
            verify_ack(case["payload"].encode(), RV["chain_id"], keys)  # signed: the charger's own checks refuse it
            continue
        with pytest.raises(AckError) as e:
            verify_ack(case["payload"].encode(), RV["chain_id"], keys)
        assert e.value.reason == case["reason"], case["label"]
    charger = RV["auth"]["charger_id"]
    for vec in RV["auth"]["replies"]:
        reply = json.loads(vec["payload"])
        wire.verify_auth_reply(reply, keys, RV["chain_id"], charger)
        assert wire.auth_reply_bytes(RV["chain_id"], "bureau-1", charger, reply) == H(vec["signed_message"])
    for case in RV["bad_auth_replies"]:
        with pytest.raises(wire.WireError) as e:
            wire.verify_auth_reply(json.loads(case["payload"]), keys, RV["chain_id"], charger)
        assert e.value.reason == case["reason"], case["label"]
    msg = verify_reject(RV["reject"]["payload"].encode(), RV["chain_id"], keys)
    assert (msg["seq"], msg["receipt"]) == (a["seq"], a["receipt_id"])
    unnamed = verify_reject(RV["reject"]["unnamed"].encode(), RV["chain_id"], keys)
    assert (unnamed["seq"], unnamed["receipt"]) == (None, None)
    for case in RV["bad_rejects"]:
        if case["reason"] in ("wrong_charger", "wrong_receipt", "not_pending"):
            verify_reject(case["payload"].encode(), RV["chain_id"], keys)  # signed: the charger refuses it
            continue
        with pytest.raises(RejectError) as e:
            verify_reject(case["payload"].encode(), RV["chain_id"], keys)
        assert e.value.reason == case["reason"], case["label"]
    rel = json.loads(RV["release"]["payload"])
    wire.verify_release_reply(rel, keys, RV["chain_id"], charger)
    assert wire.release_reply_bytes(RV["chain_id"], "bureau-1", charger, rel) == H(RV["release"]["signed_message"])
    for case in RV["bad_releases"]:
        if case["reason"] == "not_pending":
            wire.verify_release_reply(json.loads(case["payload"]), keys, RV["chain_id"], charger)
            continue
        with pytest.raises(wire.WireError) as e:
            wire.verify_release_reply(json.loads(case["payload"]), keys, RV["chain_id"], charger)
        assert e.value.reason == case["reason"], case["label"]


# ---- the charger core's ack check (CPython, PyNaCl for speed) ----------------------------------

BUREAU = SigningKey(H(json.loads((VECTORS / "authz.json").read_text())["bureau_seed"]))
OUTSIDER = SigningKey(b"\x05" * 32)
BLOCK = bytes(range(32))


def charger_with_receipts(n=2, provisioned=True):
    flash = CuttableFlash()
    if provisioned:
        fw_trust.provision(flash, RV["genesis"])
    meter, clock = Meter(), Clock()
    c = fw_charger.Charger("CH-1", flash, meter, clock, NaclSigner, rng(), "fw-test", "MTR-1", default_tariff=TARIFF)
    c.boot()
    for _ in range(n):
        c.start(1, "04AA", "W-1", 10**6, "")
        meter.wh += 100
        clock.t += 60
        c.tick()
        c.stop("L")
    return c


def ack_for(c, seq, *, key=BUREAU, bureau="bureau-1", charger_id="CH-1", chain=None, rid=None, of_seq=None):
    from outbox import receipt_id
    env = c.outbox.get(seq if of_seq is None else of_seq)
    return ack_message(chain or RV["chain_id"], bureau, key, charger_id, seq, rid or receipt_id(env), 9, BLOCK)


def test_charger_removes_a_receipt_only_on_its_signed_ack():
    c = charger_with_receipts()
    s1, s2 = c.outbox.pending()
    refused = [
        (ack_for(c, s1, key=OUTSIDER), "bad_signature"),  # forged signature
        (ack_for(c, s1, bureau="bureau-9", key=OUTSIDER), "unknown_signer"),  # signer not in genesis
        (ack_for(c, s1, bureau="bureau-2"), "bad_signature"),  # bureau-1's key under bureau-2's name
        (ack_for(c, s1, chain="ev-bureau-prod"), "bad_signature"),  # for another chain
        (ack_for(c, s1, of_seq=s2), "wrong_receipt"),  # wrong seq: seq 1 with receipt 2's id
        (ack_for(c, s1, rid="ab" * 32), "wrong_receipt"),  # wrong receipt id
        (ack_for(c, s1, charger_id="CH-2"), "wrong_charger"),  # another charger's ack
        (ack_for(c, 99, of_seq=s1), "not_pending"),  # ack of a seq the outbox does not hold
        (json.dumps({**json.loads(ack_for(c, s2)), "seq": s1}).encode(), "wrong_receipt"),  # replayed onto seq 1
        (json.dumps({**json.loads(ack_for(c, s1)), "height": 10}).encode(), "bad_signature"),
        (json.dumps({"v": 1, "type": "ack", "seq": s1, "receipt": json.loads(ack_for(c, s1))["receipt"],
                     "height": 9}).encode(), "unsigned"),  # what the bureau sent before acks were signed
    ]
    for payload, reason in refused:
        assert c.on_reply(payload)[0] == "ignored", reason
        assert c.outbox.pending() == [s1, s2], reason
        assert c.events[-1][0] == "ack_refused" and c.events[-1][1][1] == reason
    assert sum(c.refused_acks.values()) == len(refused) and c.refused_acks["wrong_receipt"] == 3
    assert c.on_reply(ack_for(c, s2)) == ("ack", s2)
    assert c.outbox.pending() == [s1]
    replayed = ack_for(c, s1)
    assert c.on_reply(replayed) == ("ack", s1) and c.outbox.pending() == []
    assert c.on_reply(replayed) == ("ignored", s1) and c.refused_acks["not_pending"] == 2


def test_unprovisioned_charger_keeps_every_receipt_until_bureau_json_is_written():
    c = charger_with_receipts(1, provisioned=False)
    (seq,) = c.outbox.pending()
    assert c.on_reply(ack_for(c, seq)) == ("ignored", seq) and c.refused_acks == {"not_provisioned": 1}
    fw_trust.provision(c.flash, RV["genesis"])  # the technician provisions it later
    assert c.on_reply(ack_for(c, seq)) == ("ack", seq) and c.outbox.pending() == []


def test_signed_ack_survives_a_reboot_check_with_the_trust_from_flash():
    c = charger_with_receipts(1)
    (seq,) = c.outbox.pending()
    again = fw_charger.Charger("CH-1", c.flash, Meter(), Clock(), NaclSigner, rng(), "fw-test", "MTR-1",
                               default_tariff=TARIFF)
    again.boot()
    assert again.trust.chain_id == RV["chain_id"] and set(again.trust.keys) == {"bureau-1", "bureau-2"}
    assert again.on_reply(ack_for(again, seq)) == ("ack", seq)
    assert fw_authz.provision is fw_trust.provision  # one writer of bureau.json


def reject_for(c, seq, reason="unknown_wallet", *, key=BUREAU, bureau="bureau-1", charger_id="CH-1", chain=None,
               rid=None, of_seq=None):
    from outbox import receipt_id
    env = c.outbox.get(seq if of_seq is None else of_seq)
    return reject_message(chain or RV["chain_id"], bureau, key, charger_id, seq, rid or receipt_id(env), reason,
                          "refused by the ledger")


def test_charger_sets_a_receipt_aside_only_on_its_signed_reject():
    c = charger_with_receipts()
    s1, s2 = c.outbox.pending()
    refused = [
        (reject_for(c, s1, key=OUTSIDER), "bad_signature"),  # forged signature
        (reject_for(c, s1, bureau="bureau-9", key=OUTSIDER), "unknown_signer"),  # signer not in genesis
        (reject_for(c, s1, bureau="bureau-2"), "bad_signature"),  # bureau-1's key under bureau-2's name
        (reject_for(c, s1, chain="ev-bureau-prod"), "bad_signature"),  # for another chain
        (reject_for(c, s1, charger_id="CH-2"), "wrong_charger"),  # another charger's reject
        (json.dumps({**json.loads(reject_for(c, s1, charger_id="CH-2")), "charger": "CH-1"}).encode(),
         "bad_signature"),  # another charger's, relabelled
        (reject_for(c, s1, of_seq=s2), "wrong_receipt"),  # seq 1 with receipt 2's id
        (json.dumps({**json.loads(reject_for(c, s2)), "seq": s1}).encode(), "wrong_receipt"),  # replayed onto seq 1
        (json.dumps({**json.loads(reject_for(c, s2)), "seq": s1, "receipt": json.loads(reject_for(c, s1))["receipt"]})
         .encode(), "bad_signature"),  # replayed onto seq 1 with its receipt id
        (json.dumps({**json.loads(reject_for(c, s1, "busy")), "reason": "unknown_wallet"}).encode(),
         "bad_signature"),  # a retryable reject made final
        (reject_for(c, 99, of_seq=s1), "not_pending"),
        (json.dumps({"v": 1, "type": "reject", "seq": s1, "reason": "unknown_wallet", "detail": ""}).encode(),
         "unsigned"),  # what the bureau sent before rejects were signed
    ]
    for payload, reason in refused:
        assert c.on_reply(payload)[0] == "ignored", reason
        assert c.outbox.pending() == [s1, s2] and c.outbox.refused() == [], reason
        assert c.events[-1] == ("reject_refused", (json.loads(payload)["seq"], reason))
    assert sum(c.refused_rejects.values()) == len(refused) and c.refused_acks == {}
    # a reject of an envelope the bureau could not read names no receipt and moves nothing
    unnamed = reject_message(RV["chain_id"], "bureau-1", OUTSIDER, "CH-1", None, None, "malformed", "too short")
    assert c.on_reply(unnamed) == ("ignored", None) and c.outbox.pending() == [s1, s2]
    assert c.on_reply(reject_for(c, s1, "busy")) == ("reject", s1) and c.outbox.pending() == [s1, s2]  # retryable
    # the charger's enrollment is not committed yet: the receipt waits to be resent
    assert c.on_reply(reject_for(c, s1, "unknown_charger")) == ("reject", s1) and c.outbox.pending() == [s1, s2]
    genuine = reject_for(c, s2)
    assert c.on_reply(genuine) == ("reject", s2)
    assert c.outbox.pending() == [s1] and c.outbox.refused() == ["%010d.unknown_wallet" % s2]
    assert c.on_reply(genuine) == ("ignored", s2) and c.refused_rejects["not_pending"] == 2  # a repeat
    assert c.on_reply(ack_for(c, s1)) == ("ack", s1) and c.outbox.pending() == []


def test_release_reply_is_taken_only_signed_for_a_release_the_charger_asked_for():
    flash = CuttableFlash()
    fw_trust.provision(flash, RV["genesis"])
    a = fw_authz.Authz("CH-1", flash, NaclSigner.verify, rng())
    a.load()
    req = json.loads(a.release("auth:00000000000000aa")[2])["req"]
    base = {"type": "release", "req": req, "auth_ref": "auth:00000000000000aa", "released": True, "reason": None}

    def reply(msg=base, key=BUREAU, bureau="bureau-1", charger_id="CH-1", **edits):
        return json.dumps({**wire.sign_release_reply(msg, RV["chain_id"], bureau, charger_id, key), **edits}).encode()

    refused = [
        (reply(key=OUTSIDER), "bad_signature"),
        (reply(bureau="bureau-9", key=OUTSIDER), "unknown_signer"),
        (reply(charger_id="CH-2"), "bad_signature"),
        (reply({**base, "req": "0011223344556677"}, req=req), "bad_signature"),  # another request's, moved onto it
        (reply({**base, "req": "0011223344556677"}), "not_pending"),  # a release the charger never asked for
        (reply({**base, "released": False, "reason": "unknown_auth_ref"}, released=True, reason=None),
         "bad_signature"),
        (json.dumps({"v": 1, **base}).encode(), "unsigned"),
    ]
    for payload, reason in refused:
        out = a.on_reply(payload, 0, 0, None)
        assert out == [("event", ("release_reply_refused", json.loads(payload)["req"], reason))], reason
        assert a.releasing == [(req, "auth:00000000000000aa")]
    assert sum(a.refused_replies.values()) == len(refused)
    assert a.on_reply(reply(), 0, 0, None) == [("event", ("released", "auth:00000000000000aa", True))]
    assert a.on_reply(reply(), 0, 0, None)[0][1][2] == "not_pending" and a.releasing == []  # replayed
