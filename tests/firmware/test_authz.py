"""Firmware authorization (firmware/core/authz.py): the signed offline list and tariff push from
the shared vectors under CPython and real MicroPython, the backend's codec against the same
vectors, offline spend accounting with the real charger core, the online request/reply state
machine, and power cuts while a list is installed."""

import json
from pathlib import Path

import pytest
from nacl.signing import SigningKey

import authz as fw_authz
import charger as fw_charger
import ed25519 as fw_ed25519
from bureau import crypto
from bureau.authz import wire
from bureau.ledger.tariff import Tariff
from bureau.receipts.codec import decode
from tests.support.flashsim import CuttableFlash, PowerCut
from tests.support.micropython import run_micropython
from tests.support.mp_memflash import MEMFLASH
from tests.firmware.test_charger_core import Clock, Meter, NaclSigner, TARIFF, rng
from tests.support import bureau_replies

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
AZ = json.loads((VECTORS / "authz.json").read_text())
H = bytes.fromhex

# Runs under both interpreters with AUTHZ_JSON bound first and the firmware's own ed25519.verify.
CHECK = MEMFLASH + r"""
import json, binascii
import authz, ed25519, signed_reply

V = json.loads(AUTHZ_JSON)
U = binascii.unhexlify
NOW = V['now']



class Outbox:
    def pending(self):
        return []


class Idle:
    session = None
    outbox = Outbox()


def fresh():
    f = MemFlash()
    authz.provision(f, V['genesis'])
    a = authz.Authz('CH-1', f, ed25519.verify, lambda n: b'\x01' * n)
    a.load()
    return a


def reason_of(fn, *args):
    try:
        fn(*args)
    except authz.AuthzError as e:
        return e.reason
    return None


L = V['list']
pages = [U(p['bytes']) for p in L['pages']]
for p, vec in zip(pages, L['pages']):
    got = authz.decode_page(p)
    assert [list(e) for e in got] == [e for e in L['entries'] if vec['first_uid'] <= e[0]][:vec['count']], vec

m, body, sig = authz.decode_manifest(U(L['envelope']))
for k in L['manifest']:
    assert m[k] == L['manifest'][k], k
assert authz.LIST_TAG + body == U(L['signed_message'])
assert [(f, binascii.hexlify(h).decode()) for f, h in m['pages']] == [(p['first_uid'], p['sha256']) for p in L['pages']]

# pages before the manifest, manifest before the pages, and a mixed order: same result
orders = [
    [('p', 0), ('p', 1), ('p', 2), ('p', 3), ('m', 0)],
    [('m', 0), ('p', 3), ('p', 2), ('p', 1), ('p', 0)],
    [('p', 1), ('m', 0), ('p', 0), ('p', 3), ('p', 2)],
]
installed = 0
for order in orders:
    a = fresh()
    results = []
    for kind, i in order:
        if kind == 'm':
            results.append(a.on_bureau_message(authz.MANIFEST_TOPIC, U(L['envelope']), NOW))
        else:
            results.append(a.on_bureau_message(authz.PAGE_TOPIC_PREFIX + str(i), pages[i], NOW))
    assert results[-1] == 'installed' and results.count('installed') == 1, results
    for case in V['lookups']:
        want = None if case['wallet_id'] is None else (case['wallet_id'], case['limit_fen'])
        assert a.lookup(case['uid']) == want, case
    d = a.offline('04a1b2c3d4e5f6', NOW, Idle())
    assert d['decision'] == 'accept' and d['method'] == 2 and d['auth_ref'] == 'offline:42', d
    assert d['wallet_id'] == 'W-1001' and d['authorized_fen'] == 2500 and d['id_token'] == '04A1B2C3D4E5F6', d
    d = a.offline('CAFE0001', NOW, Idle())
    assert d['decision'] == 'reject' and d['reason'] == 'not_on_list', d
    d = a.offline('DEADBEEF', L['manifest']['expires_at'], Idle())
    assert d['reason'] == 'list_expired', d
    # a repeat of the retained manifest changes nothing and costs no signature check
    assert a.on_bureau_message(authz.MANIFEST_TOPIC, U(L['envelope']), NOW) == 'stale'
    # the list survives a reboot
    b = authz.Authz('CH-1', a.flash, ed25519.verify, lambda n: b'\x02' * n)
    b.load()
    assert b.lookup('DEADBEEF') == ('W-9', 777)
    installed += 1

for case in V['bad_manifests']:
    a = fresh()
    r = reason_of(a.on_bureau_message, authz.MANIFEST_TOPIC, U(case['envelope']), NOW)
    assert r == case['reason'], (case['label'], r)
    assert a.manifest is None and a.next is None

t = V['tariff']
a = fresh()
doc, issued, since = a.open_tariff(U(t['envelope']))
assert doc == t['doc'] and issued == t['issued_at'] and since == t['effective_from']
t1 = V['tariff_format_1']
assert fresh().open_tariff(U(t1['envelope'])) == (t1['doc'], t1['issued_at'], 0)
for case in V['bad_tariffs']:
    r = reason_of(fresh().open_tariff, U(case['envelope']))
    assert r == case['reason'], (case['label'], r)

# an online exchange: request, reply, decision; a late duplicate is released; odd replies ignored
a = fresh()
act = a.card_tap('04a1b2c3d4e5f6', NOW, 1000, True, Idle())
assert act[0][0] == 'publish' and act[0][1] == 'ev/v1/charger/CH-1/auth'
req = json.loads(act[0][2])
assert req['method'] == 'card' and req['token'] == '04A1B2C3D4E5F6' and req['time'] == NOW
# signed as bureau-1 signs: tests/firmware/test_signed_replies.py holds the bytes to the backend's
reply = {'v': 2, 'type': 'auth', 'req': req['req'], 'decision': 'accept', 'wallet_id': 'W-1001',
         'authorized_fen': 4000, 'auth_ref': 'auth:1', 'bureau': 'bureau-1'}
reply['sig'] = binascii.hexlify(ed25519.sign(U(V['bureau_seed']), signed_reply.auth_reply_bytes(
    V['chain_id'], 'CH-1', reply))).decode()
unsigned = dict(reply)
del unsigned['sig']
assert a.on_reply(json.dumps(unsigned).encode(), NOW, 1050, Idle()) == [('event', ('auth_reply_refused', req['req'], 'malformed'))]
reply = json.dumps(reply).encode()
d = a.on_reply(reply, NOW, 1100, Idle())[0][1]
assert (d['decision'], d['method'], d['authorized_fen'], d['auth_ref']) == ('accept', 1, 4000, 'auth:1'), d
assert json.loads(a.on_reply(reply, NOW, 1200, Idle())[0][2])['type'] == 'release'
for odd in (b'', b'[1]', b'{"v":1,"type":"auth","req":{"x":1},"decision":"accept"}', b'\xff'):
    assert a.on_reply(odd, NOW, 1300, Idle()) == [], odd
a.card_tap('DEADBEEF', NOW, (1 << 30) - 1000, True, Idle())  # the ms counter wraps meanwhile
assert a.poll(NOW, 3000, Idle()) == []
assert a.poll(NOW, 4000, Idle())[0][1]['reason'] == 'no_list'

# not provisioned: nothing is trusted
f = MemFlash()
a = authz.Authz('CH-1', f, ed25519.verify, lambda n: b'\x01' * n)
a.load()
assert reason_of(a.on_bureau_message, authz.MANIFEST_TOPIC, U(L['envelope']), NOW) == 'not_provisioned'
assert reason_of(a.open_tariff, U(t['envelope'])) == 'not_provisioned'
assert a.offline('DEADBEEF', NOW, Idle())['reason'] == 'not_provisioned'
print('authz vectors ok', installed, len(V['bad_manifests']), len(V['bad_tariffs']))
"""


