"""The worker link's frames (ingest/handoff.py) and the registry-only half of admission that a
worker runs (admission.screen_receipt)."""

import pytest
from nacl.signing import SigningKey

from bureau.ingest.admission import Refused, screen_receipt
from bureau.ingest.handoff import (ChargerRegistry, HandoffError, WorkerRefusal, decode_admit, decode_refuse,
                                   decode_registry, decode_reply, encode_admit, encode_refuse, encode_registry,
                                   encode_reply)
from tests.support.fleet import fleet_receipts


def test_frames_round_trip():
    reg = ChargerRegistry(7, {"CH-1": b"\x01" * 32}, {"CH-2"}, {"CH-1": [(3, b"\x02" * 32)]})
    back = decode_registry(encode_registry(reg))
    assert (back.height, back.chargers, back.retired, back.charger_old_keys) == \
        (7, reg.chargers, reg.retired, reg.charger_old_keys)
    assert decode_admit(encode_admit(b"\x03" * 32, "CH-1", b"envelope")) == (b"\x03" * 32, "CH-1", b"envelope")
    refusal = WorkerRefusal("CH-1", None, None, "malformed", "truncated")
    assert decode_refuse(encode_refuse(refusal)) == refusal
    assert decode_reply(encode_reply("CH-1", b'{"type":"ack"}')) == ("CH-1", b'{"type":"ack"}')


@pytest.mark.parametrize("decoder, payload", [
    (decode_registry, b'{"v": 2, "height": 1, "chargers": {}, "retired": [], "old_keys": {}}'),
    (decode_registry, b"not json"),
    (decode_admit, b"\x01short"),
    (decode_admit, b"\x01" + b"\x00" * 32 + b"\x04CH/1envelope"),  # a charger id no topic can hold
    (decode_refuse, b'{"v": 1, "charger": "CH-1", "seq": "1", "receipt": null, "reason": "x", "detail": "y"}'),
    (decode_reply, b"\x02\x04CH-1{}"),
])
def test_a_bad_frame_is_refused_with_a_reason(decoder, payload):
    with pytest.raises(HandoffError) as e:
        decoder(payload)
    assert e.value.reason == "malformed"


def test_screening_needs_only_the_registry():
    keys, receipts, _ = fleet_receipts(chargers=2, per_charger=1)
    (cid, env), (other, _) = receipts
    reg = ChargerRegistry(1, {c: k.verify_key.encode() for c, k in keys.items()}, set(), {})
    r, _, _, rid = screen_receipt(env, reg, cid)
    assert (r.charger_id, r.seq) == (cid, 1) and len(rid) == 64
    assert screen_receipt(env, reg, other).reason == "wrong_topic"
    rotated = ChargerRegistry(2, {cid: SigningKey.generate().verify_key.encode()}, set(),
                              {cid: [(1, keys[cid].verify_key.encode())]})
    assert screen_receipt(env, rotated, cid).reason == "key_rotated"
    assert screen_receipt(env, ChargerRegistry(1, reg.chargers, {cid}, {}), cid).reason == "charger_retired"
    assert screen_receipt(env, ChargerRegistry(1, {}, set(), {}), cid).reason == "unknown_charger"
    bad = screen_receipt(env[:-1] + bytes([env[-1] ^ 1]), reg, cid)
    assert isinstance(bad, Refused) and bad.reason in ("bad_signature", "malformed")
