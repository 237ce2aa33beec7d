"""Commit certificates: what verifies with nothing but the genesis validator set, and what not."""

import json

import pytest

from bureau.consensus import vote_sign_bytes
from bureau.consensus.signing import SignatureCache
from bureau.ledger.certificate import Certificate, CertificateError, verify

from .helpers import CHAIN, PRECOMMIT, PREVOTE, bhash, cert_for, keys, make_block, vset

KS = keys(4)
VS = vset(KS)
BLOCK = make_block(9, bytes(32), b"block nine")
H = bhash(BLOCK)


def refusal(cert, vs=VS, chain=CHAIN, height=9, block_hash=H) -> str | None:
    """None if the certificate verifies, else the verifier's machine reason (the same with and
    without a signature cache)."""
    reasons = []
    for verifier in (None, SignatureCache()):
        try:
            verify(vs, chain, height, block_hash, cert, verifier=verifier)
            reasons.append(None)
        except CertificateError as e:
            assert e.reason and e.detail
            reasons.append(e.reason)
    assert reasons[0] == reasons[1]
    return reasons[0]


def check(cert, **kw) -> bool:
    return refusal(cert, **kw) is None


def test_quorum_certificate_verifies():
    cert = cert_for(KS, VS, [0, 1, 3], 9, 2, BLOCK)
    assert check(cert)
    assert verify(VS, CHAIN, 9, H, cert) == Certificate.decode(cert)
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
        with pytest.raises(CertificateError):
            Certificate.decode(junk)
    nil = Certificate(9, 0, bytes(32), ((VS[0].id, bytes(64)),)).encode()
    assert not check(nil, block_hash=bytes(32))


def _dump(doc) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


# What the ledger's former, more lenient check accepted: every one of these carries real
# signatures of more than 2/3 of the power (or exactly 2/3), and the one verifier refuses it.

def _good_doc() -> dict:
    return json.loads(cert_for(KS, VS, [0, 1, 2], 9, 0, BLOCK))


def test_exactly_two_thirds_of_the_power_is_not_a_quorum():
    three = vset(KS[:3])
    assert refusal(cert_for(KS, three, [0, 1], 9, 0, BLOCK), vs=three) == "insufficient_power"      # 2 of 3
    weighted = vset(KS, [2, 2, 1, 1])                                                                 # total 6
    assert refusal(cert_for(KS, weighted, [0, 1], 9, 0, BLOCK), vs=weighted) == "insufficient_power"  # 4 of 6
    assert check(cert_for(KS, weighted, [0, 1, 2], 9, 0, BLOCK), vs=weighted)                         # 5 of 6


def test_duplicated_or_unsorted_signers_are_refused():
    dup = _good_doc()
    dup["signatures"].append(dup["signatures"][0])
    assert refusal(_dump(dup)) == "bad_certificate"
    unsorted = _good_doc()
    unsorted["signatures"].reverse()
    assert refusal(_dump(unsorted)) == "bad_certificate"
    # in memory too, not only in bytes
    c = Certificate.decode(cert_for(KS, VS, [0, 1, 2], 9, 0, BLOCK))
    assert refusal(Certificate(c.height, c.round, c.block_hash, c.signatures[::-1])) == "bad_certificate"
    assert refusal(Certificate(c.height, c.round, c.block_hash, c.signatures + c.signatures[:1])) == "bad_certificate"


def test_trailing_bytes_and_other_encodings_of_the_same_precommits_are_refused():
    cert = cert_for(KS, VS, [0, 1, 2], 9, 0, BLOCK)
    doc = _good_doc()
    variants = {
        "trailing newline": cert + b"\n",
        "leading space": b" " + cert,
        "spaces": json.dumps(doc, sort_keys=True).encode(),
        "unsorted keys": json.dumps(dict(reversed(doc.items())), separators=(",", ":")).encode(),
        "upper-case signature hex": _dump({**doc, "signatures": [
            {**s, "signature": s["signature"].upper()} for s in doc["signatures"]]}),
        "height as a string": _dump({**doc, "height": "9"}),
        "round as a string": _dump({**doc, "round": "0"}),
        "version true": cert.replace(b'"v":1', b'"v":true'),
        "extra key": _dump({**doc, "note": "x"}),
        "extra key in a signature": _dump({**doc, "signatures": [
            {**s, "power": 1} for s in doc["signatures"]]}),
    }
    for name, raw in variants.items():
        assert raw != cert
        assert refusal(raw) in ("bad_certificate", "unsupported_version"), name
