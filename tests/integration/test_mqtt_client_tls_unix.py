"""The firmware's MQTT client over TLS (firmware/shell/mqtt_client.py with broker_tls.py) under the
real MicroPython unix port, whose `tls` is Mbed TLS as on the ESP32: 64-bit, and 32-bit with the
firmware frozen in and a 96 KB heap. A real mosquitto with a TLS listener whose certificate
(ECDSA P-256, IP subjectAltName 127.0.0.1) is signed by a CA made here; the charger pins that CA.
It logs in, subscribes, gets PUBACK for a QoS 1 publish and receives the bureau's message (the
bureau and the fleet observer are paho clients on the same TLS listener); a
broker certificate from another CA, or one that does not name the address dialled, is refused
with tls_bad_cert and Mbed TLS's words, and the client never falls back to plain TCP."""

from __future__ import annotations

import os
import queue
import re
import subprocess
from pathlib import Path

import pytest

from bureau.tools.mosquitto import Mosquitto
from chargerhost import LIB_DIRS
from tests.integration.test_mqtt_client_unix import Lines, paho
from tests.support.mpunix import require_frozen_interpreter, require_interpreter, run_unix
from tests.support.tlscerts import make_pki

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("mp") / "mqtt_tls_script.py"
MANIFEST = ROOT / "firmware" / "manifest.py"
USER = "GZ-TLS-1"
HEAP_LINE = re.compile(r"heap start (\d+) context (\d+) client (\d+) connected (\d+) traffic (\d+)")


@pytest.fixture(params=["unix64", "frozen32"])
def interpreter(request):
    """(interpreter, heap): the 64-bit port, and the 32-bit frozen image at the ESP32's heap."""
    if request.param == "unix64":
        return require_interpreter(64), "256K"
    return require_frozen_interpreter(MANIFEST), "96K"


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki")