def _bindings() -> str:
    return f"AUTHZ_JSON = {json.dumps(json.dumps(AZ))}\n"


def test_vectors_under_cpython():
    scope: dict = {}
    exec(_bindings() + CHECK, scope)
    assert scope["installed"] == 3


def test_vectors_under_micropython():
    out = run_micropython(_bindings() + CHECK)
    assert f"authz vectors ok 3 {len(AZ['bad_manifests'])} {len(AZ['bad_tariffs'])}" in out


def test_backend_codec_matches_the_vectors():
    from tests.vectors.generate import authz_vectors
    assert json.loads(json.dumps(authz_vectors())) == AZ  # the committed file is what the generator makes
    keys = {v["id"]: H(v["public_key"]) for v in AZ["genesis"]["validators"]}
    L = AZ["list"]
    m = wire.verify_manifest(H(L["envelope"]), keys, AZ["chain_id"])
    assert m.list_version == 42 and m.entries == len(L["entries"])
    for p, (first, digest) in zip(L["pages"], m.pages):
        assert first == p["first_uid"] and wire.page_hash(H(p["bytes"])) == digest
        assert wire.encode_page(wire.decode_page(H(p["bytes"]))) == H(p["bytes"])
    for case in AZ["bad_manifests"]:
        try:
            got = wire.verify_manifest(H(case["envelope"]), keys, AZ["chain_id"])
            reason = "expired" if got.expires_at <= AZ["now"] else None
        except wire.WireError as e:
            reason = e.reason
        assert reason == case["reason"], case["label"]
    t = wire.verify_tariff(H(AZ["tariff"]["envelope"]), keys, AZ["chain_id"])
    assert t.doc == AZ["tariff"]["doc"] and t.issued_at == AZ["tariff"]["issued_at"]
    assert t.effective_from == AZ["tariff"]["effective_from"]
    t1 = wire.verify_tariff(H(AZ["tariff_format_1"]["envelope"]), keys, AZ["chain_id"])
    assert (t1.doc, t1.issued_at, t1.effective_from) == (t.doc, t.issued_at, 0)
    for case in AZ["bad_tariffs"]:
        try:
            got = wire.verify_tariff(H(case["envelope"]), keys, AZ["chain_id"])
            Tariff.from_doc(got.doc)
            reason = None
        except wire.WireError as e:
            reason = e.reason
        except ValueError:
            reason = "malformed"
        assert reason == case["reason"], case["label"]


