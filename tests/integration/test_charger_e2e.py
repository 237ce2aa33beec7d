"""A simulated charger running the firmware (charger core, flash outbox, its own MQTT client,
Modbus meter driver against a simulated meter) against a bureau node through a real mosquitto:
a normal session, a power cut mid-session, a broker outage, a meter fault. Every Wh the meter
counted during sessions ends up in exactly one committed receipt. Forged acks and rejects of a
stolen receipt leave it pending in flash until the node's signed ack."""

import json
import queue
import threading
import time

import paho.mqtt.client as paho
from nacl.signing import SigningKey

from chargerhost.simcharger import SimulatedCharger
from bureau.receipts.ack import ack_message
from bureau.receipts.reject import reject_message
from bureau.receipts.codec import decode, receipt_id
from bureau.tools.network import DEFAULT_TARIFF
from bureau.tools.sessiontime import recent

START = recent(1_793_491_200 - 3 * 3600)  # 05:00 local: valley, then flat from 08:00


def _charge(c: SimulatedCharger, steps: int) -> str | None:
    for _ in range(steps):
        reason = c.step()
        c.pump()
        if reason:
            return reason
    return None


def test_sessions_survive_power_cut_broker_outage_and_meter_fault(bureau, mosquitto, tmp_path):
    flash = tmp_path / "flash"
    user, password = mosquitto.login("CH-E2E")
    c = SimulatedCharger("CH-E2E", flash, mosquitto.port, start_time=START, power_w=7400, tariff=DEFAULT_TARIFF,
                         step_s=60, resend_ms=1000, genesis=bureau.genesis, mqtt_username=user,
                         mqtt_password=password)
    driver = SigningKey.generate()
    for action, args in (("enroll_charger", {"charger_id": "CH-E2E", "public_key": c.core.public_key().hex()}),
                         ("open_wallet", {"wallet_id": "W-E2E", "public_key": driver.verify_key.encode().hex(),
                                          "cards": ["04E2E2E2E2E2E2"]}),
                         ("top_up", {"wallet_id": "W-E2E", "amount_fen": 500_000, "reference": "bank:e2e"})):
        assert bureau.operator(action, args)["status"] == "committed"
    meter_start = c.meter.read_wh()
    c.connect()

    # 1. a normal session, stopped by the driver
    c.plug_in_and_start("W-E2E", 100_000, id_token="04E2E2E2E2E2E2", auth_ref="e2e:1")
    assert _charge(c, 30) is None
    c.stop("L")
    assert c.deliver()

    # 2. power cut mid-session: the controller reboots from flash and closes the session (P)
    c.plug_in_and_start("W-E2E", 100_000, id_token="04E2E2E2E2E2E2", auth_ref="e2e:2")
    _charge(c, 45)
    counter = c.counter
    c.power_cut()
    c = SimulatedCharger("CH-E2E", flash, mosquitto.port, start_time=c.clock.t + 120, power_w=7400,
                         tariff=DEFAULT_TARIFF, step_s=60, resend_ms=1000, counter=counter, mqtt_username=user,
                         mqtt_password=password)
    assert c.core.session is None and len(c.pending()) == 1
    c.connect()
    assert c.deliver()

    # 3. broker outage: charging goes on, the receipt waits in flash, and goes out after
    mosquitto.stop()
    c.plug_in_and_start("W-E2E", 100_000, id_token="04E2E2E2E2E2E2", auth_ref="e2e:3")
    _charge(c, 20)
    c.stop("L")
    assert len(c.pending()) == 1
    mosquitto.start()
    assert c.deliver(60)

    # 4. meter fault: the meter stops answering; the session stops (F) with what was metered
    c.plug_in_and_start("W-E2E", 100_000, id_token="04E2E2E2E2E2E2", auth_ref="e2e:4")
    _charge(c, 10)
    c.meter_sim.inject("no_reply")
    assert _charge(c, 10) == "F"
    c.meter_sim.clear()
    assert c.deliver()

    # 5. the meter answers again: the next session starts from its real reading
    c.plug_in_and_start("W-E2E", 100_000, id_token="04E2E2E2E2E2E2", auth_ref="e2e:5")
    _charge(c, 5)
    c.stop("L")
    assert c.deliver()
    meter_end = c.meter.read_wh()
    c.close()

    committed = []
    for block, _ in bureau.node.repo.blocks(1):
        for tx in block.txs:
            if tx[0] == 1:
                committed.append(decode(tx[1:])[0])
    assert [r.stop_reason for r in committed] == ["L", "P", "L", "F", "L"]
    assert committed[3].meter_status & 4  # meter lost
    assert len({(r.charger_id, r.seq) for r in committed}) == 5
    # the receipts tile the meter's register: no Wh billed twice, and the only Wh not billed are
    # those that flowed while the meter did not answer, after the receipt flagged "meter lost"
    assert committed[0].meter_start_wh == meter_start and committed[-1].meter_end_wh == meter_end
    for a, b in zip(committed, committed[1:]):
        gap = b.meter_start_wh - a.meter_end_wh
        assert gap == 0 or (gap > 0 and a.meter_status & 4), (a.stop_reason, gap)
    assert sum(r.energy_wh for r in committed) + (committed[4].meter_start_wh - committed[3].meter_end_wh) \
        == meter_end - meter_start
    balance = bureau.driver_get(driver, "W-E2E", "/v1/wallets/W-E2E").json()["balance_fen"]
    assert balance == 500_000 - sum(r.amount_fen for r in committed)


