"""Broker credentials and ACL: a charger may publish only on its own topics, and read only its
own replies; the bureau reads them all."""

import queue
import time

import paho.mqtt.client as mqtt
import pytest

from bureau.tools.mosquitto import Mosquitto, write_broker_access


def _client(port, user, password, inbox=None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}")
    c.username_pw_set(user, password)
    if inbox is not None:
        c.on_message = lambda cl, u, m: inbox.put((m.topic, m.payload))
    result: queue.Queue = queue.Queue()
    c.on_connect = lambda cl, u, f, rc, p: result.put(rc)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c, result.get(timeout=5)


@pytest.fixture
def broker(tmp_path):
    passwd, acl = write_broker_access(tmp_path / "access", {"bureau": "b-secret", "CH-A": "a-secret",
                                                             "CH-B": "b2-secret"})
    with Mosquitto(workdir=tmp_path / "broker", password_file=passwd, acl_file=acl) as m:
        yield m


def test_chargers_reach_only_their_own_topics(broker):
    bureau_inbox: queue.Queue = queue.Queue()
    bureau, rc = _client(broker.port, "bureau", "b-secret", bureau_inbox)
    assert not rc.is_failure
    bureau.subscribe("ev/v1/charger/+/receipt", qos=1)
    a_inbox: queue.Queue = queue.Queue()
    a, rc = _client(broker.port, "CH-A", "a-secret", a_inbox)
    assert not rc.is_failure
    a.subscribe("ev/v1/charger/+/reply", qos=1)  # wants everyone's replies; gets only its own
    time.sleep(0.3)
    a.publish("ev/v1/charger/CH-B/receipt", b"forged as B", qos=1).wait_for_publish(5)
    a.publish("ev/v1/charger/CH-A/receipt", b"own", qos=1).wait_for_publish(5)
    assert bureau_inbox.get(timeout=5) == ("ev/v1/charger/CH-A/receipt", b"own")
    bureau.publish("ev/v1/charger/CH-B/reply", b"for B", qos=1).wait_for_publish(5)
    bureau.publish("ev/v1/charger/CH-A/reply", b"for A", qos=1).wait_for_publish(5)
    assert a_inbox.get(timeout=5) == ("ev/v1/charger/CH-A/reply", b"for A")
    time.sleep(0.3)
    assert bureau_inbox.empty() and a_inbox.empty()
    _, rc = _client(broker.port, "CH-A", "wrong")
    assert rc.is_failure
    for c in (a, bureau):
        c.loop_stop()
        c.disconnect()