# ---- with the real charger core (CPython) -------------------------------------------------------

BUREAU = SigningKey(H(AZ["bureau_seed"]))
CHAIN = AZ["chain_id"]
NOW = AZ["now"]


def nacl_verify(key, msg, sig):
    return crypto.verify(bytes(key), bytes(msg), bytes(sig))


def signed_list(entries, version, issued=NOW - 10, expires=NOW + 3600, signer="bureau-1", key=BUREAU,
                max_bytes=wire.MAX_MESSAGE):
    pages = wire.paginate([wire.Entry(*e) for e in sorted(entries)], max_bytes)
    m = wire.Manifest(CHAIN, signer, version, issued, expires, len(entries),
                      tuple((first, wire.page_hash(p)) for p, first, _ in pages))
    return wire.sign_manifest(m, key), [p for p, _, _ in pages]


def feed(a, env, pages, now=NOW):
    out = [a.on_bureau_message(fw_authz.PAGE_TOPIC_PREFIX + str(i), p, now) for i, p in enumerate(pages)]
    out.append(a.on_bureau_message(fw_authz.MANIFEST_TOPIC, env, now))
    return out


def signed_tariff(doc, issued, key=BUREAU, effective_from=0):
    return wire.sign_tariff(wire.TariffPush(CHAIN, "bureau-1", issued, doc, effective_from), key)


def make(flash=None, verify=nacl_verify):
    flash = flash if flash is not None else CuttableFlash()
    clock, meter = Clock(), Meter()
    clock.t = NOW
    c = fw_charger.Charger("CH-1", flash, meter, clock, NaclSigner, rng(), "fw-test", "MTR-1", default_tariff=TARIFF)
    c.boot()
    if flash.read(fw_authz.TRUST_FILE) is None:
        fw_authz.provision(flash, AZ["genesis"])
    a = fw_authz.Authz("CH-1", flash, verify, rng(b"req"))
    a.load()
    c.authz = a
    return c, a, clock, meter


