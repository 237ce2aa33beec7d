"""A simulated charger running the firmware (charger core, flash outbox, its own MQTT client,
Modbus meter driver against a simulated meter) against a bureau node through a real mosquitto:
a normal session, a power cut mid-session, a broker outage, a meter fault. Every Wh the meter
counted during sessions ends up in exactly one committed receipt."""

from nacl.signing import SigningKey

from chargerhost.simcharger import SimulatedCharger
from bureau.receipts.codec import decode
from bureau.tools.network import DEFAULT_TARIFF

START = 1_793_491_200 - 3 * 3600  # 05:00 local: valley, then flat from 08:00


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
                         step_s=60, resend_ms=1000, mqtt_username=user, mqtt_password=password)
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
