"""The firmware's own MQTT client (firmware/lib/mqtt_client.py) against a real mosquitto,
with paho-mqtt as the other party."""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
import uuid

import paho.mqtt.client as paho
import pytest

from bureau.tools.mosquitto import Mosquitto
from mqtt_client import (CONNECT_FAILED, CONNECTED_EVENT, DISCONNECTED_EVENT, MESSAGE,
                         PUBLISHED, SUBSCRIBED, MQTTClient, MQTTError)

HOST = "127.0.0.1"


def make_client(port, client_id="c1", **kw) -> MQTTClient:
    kw.setdefault("keepalive", 30)
    kw.setdefault("reconnect_min_ms", 20)
    kw.setdefault("reconnect_max_ms", 200)
    return MQTTClient(HOST, port, client_id=client_id, **kw)


def pump(client, until, timeout=5.0, seen=None):
    """Poll until `until(events)` holds for the events collected; return them."""
    events = [] if seen is None else seen
    deadline = time.monotonic() + timeout
    while not until(events):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; events so far: {events!r}")
        events.extend(client.poll(wait_ms=20))
    return events


def has(*wanted):
    """Predicate: each wanted event (a tuple prefix) occurred."""
    def check(events):
        return all(any(e[:len(w)] == w for e in events) for w in wanted)
    return check


def messages(events):
    return [e for e in events if e[0] == MESSAGE]


class Peer:
    """A paho-mqtt client on its own network thread that records what it receives."""

    def __init__(self, port, subscribe=(), client_id=None):
        self.inbox: queue.Queue = queue.Queue()
        self._acks: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or "peer-" + uuid.uuid4().hex[:8],
                        protocol=paho.MQTTv311)
        c.on_connect = lambda *a: self._connected.set()
        c.on_message = lambda cl, ud, msg: self.inbox.put(msg)
        c.on_subscribe = self._on_subscribe
        self.client = c
        c.connect(HOST, port, keepalive=30)
        c.loop_start()
        assert self._connected.wait(5), "paho did not connect"
        for topic_filter, qos in subscribe:
            self.subscribe(topic_filter, qos)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._lock:
            self._acks.setdefault(mid, threading.Event()).set()

    def subscribe(self, topic_filter, qos=1):
        rc, mid = self.client.subscribe(topic_filter, qos)
        assert rc == paho.MQTT_ERR_SUCCESS
        with self._lock:
            ev = self._acks.setdefault(mid, threading.Event())
        assert ev.wait(5), "paho SUBACK missing"

    def publish(self, topic, payload, qos=0, retain=False):
        info = self.client.publish(topic, payload, qos, retain)
        info.wait_for_publish(5)
        assert info.is_published()

    def get(self, timeout=5.0):
        return self.inbox.get(timeout=timeout)

    def nothing(self, wait=0.3):
        try:
            msg = self.inbox.get(timeout=wait)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected message on {msg.topic}: {msg.payload!r}")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers():
    made = []

    def make(port, subscribe=()):
        p = Peer(port, subscribe)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def mosquitto(tmp_path):
    """Anonymous on purpose: these tests are of the MQTT client itself, on free topic names
    that no charger ACL covers (logins are tested in test_credentials_and_refusal)."""
    with Mosquitto(workdir=tmp_path / "broker", anonymous=True) as broker:
        yield broker


