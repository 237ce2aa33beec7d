"""A bureau's broker session loses nothing while it is slow or away: a real mosquitto with the
project's config queues every receipt for an ingest link that stops reading (its paho loop
paused, the socket open) or that left with its persistent session, and hands them all over when
it resumes. With mosquitto's own limits (20 in flight, 1000 queued) the same burst loses most
receipts, and the project's log types make the broker say so."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest

from bureau.tools.mosquitto import QUEUE_LIMITS, Mosquitto
from tests.support.waiting import wait_for

BURST = 3000  # three times mosquitto's default queue
DROPPED = "Outgoing messages are being dropped for client bureau-1.ingest"


class DefaultQueueMosquitto(Mosquitto):
    """The project's broker without its queue limits: mosquitto's defaults."""

    def config_text(self) -> str:
        return "".join(line for line in super().config_text().splitlines(keepends=True)
                       if line.strip() not in QUEUE_LIMITS)


def _client(client_id: str, login: tuple[str, str], *, clean_session: bool) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                    clean_session=clean_session)
    c.username_pw_set(*login)
    return c


def _wait(condition, what: str, timeout: float = 60.0):
    return wait_for(condition, what, timeout, poll=0.05)


def _burst_to_stopped_ingest(broker: Mosquitto, how: str) -> tuple[set[bytes], mqtt.Client]:
    """Publish BURST receipts while bureau-1's ingest link reads nothing (`paused`: loop stopped,
    connection open; `offline`: disconnected, session kept), then resume it: the set it fills
    with what it receives, and the link (running again)."""
    _, password = broker.login_bureau("bureau-1")
    received: set[bytes] = set()
    lock = threading.Lock()  # paho's thread adds, the test reads
    subscribed = threading.Event()

    def on_message(client, userdata, msg) -> None:
        with lock:
            received.add(bytes(msg.payload))

    ingest = _client("bureau-1.ingest", ("bureau-1.ingest", password), clean_session=False)
    ingest.on_message = on_message
    ingest.on_subscribe = lambda *a: subscribed.set()
    ingest.connect("127.0.0.1", broker.port)
    ingest.loop_start()
    ingest.subscribe("ev/v1/charger/+/receipt", qos=1)
    assert subscribed.wait(10)
    if how == "offline":
        ingest.disconnect()
    ingest.loop_stop()

    pub = _client("bench-pub", broker.login("bench-pub", "fleet"), clean_session=True)
    pub.max_inflight_messages_set(100)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        sent = [pub.publish("ev/v1/charger/CH-1/receipt", b"%06d" % i + bytes(200), qos=1) for i in range(BURST)]
        for info in sent:  # every one taken by the broker (PUBACK): none lost on the way in
            info.wait_for_publish(60)
    finally:
        pub.disconnect()
        pub.loop_stop()

    if how == "offline":
        ingest.reconnect()
    ingest.loop_start()
    return received, ingest


@pytest.mark.parametrize("how", ["paused", "offline"])
def test_project_broker_queues_a_burst_for_a_stopped_ingest_link(tmp_path, how):
    with Mosquitto(workdir=tmp_path / "broker") as broker:
        received, ingest = _burst_to_stopped_ingest(broker, how)
        try:
            _wait(lambda: len(received) >= BURST, f"the ingest link got only {len(received)} of {BURST} receipts")
        finally:
            ingest.disconnect()
            ingest.loop_stop()
        assert DROPPED not in (broker.workdir / "mosquitto.log").read_text()


@pytest.mark.parametrize("how", ["paused", "offline"])
def test_default_queue_limits_drop_the_burst_and_the_broker_logs_it(tmp_path, how):
    with DefaultQueueMosquitto(workdir=tmp_path / "broker") as broker:
        received, ingest = _burst_to_stopped_ingest(broker, how)
        try:
            log = broker.workdir / "mosquitto.log"
            _wait(lambda: DROPPED in log.read_text(), "mosquitto did not log the drop")
            # a dropped message never comes back: once the link is quiet, some are missing for good
            last = -1
            while last != len(received):
                last = len(received)
                time.sleep(1.0)
        finally:
            ingest.disconnect()
            ingest.loop_stop()
        assert len(received) < BURST
