"""Commit certificates: what verifies with nothing but the genesis validator set, and what not."""

import json

import pytest

from bureau.consensus import Certificate, DecodeError, verify_certificate, vote_sign_bytes
from bureau.consensus.signing import SignatureCache
from bureau.ledger import certificate as ledger_certificate
from bureau.ledger.genesis import Validator

from .helpers import CHAIN, PRECOMMIT, PREVOTE, bhash, cert_for, keys, make_block, vset

KS = keys(4)
VS = vset(KS)
BLOCK = make_block(9, bytes(32), b"block nine")
H = bhash(BLOCK)


def ledger_accepts(vs, chain, height, block_hash, cert) -> bool:
    vals = tuple(Validator(v.id, v.public_key, v.power) for v in vs)
    try:
        ledger_certificate.verify(vals, chain, height, block_hash, cert)
        return True
    except Exception:  # (the ledger raises AttributeError on a JSON array: reported to its owner)
        return False


def check(cert, vs=VS, chain=CHAIN, height=9, block_hash=H) -> bool:
    ours = verify_certificate(vs, chain, height, block_hash, cert)
    assert ours == verify_certificate(vs, chain, height, block_hash, cert, verifier=SignatureCache())
    if ours and isinstance(cert, bytes):
        # the ledger stores and audits these same bytes: what consensus accepts, it must accept
        # (the ledger is more lenient about non-canonical JSON, so not the other way round)
        assert ledger_accepts(vs, chain, height, block_hash, cert)
    return ours


def test_quorum_certificate_verifies_and_is_the_ledger_format():
    cert = cert_for(KS, VS, [0, 1, 3], 9, 2, BLOCK)
    assert check(cert)
    assert ledger_accepts(VS, CHAIN, 9, H, cert)
    doc = json.loads(cert)
    assert doc["round"] == 2 and doc["height"] == 9 and [s["validator"] for s in doc["signatures"]] == ["v0", "v1", "v3"]
    c = Certificate.decode(cert)
    assert c.encode() == cert and c.round == 2
    assert check(c)                               # the object form verifies too
    assert check(cert_for(KS, VS, [0, 1, 2, 3], 9, 0, BLOCK))


def test_insufficient_power_is_rejected():
    assert not check(cert_for(KS, VS, [0, 1], 9, 0, BLOCK))          # 2 of 4 is not > 2/3
    weighted = vset(KS, [3, 1, 1, 1])                                  # total 6, quorum 5
    assert not check(cert_for(KS, weighted, [0, 1], 9, 0, BLOCK), vs=weighted)      # 4
    assert check(cert_for(KS, weighted, [0, 1, 2], 9, 0, BLOCK), vs=weighted)       # 5
    assert not check(cert_for(KS, weighted, [1, 2, 3], 9, 0, BLOCK), vs=weighted)   # 3 of many


def test_forged_and_misplaced_signatures_are_rejected():
    good = json.loads(cert_for(KS, VS, [0, 1, 2], 9, 0, BLOCK))
    forged = json.loads(json.dumps(good))
    sig = bytearray.fromhex(forged["signatures"][1]["signature"])
    sig[5] ^= 1
    forged["signatures"][1]["signature"] = sig.hex()
    assert not check(_dump(forged))
    # a fourth signature from a key that is not in the set, under a made-up id
    outsider = keys(5)[4]
    extra = json.loads(json.dumps(good))
    extra["signatures"].append({"validator": "v9", "signature": outsider.sign(
        vote_sign_bytes(CHAIN, PRECOMMIT, 9, 0, H)).signature.hex()})
    assert not check(_dump(extra))
    # v3's key signing under v2's name
    swapped = json.loads(json.dumps(good))
    swapped["signatures"][2]["signature"] = KS[3].sign(vote_sign_bytes(CHAIN, PRECOMMIT, 9, 0, H)).signature.hex()
    assert not check(_dump(swapped))
    # prevotes are not precommits
    pv = Certificate(9, 0, H, tuple((VS[i].id, KS[i].sign(vote_sign_bytes(CHAIN, PREVOTE, 9, 0, H)).signature)
                                    for i in (0, 1, 2)))
    assert not check(pv.encode())


def test_wrong_chain_height_round_or_block_is_rejected():
    cert = cert_for(KS, VS, [0, 1, 2], 9, 0, BLOCK)
    assert not check(cert, chain="other-chain")
    assert not check(cert, height=10)
    assert not check(cert, block_hash=bhash(BLOCK + b"x"))
    other_chain = cert_for(KS, VS, [0, 1, 2], 9, 0, BLOCK, chain="other-chain")
    assert not check(other_chain)
    moved = json.loads(cert)
    moved["round"] = 1                                   # signatures were made for round 0
    assert not check(_dump(moved))


def test_non_canonical_or_malformed_bytes_are_rejected():
    cert = cert_for(KS, VS, [0, 1, 2], 9, 0, BLOCK)
    doc = json.loads(cert)
    assert not check(json.dumps(doc, indent=1).encode())           # not canonical JSON
    dup = json.loads(cert)
    dup["signatures"].insert(1, dup["signatures"][0])               # v0 twice: 4 signatures
    assert not check(_dump(dup))
    unsorted = json.loads(cert)
    unsorted["signatures"].reverse()
    assert not check(_dump(unsorted))
    upper = cert.replace(doc["block_hash"].encode(), doc["block_hash"].upper().encode())
    assert not check(upper)
    for junk in (b"", b"{}", b"[]", b"\xff\xfe", b'{"v":2}', cert[:-1], cert + b" "):
        assert not check(junk)
        with pytest.raises(DecodeError):
            Certificate.decode(junk)
    nil = Certificate(9, 0, bytes(32), ((VS[0].id, bytes(64)),)).encode()
    assert not check(nil, block_hash=bytes(32))


def _dump(doc) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