@pytest.fixture
def clients():
    made = []

    def make(port, client_id="c1", **kw):
        c = make_client(port, client_id, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def freeze(broker):
    os.kill(broker.proc.pid, signal.SIGSTOP)


def thaw(broker):
    os.kill(broker.proc.pid, signal.SIGCONT)


# ---------------------------------------------------------------- tests

def test_connect_subscribe_and_receive_qos0_and_qos1(mosquitto, clients, peers):
    c = clients(mosquitto.port)
    c.subscribe("cmd/c1/#", 1)
    c.subscribe("cfg/c1", 0)
    c.connect()
    pump(c, has((CONNECTED_EVENT, False), (SUBSCRIBED, "cmd/c1/#", 1), (SUBSCRIBED, "cfg/c1", 0)))
    assert c.connected
    peer = peers(mosquitto.port)
    binary = bytes(range(256))
    peer.publish("cmd/c1/stop", binary, qos=1)
    peer.publish("cmd/c1/note", "q0 \u00e9", qos=0)
    peer.publish("cfg/c1", b"downgraded", qos=1)            # granted QoS 0 on that filter
    peer.publish("cmd/other", b"not mine", qos=1)
    events = pump(c, lambda ev: len(messages(ev)) >= 3)
    got = {(m[1], m[2], m[3]) for m in messages(events)}
    assert got == {("cmd/c1/stop", binary, 1), ("cmd/c1/note", "q0 \u00e9".encode(), 0),
                   ("cfg/c1", b"downgraded", 0)}
    # nothing else arrives, and the QoS 1 delivery was acknowledged (no redelivery)
    more = []
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        more.extend(c.poll(wait_ms=20))
    assert messages(more) == []


def test_publish_qos1_gets_puback_and_qos0_arrives(mosquitto, clients, peers):
    peer = peers(mosquitto.port, subscribe=[("rcpt/#", 1)])
    c = clients(mosquitto.port)
    c.connect()
    pump(c, has((CONNECTED_EVENT,)))
    pids = [c.publish("rcpt/c1", b"receipt-%d" % i, qos=1) for i in range(5)]
    assert len(set(pids)) == 5 and all(1 <= p <= 65535 for p in pids)
    assert c.inflight == 5
    events = pump(c, has(*[(PUBLISHED, p) for p in pids]))
    assert [e[1] for e in events if e[0] == PUBLISHED] == pids   # in order
    assert c.inflight == 0
    assert c.publish("rcpt/c1/q0", b"fire-and-forget", qos=0) == 0
    got = [peer.get() for _ in range(6)]
    assert [m.payload for m in got[:5]] == [b"receipt-%d" % i for i in range(5)]
    assert all(m.qos == 1 for m in got[:5])
    assert (got[5].topic, got[5].payload, got[5].qos) == ("rcpt/c1/q0", b"fire-and-forget", 0)


def test_retained_messages_both_ways(mosquitto, clients, peers):
    c = clients(mosquitto.port)
    c.connect()
    pump(c, has((CONNECTED_EVENT,)))
    pid = c.publish("state/c1", b"available", qos=1, retain=True)
    pump(c, has((PUBLISHED, pid)))
    late = peers(mosquitto.port, subscribe=[("state/#", 1)])
    msg = late.get()
    assert (msg.topic, msg.payload, msg.retain) == ("state/c1", b"available", True)

    late.publish("cfg/c1/tariff", b"v7", qos=1, retain=True)
    c.subscribe("cfg/c1/#", 1)
    events = pump(c, lambda ev: messages(ev))
    assert messages(events) == [(MESSAGE, "cfg/c1/tariff", b"v7", 1, True, False)]
    # a live (not retained) publish arrives with retain cleared
    late.publish("cfg/c1/tariff", b"v8", qos=1, retain=True)
    events = pump(c, lambda ev: messages(ev))
    assert messages(events) == [(MESSAGE, "cfg/c1/tariff", b"v8", 1, False, False)]


def test_last_will_only_when_the_socket_dies(mosquitto, clients, peers):
    peer = peers(mosquitto.port, subscribe=[("status/#", 1)])
    will = lambda cid: ("status/" + cid, b"offline:" + cid.encode(), 1, False)  # noqa: E731
    polite = clients(mosquitto.port, "polite", will=will("polite"))
    dying = clients(mosquitto.port, "dying", will=will("dying"))
    for c in (polite, dying):
        c.connect()
        pump(c, has((CONNECTED_EVENT,)))
    assert polite.close() == [(DISCONNECTED_EVENT, "closed")]     # DISCONNECT: will dropped
    peer.nothing(0.3)
    dying.abort("wifi_down")                                       # no DISCONNECT
    msg = peer.get()
    assert (msg.topic, msg.payload, msg.qos) == ("status/dying", b"offline:dying", 1)
    events = dying.poll()
    # by now its short backoff may have run out and it may be back already
    assert events[0] == (DISCONNECTED_EVENT, "wifi_down")
    assert events[1:] in ([], [(CONNECTED_EVENT, False)])
    peer.nothing(0.2)


def test_large_messages_and_oversized_inbound_packet(mosquitto, clients, peers):
    peer = peers(mosquitto.port, subscribe=[("big/up", 1)])
    big = clients(mosquitto.port, "big", max_packet=70000)
    big.subscribe("big/down", 1)
    big.connect()
    pump(big, has((SUBSCRIBED, "big/down", 1)))
    up = os.urandom(60000)
    pid = big.publish("big/up", up, qos=1)
    pump(big, has((PUBLISHED, pid)))
    assert peer.get().payload == up
    down = os.urandom(60000)
    peer.publish("big/down", down, qos=1)
    events = pump(big, lambda ev: messages(ev))
    assert messages(events)[0][2] == down

    small = clients(mosquitto.port, "small", max_packet=1024)
    small.subscribe("small/in", 1)
    small.connect()
    pump(small, has((SUBSCRIBED, "small/in", 1)))
    peer.publish("small/in", b"x" * 2000, qos=1)
    events = pump(small, has((DISCONNECTED_EVENT, "too_large")))
    # it reconnects on its own, restores the subscription and keeps working
    pump(small, has((CONNECTED_EVENT,), (SUBSCRIBED, "small/in", 1)), seen=events)
    peer.publish("small/in", b"fits", qos=1)
    events = pump(small, lambda ev: messages(ev))
    assert [m[2] for m in messages(events)] == [b"fits"]


def test_broker_restart_delivers_the_unacknowledged_publish(mosquitto, clients, peers):
    c = clients(mosquitto.port)
    c.subscribe("cmd/c1", 1)
    c.connect()
    pump(c, has((SUBSCRIBED, "cmd/c1", 1)))
    # Freeze the broker so the PUBLISH reaches its socket but is never acknowledged ...
    freeze(mosquitto)
    pid = c.publish("rcpt/c1", b"receipt-42", qos=1)
    for _ in range(5):
        assert c.poll(wait_ms=10) == []
    assert c.backlog == 0 and c.session.inflight_ids() == [pid]
    # ... then kill it and start a new one on the same port.
    mosquitto.proc.kill()
    mosquitto.proc.wait()
    events = pump(c, lambda ev: any(e[0] == DISCONNECTED_EVENT for e in ev))
    assert c.inflight == 1
    mosquitto.start()
    peer = peers(mosquitto.port, subscribe=[("rcpt/#", 1)])
    events = pump(c, has((CONNECTED_EVENT, False), (SUBSCRIBED, "cmd/c1", 1), (PUBLISHED, pid)))
    msg = peer.get()
    assert (msg.topic, msg.payload, msg.qos) == ("rcpt/c1", b"receipt-42", 1)
    assert c.inflight == 0
    # the restored subscription works
    peer.publish("cmd/c1", b"ack receipt-42", qos=1)
    events = pump(c, lambda ev: messages(ev))
    assert messages(events) == [(MESSAGE, "cmd/c1", b"ack receipt-42", 1, False, False)]


def test_publish_queued_while_broker_down(mosquitto, clients, peers):
    c = clients(mosquitto.port)
    c.subscribe("cmd/c1", 1)
    c.connect()
    pump(c, has((SUBSCRIBED, "cmd/c1", 1)))
    mosquitto.stop()
    events = pump(c, has((DISCONNECTED_EVENT,)))
    assert events[-1][1] in ("peer_closed", "io_error:104")
    with pytest.raises(MQTTError) as err:
        c.publish("rcpt/c1", b"q0", qos=0)
    assert err.value.reason == "not_connected"
    pids = [c.publish("rcpt/c1", b"offline-%d" % i, qos=1) for i in range(3)]
    # attempts fail while nothing listens, with a growing backoff
    failed = pump(c, lambda ev: sum(e[0] == CONNECT_FAILED for e in ev) >= 3)
    assert all(e[1].startswith(("io_error:", "connect_error:")) for e in failed if e[0] == CONNECT_FAILED)
    mosquitto.start()
    peer = peers(mosquitto.port, subscribe=[("rcpt/#", 1)])
    pump(c, has((CONNECTED_EVENT,), (SUBSCRIBED, "cmd/c1", 1), *[(PUBLISHED, p) for p in pids]), timeout=5)
    assert [peer.get().payload for _ in pids] == [b"offline-%d" % i for i in range(3)]


def test_ping_timeout_detects_a_frozen_broker(mosquitto, clients):
    c = clients(mosquitto.port, keepalive=1, ping_timeout_ms=600, connect_timeout_ms=600)
    c.connect()
    pump(c, has((CONNECTED_EVENT,)))
    # a healthy link survives several keepalive periods
    events = []
    end = time.monotonic() + 2.2
    while time.monotonic() < end:
        events.extend(c.poll(wait_ms=50))
    assert events == [] and c.connected
    freeze(mosquitto)
    try:
        t0 = time.monotonic()
        events = pump(c, has((DISCONNECTED_EVENT, "ping_timeout")), timeout=4)
        assert time.monotonic() - t0 < 3.0   # within keepalive + ping timeout, plus slack
        # the TCP handshake still completes (kernel backlog) but no CONNACK comes
        pump(c, has((CONNECT_FAILED, "connect_timeout")), timeout=4, seen=events)
    finally:
        thaw(mosquitto)
    pump(c, has((CONNECTED_EVENT,)), timeout=5)


def test_credentials_and_refusal(tmp_path, clients):
    with Mosquitto(workdir=tmp_path / "broker") as broker:
        user, password = broker.login("charger-7")
        good = clients(broker.port, "charger-7", username=user, password=password.encode())
        good.connect()
        pump(good, has((CONNECTED_EVENT,)))
        bad = clients(broker.port, "charger-8", username=user, password=b"wrong",
                      reconnect_min_ms=5000, reconnect_max_ms=5000)
        bad.connect()
        events = pump(bad, lambda ev: ev)
        assert events[0][0] == CONNECT_FAILED
        assert events[0][1] in ("bad_username_or_password", "not_authorized")
        assert not bad.connected and bad.sock is None
        assert good.connected


def test_connect_is_idempotent_and_close_stops_reconnecting(mosquitto, clients):
    c = clients(mosquitto.port)
    c.connect()
    sock = c.sock
    c.connect()
    assert c.sock is sock
    pump(c, has((CONNECTED_EVENT,)))
    c.connect()
    assert c.sock is sock
    assert c.close() == [(DISCONNECTED_EVENT, "closed")]
    assert c.sock is None
    end = time.monotonic() + 0.2
    while time.monotonic() < end:
        assert c.poll(wait_ms=20) == []
    assert c.sock is None
    c.connect()                                           # and it can start again
    pump(c, has((CONNECTED_EVENT,)))
