"""Authorization end to end through a real mosquitto: online card decisions and every bad request,
holds that stop two chargers spending the same balance, phone starts, holds across a restart and
their expiry, and the firmware (authz + charger core + its own MQTT client) receiving the signed
offline list and tariff, refusing a forged list, and getting an offline receipt committed."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace

import pytest
from nacl.signing import SigningKey

import authz as fw_authz
import charger as fw_charger
import ed25519 as fw_ed25519
import mqtt_session
from mqtt_client import MQTTClient
from bureau.api.auth import authorization_header
from bureau.authz import wire
from bureau.ledger import canonical
from bureau.ledger.tariff import Tariff
from bureau.receipts.codec import decode, seal
from tests.firmware.test_charger_core import Meter, rng
from tests.support.bureau import ReplyListener, TestBureau
from tests.vectors.generate import TARIFF_DOC, session_receipt

CARD_A, CARD_B = "04A1B2C3D4E5F6", "04A1B2C3D4E5F7"


@pytest.fixture(autouse=True)
def fast_lists(monkeypatch):
    monkeypatch.setenv("BUREAU_AUTHZ_LIST_MIN_INTERVAL_S", "0")


def enroll(bureau, charger_id, key):
    assert bureau.operator("enroll_charger", {"charger_id": charger_id,
                                              "public_key": key.verify_key.encode().hex()})["status"] == "committed"


def open_wallet(bureau, wallet_id, driver, cards, fen):
    assert bureau.operator("open_wallet", {"wallet_id": wallet_id, "public_key": driver.verify_key.encode().hex(),
                                           "cards": cards})["status"] == "committed"
    if fen:
        assert bureau.operator("top_up", {"wallet_id": wallet_id, "amount_fen": fen,
                                          "reference": f"bank:{wallet_id}"})["status"] == "committed"


_req = iter(range(1, 10**6))


def ask(replies, charger_id, msg=None, raw: bytes | None = None, **fields):
    """Publish an authorization request as charger `charger_id`; return the node's reply to it."""
    if raw is None:
        msg = msg or {"v": 1, "req": next(_req), "method": "card", "time": int(time.time()), **fields}
        raw = json.dumps(msg).encode()
    replies.publish(f"ev/v1/charger/{charger_id}/auth", raw)
    want = msg.get("req") if msg else None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        topic, reply = replies.next(timeout=deadline - time.monotonic())
        if topic == f"ev/v1/charger/{charger_id}/reply" and reply.get("type") in ("auth", "release") \
                and reply.get("req") == want:
            return reply
    raise TimeoutError("no reply")


def receipt_for(charger_id, seq, wallet_id, auth_ref, key, method=1, token=CARD_A, **changes):
    r = replace(session_receipt(seq), charger_id=charger_id, wallet_id=wallet_id, auth_ref=auth_ref,
                auth_method=method, id_token=token, **changes)
    return seal(replace(r, amount_fen=Tariff.from_doc(TARIFF_DOC).amount_fen(r.periods)), key)


def wait_ack(replies, charger_id, seq):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        topic, m = replies.next(timeout=deadline - time.monotonic())
        if topic.endswith(f"/{charger_id}/reply") and m.get("type") in ("ack", "reject") and m.get("seq") == seq:
            assert m["type"] == "ack", m
            return m
    raise TimeoutError("no ack")


def view(bureau, driver, wallet_id):
    r = bureau.driver_get(driver, wallet_id, f"/v1/wallets/{wallet_id}/authorizations")
    assert r.status_code == 200, r.text
    return r.json()