def charge(c, clock, meter, wh, minutes=10):
    for _ in range(minutes):
        clock.t += 60
        meter.wh += wh // minutes
        if c.tick():
            return


def test_offline_spend_is_counted_until_a_list_includes_it():
    c, a, clock, meter = make()
    assert feed(a, *signed_list([("CARD1", "W-1", 300), ("CARD2", "W-1", 300)], 10))[-1] == "installed"
    d = a.offline("card1", clock.t, c)
    assert (d["decision"], d["authorized_fen"], d["auth_ref"], d["method"]) == ("accept", 300, "offline:10", 2)
    c.start_authorized(d)
    assert a.offline("CARD1", clock.t, c)["reason"] == "offline_limit_used"  # the running session holds it all
    assert a.offline("CARD2", clock.t, c)["authorized_fen"] == 300  # another card, its own share
    charge(c, clock, meter, 1000)  # 1 kWh flat: 150 fen
    c.stop("L")
    (seq,) = c.outbox.pending()
    r, _, _ = decode(c.outbox.get(seq))
    assert (r.auth_method, r.id_token, r.wallet_id, r.authorized_fen, r.auth_ref) == (2, "CARD1", "W-1", 300, "offline:10")
    spent = r.amount_fen
    assert 0 < spent <= 300
    assert a.offline("CARD1", clock.t, c)["authorized_fen"] == 300 - spent  # unacked receipt counts
    # acked at height 12: still counted, the list was taken at height 10
    ack = bureau_replies.ack("CH-1", seq, c.outbox.get(seq), height=12)
    assert c.on_reply(ack) == ("ack", seq)
    assert c.outbox.pending() == []
    assert a.offline("CARD1", clock.t, c)["authorized_fen"] == 300 - spent
    # survives a reboot of both
    c2, a2, _, _ = make(c.flash)
    assert a2.offline("CARD1", clock.t, c2)["authorized_fen"] == 300 - spent
    # a list from height 11 does not include the receipt yet; one from height 12 does
    assert feed(a2, *signed_list([("CARD1", "W-1", 300)], 11))[-1] == "installed"
    assert a2.offline("CARD1", clock.t, c2)["authorized_fen"] == 300 - spent
    assert feed(a2, *signed_list([("CARD1", "W-1", 280)], 12))[-1] == "installed"
    assert a2.offline("CARD1", clock.t, c2)["authorized_fen"] == 280
    assert a2.used == {}
    # an older list never replaces a newer one
    assert feed(a2, *signed_list([("CARD1", "W-1", 5000)], 11, issued=NOW))[-1] == "stale"
    assert a2.offline("CARD1", clock.t, c2)["authorized_fen"] == 280


def test_forged_or_foreign_lists_are_refused_and_the_old_list_stays():
    c, a, clock, _ = make()
    feed(a, *signed_list([("CARD1", "W-1", 300)], 5))
    forged_env, forged_pages = signed_list([("CARD1", "W-1", 90000)], 6, key=SigningKey.generate())
    for i, p in enumerate(forged_pages):
        a.on_bureau_message(fw_authz.PAGE_TOPIC_PREFIX + str(i), p, NOW)  # pages alone are never used
    with pytest.raises(fw_authz.AuthzError) as e:
        a.on_bureau_message(fw_authz.MANIFEST_TOPIC, forged_env, NOW)
    assert e.value.reason == "bad_signature"
    # a genuine manifest whose page was swapped: stays staged, never installed
    env, pages = signed_list([("CARD1", "W-1", 400)], 7)
    other_page = wire.paginate([wire.Entry("CARD1", "W-1", 99999)])[0][0]
    assert a.on_bureau_message(fw_authz.PAGE_TOPIC_PREFIX + "0", other_page, NOW) == "stored"
    assert a.on_bureau_message(fw_authz.MANIFEST_TOPIC, env, NOW) == "staged"
    assert a.offline("CARD1", clock.t, c)["authorized_fen"] == 300
    assert a.on_bureau_message(fw_authz.PAGE_TOPIC_PREFIX + "0", pages[0], NOW) == "installed"
    assert a.offline("CARD1", clock.t, c)["authorized_fen"] == 400
    with pytest.raises(fw_authz.AuthzError) as e:
        a.on_bureau_message(fw_authz.PAGE_TOPIC_PREFIX + "1", b"\x01\x00\x05junk", NOW)
    assert e.value.reason == "malformed"
    # a damaged page on flash is treated as absent, never trusted
    name = fw_authz._page_name(wire.page_hash(pages[0]))
    c.flash.files[name] = pages[0][:-1] + b"\x00"
    assert a.offline("CARD1", clock.t, c)["reason"] == "not_on_list"


