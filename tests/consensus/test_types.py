"""Canonical bytes: wire messages, sign bytes, WAL records, validator set and proposer rotation."""

import struct
from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st

from bureau.consensus import (
    NIL, DecodeError, LastSigned, Proposal, Step, SyncEntry, SyncRequest, SyncResponse, Validator, ValidatorSet, Vote,
    WalDecision, WalLock, WalMessage, WalRound, decode_message, decode_record, encode_message, encode_record,
    proposal_sign_bytes, vote_sign_bytes,
)
from bureau.consensus.types import MAX_MESSAGE_BYTES, MAX_SYNC_BATCH
from bureau.ledger import certificate as ledger_certificate

from .helpers import CHAIN, PRECOMMIT, PREVOTE, bhash, keys, make_block, pol_for, proposal, vote, vset

KS = keys(4)
BLOCK = make_block(1, bytes(32), b"payload")


def samples():
    h = bhash(BLOCK)
    return [
        vote(KS[1], 1, PREVOTE, 7, 2, h),
        vote(KS[2], 2, PRECOMMIT, 7, 2),
        proposal(KS[1], 3, 0, BLOCK),
        proposal(KS[1], 3, 4, BLOCK, 2, pol_for(KS, [0, 2, 3], 3, 2, BLOCK)),
        SyncRequest(5, 16),
        SyncResponse(()),
        SyncResponse((SyncEntry(5, BLOCK, b'{"x":1}'), SyncEntry(6, BLOCK + b"z", b"c"))),
    ]


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_message_round_trip_is_exact(msg):
    data = encode_message(msg)
    assert data[:3] == b"EB\x01"
    assert decode_message(data) == msg
    assert encode_message(decode_message(data)) == data


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_every_truncation_and_any_trailing_byte_is_rejected(msg):
    data = encode_message(msg)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode_message(data[:cut])
    with pytest.raises(DecodeError) as e:
        decode_message(data + b"\x00")
    assert e.value.reason == "trailing_bytes"


def test_decode_names_what_is_wrong():
    good = encode_message(samples()[0])
    cases = {
        b"": "truncated",
        b"XX" + good[2:]: "bad_magic",
        good[:2] + b"\x02" + good[3:]: "unsupported_version",
        good[:3] + b"\x09" + good[4:]: "unknown_type",
    }
    for data, reason in cases.items():
        with pytest.raises(DecodeError) as e:
            decode_message(data)
        assert e.value.reason == reason
        assert reason in str(e.value)
    with pytest.raises(DecodeError) as e:
        decode_message(b"EB\x01\x01" + bytes(MAX_MESSAGE_BYTES))
    assert e.value.reason == "too_large"
    with pytest.raises(DecodeError):
        decode_message("not bytes")


def test_decode_rejects_out_of_range_fields():
    v = samples()[0]
    zero_height = encode_message(Vote(v.kind, 1, 0, v.block_hash, 1, v.signature)).replace(
        struct.pack(">Q", 1), struct.pack(">Q", 0), 1)
    with pytest.raises(DecodeError, match="bad_height"):
        decode_message(zero_height)
    # pol_round must be below round, and a proposal without a pol round carries no prevotes
    p = samples()[3]
    with pytest.raises(DecodeError, match="bad_pol_round"):
        decode_message(encode_message(Proposal(p.height, 2, 2, p.block, p.signature, p.pol)))
    with pytest.raises(DecodeError, match="bad_pol"):
        decode_message(encode_message(Proposal(p.height, 4, -1, p.block, p.signature, p.pol)))
    with pytest.raises(DecodeError, match="bad_pol"):
        decode_message(encode_message(Proposal(p.height, 4, 2, p.block, p.signature, p.pol[::-1])))
    with pytest.raises(DecodeError, match="bad_block_length"):
        decode_message(encode_message(Proposal(1, 0, -1, b"", p.signature)))
    with pytest.raises(DecodeError, match="bad_count"):
        decode_message(encode_message(SyncRequest(1, MAX_SYNC_BATCH + 1)))
    with pytest.raises(DecodeError, match="bad_height"):
        decode_message(encode_message(SyncResponse((SyncEntry(6, BLOCK, b"c"), SyncEntry(6, BLOCK, b"c")))))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_decode_error(data):
    try:
        msg = decode_message(data)
    except DecodeError:
        return
    assert encode_message(msg) == data  # anything accepted is in canonical form


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([encode_message(m) for m in samples()]), st.integers(0, 10 ** 6), st.integers(0, 255))
def test_mutated_messages_decode_or_raise_decode_error(data, pos, byte):
    data = bytearray(data)
    data[pos % len(data)] = byte
    try:
        msg = decode_message(bytes(data))
    except DecodeError:
        return
    assert encode_message(msg) == bytes(data)


def test_sign_bytes_are_domain_separated_and_versioned():
    h = bhash(BLOCK)
    pv = vote_sign_bytes(CHAIN, PREVOTE, 3, 1, h)
    pc = vote_sign_bytes(CHAIN, PRECOMMIT, 3, 1, h)
    pr = proposal_sign_bytes(CHAIN, 3, 1, h, -1)
    assert pv.startswith(b"EV-PREVOTE/v1\x00") and pc.startswith(b"EV-PRECOMMIT/v1") and pr.startswith(b"EV-PROPOSAL/v1")
    assert len({pv, pc, pr[:len(pv)]}) == 3
    assert pv != vote_sign_bytes("other-chain", PREVOTE, 3, 1, h)
    assert pv != vote_sign_bytes(CHAIN, PREVOTE, 3, 2, h) != vote_sign_bytes(CHAIN, PREVOTE, 4, 1, h)
    assert proposal_sign_bytes(CHAIN, 3, 1, h, 0) != pr
    assert vote_sign_bytes(CHAIN, PREVOTE, 3, 1, NIL).endswith(bytes(32))
    # a precommit for a block signs exactly what the ledger's certificate check verifies
    assert pc == ledger_certificate.precommit_bytes(CHAIN, 3, 1, h)
    with pytest.raises(ValueError):
        vote_sign_bytes("", PREVOTE, 1, 0, h)
    with pytest.raises(ValueError):
        vote_sign_bytes("ü", PREVOTE, 1, 0, h)