def test_card_decisions_and_every_bad_request_get_a_clear_reply(bureau, replies):
    ch, driver = SigningKey.generate(), SigningKey.generate()
    enroll(bureau, "CH-A", ch)
    open_wallet(bureau, "W-1", driver, [CARD_A], 30_000)
    open_wallet(bureau, "W-POOR", SigningKey.generate(), ["CAFE0001"], 99)

    ok = ask(replies, "CH-A", token=CARD_A)
    assert ok["decision"] == "accept" and ok["wallet_id"] == "W-1" and ok["authorized_fen"] == 30_000
    assert ok["auth_ref"].startswith("auth:") and ok["reason"] is None and ok["expires"] > time.time()
    # signed by the deciding bureau for this charger and this request (v 2)
    keys = {v.id: v.public_key for v in bureau.node.genesis.validators}
    assert wire.verify_auth_reply(ok, keys, bureau.node.genesis.chain_id, "CH-A")["bureau"] == "bureau-1"
    with pytest.raises(wire.WireError) as e:
        wire.verify_auth_reply({**ok, "req": "another-request"}, keys, bureau.node.genesis.chain_id, "CH-A")
    assert e.value.reason == "bad_signature"

    cases = [
        ({"token": "0BADCAFE"}, "unknown_card"),
        ({"token": "CAFE0001"}, "insufficient_balance"),  # 99 fen < the 100 fen minimum
        ({"token": CARD_A}, "insufficient_balance"),  # the whole balance is held by the first
        ({"token": CARD_A, "method": "pin"}, "unknown_method"),
        ({"token": "not a uid!"}, "malformed"),
        ({"token": ""}, "malformed"),
        ({"token": CARD_A, "time": "now"}, "malformed"),
        ({"token": "app:0000000000000000", "method": "app"}, "unknown_token"),
        ({"token": CARD_A, "v": 2}, "unsupported_version"),
    ]
    for fields, reason in cases:
        r = ask(replies, "CH-A", **fields)
        assert r["decision"] == "reject" and r["reason"] == reason and r["detail"], (fields, r)
        assert r["authorized_fen"] == 0 and r["auth_ref"] is None
    assert ask(replies, "CH-A", token="CAFE0001")["wallet_id"] == "W-POOR"
    assert ask(replies, "NOT-ENROLLED", token=CARD_A)["reason"] == "unknown_charger"
    for raw, reason in ((b"{nope", "malformed"), (b"[1,2]", "malformed"), (b'{"v":1,"req":{"x":1}}', "malformed"),
                        (json.dumps({"v": 1, "req": 1, "pad": "x" * 2000}).encode(), "oversized")):
        replies.publish("ev/v1/charger/CH-A/auth", raw)
        while True:
            topic, r = replies.next()
            if r.get("type") == "auth" and r["req"] is None:
                break
        assert r["decision"] == "reject" and r["reason"] == reason, (raw[:20], r)

    # a duplicate of a request (QoS 1 may deliver twice) gets the same answer and no second hold
    msg = {"v": 1, "req": "dup-1", "method": "card", "token": CARD_A, "time": 1}
    ask(replies, "CH-A", {"v": 1, "type": "release", "req": "rel-0", "auth_ref": ok["auth_ref"]})
    first = ask(replies, "CH-A", {**msg, "req": "dup-2"})
    again = ask(replies, "CH-A", {**msg, "req": "dup-2"})
    assert first == again and first["decision"] == "accept"
    assert view(bureau, driver, "W-1")["held_fen"] == 30_000
    # release: only by the charger that holds it, once
    assert ask(replies, "CH-B", {"v": 1, "type": "release", "req": "r1", "auth_ref": first["auth_ref"]})["reason"] == "not_your_hold"
    rel = ask(replies, "CH-A", {"v": 1, "type": "release", "req": "r2", "auth_ref": first["auth_ref"]})
    assert rel["released"] is True and rel["v"] == 2
    # signed for this charger and this release request
    assert wire.verify_release_reply(rel, keys, bureau.node.genesis.chain_id, "CH-A")["bureau"] == "bureau-1"
    for forged in ({**rel, "req": "r1"}, {**rel, "released": False}):
        with pytest.raises(wire.WireError) as e:
            wire.verify_release_reply(forged, keys, bureau.node.genesis.chain_id, "CH-A")
        assert e.value.reason == "bad_signature"
    assert ask(replies, "CH-A", {"v": 1, "type": "release", "req": "r4", "auth_ref": 7})["reason"] == "unknown_auth_ref"
    assert ask(replies, "CH-A", {"v": 1, "type": "release", "req": "r3", "auth_ref": first["auth_ref"]})["reason"] == "unknown_auth_ref"
    assert view(bureau, driver, "W-1")["available_fen"] == 30_000
    m = bureau.node.metrics
    assert m.get("auth_accept") == 2 and m.get("auth_repeated") == 1 and m.get("auth_reject", "unknown_card") == 1 and m.get("auth_reject", "malformed") >= 6