def test_online_request_reply_timeout_fallback_and_late_release():
    c, a, clock, _ = make()
    feed(a, *signed_list([("CARD1", "W-1", 300)], 5))
    (kind, topic, payload), = a.card_tap("card1", clock.t, 1000, True, c)
    req = json.loads(payload)
    assert topic == "ev/v1/charger/CH-1/auth" and req["method"] == "card" and req["token"] == "CARD1"
    assert req["v"] == 1 and req["time"] == clock.t and isinstance(req["req"], str)
    assert a.card_tap("CARD1", clock.t, 1100, True, c) == []  # already asking
    reply = bureau_replies.auth_reply("CH-1", {"type": "auth", "req": req["req"], "decision": "accept",
                                              "wallet_id": "W-1", "authorized_fen": 4000, "auth_ref": "auth:abc",
                                              "reason": None})
    (kind, d), = a.on_reply(reply, clock.t, 1200, c)
    assert kind == "decision" and (d["method"], d["authorized_fen"], d["auth_ref"]) == (1, 4000, "auth:abc")
    # the same reply again (MQTT may deliver twice) is not a second decision: the hold is given back
    (kind, topic, payload), = a.on_reply(reply, clock.t, 1300, c)
    assert kind == "publish" and json.loads(payload)["type"] == "release" and json.loads(payload)["auth_ref"] == "auth:abc"

    # no answer in time: the offline list decides
    (_, _, payload), = a.card_tap("CARD1", clock.t, 2000, True, c)
    assert a.poll(clock.t, 2000 + fw_authz.ONLINE_TIMEOUT_MS - 1, c) == []
    (kind, d), = a.poll(clock.t, 2000 + fw_authz.ONLINE_TIMEOUT_MS, c)
    assert (d["decision"], d["method"], d["auth_ref"]) == ("accept", 2, "offline:5")
    # a transient refusal also falls back; a refusal about the card does not
    for reason, want in (("busy", "accept"), ("insufficient_balance", "reject"), ("unknown_card", "reject")):
        (_, _, payload), = a.card_tap("CARD1", clock.t, 3000, True, c)
        rej = {"type": "auth", "req": json.loads(payload)["req"], "decision": "reject", "reason": reason}
        (_, d), = a.on_reply(bureau_replies.auth_reply("CH-1", rej), clock.t, 3100, c)
        assert d["decision"] == want, reason
        if want == "reject":
            assert d["reason"] == reason and d["method"] == 1
    # not connected: straight to the list
    (kind, d), = a.card_tap("CARD1", clock.t, 4000, False, c)
    assert d["method"] == 2
    # replies that are not for us or not JSON change nothing
    assert a.on_reply(b"not json", clock.t, 4100, c) == []
    assert a.on_reply(b'{"v":2,"type":"auth"}', clock.t, 4100, c) == []
    assert a.on_reply(b'{"v":1,"type":"ack","seq":3}', clock.t, 4100, c) == []