def start_script(interpreter, heap, port, ca_file):
    env = dict(os.environ, MICROPYPATH=":".join([".frozen", *map(str, LIB_DIRS)]))
    return subprocess.Popen([interpreter, "-X", f"heapsize={heap}", str(SCRIPT), str(port), USER, "charger-pw",
                             str(ca_file)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def run_session(interpreter, heap, broker, ca_file) -> tuple[int, ...]:
    """Connect, subscribe, publish (PUBACK), receive the bureau's message, close; the heap
    figures the script printed. `ca_file` "-": plain MQTT."""
    proc = start_script(interpreter, heap, broker.port, ca_file)
    bureau = None
    try:
        out = Lines(proc)
        out.expect("connected")
        out.expect(f"subscribed ev/v1/charger/{USER}/reply")
        out.expect("puback")
        bureau = paho(broker.port, broker.login("bureau-1.ingest", "ingest"), ca_file=broker.ca_file)
        bureau.publish(f"ev/v1/charger/{USER}/reply", b"ack-1", qos=1).wait_for_publish(5)
        assert out.expect("message") == f"message ev/v1/charger/{USER}/reply ack-1 qos=1"
        heap = HEAP_LINE.match(out.expect("heap "))
        out.expect("done")
        assert proc.wait(30) == 0, out.all
        return tuple(int(g) for g in heap.groups())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if bureau is not None:
            bureau.loop_stop()
            bureau.disconnect()


def test_tls_with_the_pinned_ca(tmp_path, pki, interpreter):
    mp, heap = interpreter
    with Mosquitto(workdir=tmp_path / "broker", tls=pki.broker_files) as broker:
        broker.login(USER, "charger", "charger-pw")
        got: queue.Queue = queue.Queue()
        observer = paho(broker.port, broker.login("observer", "fleet"), f"ev/v1/charger/{USER}/status", got,
                        ca_file=broker.ca_file)
        try:
            run_session(mp, heap, broker, pki.ca_der)
            # what the charger published over TLS, as the fleet sees it
            assert got.get(timeout=10)[:2] == (f"ev/v1/charger/{USER}/status", b"online")
        finally:
            observer.loop_stop()
            observer.disconnect()


def test_tls_connection_heap_cost_on_the_96k_image(tmp_path, pki):
    """Mbed TLS keeps its record buffers (16 KB in, 4 KB out) and handshake state in the C heap
    on this port as on the ESP32, so on the MicroPython heap a TLS connection costs only the
    context (the parsed CA) and the socket objects: a few KB, not the 20 KB of buffers."""
    mp = require_frozen_interpreter(MANIFEST)
    with Mosquitto(workdir=tmp_path / "plain") as broker:
        broker.login(USER, "charger", "charger-pw")
        plain = run_session(mp, "96K", broker, "-")
    with Mosquitto(workdir=tmp_path / "tls", tls=pki.broker_files) as broker:
        broker.login(USER, "charger", "charger-pw")
        tls = run_session(mp, "96K", broker, pki.ca_der)
    start, context, client, connected, _ = tls
    plain_connection = plain[2] - plain[3]
    tls_connection = client - connected
    assert start - context < 4096, tls        # the context with one P-256 CA
    assert tls_connection - plain_connection < 4096, (plain, tls)


def test_certificate_from_another_ca_is_refused(tmp_path, pki, interpreter):
    mp, heap = interpreter
    other = make_pki(tmp_path / "other", ca_name="some other CA")
    with Mosquitto(workdir=tmp_path / "broker", tls=other.broker_files) as broker:
        broker.login(USER, "charger", "charger-pw")
        proc = start_script(mp, heap, broker.port, pki.ca_pem)  # PEM is pinned as well as DER
        out = Lines(proc)
        line = out.expect("refused")
        assert proc.wait(30) == 0
    assert line == "refused tls_bad_cert (The certificate is not correctly signed by the trusted CA)", out.all
    assert not any(ln.startswith("connected") for ln in out.all)


def test_certificate_for_another_address_is_refused(tmp_path, pki):
    """The broker's certificate names 127.0.0.1; a charger that expects another name refuses it."""
    mp = require_interpreter(64)
    with Mosquitto(workdir=tmp_path / "broker", tls=pki.broker_files) as broker:
        broker.login(USER, "charger", "charger-pw")
        code = ("import sys, broker_tls\nfrom mqtt_client import MQTTClient, CONNECT_FAILED\n"
                f"ctx = broker_tls.make_context(broker_tls.load_ca({str(pki.ca_der)!r}))\n"
                f"c = MQTTClient('127.0.0.1', {broker.port}, client_id='{USER}', username='{USER}', "
                "password='charger-pw', tls=ctx, server_hostname='broker.depot', auto_reconnect=False)\n"
                "c.connect()\n"
                "for _ in range(500):\n"
                "    for ev in c.poll(wait_ms=20):\n"
                "        print(ev, c.last_detail); sys.exit(0)\n"
                "print('no refusal')\n")
        proc = run_unix(mp, code, heap="256K", path=LIB_DIRS, timeout=60)
    assert proc.stdout.startswith("('connect_failed', 'tls_bad_cert') The certificate Common Name (CN) does not "
                                  "match"), proc.stdout


def test_bad_ca_files_are_clear_errors():
    mp = require_interpreter(64)
    code = ("import broker_tls\n"
            "for data in (b'not a certificate', b'-----BEGIN CERTIFICATE-----\\nMIIB', b'\\x30\\x03\\x02\\x01\\x01'):\n"
            "    try:\n"
            "        broker_tls.make_context(broker_tls.ca_der(data))\n"
            "    except ValueError as e:\n"
            "        print(e.reason, '|', e.detail)\n"
            "try:\n"
            "    broker_tls.load_ca('/nonexistent/ca.der')\n"
            "except ValueError as e:\n"
            "    print(e.reason, '|', e.detail)\n")
    out = run_unix(mp, code, heap="256K", path=LIB_DIRS).stdout.splitlines()
    assert out == ["bad_ca | not a DER or PEM certificate",
                   "bad_ca | PEM certificate without its END line",
                   "bad_ca | Mbed TLS cannot parse the CA certificate (invalid cert)",
                   "no_ca | /nonexistent/ca.der is missing: mqtt.tls needs the network's CA there"], out


TIMEOUTS = """
import sys, time, broker_tls
from mqtt_client import MQTTClient, CONNECT_FAILED, CONNECTED_EVENT, DISCONNECTED_EVENT
ctx = broker_tls.make_context(broker_tls.load_ca(sys.argv[1]))
c = MQTTClient('127.0.0.1', int(sys.argv[2]), client_id=sys.argv[3], username=sys.argv[3], password='charger-pw',
               keepalive=2, connect_timeout_ms=1500, tls=ctx, auto_reconnect=False)
c.connect()
longest = 0
t0 = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), t0) < 60000:
    t = time.ticks_ms()
    events = c.poll(wait_ms=50)
    longest = max(longest, time.ticks_diff(time.ticks_ms(), t))
    for ev in events:
        print(ev[0], ev[1])
        sys.stdout.flush()
        if ev[0] != CONNECTED_EVENT:
            print('longest poll %d ms' % longest)
            sys.exit(0)
print('no end')
"""


def test_tls_handshake_and_keepalive_time_out_without_blocking(tmp_path, pki, interpreter):
    """A server that accepts and never answers the ClientHello: the attempt ends by the
    session's connect timeout. A broker that stops answering after the TLS session is up (SIGSTOP):
    the keepalive's ping timeout ends it. poll(wait_ms) keeps returning all along."""
    import signal
    import socket

    mp, heap = interpreter
    env = dict(os.environ, MICROPYPATH=":".join([".frozen", *map(str, LIB_DIRS)]))
    script = tmp_path / "timeouts.py"
    script.write_text(TIMEOUTS)

    def run(port):
        return subprocess.Popen([mp, "-X", f"heapsize={heap}", str(script), str(pki.ca_der), str(port), USER],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes the TCP connection, says nothing
        proc = run(silent.getsockname()[1])
        out = Lines(proc)
        assert out.expect("connect_failed") == "connect_failed connect_timeout", out.all
        out.expect("longest poll")
        assert proc.wait(30) == 0

    with Mosquitto(workdir=tmp_path / "broker", tls=pki.broker_files) as broker:
        broker.login(USER, "charger", "charger-pw")
        proc = run(broker.port)
        out = Lines(proc)
        out.expect("connected")
        broker.proc.send_signal(signal.SIGSTOP)
        try:
            assert out.expect("disconnected", timeout=60) == "disconnected ping_timeout", out.all
            out.expect("longest poll")
            assert proc.wait(30) == 0
        finally:
            broker.proc.send_signal(signal.SIGCONT)