def test_holds_stop_two_chargers_spending_the_same_balance(bureau, replies):
    a, b, driver = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    enroll(bureau, "CH-A", a)
    enroll(bureau, "CH-B", b)
    open_wallet(bureau, "W-1", driver, [CARD_A, CARD_B], 2_000)

    first = ask(replies, "CH-A", token=CARD_A)
    assert first["decision"] == "accept" and first["authorized_fen"] == 2_000
    second = ask(replies, "CH-B", token=CARD_B)  # the other card of the same wallet, another charger
    assert second["decision"] == "reject" and second["reason"] == "insufficient_balance"
    assert second["wallet_id"] == "W-1"
    v = view(bureau, driver, "W-1")
    assert (v["balance_fen"], v["held_fen"], v["available_fen"]) == (2_000, 2_000, 0)
    assert [h["charger_id"] for h in v["holds"]] == ["CH-A"]

    # CH-A's session ends; its receipt (910 fen) names the auth_ref: when it commits the hold ends
    replies.publish("ev/v1/charger/CH-A/receipt", receipt_for("CH-A", 1, "W-1", first["auth_ref"], a))
    wait_ack(replies, "CH-A", 1)
    deadline = time.monotonic() + 5
    while view(bureau, driver, "W-1")["held_fen"] and time.monotonic() < deadline:
        time.sleep(0.05)
    v = view(bureau, driver, "W-1")
    assert (v["balance_fen"], v["held_fen"], v["available_fen"]) == (1_090, 0, 1_090)
    again = ask(replies, "CH-B", token=CARD_B)
    assert again["decision"] == "accept" and again["authorized_fen"] == 1_090
    # a receipt naming an auth_ref of another charger does not end that charger's hold
    third = ask(replies, "CH-A", token=CARD_A)
    assert third["reason"] == "insufficient_balance"
    replies.publish("ev/v1/charger/CH-A/receipt", receipt_for("CH-A", 2, "W-1", again["auth_ref"], a))
    height = wait_ack(replies, "CH-A", 2)["height"]
    deadline = time.monotonic() + 5
    while bureau.node.authz.service.seen_height < height and time.monotonic() < deadline:
        time.sleep(0.02)
    assert bureau.node.authz.service.seen_height >= height
    assert [h["auth_ref"] for h in view(bureau, driver, "W-1")["holds"]] == [again["auth_ref"]]


def test_phone_start_issues_a_one_time_token_the_charger_redeems(bureau, replies):
    ch, other_ch, driver, stranger = (SigningKey.generate() for _ in range(4))
    enroll(bureau, "CH-A", ch)
    enroll(bureau, "CH-B", other_ch)
    open_wallet(bureau, "W-1", driver, [], 5_000)
    open_wallet(bureau, "W-2", stranger, [], 5_000)

    def start(key, wallet, query, signed_query=None):
        path = f"/v1/wallets/{wallet}/start"
        hdr = authorization_header(key, wallet, "POST", f"{path}?{signed_query or query}",
                                   node_id=bureau.settings.node_id)
        return bureau.client.post(f"{path}?{query}", headers={"Authorization": hdr})

    r = start(driver, "W-1", "charger_id=CH-A&cap_fen=3000")
    assert r.status_code == 202, r.text
    token = r.json()["token"]
    assert token.startswith("app:") and r.json()["cap_fen"] == 3000
    topic, cmd = replies.next()
    assert topic == "ev/v1/charger/CH-A/reply" and cmd == {"v": 1, "type": "start", "token": token,
                                                           "wallet_id": "W-1", "cap_fen": 3000,
                                                           "expires": r.json()["expires"]}
    assert [s["token"] for s in view(bureau, driver, "W-1")["pending_starts"]] == [token]
    assert ask(replies, "CH-B", method="app", token=token)["reason"] == "wrong_charger"
    ok = ask(replies, "CH-A", method="app", token=token)
    assert ok["decision"] == "accept" and ok["authorized_fen"] == 3000 and ok["wallet_id"] == "W-1"
    assert ask(replies, "CH-A", method="app", token=token)["reason"] == "token_used"
    v = view(bureau, driver, "W-1")
    assert v["available_fen"] == 2000 and v["holds"][0]["method"] == "app" and not v["pending_starts"]

    # a second start can take only what is left
    r = start(driver, "W-1", "charger_id=CH-B&cap_fen=50000")
    assert r.status_code == 202
    replies.next()
    assert ask(replies, "CH-B", method="app", token=r.json()["token"])["authorized_fen"] == 2000
    r = start(driver, "W-1", "charger_id=CH-B&cap_fen=500")
    assert r.status_code == 409 and r.json()["error"] == "insufficient_balance"

    # every bad start is refused with its reason
    assert start(stranger, "W-2", "charger_id=NOPE&cap_fen=500").json()["error"] == "unknown_charger"
    r = start(stranger, "W-1", "charger_id=CH-A&cap_fen=500")
    assert r.status_code == 401 and r.json()["error"] == "bad_signature"
    r = start(stranger, "W-2", "charger_id=CH-A&cap_fen=99999999")
    assert r.status_code == 400 and r.json()["error"] == "bad_cap"
    r = start(stranger, "W-2", "charger_id=CH-A&cap_fen=90000", signed_query="charger_id=CH-A&cap_fen=500")
    assert r.status_code == 401 and r.json()["error"] == "bad_signature"  # the signature covers the amount
    r = bureau.client.post("/v1/wallets/W-2/start?charger_id=CH-A&cap_fen=500")
    assert r.status_code == 401 and r.json()["error"] == "missing_auth"
    path = "/v1/wallets/W-1/authorizations"
    r = bureau.client.get(path, headers={"Authorization": authorization_header(stranger, "W-2", "GET", path, node_id=bureau.settings.node_id)})
    assert r.status_code == 403 and r.json()["error"] == "not_your_wallet"


