"""Hostile traffic for the soak, spoken only in wire formats: MQTT publishes (garbage, oversized,
forged and unknown-charger receipts, receipts on the wrong topic), raw TCP to the peer ports
(junk bytes, connections left half-open) and HTTP to the APIs (malformed requests, bad and
foreign signatures, replayed signed requests). None of it may cost a receipt or a node.

Each `act()` does one randomly chosen thing and counts it; HTTP answers are counted by status
class, so an API that answers garbage with 5xx shows in the soak's report."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import replace
from typing import Callable

import httpx
import paho.mqtt.client as mqtt

from .. import topics
from ..api.auth import authorization_header
from ..ledger.tariff import Tariff
from ..receipts.codec import Receipt, seal
from .httpclient import shared_client
from .network import DEFAULT_TARIFF
from .sessiontime import recent

Login = Callable[[str], tuple[str, str]]  # charger id -> broker (username, password)
MAX_HELD = 16  # half-open connections held at once


def hostile_receipt(charger_id: str, seq: int, signing_key, wallet_id: str = "W-NONE") -> bytes:
    """A well-formed receipt whose only fault is who signed it or where it is sent."""
    start = recent(1_793_491_200)  # a recent local 08:00
    r = Receipt(charger_id=charger_id, seq=seq, session_id=os.urandom(16), auth_method=1, id_token="04FF",
                wallet_id=wallet_id, authorized_fen=10**6, auth_ref="hostile", start_time=start,
                end_time=start + 3600, time_flags=3, meter_serial="M-HOSTILE", meter_start_wh=1000,
                meter_end_wh=4000, meter_status=0, stop_reason="L", tariff_id="GD-2026-A", tariff_version=1,
                periods=((2, 3000),), amount_fen=0, firmware_version="fw-1.0.0")
    return seal(replace(r, amount_fen=Tariff.from_doc(DEFAULT_TARIFF).amount_fen(r.periods)), signing_key)


class _Intruder:
    """A paho client logged in as one charger id, reconnecting through broker restarts."""

    def __init__(self, broker_port: int, charger_id: str, login: Login) -> None:
        self.charger_id = charger_id
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=charger_id, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(*login(charger_id))
        self.client.reconnect_delay_set(0.2, 2)
        self.client.connect_async("127.0.0.1", broker_port, keepalive=30)
        self.client.loop_start()

    def publish(self, topic_kind: str, payload: bytes, charger_id: str | None = None) -> None:
        self.client.publish(topics.charger_topic(charger_id or self.charger_id, topic_kind), payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class HostileTraffic:
    def __init__(self, rng: random.Random, *, broker_port: int, login: Login, peer_ports: list[int],
                 apis: list[tuple[str, str]], victims: Callable[[], list[tuple[str, int, bytes]]],
                 rogue: tuple[str, object], drivers: list[tuple[str, object]]) -> None:
        """`apis` are (node id, API URL) of the bureaus; `login(charger id)` gives broker
        credentials; `victims()` gives (charger id, seq, envelope) of receipts the real chargers
        issued; `rogue` is an enrolled charger id with a key that is NOT its enrolled one;
        `drivers` are (wallet, key) pairs of real wallets."""
        self.rng, self.broker_port = rng, broker_port
        self.peer_ports, self.apis, self.victims = peer_ports, apis, victims
        self.rogue_id, self.rogue_key = rogue
        self.drivers = drivers
        self.intruder = _Intruder(broker_port, "HX-INTRUDER", login)
        self.rogue = _Intruder(broker_port, self.rogue_id, login)
        self.counts: Counter = Counter()
        self.http_status: Counter = Counter()
        self.server_errors: Counter = Counter()  # "METHOD path -> status" of 5xx answers
        self.errors: Counter = Counter()  # acts that could not be done (nothing listening, ...)
        self.bulky_login = login("HX-BULKY")  # made now: the broker may be down when it is needed
        self._held: list[tuple[float, socket.socket]] = []
        self._lock = threading.Lock()
        self.acts = [self.mqtt_garbage, self.mqtt_oversized, self.unknown_charger, self.forged_signature,
                     self.wrong_topic, self.peer_junk, self.peer_half_open, self.http_malformed,
                     self.http_bad_signatures, self.victim_topic]

    def act(self) -> str:
        self._release_held()
        fn = self.rng.choice(self.acts)
        try:
            fn()
        except Exception as e:  # noqa: BLE001  (a node or the broker may be down right now)
            self.errors[f"{fn.__name__}: {type(e).__name__}"] += 1
        self.counts[fn.__name__] += 1
        return fn.__name__

    # ---- MQTT ------------------------------------------------------------------------------

    def mqtt_garbage(self) -> None:
        for kind in ("receipt", "auth", "status", "enroll"):
            self.intruder.publish(kind, os.urandom(self.rng.randrange(0, 600)))
        self.intruder.publish("receipt", b"\x01" + os.urandom(300))  # a version byte, then noise

    def mqtt_oversized(self) -> None:
        self.intruder.publish("receipt", os.urandom(60_000))  # passes the broker, over the receipt limit
        # Over the broker's packet limit: it hangs up. On a connection of its own at QoS 0, so no
        # session keeps sending it again.
        once = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="HX-BULKY", protocol=mqtt.MQTTv311)
        once.username_pw_set(*self.bulky_login)  # a login of its own: the client id is the user name
        up = threading.Event()
        once.on_connect = lambda *a: up.set()
        once.connect("127.0.0.1", self.broker_port, keepalive=10)
        once.loop_start()
        try:
            if up.wait(2):
                once.publish(topics.receipt(self.intruder.charger_id), os.urandom(70_000), qos=0)
                time.sleep(0.2)
        finally:
            once.disconnect()
            once.loop_stop()

    def unknown_charger(self) -> None:
        from nacl.signing import SigningKey
        self.intruder.publish("receipt", hostile_receipt(self.intruder.charger_id, self.rng.randrange(1, 10**6),
                                                         SigningKey.generate()))

    def forged_signature(self) -> None:
        """An enrolled charger's id, signed with another key."""
        wallet = self.rng.choice(self.drivers)[0]
        self.rogue.publish("receipt", hostile_receipt(self.rogue_id, self.rng.randrange(1, 10**6), self.rogue_key,
                                                      wallet))

    def wrong_topic(self) -> None:
        """A real charger's receipt, replayed or forged, on the intruder's own topic."""
        from nacl.signing import SigningKey
        issued = self.victims()
        if issued:
            cid, seq, env = self.rng.choice(issued)
            self.intruder.publish("receipt", env)
            self.intruder.publish("receipt", hostile_receipt(cid, seq, SigningKey.generate()))

    def victim_topic(self) -> None:
        """A forged receipt reusing a real charger's latest seq on that charger's topic, and a
        forged ack of that receipt on its reply topic: the broker's ACL must drop both, or the
        bureau's reject or the ack would take the real receipt out of the charger's outbox."""
        from nacl.signing import SigningKey
        issued = self.victims()
        if issued:
            cid, seq, env = issued[-1]
            self.intruder.publish("receipt", hostile_receipt(cid, seq, SigningKey.generate()), charger_id=cid)
            ack = '{"v": 1, "type": "ack", "seq": %d, "receipt": "%s", "height": 1}' % (
                seq, hashlib.sha256(env).hexdigest())
            self.intruder.publish("reply", ack.encode(), charger_id=cid)

    # ---- peer ports ------------------------------------------------------------------------

    def peer_junk(self) -> None:
        port = self.rng.choice(self.peer_ports)
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(self.rng.choice([os.urandom(self.rng.randrange(1, 4096)), b"\xff\xff\xff\xff" + os.urandom(64),
                                       b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00" * 1024]))
            s.settimeout(0.5)
            try:
                s.recv(1024)
            except OSError:
                pass

    def peer_half_open(self) -> None:
        self._hold(self.rng.choice(self.peer_ports), self.rng.choice([b"", b"\x00", b"\x00\x00\x01"]))

    # ---- HTTP ------------------------------------------------------------------------------

    def http_malformed(self) -> None:
        _, url = self.rng.choice(self.apis)
        port = int(url.rsplit(":", 1)[1])
        raw = self.rng.choice([
            b"GARBAGE\r\n\r\n", os.urandom(512),
            b"GET /v1/chain/head HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 100_000 + b"\r\n\r\n",
            b"POST /v1/operator/actions HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n{",
        ])
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(raw)
            s.settimeout(1.0)
            try:
                s.recv(4096)
            except OSError:
                pass
        self._hold(port, b"GET /v1/chain/head HTTP/1.1\r\nHost: x\r\n")  # a request that never ends
        for method, path, body in [("POST", "/v1/operator/actions", b"not json"),
                                   ("POST", "/v1/operator/actions", b'{"tx": "zz"}'),
                                   ("POST", "/v1/operator/actions", b'{"tx": "%s"}' % os.urandom(200).hex().encode()),
                                   ("GET", "/v1/blocks/99999999999999999999999", None),
                                   ("GET", "/v1/receipts/x/-1/proof", None),
                                   ("GET", "/v1/wallets/" + "W" * 5000, None)]:
            self._http(method, url + path, content=body, headers={"content-type": "application/json"})

    def http_bad_signatures(self) -> None:
        """Requests signed with the project's own driver signing: for a wallet not the signer's,
        replayed, replayed at another bureau, and stale; and one with a garbage header."""
        (node, url), (other_node, other_url) = self.rng.sample(self.apis, 2)
        (wallet, key), (other, _) = self.rng.sample(self.drivers, 2)
        path = f"/v1/wallets/{other}"
        self._http("GET", url + path, headers={"Authorization": "EV-Sig wallet=x,ts=1,nonce=00,sig=zz"})
        self._http("GET", url + path, headers={"Authorization": authorization_header(key, wallet, "GET", path,
                                                                                    node_id=node)})
        own = f"/v1/wallets/{wallet}"
        signed = authorization_header(key, wallet, "GET", own, node_id=node)
        for target in (url, url, other_url):  # the second and third are replays
            self._http("GET", target + own, headers={"Authorization": signed})
        self._http("GET", url + own, headers={"Authorization": authorization_header(
            key, wallet, "GET", own, node_id=node, ts=int(time.time()) - 86400)})

    def _http(self, method: str, url: str, **kw) -> None:
        try:
            r = shared_client().request(method, url, timeout=3, **kw)
            self.http_status[f"{r.status_code // 100}xx"] += 1
            if r.status_code >= 500:
                self.server_errors[f"{method} {url.split('/', 3)[3][:60]} -> {r.status_code}"] += 1
        except httpx.HTTPError:
            self.http_status["no_answer"] += 1

    # ---- held connections ------------------------------------------------------------------

    def _hold(self, port: int, first_bytes: bytes) -> None:
        with self._lock:
            if len(self._held) >= MAX_HELD:
                return
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        if first_bytes:
            s.sendall(first_bytes)
        with self._lock:
            self._held.append((time.monotonic() + self.rng.uniform(5, 30), s))

    def _release_held(self, everything: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            keep = []
            for until, s in self._held:
                if everything or until <= now:
                    s.close()
                else:
                    keep.append((until, s))
            self._held = keep

    def close(self) -> None:
        self._release_held(everything=True)
        self.intruder.close()
        self.rogue.close()
