"""OCPP charge points, simulated by the `ocpp` library over real WSS on loopback, against a
4-bureau stack of real node processes (docs/ocpp.md), for 1.6J and 2.0.1 alike: a prepaid session
authorized by card is billed and committed on every bureau before its stop is answered; a
connection dropped before the stop's answer and the stop sent again bills once; a phone start
reaches the charge point as a RemoteStart and the prepaid amount stops it; bad frames get the
version's CallError; unknown and wrongly authenticated charge points are refused at the upgrade."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from nacl.signing import SigningKey  # noqa: F401  (the type _wallet returns)
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bureau.api.auth import authorization_header
from bureau.crypto import create_key
from bureau.ledger.tariff import Tariff
from bureau.ocpp import password
from bureau.tools.httpclient import shared_client
from bureau.tools.mosquitto import free_port
from bureau.tools.network import DEFAULT_TARIFF
from bureau.tools.pki import client_tls_context
from bureau.tools.stack import Stack
from tests.support.ocmf_meter import OcmfMeter
from tests.integration.test_commands import bureau
from tests.support.ocpp_station import iso, raw, station
from tests.support.waiting import wait_for

TARIFF = Tariff.from_doc(DEFAULT_TARIFF)
SECRET = "s3cret-charge-point-pw"
METER = OcmfMeter(7)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("ocpp")
    s = Stack(root / "stack", nodes_count=4, tls=True).prepare()
    ports = {f"bureau-{i}": free_port() for i in range(1, 5)}
    s.launch(extra_env={"BUREAU_OCPP_MAX_MESSAGE_BYTES": "4096", "BUREAU_OCPP_RATE_PER_S": "5"},
             node_env={n: {"BUREAU_OCPP_PORT": str(p)} for n, p in ports.items()})
    s.ocpp_ports = [ports[n.node_id] for n in s.nodes]
    s.tls_context = client_tls_context(s.ca_file)
    digest = password.make_digest(SECRET)
    s.operator([("enroll_ocpp_charger", {"charger_id": "CP16", "ocpp_version": "1.6", "password_digest": digest,
                                         "ocmf_key": METER.public_key_hex}),
                ("enroll_ocpp_charger", {"charger_id": "CP201", "ocpp_version": "2.0.1", "password_digest": digest})])
    yield s
    s.stop()


def _wallet(stack, name: str, card: str, amount_fen: int = 20_000) -> SigningKey:
    """An open, topped-up wallet whose driver key is in <stack>/drivers/<name>.key."""
    key = create_key(stack.root / "drivers" / f"{name}.key")
    stack.operator([("open_wallet", {"wallet_id": name, "public_key": key.verify_key.encode().hex(), "cards": [card]})])
    stack.operator([("top_up", {"wallet_id": name, "amount_fen": amount_fen, "reference": f"bank:{name}"})])
    return key


def _get(stack, key, wallet: str, i: int, path: str) -> dict:
    n = stack.nodes[i]
    header = authorization_header(key, wallet, "GET", path, node_id=n.node_id)
    resp = shared_client(stack.verify).get(n.url + path, headers={"Authorization": header}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _bills_everywhere(stack, key, wallet: str, balance: int, timeout: float = 60.0) -> list[dict]:
    """The wallet's OCPP bills, once every bureau shows the same balance and bills."""
    def seen():
        return [(_get(stack, key, wallet, i, f"/v1/wallets/{wallet}")["balance_fen"],
                 [e for e in _get(stack, key, wallet, i, f"/v1/wallets/{wallet}/history")["entries"]
                  if e["kind"] == "ocpp_bill"]) for i in range(len(stack.nodes))]

    def agreed():
        now = seen()
        return now[0][1] if all(s == (balance, now[0][1]) for s in now) else None
    return wait_for(agreed, f"the bureaus do not all show balance {balance} and the same bills", timeout, poll=0.2)