def test_holds_survive_a_restart_and_expire(tmp_path, mosquitto, replies, monkeypatch):
    # long enough to outlast the restart on a loaded machine (the promise must still hold after
    # it), short enough to watch it expire
    monkeypatch.setenv("BUREAU_AUTHZ_HOLD_TTL_S", "12")
    ch, driver = SigningKey.generate(), SigningKey.generate()
    b = TestBureau(tmp_path, mosquitto)
    try:
        enroll(b, "CH-A", ch)
        open_wallet(b, "W-1", driver, [CARD_A], 1_000)
        assert ask(replies, "CH-A", token=CARD_A)["authorized_fen"] == 1_000
    finally:
        b.close()
    b = TestBureau(tmp_path, mosquitto)
    try:
        assert ask(replies, "CH-A", token=CARD_A)["reason"] == "insufficient_balance"  # the promise was kept
        (old,) = view(b, driver, "W-1")["holds"]
        deadline = time.monotonic() + 40
        while not b.node.metrics.get("auth_hold_expired") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b.node.metrics.get("auth_hold_expired") == 1
        r = ask(replies, "CH-A", token=CARD_A)
        assert r["decision"] == "accept" and r["authorized_fen"] == 1_000
        assert [h["auth_ref"] for h in view(b, driver, "W-1")["holds"]] == [r["auth_ref"]]
        from bureau.authz.holds import holds_table
        with b.node.repo.engine.connect() as conn:
            row = conn.execute(holds_table.select().where(holds_table.c.auth_ref == old["auth_ref"])).one()
        assert row.release_reason == "expired" and row.released_s >= old["expires"]
    finally:
        b.close()


# ---- the firmware against the node --------------------------------------------------------------

class WallClock:
    """A synced clock that `charge` runs forward by minutes at a time: it starts two hours back,
    so the sessions it makes end before the bureau's clock (the ledger refuses `from_future`)."""

    def __init__(self):
        self.t = int(time.time()) - 2 * 3600

    def now(self):
        return self.t

    def synced(self):
        return True