def test_forged_acks_and_rejects_leave_the_receipt_pending_until_the_signed_ack(bureau, mosquitto, tmp_path):
    # The attacker holds a leaked ingest login of the broker, so it reads the receipt topic and
    # publishes on the charger's reply topic, which the ACL otherwise forbids (docs/broker.md):
    # only the signature stands between a forged ack (or a forged final reject, which would set
    # the receipt aside, never resent) and a receipt that never reaches the ledger.
    user, password = mosquitto.login("CH-ATK")
    c = SimulatedCharger("CH-ATK", tmp_path / "flash", mosquitto.port, start_time=START, power_w=7400,
                         tariff=DEFAULT_TARIFF, step_s=60, resend_ms=1000, genesis=bureau.genesis,
                         mqtt_username=user, mqtt_password=password)
    driver = SigningKey.generate()
    for action, args in (("enroll_charger", {"charger_id": "CH-ATK", "public_key": c.core.public_key().hex()}),
                         ("open_wallet", {"wallet_id": "W-ATK", "public_key": driver.verify_key.encode().hex(),
                                          "cards": ["04A7A7A7A7A7A7"]}),
                         ("top_up", {"wallet_id": "W-ATK", "amount_fen": 100_000, "reference": "bank:atk"})):
        assert bureau.operator(action, args)["status"] == "committed"
    stolen: queue.Queue = queue.Queue()
    leaked_user, leaked_password = mosquitto.login("leaked.ingest", "ingest")
    attacker = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=leaked_user)
    attacker.username_pw_set(leaked_user, leaked_password)
    subscribed = threading.Event()
    attacker.on_message = lambda cl, u, m: stolen.put(bytes(m.payload))
    attacker.on_subscribe = lambda *a: subscribed.set()
    attacker.connect("127.0.0.1", mosquitto.port)
    attacker.loop_start()
    attacker.subscribe("ev/v1/charger/CH-ATK/receipt", qos=1)
    assert subscribed.wait(10)
    # blocks are held back: the consensus thread waits inside its next proposal, so the receipt
    # is admitted, not yet committed
    release = threading.Event()
    build = bureau.node.producer.blocks.build
    bureau.node.producer.blocks.build = lambda publish: (release.wait(60), build(publish))[1]
    try:
        c.connect()
        c.plug_in_and_start("W-ATK", 100_000, id_token="04A7A7A7A7A7A7", auth_ref="atk:1")
        _charge(c, 10)
        c.stop("L")
        (seq,) = c.pending()
        deadline = time.monotonic() + 30
        while stolen.empty() and time.monotonic() < deadline:
            c.pump(wait_ms=20)
        env = stolen.get(timeout=1)
        assert env == c.core.outbox.get(seq)
        rid = receipt_id(env)
        outsider = SigningKey.generate()
        block = bytes(32)
        forged = [
            json.dumps({"v": 1, "type": "ack", "seq": seq, "receipt": rid, "height": 1}).encode(),  # the old format
            ack_message(bureau.node.genesis.chain_id, "bureau-1", outsider, "CH-ATK", seq, rid, 1, block),
            ack_message(bureau.node.genesis.chain_id, "bureau-x", outsider, "CH-ATK", seq, rid, 1, block),
        ]
        chain = bureau.node.genesis.chain_id
        final = ("unknown_wallet", "wallet W-ATK does not exist")  # not retryable: would set it aside
        forged_rejects = [
            json.dumps({"v": 1, "type": "reject", "seq": seq, "reason": final[0], "detail": final[1]}).encode(),
            reject_message(chain, "bureau-1", outsider, "CH-ATK", seq, rid, *final),
            reject_message(chain, "bureau-x", outsider, "CH-ATK", seq, rid, *final),
            reject_message(chain, "bureau-1", outsider, "CH-OTHER", seq, rid, *final),
        ]
        for payload in forged + forged_rejects:
            attacker.publish(c.core.reply_topic, payload, qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 30
        while c.pending() and sum(c.core.refused_acks.values()) + sum(c.core.refused_rejects.values()) \
                < len(forged) + len(forged_rejects) and time.monotonic() < deadline:
            c.pump(wait_ms=20)
        assert c.pending() == [seq] and c.acked == [] and c.rejected == 0 and c.core.outbox.refused() == []
        assert c.core.refused_acks == {"unsigned": 1, "bad_signature": 1, "unknown_signer": 1}
        assert c.core.refused_rejects == {"unsigned": 1, "bad_signature": 1, "unknown_signer": 1,
                                          "wrong_charger": 1}
        # the node commits the block: its signed ack removes the receipt
        release.set()
        assert c.deliver()
        assert c.acked == [seq] and c.uplink.acked == 1 and c.core.outbox.refused() == []
        assert bureau.node.repo.receipt_block("CH-ATK", seq) is not None
    finally:
        release.set()
        attacker.loop_stop()
        attacker.disconnect()
        c.close()