def test_wal_records_round_trip():
    v = samples()[0]
    p = samples()[3]
    recs = [
        LastSigned(7, 2, Step.PREVOTE, v.sign_bytes(CHAIN), v.signature),
        WalRound(7, 3),
        WalMessage(v),
        WalMessage(p),
        WalLock(7, -1, None, -1, None),
        WalLock(7, 1, BLOCK, 1, BLOCK, p.pol),
        WalLock(7, 1, BLOCK, 2, BLOCK + b"2", p.pol),
        WalDecision(7, BLOCK, b'{"cert":1}'),
    ]
    for rec in recs:
        data = encode_record(rec)
        assert decode_record(data) == rec
        with pytest.raises(DecodeError):
            decode_record(data[:-1])
        with pytest.raises(DecodeError):
            decode_record(data + b"!")


def test_validator_set_thresholds():
    assert vset(keys(4)).quorum_power == 3 and vset(keys(4)).skip_power == 2
    assert vset(keys(7)).quorum_power == 5 and vset(keys(7)).skip_power == 3
    assert vset(keys(1)).quorum_power == 1
    weighted = vset(keys(4), [3, 1, 1, 1])           # total 6: quorum > 4, skip > 2
    assert weighted.quorum_power == 5 and weighted.skip_power == 3
    assert not weighted.has_quorum(4) and weighted.has_quorum(5)


def test_validator_set_rejects_bad_input():
    k = keys(2)
    with pytest.raises(ValueError):
        ValidatorSet([])
    with pytest.raises(ValueError):
        ValidatorSet([Validator("a", k[0].verify_key.encode()), Validator("a", k[1].verify_key.encode())])
    with pytest.raises(ValueError):
        ValidatorSet([Validator("a", k[0].verify_key.encode()), Validator("b", k[0].verify_key.encode())])
    with pytest.raises(ValueError):
        ValidatorSet([("a", k[0].verify_key.encode(), 1)])      # entries are Validators
    for bad in (("a", b"short", 1), ("", k[0].verify_key.encode(), 1), ("a", k[0].verify_key.encode(), 0),
                ("a", k[0].verify_key.encode(), True), ("x" * 65, k[0].verify_key.encode(), 1)):
        with pytest.raises(ValueError):
            Validator(*bad)


def test_the_genesis_holds_the_validator_set_consensus_uses():
    from bureau.ledger.genesis import Genesis, GenesisError
    k = keys(3)
    doc = {"v": 1, "chain_id": CHAIN, "genesis_time_ms": 0,
           "validators": [{"id": f"bureau-{i}", "public_key": x.verify_key.encode().hex(), "power": i + 1,
                           "address": f"127.0.0.1:{7000 + i}"} for i, x in enumerate(k)],
           "operators": [{"id": "op", "public_key": k[0].verify_key.encode().hex()}]}
    vs = Genesis.from_doc(doc).validators
    assert isinstance(vs, ValidatorSet)
    assert [(v.id, v.public_key, v.power, v.address) for v in vs] == [
        (f"bureau-{i}", x.verify_key.encode(), i + 1, f"127.0.0.1:{7000 + i}") for i, x in enumerate(k)]
    assert vs.total_power == 6 and vs.index_of_id("bureau-2") == 2 and vs.by_id("bureau-1").power == 2
    for bad in ([{"id": "x"}], [], "bureau-0", [{"id": "a", "public_key": "00" * 32, "power": "2"}]):
        with pytest.raises(GenesisError):
            Genesis.from_doc({**doc, "validators": bad})
    with pytest.raises(GenesisError):
        Genesis.from_doc({**doc, "chain_id": "no\nnewline"})     # signatures cover printable ASCII only


def test_proposer_rotation_equal_power_visits_everyone_in_turn():
    vs = vset(keys(4))
    seq = [vs.proposer(1, r) for r in range(8)]
    assert sorted(seq[:4]) == [0, 1, 2, 3] and seq[4:] == seq[:4]
    # the next round of a height has the next proposer; the next height shifts it too
    assert vs.proposer(5, 1) == vs.proposer(6, 0) != vs.proposer(5, 0)


def test_proposer_rotation_is_weighted_and_spread():
    vs = vset(keys(4), [4, 2, 1, 1])
    seq = [vs.proposer(1, r) for r in range(8)]
    assert Counter(seq) == {0: 4, 1: 2, 2: 1, 3: 1}
    # spread out: the heavy validator never proposes more than twice in a row, even across periods
    assert "000" not in "".join(map(str, seq + seq))
    assert [vs.proposer(1, r) for r in range(8)] == [vset(keys(4), [4, 2, 1, 1]).proposer(1, r) for r in range(8)]
    big = vset(keys(3), [10 ** 6, 2 * 10 ** 6, 10 ** 6])   # gcd makes this a period of 4
    assert Counter(big.proposer(1, r) for r in range(4)) == {0: 1, 1: 2, 2: 1}
    with pytest.raises(ValueError):
        vset(keys(2), [1, 1 << 17])