class FirmwareCharger:
    """The real firmware modules on a host: charger core, authz, and the firmware's MQTT client."""

    def __init__(self, charger_id, port, flash, genesis, login):
        self.clock, self.meter = WallClock(), Meter()
        self.core = fw_charger.Charger(charger_id, flash, self.meter, self.clock, fw_ed25519, rng(charger_id.encode()),
                                       "fw-test", "MTR-" + charger_id, default_tariff=TARIFF_DOC)
        self.core.boot()
        fw_authz.provision(flash, genesis)
        self.authz = fw_authz.Authz(charger_id, flash, fw_ed25519.verify, rng(b"req" + charger_id.encode()))
        self.authz.load()
        self.core.authz = self.authz
        self.mqtt = MQTTClient("127.0.0.1", port, client_id="charger-" + charger_id, keepalive=30,
                               username=login[0], password=login[1])
        self.mqtt.subscribe(self.core.reply_topic, 1)
        for topic, qos in self.authz.subscriptions():
            self.mqtt.subscribe(topic, qos)
        self.decisions, self.list_results, self.errors, self.tariff_results = [], [], [], []
        self.online = True

    def pump(self, until, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now_ms = int(time.monotonic() * 1000)
            for ev in self.mqtt.poll(wait_ms=20):
                if ev[0] == mqtt_session.CONNECTED_EVENT:
                    self.core.connection_up()
                elif ev[0] == mqtt_session.MESSAGE:
                    self._message(ev[1], bytes(ev[2]), now_ms)
            self._act(self.authz.poll(self.clock.t, now_ms, self.core))
            if self.mqtt.connected and self.online:
                for topic, env in self.core.due(now_ms):
                    self.mqtt.publish(topic, env, qos=1)
            if until():
                return
        raise TimeoutError("condition not reached")

    def _message(self, topic, payload, now_ms):
        try:
            if topic == self.core.reply_topic:
                self.core.on_reply(payload)
                self._act(self.authz.on_reply(payload, self.clock.t, now_ms, self.core))
            elif topic == fw_authz.TARIFF_TOPIC:
                self.tariff_results.append(self.core.on_signed_tariff(payload, self.authz))
            else:
                self.list_results.append(self.authz.on_bureau_message(topic, payload, self.clock.t))
        except fw_authz.AuthzError as e:
            self.errors.append((topic, e.reason))

    def _act(self, actions):
        for a in actions:
            if a[0] == "publish":
                self.mqtt.publish(a[1], a[2], qos=1)
            elif a[0] == "decision":
                self.decisions.append(a[1])

    def tap(self, uid):
        n = len(self.decisions)
        self._act(self.authz.card_tap(uid, self.clock.t, int(time.monotonic() * 1000),
                                      self.online and self.mqtt.connected, self.core))
        self.pump(lambda: len(self.decisions) > n)
        return self.decisions[-1]

    def charge(self, wh, minutes=10):
        for _ in range(minutes):
            self.clock.t += 60
            self.meter.wh += wh // minutes
            if self.core.tick():
                return

    def close(self):
        self.mqtt.close()


def test_firmware_online_offline_list_forged_list_and_tariff_push(bureau, replies, mosquitto, tmp_path):
    from tests.support.flashsim import CuttableFlash
    genesis = bureau.client.get("/v1/genesis").json()  # what the technician's tool fetches
    driver = SigningKey.generate()
    fw = FirmwareCharger("CH-F", mosquitto.port, CuttableFlash(), genesis, mosquitto.login("CH-F"))
    try:
        assert bureau.operator("enroll_charger", {"charger_id": "CH-F", "public_key": fw.core.public_key().hex()})["status"] == "committed"
        open_wallet(bureau, "W-1", driver, [CARD_A, CARD_B], 3_000)
        height = bureau.node.chain.height
        fw.mqtt.connect()
        # the signed list arrives, is verified with the genesis keys and installed
        fw.pump(lambda: fw.authz.manifest is not None and fw.authz.manifest["list_version"] >= height
                and fw.tariff_results)
        assert fw.tariff_results == ["unchanged"]  # the pushed tariff is the one it has
        assert fw.authz.lookup(CARD_A) == ("W-1", 1_500)  # 3000 fen shared by two cards, cap 5000
        assert not fw.errors

        # online: the node decides and holds; the receipt commits and ends the hold
        d = fw.tap(CARD_A)
        assert d["decision"] == "accept" and d["method"] == 1 and d["authorized_fen"] == 3_000
        fw.core.start_authorized(d)
        assert view(bureau, driver, "W-1")["held_fen"] == 3_000
        fw.charge(2_000)  # 2 kWh at the flat or valley rate: well within the amount
        fw.core.stop("L")
        fw.pump(lambda: not fw.core.outbox.pending())
        spent_online = 3_000 - bureau.driver_get(driver, "W-1", "/v1/wallets/W-1").json()["balance_fen"]
        assert spent_online > 0
        fw.pump(lambda: view(bureau, driver, "W-1")["held_fen"] == 0)
        balance = 3_000 - spent_online
        fw.pump(lambda: fw.authz.lookup(CARD_A) == ("W-1", balance // 2))  # a new list from the new balance
        version = fw.authz.manifest["list_version"]

        # a forged list (newer version, a stranger's key) is refused, the genuine one stays
        forged_pages = wire.paginate([wire.Entry(CARD_A, "W-1", 4_000_000_000)])
        forged = wire.sign_manifest(wire.Manifest(genesis["chain_id"], "bureau-1", 10**9, int(time.time()),
                                                  int(time.time()) + 3600, 1,
                                                  ((CARD_A, wire.page_hash(forged_pages[0][0])),)), SigningKey.generate())
        # only a bureau's login may publish a list: a stolen one (or a rogue broker) still cannot
        # make the firmware take a list the genesis keys did not sign
        forger = ReplyListener(mosquitto, topic="ev/v1/charger/+/auth", user="stolen.authz", role="authz")
        forger.publish(fw_authz.PAGE_TOPIC_PREFIX + "0", forged_pages[0][0])
        forger.publish(fw_authz.MANIFEST_TOPIC, forged)
        forger.close()
        fw.pump(lambda: (fw_authz.MANIFEST_TOPIC, "bad_signature") in fw.errors)
        assert fw.authz.manifest["list_version"] == version and fw.authz.lookup(CARD_A) == ("W-1", balance // 2)

        # offline: the network is gone; the list decides, the receipt names it, and it commits later
        fw.online = False
        d = fw.tap(CARD_B)
        assert (d["decision"], d["method"], d["auth_ref"]) == ("accept", 2, f"offline:{version}")
        assert d["authorized_fen"] == balance // 2 and d["wallet_id"] == "W-1"
        fw.core.start_authorized(d)
        fw.charge(100_000, minutes=60)  # far more than allowed: stopped at the limit
        assert fw.core.session is None
        (seq,) = fw.core.outbox.pending()
        r, _, _ = decode(fw.core.outbox.get(seq))
        assert (r.auth_method, r.id_token, r.auth_ref, r.stop_reason) == (2, CARD_B, f"offline:{version}", "Q")
        assert 0 < r.amount_fen <= balance // 2
        assert fw.tap(CARD_B)["authorized_fen"] == balance // 2 - r.amount_fen  # spent offline, not yet acked
        fw.online = True
        fw.pump(lambda: not fw.core.outbox.pending())
        assert bureau.driver_get(driver, "W-1", "/v1/wallets/W-1").json()["balance_fen"] == balance - r.amount_fen
        proof = bureau.driver_get(driver, "W-1", f"/v1/receipts/CH-F/{seq}/proof").json()
        assert decode(bytes.fromhex(proof["receipt"]["envelope"]))[0].auth_ref == f"offline:{version}"

        # tariff v2 published on the chain: pushed, verified with the bureau key, applied, billed
        v2 = dict(TARIFF_DOC, version=2, prices=[[k, e * 2, s] for k, e, s in TARIFF_DOC["prices"]])
        assert bureau.operator("top_up", {"wallet_id": "W-1", "amount_fen": 10_000, "reference": "bank:2"})["status"] == "committed"
        assert bureau.operator("publish_tariff", {"tariff": v2})["status"] == "committed"
        # in force from its block by the bureau's clock; the charger's clock is behind, so it keeps
        # v2 until its own clock gets there (receipts name the version in force at their start)
        fw.pump(lambda: "pending" in fw.tariff_results)
        versions = bureau.client.get(f"/v1/tariffs/{v2['tariff_id']}/versions").json()
        assert [v["version"] for v in versions["versions"]] == [1, 2] and versions["in_force"] == 2
        assert bureau.client.get(f"/v1/tariffs/{v2['tariff_id']}/2").json() == v2
        assert versions["versions"][1]["digest"] == hashlib.sha256(canonical.dumps(v2)).hexdigest()
        assert bureau.client.get(f"/v1/tariffs/{v2['tariff_id']}/3").json()["error"] == "unknown_tariff"
        assert fw.core.tariff.version == 1
        fw.clock.t = versions["versions"][1]["effective_from"]
        d = fw.tap(CARD_A)
        fw.core.start_authorized(d)
        assert fw.core.tariff.version == 2
        fw.charge(1_000, minutes=2)
        fw.core.stop("L")
        (seq,) = fw.core.outbox.pending()
        r2, _, _ = decode(fw.core.outbox.get(seq))
        assert r2.tariff_version == 2 and r2.amount_fen == Tariff.from_doc(v2).amount_fen(r2.periods)
        fw.pump(lambda: not fw.core.outbox.pending() and not fw.core.outbox.refused())
        assert not fw.core.outbox.refused()
        assert not [e for e in fw.errors if e[1] != "bad_signature"]
    finally:
        fw.close()
