"""The firmware's MQTT client (firmware/shell/mqtt_client.py, broker_tls.py) under CPython over
chargerhost's `tls` adapter (MicroPython's `tls` on CPython's ssl), against a real mosquitto
with a TLS listener whose certificate a CA made here signed: the non-blocking handshake, login,
subscribe, a QoS 1 publish acked and the bureau's message received; a certificate from another
CA, or one not naming the address expected, is refused with tls_bad_cert and the reason; a
refused TCP connect is reported with its errno, as by MicroPython's first TLS write."""

from __future__ import annotations

import queue
import time

import chargerhost  # noqa: F401  (the firmware library on sys.path, the `tls` adapter installed)
import broker_tls
import pytest
from mqtt_client import CONNECT_FAILED, MESSAGE, PUBLISHED, SUBSCRIBED, MQTTClient

from bureau.tools.mosquitto import Mosquitto, free_port
from tests.integration.test_mqtt_client_unix import paho
from tests.support.tlscerts import make_pki

USER = "GZ-HOST-TLS-1"
BASE = f"ev/v1/charger/{USER}/"


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki")


def client(port: int, ca: bytes, **kw) -> MQTTClient:
    return MQTTClient("127.0.0.1", port, client_id=USER, username=USER, password="charger-pw",
                      tls=broker_tls.make_context(broker_tls.ca_der(ca)), auto_reconnect=False, **kw)


def poll_until(c: MQTTClient, seen: list, pred, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"no {what}: {seen}"
        seen.extend(c.poll(wait_ms=20))


def test_session_over_tls_with_the_pinned_ca(tmp_path, pki):
    with Mosquitto(workdir=tmp_path / "broker", tls=pki.broker_files) as broker:
        broker.login(USER, "charger", "charger-pw")
        got: queue.Queue = queue.Queue()
        observer = paho(broker.port, broker.login("observer", "fleet"), BASE + "status", got, ca_file=broker.ca_file)
        bureau = paho(broker.port, broker.login("bureau-1.ingest", "ingest"), ca_file=broker.ca_file)
        c = client(broker.port, pki.ca_pem.read_bytes())  # PEM pinned as well as DER
        try:
            seen: list = []
            c.subscribe(BASE + "reply", 1)
            c.connect()
            poll_until(c, seen, lambda: any(e[0] == SUBSCRIBED for e in seen), "SUBACK")
            pid = c.publish(BASE + "status", b"online", 1, True)
            poll_until(c, seen, lambda: (PUBLISHED, pid) in seen, "PUBACK")
            assert got.get(timeout=10)[:2] == (BASE + "status", b"online")
            bureau.publish(BASE + "reply", b"ack-1", qos=1).wait_for_publish(5)
            poll_until(c, seen, lambda: any(e[0] == MESSAGE for e in seen), "the bureau's message")
            message = next(e for e in seen if e[0] == MESSAGE)
            assert (message[1], bytes(message[2]), message[3]) == (BASE + "reply", b"ack-1", 1)
            assert not any(e[0] == CONNECT_FAILED for e in seen)
        finally:
            c.close()
            for p in (observer, bureau):
                p.loop_stop()
                p.disconnect()


@pytest.mark.parametrize("case", ["other_ca", "other_name"])
def test_broker_certificate_not_for_this_charger_is_refused(tmp_path, pki, case):
    files = make_pki(tmp_path / "other", ca_name="some other CA").broker_files if case == "other_ca" else \
        pki.broker_files
    with Mosquitto(workdir=tmp_path / "broker", tls=files) as broker:
        broker.login(USER, "charger", "charger-pw")
        c = client(broker.port, pki.ca_der.read_bytes(),
                   **({"server_hostname": "broker.depot"} if case == "other_name" else {}))
        seen: list = []
        c.connect()
        poll_until(c, seen, lambda: seen, "refusal")
        c.close()
    assert seen == [(CONNECT_FAILED, "tls_bad_cert")], seen
    want = "self-signed certificate in certificate chain" if case == "other_ca" else "mismatch"
    assert want in c.last_detail, c.last_detail


def test_refused_tcp_connect_is_an_io_error(pki):
    c = client(free_port(), pki.ca_der.read_bytes())
    seen: list = []
    c.connect()
    poll_until(c, seen, lambda: seen, "refusal")
    c.close()
    assert seen == [(CONNECT_FAILED, "io_error:111")], seen  # ECONNREFUSED, from the first write