def _energy_v16(at: int, wh: int, signed: str | None = None) -> list[dict]:
    values = [{"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
    if signed:
        values.append({"value": signed, "format": "SignedData", "context": "Transaction.End"})
    return [{"timestamp": iso(at), "sampled_value": values}]


def _energy_v201(at: int, wh: int, context: str = "Sample.Periodic") -> list[dict]:
    return [{"timestamp": iso(at), "sampled_value": [{"value": wh, "context": context,
                                                      "measurand": "Energy.Active.Import.Register"}]}]


def _amount(readings) -> int:
    from bureau.ledger.ocppbill import periods_of
    return TARIFF.amount_fen(periods_of(TARIFF, readings))


# ---- a prepaid session, billed on every bureau --------------------------------------------

def test_v16_card_session_with_ocmf_is_billed_on_every_bureau_before_the_stop_is_answered(stack):
    key = _wallet(stack, "W-O16", "04A1B2C3D4")
    t0 = int(time.time()) - 1800

    async def run():
        async with station(stack.ocpp_ports[1], "CP16", SECRET, "1.6", stack.tls_context) as cp:
            boot = await cp.call(call16.BootNotification(charge_point_model="Sim", charge_point_vendor="Test"))
            assert boot.status == "Accepted"
            await cp.seen.wait_for("SendLocalList")  # the cards of the signed offline list
            assert {"id_tag": "04A1B2C3D4", "id_tag_info": {"status": "Accepted"}} in \
                dict(cp.seen.requests)["SendLocalList"]["entries"]
            assert (await cp.call(call16.Authorize(id_tag="04A1B2C3D4"))).id_tag_info["status"] == "Accepted"
            assert (await cp.call(call16.Authorize(id_tag="FFFF0000"))).id_tag_info["status"] == "Invalid"
            await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
            start = await cp.call(call16.StartTransaction(connector_id=1, id_tag="04A1B2C3D4", meter_start=1000,
                                                          timestamp=iso(t0)))
            assert start.id_tag_info["status"] == "Accepted"
            await cp.call(call16.MeterValues(connector_id=1, transaction_id=start.transaction_id,
                                             meter_value=_energy_v16(t0 + 900, 3000)))
            stop = await cp.call(call16.StopTransaction(
                meter_stop=6000, timestamp=iso(t0 + 1700), transaction_id=start.transaction_id,
                reason="EVDisconnected", transaction_data=_energy_v16(t0 + 1700, 6000, METER.record(1000, 6000))))
            assert stop.id_tag_info == {"status": "Accepted"}
            return start.transaction_id

    tid = asyncio.run(run())
    amount = _amount([[t0, 1000], [t0 + 900, 3000], [t0 + 1700, 6000]])
    # the serving bureau answered the stop only once the bill was committed
    assert _get(stack, key, "W-O16", 1, "/v1/wallets/W-O16")["balance_fen"] == 20_000 - amount
    bills = _bills_everywhere(stack, key, "W-O16", 20_000 - amount)
    assert [(b["charger_id"], b["energy_wh"], b["delta_fen"]) for b in bills] == [("CP16", 5000, -amount)]
    assert amount > 0 and str(tid).isdigit()


def test_v201_card_session_is_billed_on_every_bureau_attested_by_the_bureau(stack):
    key = _wallet(stack, "W-O201", "04B2C3D4E5")
    t0 = int(time.time()) - 1200
    token = {"id_token": "04B2C3D4E5", "type": "ISO14443"}

    async def run():
        async with station(stack.ocpp_ports[2], "CP201", SECRET, "2.0.1", stack.tls_context) as cp:
            boot = await cp.call(call201.BootNotification(charging_station={"model": "Sim", "vendor_name": "Test"},
                                                          reason="PowerUp"))
            assert boot.status == "Accepted"
            await cp.call(call201.Heartbeat())
            assert (await cp.call(call201.Authorize(id_token=token))).id_token_info["status"] == "Accepted"
            started = await cp.call(call201.TransactionEvent(
                event_type="Started", timestamp=iso(t0), trigger_reason="Authorized", seq_no=0,
                transaction_info={"transaction_id": "T-201-1"}, id_token=token, evse={"id": 1, "connector_id": 1},
                meter_value=_energy_v201(t0, 20_000, "Transaction.Begin")))
            assert started.id_token_info["status"] == "Accepted"
            await cp.call(call201.TransactionEvent(
                event_type="Updated", timestamp=iso(t0 + 600), trigger_reason="MeterValuePeriodic", seq_no=1,
                transaction_info={"transaction_id": "T-201-1"}, meter_value=_energy_v201(t0 + 600, 22_500)))
            await cp.call(call201.TransactionEvent(
                event_type="Ended", timestamp=iso(t0 + 1100), trigger_reason="EVCommunicationLost", seq_no=2,
                transaction_info={"transaction_id": "T-201-1", "stopped_reason": "EVDisconnected"},
                meter_value=_energy_v201(t0 + 1100, 24_000, "Transaction.End")))

    asyncio.run(run())
    amount = _amount([[t0, 20_000], [t0 + 600, 22_500], [t0 + 1100, 24_000]])
    bills = _bills_everywhere(stack, key, "W-O201", 20_000 - amount)
    assert [(b["charger_id"], b["energy_wh"], b["delta_fen"]) for b in bills] == [("CP201", 4000, -amount)]


# ---- a connection dropped before the stop's answer -------------------------------------------

def test_v16_stop_resent_after_a_dropped_connection_bills_once(stack):
    key = _wallet(stack, "W-D16", "04D1D1D1D1")
    t0 = int(time.time()) - 900

    async def run():
        async with station(stack.ocpp_ports[0], "CP16", SECRET, "1.6", stack.tls_context) as cp:
            start = await cp.call(call16.StartTransaction(connector_id=1, id_tag="04D1D1D1D1", meter_start=10_000,
                                                          timestamp=iso(t0)))
            stop = call16.StopTransaction(meter_stop=12_000, timestamp=iso(t0 + 800),
                                          transaction_id=start.transaction_id)
            # the stop leaves, the connection drops before any answer
            await cp._connection.send(json.dumps([2, "stop-1", "StopTransaction",
                                                  {"meterStop": 12_000, "timestamp": iso(t0 + 800),
                                                   "transactionId": start.transaction_id}]))
            await cp._connection.close()
        async with station(stack.ocpp_ports[0], "CP16", SECRET, "1.6", stack.tls_context) as cp:
            await cp.call(call16.BootNotification(charge_point_model="Sim", charge_point_vendor="Test"))
            assert (await cp.call(stop)).id_tag_info in (None, {"status": "Accepted"})
            assert (await cp.call(stop)).id_tag_info in (None, {"status": "Accepted"})  # and once more

    asyncio.run(run())
    amount = _amount([[t0, 10_000], [t0 + 800, 12_000]])
    bills = _bills_everywhere(stack, key, "W-D16", 20_000 - amount)
    assert len(bills) == 1 and bills[0]["energy_wh"] == 2000


def test_v201_ended_event_resent_after_a_dropped_connection_bills_once(stack):
    key = _wallet(stack, "W-D201", "04D2D2D2D2")
    t0 = int(time.time()) - 900
    token = {"id_token": "04D2D2D2D2", "type": "ISO14443"}
    ended = call201.TransactionEvent(event_type="Ended", timestamp=iso(t0 + 800), trigger_reason="StopAuthorized",
                                     seq_no=1, transaction_info={"transaction_id": "T-D-1", "stopped_reason": "Local"},
                                     meter_value=_energy_v201(t0 + 800, 5_500, "Transaction.End"))

    async def run():
        async with station(stack.ocpp_ports[3], "CP201", SECRET, "2.0.1", stack.tls_context) as cp:
            await cp.call(call201.TransactionEvent(
                event_type="Started", timestamp=iso(t0), trigger_reason="Authorized", seq_no=0,
                transaction_info={"transaction_id": "T-D-1"}, id_token=token,
                meter_value=_energy_v201(t0, 4_000, "Transaction.Begin")))
            await cp._connection.send(json.dumps([2, "end-1", "TransactionEvent", {
                "eventType": "Ended", "timestamp": iso(t0 + 800), "triggerReason": "StopAuthorized", "seqNo": 1,
                "transactionInfo": {"transactionId": "T-D-1", "stoppedReason": "Local"},
                "meterValue": [{"timestamp": iso(t0 + 800), "sampledValue": [
                    {"value": 5_500, "context": "Transaction.End", "measurand": "Energy.Active.Import.Register"}]}]}]))
            await cp._connection.close()
        async with station(stack.ocpp_ports[3], "CP201", SECRET, "2.0.1", stack.tls_context) as cp:
            await cp.call(ended)
            await cp.call(ended)

    asyncio.run(run())
    amount = _amount([[t0, 4_000], [t0 + 800, 5_500]])
    bills = _bills_everywhere(stack, key, "W-D201", 20_000 - amount)
    assert len(bills) == 1 and bills[0]["energy_wh"] == 1500


def test_v16_transaction_survives_a_restart_of_its_bureau(stack):
    """The transaction's readings are in the node's database: the stop after a restart bills them."""
    key = _wallet(stack, "W-R16", "04A1A1A1A1")
    t0 = int(time.time()) - 1500
    node = stack.nodes[3]

    async def before():
        async with station(stack.ocpp_ports[3], "CP16", SECRET, "1.6", stack.tls_context) as cp:
            start = await cp.call(call16.StartTransaction(connector_id=1, id_tag="04A1A1A1A1", meter_start=40_000,
                                                          timestamp=iso(t0)))
            await cp.call(call16.MeterValues(connector_id=1, transaction_id=start.transaction_id,
                                             meter_value=_energy_v16(t0 + 600, 41_000)))
            return start.transaction_id

    async def after(tid):
        async with station(stack.ocpp_ports[3], "CP16", SECRET, "1.6", stack.tls_context) as cp:
            stop = await cp.call(call16.StopTransaction(meter_stop=43_000, timestamp=iso(t0 + 1200),
                                                        transaction_id=tid))
            assert stop.id_tag_info == {"status": "Accepted"}  # (a transaction unknown here gets none)

    tid = asyncio.run(before())
    node.stop()
    node.start()
    node.wait_healthy()
    asyncio.run(after(tid))
    amount = _amount([[t0, 40_000], [t0 + 600, 41_000], [t0 + 1200, 43_000]])
    bills = _bills_everywhere(stack, key, "W-R16", 20_000 - amount)
    assert len(bills) == 1 and bills[0]["energy_wh"] == 3000


# ---- the phone's start, and the prepaid amount ----------------------------------------------

def test_a_phone_start_reaches_the_charge_point_and_the_prepaid_amount_stops_it(stack):
    key = _wallet(stack, "W-APP", "04A9A9A9A9")
    n = stack.nodes[1]
    t0 = int(time.time()) - 3000

    async def run():
        async with station(stack.ocpp_ports[1], "CP16", SECRET, "1.6", stack.tls_context) as cp:
            path = "/v1/wallets/W-APP/start?charger_id=CP16&cap_fen=200"
            header = authorization_header(key, "W-APP", "POST", path, node_id=n.node_id)
            resp = await asyncio.to_thread(httpx.post, n.url + path, headers={"Authorization": header},
                                           verify=stack.verify, timeout=30)
            assert resp.status_code == 202, resp.text
            token = resp.json()["token"]
            assert (await cp.seen.wait_for("RemoteStartTransaction"))["id_tag"] == token
            assert (await cp.call(call16.Authorize(id_tag=token))).id_tag_info["status"] == "Accepted"
            start = await cp.call(call16.StartTransaction(connector_id=1, id_tag=token, meter_start=0,
                                                          timestamp=iso(t0)))
            assert start.id_tag_info["status"] == "Accepted"
            # enough energy for more than the 200 fen the driver allowed: the CSMS stops it
            await cp.call(call16.MeterValues(connector_id=1, transaction_id=start.transaction_id,
                                             meter_value=_energy_v16(t0 + 1500, 2_000)))
            assert (await cp.seen.wait_for("RemoteStopTransaction"))["transaction_id"] == start.transaction_id
            await cp.call(call16.StopTransaction(meter_stop=2_000, timestamp=iso(t0 + 1510),
                                                 transaction_id=start.transaction_id, reason="Remote"))
            # the token was redeemed: it starts nothing again
            again = await cp.call(call16.Authorize(id_tag=token))
            assert again.id_tag_info["status"] == "Expired"

    asyncio.run(run())
    amount = _amount([[t0, 0], [t0 + 1500, 2_000], [t0 + 1510, 2_000]])
    bills = _bills_everywhere(stack, key, "W-APP", 20_000 - amount)
    assert len(bills) == 1 and amount >= 200


# ---- the operator's commands, and the driver's check of the meter's signature -----------------

def test_the_operators_reset_and_availability_reach_the_charge_point(stack):
    login = ["--key", str(stack.root / "net" / "operator.key"), "--operator", "operator-1", "--ca-file",
             str(stack.ca_file), "--node", stack.nodes[2].url]

    async def run():
        async with station(stack.ocpp_ports[2], "CP201", SECRET, "2.0.1", stack.tls_context) as cp:
            reset = await asyncio.to_thread(bureau, "ocpp", "reset", "CP201", "--hard", *login)
            assert reset.returncode == 0, reset.stderr
            assert json.loads(reset.stdout) == {"charger_id": "CP201", "command": "reset", "status": "Accepted"}
            assert (await cp.seen.wait_for("Reset"))["type"] == "Immediate"
            off = await asyncio.to_thread(bureau, "ocpp", "availability", "CP201", "--inoperative", *login)
            assert off.returncode == 0, off.stderr
            assert (await cp.seen.wait_for("ChangeAvailability"))["type"] == "Inoperative"
        gone = await asyncio.to_thread(bureau, "ocpp", "reset", "CP201", *login)
        assert gone.returncode == 1 and "charger_unreachable" in gone.stderr

    asyncio.run(run())


def test_the_driver_cli_tells_a_meter_signed_bill_from_a_bureau_attested_one(stack):
    _wallet(stack, "W-CLI", "04C1C1C1C1")
    t0 = int(time.time()) - 600
    token = {"id_token": "04C1C1C1C1", "type": "ISO14443"}

    async def run():
        async with station(stack.ocpp_ports[0], "CP16", SECRET, "1.6", stack.tls_context) as cp:
            start = await cp.call(call16.StartTransaction(connector_id=1, id_tag="04C1C1C1C1", meter_start=30_000,
                                                          timestamp=iso(t0)))
            await cp.call(call16.StopTransaction(meter_stop=31_000, timestamp=iso(t0 + 300),
                                                 transaction_id=start.transaction_id,
                                                 transaction_data=_energy_v16(t0 + 300, 31_000,
                                                                              METER.record(30_000, 31_000))))
        async with station(stack.ocpp_ports[0], "CP201", SECRET, "2.0.1", stack.tls_context) as cp:
            await cp.call(call201.TransactionEvent(
                event_type="Started", timestamp=iso(t0), trigger_reason="Authorized", seq_no=0,
                transaction_info={"transaction_id": "T-CLI"}, id_token=token,
                meter_value=_energy_v201(t0, 50_000, "Transaction.Begin")))
            await cp.call(call201.TransactionEvent(
                event_type="Ended", timestamp=iso(t0 + 300), trigger_reason="StopAuthorized", seq_no=1,
                transaction_info={"transaction_id": "T-CLI"}, meter_value=_energy_v201(t0 + 300, 50_700)))

    asyncio.run(run())
    key_file = str(stack.root / "drivers" / "W-CLI.key")
    reader = ["--key", key_file, "--node", stack.nodes[0].url, "--ca-file", str(stack.ca_file), "--wallet", "W-CLI",
              "--genesis", str(stack.genesis_path)]
    history = bureau("driver", "history", *reader)
    assert history.returncode == 0, history.stderr
    hashes = [line.rsplit("tx ", 1)[1] for line in history.stdout.splitlines() if "ocpp_bill" in line]
    verdicts = []
    for h in hashes:
        p = bureau("driver", "ocpp-proof", "--tx", h, "--summary", *reader)
        assert p.returncode == 0, p.stderr
        verdicts.append(p.stdout)
    assert any("CP16" in v and "readings: the meter's OCMF signature" in v for v in verdicts), verdicts
    assert any("CP201" in v and "attested by bureau bureau-1 (no meter signature)" in v for v in verdicts), verdicts
    # a saved proof whose meter record was altered no longer verifies
    proof = bureau("driver", "ocpp-proof", "--tx", next(h for h, v in zip(hashes, verdicts) if "CP16" in v), *reader)
    doc = json.loads(proof.stdout)
    doc["ocmf_key"] = OcmfMeter(99).public_key_hex
    forged = stack.root / "forged.json"
    forged.write_text(json.dumps(doc))
    p = bureau("driver", "verify", str(forged), "--genesis", str(stack.genesis_path))
    assert p.returncode == 1 and "bad_meter_signature" in p.stderr


# ---- bad frames ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version, formation", [("1.6", "FormationViolation"), ("2.0.1", "FormatViolation")])
def test_bad_frames_get_the_versions_call_error(stack, version, formation):
    ident = "CP16" if version == "1.6" else "CP201"
    start = "StartTransaction" if version == "1.6" else "TransactionEvent"
    frames = [
        ("not json at all", "-1", formation),
        ('{"an": "object"}', "-1", "ProtocolError"),
        ('[2, "m-1", "Heartbeat", {"extra": 1}]', "m-1", formation),
        (f'[2, "m-2", "{start}", {{}}]', "m-2", "ProtocolError"),
        ('[2, "m-3", "DataTransfer", {"vendorId": "x"}]', "m-3", "NotImplemented"),
        ('[2, "m-4", "NoSuchAction", {}]', "m-4", "NotSupported"),
    ]
    if version == "1.6":
        frames.append(('[2, "m-5", "StartTransaction", {"connectorId": "one", "idTag": "04A1", "meterStart": 0, '
                       '"timestamp": "2026-12-01T00:00:00Z"}]', "m-5", "TypeConstraintViolation"))
        frames.append(('[2, "m-6", "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "yesterday", '
                       '"sampledValue": [{"value": "1"}]}]}]', "m-6", formation))

    async def run():
        async with raw(stack.ocpp_ports[0], ident, SECRET, version, stack.tls_context) as ws:
            for frame, unique_id, code in frames:
                await ws.send(frame)
                answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert answer[:3] == [4, unique_id, code], (frame, answer)
                await asyncio.sleep(0.25)  # within the rate limit

    asyncio.run(run())


def test_an_oversized_frame_and_a_flood_close_the_connection(stack):
    async def run():
        async with raw(stack.ocpp_ports[0], "CP16", SECRET, "1.6", stack.tls_context) as ws:
            await ws.send('[2, "big", "Heartbeat", {"x": "' + "a" * 5000 + '"}]')
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 30)
            assert closed.value.rcvd.code == 1009
        async with raw(stack.ocpp_ports[0], "CP16", SECRET, "1.6", stack.tls_context) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                for i in range(100):
                    await ws.send(f'[2, "hb-{i}", "Heartbeat", {{}}]')
                while True:
                    await asyncio.wait_for(ws.recv(), 30)
            assert closed.value.rcvd.code == 1008

    asyncio.run(run())


# ---- refused at the upgrade ------------------------------------------------------------------

@pytest.mark.parametrize("ident, pw, version, user, status", [
    ("CP-UNKNOWN", SECRET, "1.6", None, 401),
    ("CP16", "a-wrong-password-here", "1.6", None, 401),
    ("CP16", SECRET, "1.6", "CP201", 401),  # another charge point's login for this identity
    ("CP16", SECRET, "2.0.1", None, 400),  # enrolled for 1.6
])
def test_unknown_and_wrongly_authenticated_charge_points_are_refused_at_the_upgrade(stack, ident, pw, version,
                                                                                    user, status):
    async def run():
        with pytest.raises(InvalidStatus) as refused:
            async with station(stack.ocpp_ports[0], ident, pw, version, stack.tls_context, user=user):
                pass
        assert refused.value.response.status_code == status

    asyncio.run(run())


def test_a_rotated_password_ends_the_old_login_and_only_the_new_one_gets_in(stack):
    new_secret = "a-new-password-for-cp-rot"
    stack.operator([("enroll_ocpp_charger", {"charger_id": "CP-ROT", "ocpp_version": "1.6",
                                             "password_digest": password.make_digest(SECRET)})])

    async def run():
        async with station(stack.ocpp_ports[0], "CP-ROT", SECRET, "1.6", stack.tls_context) as cp:
            await cp.call(call16.Heartbeat())  # logged in with the first password
            await asyncio.get_running_loop().run_in_executor(None, stack.operator, [(
                "rotate_ocpp_password", {"charger_id": "CP-ROT", "password_digest": password.make_digest(new_secret)})])
            await asyncio.wait_for(cp._connection.wait_closed(), 60)
            assert cp._connection.close_code == 1008
        with pytest.raises(InvalidStatus) as refused:
            async with station(stack.ocpp_ports[0], "CP-ROT", SECRET, "1.6", stack.tls_context):
                pass
        assert refused.value.response.status_code == 401
        async with station(stack.ocpp_ports[0], "CP-ROT", new_secret, "1.6", stack.tls_context) as cp:
            await cp.call(call16.Heartbeat())

    asyncio.run(run())