def test_phone_start_command_becomes_an_app_request():
    c, a, clock, _ = make()
    cmd = {"v": 1, "type": "start", "token": "app:0123456789abcdef", "wallet_id": "W-1", "cap_fen": 800}
    (kind, topic, payload), = a.on_reply(json.dumps(cmd).encode(), clock.t, 10, c)
    req = json.loads(payload)
    assert (req["method"], req["token"]) == ("app", "app:0123456789abcdef")
    reply = {"type": "auth", "req": req["req"], "decision": "accept", "wallet_id": "W-1",
             "authorized_fen": 800, "auth_ref": "auth:ff"}
    (_, d), = a.on_reply(bureau_replies.auth_reply("CH-1", reply), clock.t, 20, c)
    assert (d["method"], d["id_token"], d["authorized_fen"]) == (3, "app:0123456789abcdef", 800)
    c.start_authorized(d)
    # while a session runs another start is not taken up
    (kind, detail), = a.on_reply(json.dumps(cmd).encode(), clock.t, 30, c)
    assert kind == "event" and detail[0] == "start_ignored"
    # an app request without an answer is refused, never decided offline
    c.stop("L")
    a.on_reply(json.dumps(cmd).encode(), clock.t, 40, c)
    (_, d), = a.poll(clock.t, 40 + fw_authz.ONLINE_TIMEOUT_MS, c)
    assert d["decision"] == "reject" and d["reason"] == "timeout" and d["method"] == 3


def test_signed_tariff_applied_when_idle_deferred_during_a_session_and_never_rolled_back():
    c, a, clock, meter = make()
    v2 = dict(TARIFF, version=2, prices=[[k, e + 1000, s] for k, e, s in TARIFF["prices"]])
    v3 = dict(TARIFF, version=3)
    assert c.on_signed_tariff(signed_tariff(v2, 100), a) == "applied"
    assert c.tariff.version == 2
    assert c.on_signed_tariff(signed_tariff(v2, 100), a) is None  # the retained copy again
    assert c.on_signed_tariff(signed_tariff(v2, 101), a) == "unchanged"
    with pytest.raises(fw_authz.AuthzError) as e:
        c.on_signed_tariff(signed_tariff(TARIFF, 102), a)
    assert e.value.reason == "rollback"
    with pytest.raises(fw_authz.AuthzError) as e:
        c.on_signed_tariff(signed_tariff(v3, 103, key=SigningKey.generate()), a)
    assert e.value.reason == "bad_signature" and c.tariff.version == 2
    c.start(1, "CARD1", "W-1", 10**6, "auth:1")
    assert c.on_signed_tariff(signed_tariff(v3, 104), a) == "pending"
    assert c.tariff.version == 2  # the session keeps the tariff it started with
    charge(c, clock, meter, 500)
    c.stop("L")
    r, _, _ = decode(c.outbox.get(c.outbox.pending()[-1]))
    assert r.tariff_version == 2 and r.amount_fen == Tariff.from_doc(v2).amount_fen(r.periods)
    assert c.tariff.version == 3
    c2, a2, _, _ = make(c.flash)  # and after a reboot
    assert c2.tariff.version == 3
    # a recorded older push replayed after the reboot is not taken: issued_at is kept on flash
    assert c2.on_signed_tariff(signed_tariff(v2, 101), a2) is None and c2.tariff.version == 3


def test_a_tariff_pushed_before_its_effective_time_bills_only_sessions_started_from_then_on():
    c, a, clock, meter = make()
    v2 = dict(TARIFF, version=2, prices=[[k, e + 1000, s] for k, e, s in TARIFF["prices"]])
    switch = NOW + 1200
    assert c.on_signed_tariff(signed_tariff(v2, 100, effective_from=switch), a) == "pending"
    assert c.tariff.version == 1
    c2, a2, clock2, meter2 = make(c.flash)  # kept across a reboot, still not in force
    assert c2.tariff.version == 1
    clock2.t = switch - 1
    c2.start(1, "CARD1", "W-1", 10**6, "auth:1")  # starts a second before the switch: v1 bills it
    charge(c2, clock2, meter2, 500)  # runs past the switch
    c2.stop("L")
    r, _, _ = decode(c2.outbox.get(c2.outbox.pending()[-1]))
    assert r.start_time == switch - 1 and r.end_time > switch and r.tariff_version == 1
    assert c2.tariff.version == 2  # in force by the charger's clock once the session is over
    start = clock2.t
    c2.start(1, "CARD1", "W-1", 10**6, "auth:2")
    charge(c2, clock2, meter2, 500)
    c2.stop("L")
    r, _, _ = decode(c2.outbox.get(c2.outbox.pending()[-1]))
    assert r.start_time == start and r.tariff_version == 2 and r.amount_fen == Tariff.from_doc(v2).amount_fen(r.periods)


