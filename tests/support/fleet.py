"""Many chargers' receipts on one MQTT connection, with the outbox rule of the firmware: a
receipt is sent again until an ack names it. Used by the multi-process tests."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import replace

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey

from bureau.ledger.tariff import Tariff
from bureau.receipts.codec import Receipt, seal
from bureau.tools.mosquitto import Mosquitto
from bureau.tools.network import DEFAULT_TARIFF

WALLET = "W-FLEET"
DAY_S = 86400
# A UTC midnight 22 days back: the sessions end before the block times of the ledger tests
# (tests/unit/test_operator_actions.py T0_MS, a day back) and the clock, and within the ledger's
# staleness bound (MAX_RECEIPT_AGE_S, 30 days) of both.
FLEET_START = (int(time.time()) // DAY_S - 22) * DAY_S
FLEET_SPAN_S = 21 * DAY_S  # the sessions of one charger start at most this long after FLEET_START


def fleet_receipts(chargers: int, per_charger: int, spacing_s: int = 7200) -> tuple[dict[str, SigningKey],
                                                                                   list[tuple[str, bytes]], int]:
    """Signed receipts of `chargers` chargers, a session every `spacing_s` per charger, each half
    that long; returns keys, (charger, envelope) list, total fen."""
    assert per_charger * spacing_s <= FLEET_SPAN_S, "the sessions would end after the tests' block times"
    tariff = Tariff.from_doc(DEFAULT_TARIFF)
    keys = {f"FL-{i:03d}": SigningKey.generate() for i in range(chargers)}
    out, total = [], 0
    for seq in range(1, per_charger + 1):
        for cid, key in keys.items():
            wh = 1000 + (seq * 37 + len(out)) % 9000
            r = Receipt(charger_id=cid, seq=seq, session_id=hashlib.sha256(f"{cid}/{seq}".encode()).digest()[:16],
                        auth_method=1, id_token="04AA", wallet_id=WALLET, authorized_fen=10**6, auth_ref="fleet",
                        start_time=FLEET_START + seq * spacing_s, end_time=FLEET_START + seq * spacing_s + spacing_s // 2,
                        time_flags=3,
                        meter_serial=f"M-{cid}", meter_start_wh=seq * 10**5, meter_end_wh=seq * 10**5 + wh,
                        meter_status=0, stop_reason="L", tariff_id="GD-2026-A", tariff_version=1,
                        periods=(), amount_fen=0, firmware_version="fw-1.0.0")
            periods = ((tariff.kind_at(r.end_time), wh),)  # the period of the end reading
            r = replace(r, periods=periods, amount_fen=tariff.amount_fen(periods))
            total += r.amount_fen
            out.append((cid, seal(r, key)))
    return keys, out, total


def setup_actions(keys: dict[str, SigningKey]) -> list[tuple[str, dict]]:
    actions = [("enroll_charger", {"charger_id": c, "public_key": k.verify_key.encode().hex()}) for c, k in keys.items()]
    actions += [("open_wallet", {"wallet_id": WALLET, "public_key": SigningKey.generate().verify_key.encode().hex()}),
                ("top_up", {"wallet_id": WALLET, "amount_fen": 10**9, "reference": "fleet"})]
    return actions


class Fleet:
    def __init__(self, broker: Mosquitto, receipts: list[tuple[str, bytes]], resend_s: float = 3.0,
                 name: str = "fleet-1") -> None:
        self.receipts = {hashlib.sha256(env).hexdigest(): (cid, env) for cid, env in receipts}
        self.unacked = dict(self.receipts)
        self.sent_at: dict[str, float] = {}
        self.acks = 0
        self.rejects: list[dict] = []
        self.resend_s = resend_s
        self._lock = threading.Lock()
        user, password = broker.login(name, "fleet")  # speaks for every charger of the fleet
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user)
        self.client.username_pw_set(user, password)
        self.client.max_inflight_messages_set(0)  # (a limit makes paho rescan its in-flight messages on every PUBACK)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe("ev/v1/charger/+/reply", qos=1)
        time.sleep(0.2)

    def _on_message(self, client, userdata, msg) -> None:
        reply = json.loads(msg.payload)
        with self._lock:
            if reply.get("type") == "ack":
                self.acks += 1
                self.unacked.pop(reply["receipt"], None)
            elif reply.get("type") == "reject":
                self.rejects.append(reply)

    def pump(self, limit: int | None = None) -> int:
        """Send what is unsent or unacked for resend_s; at most `limit` receipts."""
        now = time.monotonic()
        with self._lock:
            due = [(rid, v) for rid, v in self.unacked.items()
                   if rid not in self.sent_at or now - self.sent_at[rid] > self.resend_s]
        if limit is not None:
            due = due[:limit]
        for rid, (cid, env) in due:
            self.sent_at[rid] = now
            self.client.publish(f"ev/v1/charger/{cid}/receipt", env, qos=1)
        return len(due)

    def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            with self._lock:
                if not self.unacked:
                    return True
            time.sleep(0.2)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
