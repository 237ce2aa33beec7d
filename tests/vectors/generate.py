"""Writes the shared test vectors (receipts, bad receipts, tariff amounts, the signed offline list
and tariff push, signed acks, rejects, authorization and release replies, state maps and proofs).

Deterministic: keys come from fixed seeds, so a rerun writes identical files and
tests/unit/test_vectors.py checks that the committed files are what this script makes.
Run: .venv/bin/python tests/vectors/generate.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "backend"))

from nacl.signing import SigningKey  # noqa: E402

from bureau.ledger import records  # noqa: E402
from bureau.ledger.statemap import StateMap  # noqa: E402
from bureau.ledger.tariff import Tariff  # noqa: E402
from bureau.receipts.codec import Receipt, encode_body, receipt_id, seal, signed_message  # noqa: E402

TARIFF_DOC = {
    "v": 1, "tariff_id": "GD-2026-A", "version": 1,
    "prices": [[0, 13500, 8000], [1, 11000, 8000], [2, 7000, 8000], [3, 3500, 8000]],
    "schedule": [[0, 3], [480, 2], [600, 1], [690, 2], [1080, 0], [1140, 1], [1380, 3]],
}


def seed(label: str) -> bytes:
    return hashlib.sha256(b"chargeledger test vector " + label.encode()).digest()


def base_receipt() -> Receipt:
    return Receipt(
        charger_id="GZ-TH-0001", seq=1, session_id=bytes(range(16)), auth_method=1,
        id_token="04A1B2C3D4E5F6", wallet_id="W-1001", authorized_fen=5000, auth_ref="auth:7f3a",
        start_time=1_793_487_600, end_time=1_793_494_800, time_flags=3, meter_serial="SDM120-000123",
        meter_start_wh=1_234_567, meter_end_wh=1_241_567, meter_status=0, stop_reason="L",
        tariff_id="GD-2026-A", tariff_version=1, periods=((2, 3000), (3, 4000)),
        amount_fen=0, firmware_version="fw-1.0.0",
    )


def session_receipt(seq: int) -> Receipt:
    """The base receipt as the charger's session `seq` for a bureau's tests: its own session id,
    meter readings that carry on from session `seq - 1` (the ledger bills a session once, meters
    run forward), and its times moved by whole days to a recent day (the same tariff periods,
    inside the ledger's staleness bound). Not a vector: the vectors keep their fixed dates."""
    from bureau.tools.sessiontime import recent
    base = base_receipt()
    start = base.meter_start_wh + (seq - 1) * base.energy_wh
    return replace(base, seq=seq, session_id=hashlib.sha256(b"session %d" % seq).digest()[:16],
                   meter_start_wh=start, meter_end_wh=start + base.energy_wh,
                   start_time=recent(base.start_time), end_time=recent(base.start_time) + base.end_time - base.start_time)


def as_json(r: Receipt) -> dict:
    d = asdict(r)
    d["session_id"] = r.session_id.hex()
    d["periods"] = [list(p) for p in r.periods]
    return d


def receipts() -> list[dict]:
    tariff = Tariff.from_doc(TARIFF_DOC)
    base = base_receipt()
    cases = [
        ("card online, two periods", base),
        ("offline card stopped at limit", replace(base, seq=2, auth_method=2, auth_ref="offline:12", stop_reason="Q",
                                                  authorized_fen=2000, periods=((1, 7000),), time_flags=1)),
        ("phone start, every period, large meter", replace(
            base, seq=4_294_967_295, auth_method=3, id_token="app:9c1e", meter_start_wh=2**40,
            meter_end_wh=2**40 + 100_010, periods=((0, 10), (1, 40_000), (2, 30_000), (3, 30_000)),
            stop_reason="U", meter_status=0)),
        ("power failure, zero energy, empty strings", replace(
            base, seq=9, id_token="", auth_ref="", meter_end_wh=base.meter_start_wh, periods=(),
            stop_reason="P", time_flags=0, meter_status=4)),
    ]
    out = []
    for i, (label, r) in enumerate(cases):
        r = replace(r, amount_fen=tariff.amount_fen(r.periods))
        key = SigningKey(seed(f"charger {i}"))
        env = seal(r, key)
        out.append({
            "label": label, "seed": seed(f"charger {i}").hex(), "public_key": key.verify_key.encode().hex(),
            "fields": as_json(r), "body": encode_body(r).hex(),
            "signed_message": signed_message(encode_body(r)).hex(),
            "signature": env[-64:].hex(), "envelope": env.hex(), "receipt_id": receipt_id(env),
        })
    return out


def bad_receipts() -> list[dict]:
    key = SigningKey(seed("charger 0"))
    other = SigningKey(seed("not the charger"))
    tariff = Tariff.from_doc(TARIFF_DOC)
    good = replace(base_receipt(), amount_fen=tariff.amount_fen(base_receipt().periods))
    env = seal(good, key)
    body = encode_body(good)
    flipped = bytearray(env)
    flipped[-1] ^= 1
    cases = [
        ("signature of another key", seal(good, other), "bad_signature"),
        ("flipped signature bit", bytes(flipped), "bad_signature"),
        ("truncated", env[:40], "malformed"),
        ("trailing byte in body", body + b"\x00" + key.sign(signed_message(body + b"\x00")).signature, "malformed"),
        ("version 2", b"\x02" + env[1:], "unsupported_version"),
        ("oversized", env + bytes(1025 - len(env)), "oversized"),
        ("periods do not add up", seal(replace(good, periods=((2, 3000), (3, 3999))), key), "inconsistent"),
        ("end before start", seal(replace(good, end_time=good.start_time - 1), key), "inconsistent"),
        ("meter went backwards", seal(replace(good, meter_end_wh=good.meter_start_wh - 1, periods=()), key), "inconsistent"),
        ("amount off by one fen", seal(replace(good, amount_fen=good.amount_fen + 1), key), "wrong_amount"),
        ("unknown stop reason", _patch_stop(good, key), "malformed"),
        ("empty", b"", "malformed"),
    ]
    return [{"label": label, "envelope": e.hex(), "reason": reason, "public_key": key.verify_key.encode().hex()}
            for label, e, reason in cases]


def _patch_stop(r: Receipt, key: SigningKey) -> bytes:
    body = bytearray(encode_body(r))
    i = body.index(b"\x09GD-2026-A") - 1  # stop_reason is the byte before tariff_id
    body[i] = ord("Z")
    return bytes(body) + key.sign(signed_message(bytes(body))).signature


def tariff_vectors() -> dict:
    tariff = Tariff.from_doc(TARIFF_DOC)
    amounts = []
    for periods in ([(2, 3000), (3, 4000)], [(0, 1)], [(3, 1)], [(3, 2)], [(1, 2381)], [(0, 10), (1, 7), (2, 5), (3, 3)],
                    [], [(0, 123_456_789)], [(2, 666), (3, 333)], [(3, 100)], [(3, 99)]):
        amounts.append({"periods": periods, "amount_fen": tariff.amount_fen(periods)})
    # local midnight in UTC+8 is 16:00 UTC; moments at and around each boundary
    day = 1_793_462_400  # 2026-10-31T16:00:00Z = 2026-11-01 00:00 local
    kinds = []
    for minute in (0, 479, 480, 599, 600, 689, 690, 1079, 1080, 1139, 1140, 1379, 1380, 1439):
        for second in (0, 59):
            t = day + minute * 60 + second
            kinds.append({"unix_s": t, "kind": tariff.kind_at(t)})
    return {"tariff": TARIFF_DOC, "amounts": amounts, "kinds": kinds}


# ---- authorization: the signed offline list and tariff push (docs/authorization.md) -----------

AUTHZ_CHAIN = "ev-bureau-test"
AUTHZ_NOW = 1_793_491_200


def authz_vectors() -> dict:
    from bureau.authz import wire

    bureau = SigningKey(seed("bureau-1"))
    other = SigningKey(seed("not a bureau"))
    entries = [wire.Entry(uid, wallet, limit) for uid, wallet, limit in (
        ("04A1B2C3D4E5F6", "W-1001", 2500), ("04A1B2C3D4E5F7", "W-1001", 2500), ("1A2B3C4D", "W-1002", 100),
        ("5E6F7A8B", "W-2002", 5000), ("80FFEE0011223344", "W-3.b_x", 4294967295), ("DEADBEEF", "W-9", 777),
        ("E0E1E2E3E4E5E6", "W-1001", 1))]
    pages = wire.paginate(entries, max_bytes=70)  # small pages, so the vectors span several
    manifest = wire.Manifest(AUTHZ_CHAIN, "bureau-1", 42, AUTHZ_NOW - 60, AUTHZ_NOW + 86_400, len(entries),
                             tuple((first, wire.page_hash(p)) for p, first, _ in pages))
    env = wire.sign_manifest(manifest, bureau)
    lookups = [{"uid": e.uid, "wallet_id": e.wallet_id, "limit_fen": e.limit_fen} for e in entries]
    lookups += [{"uid": uid, "wallet_id": None, "limit_fen": None}
                for uid in ("0000", "04A1B2C3D4E5F5", "04A1B2C3D4E5F8", "5E6F7A8C", "FFFFFFFF", "DEADBEEE")]
    push = wire.TariffPush(AUTHZ_CHAIN, "bureau-1", AUTHZ_NOW - 30, TARIFF_DOC, AUTHZ_NOW + 600)
    tariff_env = wire.sign_tariff(push, bureau)

    def resign(body: bytes, tag: bytes, key=bureau) -> bytes:
        return body + key.sign(tag + body).signature

    body = wire.manifest_body(manifest)
    flipped = bytearray(env)
    flipped[-wire.SIG_LEN - 1] ^= 1  # in the last page's hash
    m = manifest
    bad_manifests = [
        ("signed by a key that is not a bureau's", resign(body, wire.LIST_TAG, other), "bad_signature"),
        ("one bit of a page hash changed", bytes(flipped), "bad_signature"),
        ("signed as a tariff push", resign(body, wire.TARIFF_TAG), "bad_signature"),
        ("another chain", wire.sign_manifest(replace(m, chain_id="ev-bureau-prod"), bureau), "wrong_chain"),
        ("a signer the charger does not know", wire.sign_manifest(replace(m, signer="bureau-9"), bureau),
         "unknown_signer"),
        ("expired", wire.sign_manifest(replace(m, issued_at=AUTHZ_NOW - 200, expires_at=AUTHZ_NOW - 100), bureau),
         "expired"),
        ("format 2", resign(b"\x02" + body[1:], wire.LIST_TAG), "unsupported_version"),
        ("trailing byte", resign(body + b"\x00", wire.LIST_TAG), "malformed"),
        ("truncated", env[:30], "malformed"),
        ("oversized", env + bytes(wire.MAX_MESSAGE + 1 - len(env)), "oversized"),
    ]
    tbody = wire.tariff_body(push)
    bad_tariffs = [
        ("signed by a key that is not a bureau's", resign(tbody, wire.TARIFF_TAG, other), "bad_signature"),
        ("signed as a list", resign(tbody, wire.LIST_TAG), "bad_signature"),
        ("price changed after signing", tariff_env.replace(b"13500", b"13499"), "bad_signature"),
        ("another chain", wire.sign_tariff(replace(push, chain_id="x"), bureau), "wrong_chain"),
        ("not a tariff document", wire.sign_tariff(replace(push, doc={"v": 1, "tariff_id": "X"}), bureau),
         "malformed"),
        ("truncated", tariff_env[:-70], "malformed"),
        ("format 3", resign(b"\x03" + tbody[1:], wire.TARIFF_TAG), "unsupported_version"),
    ]
    # format 1 (no effective_from): the same push as a bureau of the previous revision signs it
    issued_end = 1 + (1 + len(AUTHZ_CHAIN)) + (1 + len("bureau-1")) + 8
    legacy = resign(b"\x01" + tbody[1:issued_end] + tbody[issued_end + 8:], wire.TARIFF_TAG)
    return {
        "chain_id": AUTHZ_CHAIN, "now": AUTHZ_NOW, "bureau_seed": seed("bureau-1").hex(),
        "genesis": {"chain_id": AUTHZ_CHAIN, "validators": [
            {"id": "bureau-1", "public_key": bureau.verify_key.encode().hex(), "power": 1},
            {"id": "bureau-2", "public_key": SigningKey(seed("bureau-2")).verify_key.encode().hex(), "power": 1}]},
        "list": {
            "entries": [[e.uid, e.wallet_id, e.limit_fen] for e in entries],
            "pages": [{"bytes": p.hex(), "sha256": wire.page_hash(p).hex(), "first_uid": first, "count": n}
                      for p, first, n in pages],
            "manifest": {"chain_id": m.chain_id, "signer": m.signer, "list_version": m.list_version,
                         "issued_at": m.issued_at, "expires_at": m.expires_at, "entries": m.entries},
            "signed_message": (wire.LIST_TAG + body).hex(), "envelope": env.hex(),
        },
        "lookups": lookups,
        "tariff": {"issued_at": push.issued_at, "effective_from": push.effective_from, "doc": TARIFF_DOC,
                   "signed_message": (wire.TARIFF_TAG + tbody).hex(), "envelope": tariff_env.hex()},
        "tariff_format_1": {"issued_at": push.issued_at, "effective_from": 0, "doc": TARIFF_DOC,
                            "envelope": legacy.hex()},
        "bad_manifests": [{"label": lb, "envelope": e.hex(), "reason": r} for lb, e, r in bad_manifests],
        "bad_tariffs": [{"label": lb, "envelope": e.hex(), "reason": r} for lb, e, r in bad_tariffs],
    }


# ---- signed replies to the charger: receipt acks and authorization replies --------------------

def reply_vectors() -> dict:
    """Acks and rejects of receipt vector 0, authorization replies to one request and the reply to
    one release request, the bytes each signature covers, and forged, foreign and replayed ones
    with the reason a charger ignores each for. Bad acks and rejects are checked against an
    outbox holding receipt vector 0 under its seq."""
    from bureau.authz import wire
    from bureau.receipts import reject as rj
    from bureau.receipts.ack import ack_message, signed_bytes

    bureau, other = SigningKey(seed("bureau-1")), SigningKey(seed("not a bureau"))
    rv = receipts()[0]
    charger, seq, rid = rv["fields"]["charger_id"], rv["fields"]["seq"], rv["receipt_id"]
    height, block = 7, hashlib.sha256(b"block 7").digest()

    def ack(chain=AUTHZ_CHAIN, name="bureau-1", key=bureau, charger_id=charger, s=seq, r=rid, h=height, b=block):
        return ack_message(chain, name, key, charger_id, s, r, h, b).decode()

    def edit(payload: str, **fields) -> str:
        return json.dumps({**json.loads(payload), **fields}, separators=(",", ":"))

    good = ack()
    other_rid = hashlib.sha256(b"another receipt").hexdigest()
    bad_acks = [
        ("signed by a key that is not a bureau's", ack(key=other), "bad_signature"),
        ("a signer the charger does not know", ack(name="bureau-9", key=other), "unknown_signer"),
        ("signed for another chain", ack(chain="ev-bureau-prod"), "bad_signature"),
        ("height changed after signing", edit(good, height=height + 1), "bad_signature"),
        ("block hash changed after signing", edit(good, block=hashlib.sha256(b"x").hexdigest()), "bad_signature"),
        ("another charger's ack, relabelled", edit(ack(charger_id="GZ-TH-0002"), charger=charger), "bad_signature"),
        ("another charger's ack", ack(charger_id="GZ-TH-0002"), "wrong_charger"),
        ("ack of another receipt under this seq", ack(r=other_rid), "wrong_receipt"),
        ("ack of another seq replayed", ack(s=seq + 1), "not_pending"),
        ("unsigned v1 ack", json.dumps({"v": 1, "type": "ack", "seq": seq, "receipt": rid, "height": height}),
         "unsigned"),
        ("signature not hex", edit(good, sig="zz" * 64), "malformed"),
        ("signature missing", json.dumps({k: v for k, v in json.loads(good).items() if k != "sig"}), "malformed"),
    ]

    def receipt_reject(chain=AUTHZ_CHAIN, name="bureau-1", key=bureau, charger_id=charger, s=seq, r=rid,
               reason="unknown_wallet", detail="wallet W-404 does not exist") -> str:
        return rj.reject_message(chain, name, key, charger_id, s, r, reason, detail).decode()

    good_reject = receipt_reject()
    bad_rejects = [
        ("signed by a key that is not a bureau's", receipt_reject(key=other), "bad_signature"),
        ("a signer the charger does not know", receipt_reject(name="bureau-9", key=other), "unknown_signer"),
        ("signed for another chain", receipt_reject(chain="ev-bureau-prod"), "bad_signature"),
        ("a retryable reject made final", edit(receipt_reject(reason="busy"), reason="unknown_wallet"),
         "bad_signature"),
        ("another charger's reject, relabelled", edit(receipt_reject(charger_id="GZ-TH-0002"), charger=charger),
         "bad_signature"),
        ("another charger's reject", receipt_reject(charger_id="GZ-TH-0002"), "wrong_charger"),
        ("reject of another receipt under this seq", receipt_reject(r=other_rid), "wrong_receipt"),
        ("another seq's reject moved onto this receipt",
         edit(receipt_reject(s=seq + 1, r=other_rid), seq=seq, receipt=rid), "bad_signature"),
        ("reject of another seq replayed", receipt_reject(s=seq + 1, r=other_rid), "not_pending"),
        ("unsigned v1 reject", json.dumps({"v": 1, "type": "reject", "seq": seq, "reason": "unknown_wallet",
                                           "detail": "wallet W-404 does not exist"}), "unsigned"),
        ("seq not an integer", edit(good_reject, seq=str(seq)), "malformed"),
        ("signature missing", json.dumps({k: v for k, v in json.loads(good_reject).items() if k != "sig"}),
         "malformed"),
    ]

    req, other_req = "9f2c61d0a4b3e871", "5b0e77aa12cd34ef"
    accept = {"type": "auth", "req": req, "decision": "accept", "wallet_id": "W-1001", "authorized_fen": 5000,
              "auth_ref": "auth:3f9e0c1d2b4a5968", "reason": None, "detail": None, "method": "card",
              "token": "04A1B2C3D4E5F6", "expires": AUTHZ_NOW + 43_200}
    reject = {"type": "auth", "req": req, "decision": "reject", "wallet_id": "W-1001", "authorized_fen": 0,
              "auth_ref": None, "reason": "insufficient_balance",
              "detail": "balance 80 fen, 0 fen held by open authorizations; at least 100 fen must be available"}

    def signed(reply, charger_id=charger, name="bureau-1", key=bureau, chain=AUTHZ_CHAIN) -> dict:
        return wire.sign_auth_reply(reply, chain, name, charger_id, key)

    def dump(reply: dict) -> str:
        return json.dumps(reply, separators=(",", ":"))

    good_replies = []
    for label, reply in (("accept", accept), ("reject", reject)):
        msg = signed(reply)
        good_replies.append({"label": label, "payload": dump(msg),
                             "signed_message": wire.auth_reply_bytes(AUTHZ_CHAIN, "bureau-1", charger, msg).hex()})
    bad_replies = [
        ("an accept for another request replayed", dump({**signed({**accept, "req": other_req}), "req": req}),
         "bad_signature"),
        ("an accept for another charger", dump(signed(accept, charger_id="GZ-TH-0002")), "bad_signature"),
        ("signed by a key that is not a bureau's", dump(signed(accept, key=other)), "bad_signature"),
        ("a signer the charger does not know", dump(signed(accept, name="bureau-9", key=other)), "unknown_signer"),
        ("signed for another chain", dump(signed(accept, chain="ev-bureau-prod")), "bad_signature"),
        ("amount raised after signing", dump({**signed(accept), "authorized_fen": 50_000}), "bad_signature"),
        ("a reject turned into an accept", dump({**signed(reject), "decision": "accept", "authorized_fen": 5000,
                                                 "auth_ref": "auth:0000000000000000"}), "bad_signature"),
        ("unsigned v1 accept", dump({"v": 1, **accept}), "unsigned"),
        ("signature missing", dump({k: v for k, v in signed(accept).items() if k != "sig"}), "malformed"),
    ]
    rel_req, ref = "c41d07e9a25b3f86", accept["auth_ref"]
    release = {"type": "release", "req": rel_req, "auth_ref": ref, "released": True, "reason": None}

    def released(reply=release, charger_id=charger, name="bureau-1", key=bureau, chain=AUTHZ_CHAIN) -> dict:
        return wire.sign_release_reply(reply, chain, name, charger_id, key)

    good_release = released()
    bad_releases = [
        ("signed by a key that is not a bureau's", dump(released(key=other)), "bad_signature"),
        ("a signer the charger does not know", dump(released(name="bureau-9", key=other)), "unknown_signer"),
        ("signed for another chain", dump(released(chain="ev-bureau-prod")), "bad_signature"),
        ("another charger's reply", dump(released(charger_id="GZ-TH-0002")), "bad_signature"),
        ("a refusal turned into a release", dump({**released({**release, "released": False,
                                                              "reason": "unknown_auth_ref"}),
                                                   "released": True, "reason": None}), "bad_signature"),
        ("another request's reply moved onto this one", dump({**released({**release, "req": other_req}),
                                                              "req": rel_req}), "bad_signature"),
        ("a reply to another request", dump(released({**release, "req": other_req})), "not_pending"),
        ("a reply for another hold", dump(released({**release, "auth_ref": "auth:0000000000000000"})),
         "not_pending"),
        ("unsigned v1 reply", dump({"v": 1, **release}), "unsigned"),
        ("signature missing", dump({k: v for k, v in good_release.items() if k != "sig"}), "malformed"),
    ]
    return {
        "chain_id": AUTHZ_CHAIN, "now": AUTHZ_NOW, "genesis": authz_vectors()["genesis"],
        "ack": {"charger_id": charger, "seq": seq, "receipt_id": rid, "receipt_envelope": rv["envelope"],
                "height": height, "block_hash": block.hex(), "payload": good,
                "signed_message": signed_bytes(AUTHZ_CHAIN, "bureau-1", charger, seq, rid, height, block).hex()},
        "bad_acks": [{"label": lb, "payload": p, "reason": r} for lb, p, r in bad_acks],
        "auth": {"charger_id": charger, "req": req, "token": accept["token"], "replies": good_replies},
        "bad_auth_replies": [{"label": lb, "payload": p, "reason": r} for lb, p, r in bad_replies],
        "reject": {"payload": good_reject,
                   "signed_message": rj.signed_bytes(AUTHZ_CHAIN, "bureau-1", charger, seq, rid, "unknown_wallet",
                                                     "wallet W-404 does not exist").hex(),
                   "unnamed": receipt_reject(s=None, r=None, reason="malformed", detail="envelope ends early")},
        "bad_rejects": [{"label": lb, "payload": p, "reason": r} for lb, p, r in bad_rejects],
        "release": {"req": rel_req, "auth_ref": ref, "payload": dump(good_release),
                    "signed_message": wire.release_reply_bytes(AUTHZ_CHAIN, "bureau-1", charger, good_release).hex()},
        "bad_releases": [{"label": lb, "payload": p, "reason": r} for lb, p, r in bad_releases],
    }


def _absent_proof(m: StateMap, with_other: bool) -> dict:
    """The proof of the first absent key W-absent-<i> that ends at a leaf of another key
    (`with_other`) or at an empty subtree, below the root."""
    for i in range(10_000):
        proof = m.prove(f"w/W-absent-{i}")
        if proof["siblings"] and (proof["other"] is not None) == with_other:
            return proof
    raise AssertionError("no such absent key")


def statemap_vectors() -> dict:
    """State maps (docs/state.md) with their roots and proofs, and tampered proofs that fail."""
    tariff = Tariff.from_doc(TARIFF_DOC)
    key = SigningKey(seed("statemap")).verify_key.encode()
    ledger_records = {
        "o/op-1": records.operator(key), "c/GZ-TH-0001": records.charger(key, False),
        "c/GZ-TH-0002": records.charger(key, True), "w/W-1001": records.wallet(100_000, key),
        "w/W-1002": records.wallet(-250, None), "k/04A1B2C3D4E5F6": records.card("W-1001", False),
        "t/GD-2026-A/1": records.tariff(tariff, 0), "m/GZ-TH-0001/SDM120-000123": records.meter(3, 1_234_567, 1_241_567),
        "p/pay:2026-0001": records.payment("W-1001"), "w/W-\u5e7f\u5dde": records.wallet(1, None),
    }
    maps = []
    for label, content in (("empty", {}), ("one record", {"o/op-1": ledger_records["o/op-1"]}),
                           ("ledger records", ledger_records)):
        m = StateMap().update(content)
        proofs = [m.prove(k) for k in sorted(content)]
        if len(content) > 1:
            proofs += [_absent_proof(m, with_other=True), _absent_proof(m, with_other=False)]
        else:
            proofs.append(m.prove("w/W-absent"))
        maps.append({"label": label, "records": content, "root": m.root.hex(), "proofs": proofs})
    m = StateMap().update(ledger_records)
    good = m.prove("w/W-1001")
    with_other = _absent_proof(m, with_other=True)
    flipped = list(good["siblings"])
    flipped[0] = ("0" if flipped[0][0] != "0" else "1") + flipped[0][1:]
    bad = [
        ("a sibling changed", {**good, "siblings": flipped}),
        ("the value changed", {**good, "value": records.wallet(100_001, key)}),
        ("another key", {**good, "key": "w/W-1002"}),
        ("a present key shown absent", {**good, "value": None}),
        ("a sibling dropped", {**good, "siblings": good["siblings"][1:]}),
        ("upper-case hex", {**good, "siblings": [s.upper() for s in good["siblings"]]}),
        ("more siblings than the depth", {**good, "siblings": good["siblings"] + ["00" * 32] * 256}),
        ("other is the key's own leaf", {**with_other, "other": {**with_other["other"],
                                                                 "path": hashlib.sha256(with_other["key"].encode()).hexdigest()}}),
        ("other off the key's path", {**with_other, "other": {**with_other["other"], "path": "%064x" % (
            int(with_other["other"]["path"], 16) ^ (1 << 255))}}),
        ("version 2", {**good, "v": 2}),
        ("an extra field", {**good, "height": 1}),
    ]
    return {"maps": maps, "bad": [{"label": label, "root": m.root.hex(), "proof": proof} for label, proof in bad]}


def binding_vectors() -> dict:
    """Binding codes as a driver may type them, their one form, the seed and binding key each
    derives (ledger/binding.py), text that is no code, and one signed bind_phone transaction."""
    from bureau.ledger import binding
    from bureau.ledger.tx import DRIVER_TAG, bind_phone_tx

    wallet = "W-1001"
    typed = ["7K3M-9QXR-2HVD-04TB", "7k3m 9qxr 2hvd o4tb", "ABCDEFGHJKMNPQRS", "0123-4567-89AB-CDEF",
             "oiL0-1234-5678-9XYZ", "ZZZZ-ZZZZ-ZZZZ-ZZZZ"]
    codes = []
    for text in typed:
        code = binding.normalise(text)
        codes.append({"wallet_id": wallet, "typed": text, "normalised": code, "display": binding.display(code),
                      "seed": binding.seed(wallet, text).hex(), "binding_key": binding.binding_key(wallet, text).hex()})
    other_wallet = {"wallet_id": "W-2002", "typed": typed[0], "normalised": binding.normalise(typed[0]),
                    "display": binding.display(binding.normalise(typed[0])),
                    "seed": binding.seed("W-2002", typed[0]).hex(),
                    "binding_key": binding.binding_key("W-2002", typed[0]).hex()}
    not_codes = ["7K3M-9QXR-2HVD-04T", "7K3M-9QXR-2HVD-04TBX", "7K3M-9QXR-2HVD-04TU", "7K3M_9QXR_2HVD_04TB", ""]
    for text in not_codes:
        try:
            binding.normalise(text)
        except binding.BindingCodeError:
            continue
        raise AssertionError(f"{text!r} was taken as a code")
    phone = SigningKey(seed("phone of W-1001"))
    genesis_hash = hashlib.sha256(b"genesis of the binding vectors").digest()
    tx = bind_phone_tx(binding.signing_key(wallet, typed[0]), wallet, phone.verify_key.encode(), genesis_hash,
                       now=AUTHZ_NOW, nonce="00112233445566778899aabbccddeeff")
    n = int.from_bytes(tx[1:3], "big")
    return {"tag": BIND_TAG_TEXT, "alphabet": binding.ALPHABET, "codes": [*codes, other_wallet],
            "not_codes": not_codes,
            "bind_phone": {"wallet_id": wallet, "code": typed[0], "phone_seed": seed("phone of W-1001").hex(),
                           "phone_public_key": phone.verify_key.encode().hex(), "genesis_hash": genesis_hash.hex(),
                           "time": AUTHZ_NOW, "nonce": "00112233445566778899aabbccddeeff",
                           "json": tx[3:3 + n].decode(), "signed_message": (DRIVER_TAG + tx[3:3 + n]).hex(),
                           "signature": tx[3 + n:].hex(), "tx": tx.hex()}}


BIND_TAG_TEXT = "EV-BIND/v1\n"


def main() -> None:
    files = {"receipts.json": receipts(), "receipts-bad.json": bad_receipts(), "tariff.json": tariff_vectors(),
             "authz.json": authz_vectors(), "replies.json": reply_vectors(), "binding.json": binding_vectors(),
             "statemap.json": statemap_vectors()}
    for name, data in files.items():
        (HERE / name).write_text(json.dumps(data, indent=1) + "\n")
    print("wrote", ", ".join(files))


if __name__ == "__main__":
    main()