def test_tariff_pushed_mid_session_survives_a_power_cut():
    c, a, clock, meter = make()
    c.start(1, "CARD1", "W-1", 10**6, "auth:1")
    v2 = dict(TARIFF, version=2)
    assert c.on_signed_tariff(signed_tariff(v2, 100), a) == "pending"
    charge(c, clock, meter, 300)
    c2, _, _, _ = make(c.flash)  # power cut mid-session: closed with P on the old tariff, then v2
    r, _, _ = decode(c2.outbox.get(c2.outbox.pending()[-1]))
    assert r.stop_reason == "P" and r.tariff_version == 1
    assert c2.tariff.version == 2


def test_power_cut_at_every_step_of_a_list_install_leaves_a_whole_list():
    env1, pages1 = signed_list([("A%03d" % i, "W-%d" % (i % 7), 100 + i) for i in range(40)], 3, max_bytes=100)
    env2, pages2 = signed_list([("A%03d" % i, "W-%d" % (i % 7), 900 + i) for i in range(5, 45)], 4, max_bytes=100)
    assert len(pages2) > 3
    step = 0
    outcomes = set()
    while True:
        flash = CuttableFlash()
        c, a, _, _ = make(flash)
        feed(a, env1, pages1)
        flash.steps, flash.cut_at = 0, step
        try:
            feed(a, env2, pages2)
            done = True
        except PowerCut:
            done = False
        flash.cut_at = None
        c, a, _, _ = make(flash)  # reboot
        limits = {uid: a.offline(uid, NOW, c) for uid in ("A000", "A010", "A044")}
        if a.manifest["list_version"] == 3:
            assert limits["A010"]["authorized_fen"] == 110 and limits["A044"]["reason"] == "not_on_list"
        else:
            assert a.manifest["list_version"] == 4
            assert limits["A010"]["authorized_fen"] == 910 and limits["A044"]["authorized_fen"] == 944
            assert limits["A000"]["reason"] == "not_on_list"
        outcomes.add(a.manifest["list_version"])
        # the retained messages come again after the reboot: the new list always ends up installed
        feed(a, env2, pages2)
        assert a.manifest["list_version"] == 4 and a.offline("A044", NOW, c)["authorized_fen"] == 944
        names = {n for n in flash.files if n.startswith("authz/pg/")}
        assert names == {fw_authz._page_name(wire.page_hash(p)) for p in pages2}  # old pages collected
        if done:
            break
        step += 1
    assert outcomes == {3, 4} and step > 5


def test_trust_comes_from_the_genesis_and_the_firmware_verifier_agrees():
    doc = fw_authz.trust_from_genesis(AZ["genesis"])
    assert doc["chain_id"] == CHAIN and set(doc["keys"]) == {"bureau-1", "bureau-2"}
    assert H(doc["keys"]["bureau-1"]) == BUREAU.verify_key.encode()
    # the firmware's own Ed25519 verifier, as on the device
    c, a, clock, _ = make(verify=fw_ed25519.verify)
    env, pages = signed_list([("CARD1", "W-1", 300)], 5, signer="bureau-2", key=SigningKey(H(
        __import__("hashlib").sha256(b"chargeledger test vector bureau-2").hexdigest())))
    assert feed(a, env, pages)[-1] == "installed"
    env, pages = signed_list([("CARD1", "W-1", 999)], 6, signer="bureau-2", key=BUREAU)  # bureau-1's key, bureau-2's name
    with pytest.raises(fw_authz.AuthzError) as e:
        feed(a, env, pages)
    assert e.value.reason == "bad_signature"
    assert a.offline("CARD1", clock.t, c)["authorized_fen"] == 300
