"""The firmware's MQTT client (firmware/shell/mqtt_client.py over mqtt_session/mqtt_codec) under the
real MicroPython unix port (32-bit) against a real mosquitto with logins and the charger ACL:
connect with username and password, subscribe, QoS 1 publish acknowledged by PUBACK, a retained
message, a message from the bureau, reconnection after a broker restart with the subscription
restored, and the last will published when the charger loses power (kill -9)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt

from bureau.tools.mosquitto import Mosquitto
from chargerhost import LIB_DIRS
from tests.support.mpunix import require_interpreter

SCRIPT = Path(__file__).with_name("mp") / "mqtt_client_script.py"
USER = "GZ-MQ-1"


class Lines:
    def __init__(self, proc: subprocess.Popen) -> None:
        self.q: queue.Queue = queue.Queue()
        self.all: list[str] = []
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc):
        for line in proc.stdout:
            self.all.append(line.rstrip("\n"))
            self.q.put(line.rstrip("\n"))

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        while True:
            try:
                line = self.q.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line {prefix!r}; output so far: {self.all}") from None
            if line.startswith("timeout"):
                raise AssertionError(f"{line}; output: {self.all}")
            if line.startswith(prefix):
                return line


def paho(port: int, login: tuple[str, str], subscribe: str | None = None, got: queue.Queue | None = None,
         ca_file: Path | None = None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=login[0])
    c.username_pw_set(*login)
    if ca_file is not None:  # a TLS listener
        c.tls_set(ca_certs=str(ca_file))
    if subscribe:
        c.on_message = lambda cl, u, m: got.put((m.topic, m.payload, m.retain))
        c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe(subscribe, 1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def test_client_under_micropython_against_mosquitto(tmp_path):
    mp = require_interpreter(32)
    broker = Mosquitto(workdir=tmp_path / "broker").start()
    broker.login(USER, "charger", "charger-pw")
    env = dict(os.environ, MICROPYPATH=":".join([".frozen", *map(str, LIB_DIRS)]))
    proc = subprocess.Popen([mp, "-X", "heapsize=96K", str(SCRIPT), str(broker.port), USER, "charger-pw"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    bureau = observer = None
    try:
        out = Lines(proc)
        out.expect("connected")
        out.expect("subscribed ev/v1/charger/GZ-MQ-1/reply")
        out.expect("puback")
        got: queue.Queue = queue.Queue()
        # the status as the fleet sees it; replies as a bureau's ingest link sends them
        observer = paho(broker.port, broker.login("observer", "fleet"), f"ev/v1/charger/{USER}/status", got)
        bureau = paho(broker.port, broker.login("bureau-1.ingest", "ingest"))
        topic, payload, retain = got.get(timeout=10)  # the retained status, as a late subscriber sees it
        assert (topic, payload, retain) == (f"ev/v1/charger/{USER}/status", b"online", True)
        bureau.publish(f"ev/v1/charger/{USER}/reply", b"ack-1", qos=1).wait_for_publish(5)
        assert out.expect("message") == f"message ev/v1/charger/{USER}/reply ack-1 qos=1"

        broker.restart()  # the client reconnects by itself and subscribes again
        out.expect("disconnected")
        out.expect("connected")
        out.expect("puback")
        while True:
            topic, payload, retain = got.get(timeout=20)  # paho reconnects too
            if payload == b"back":
                break
        bureau.publish(f"ev/v1/charger/{USER}/reply", b"ack-2", qos=1).wait_for_publish(5)
        assert out.expect("message") == f"message ev/v1/charger/{USER}/reply ack-2 qos=1"
        out.expect("done")

        proc.send_signal(signal.SIGKILL)  # power cut: no DISCONNECT, the broker sends the will
        proc.wait()
        while True:
            topic, payload, retain = got.get(timeout=20)
            if payload == b"offline":
                break
        assert topic == f"ev/v1/charger/{USER}/status"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for c in (bureau, observer):
            if c is not None:
                c.loop_stop()
                c.disconnect()
        broker.close()


def test_wrong_password_is_refused_under_micropython(tmp_path):
    mp = require_interpreter(32)
    with Mosquitto(workdir=tmp_path / "broker") as broker:
        broker.login(USER, "charger", "charger-pw")
        code = ("import sys\nfrom mqtt_client import MQTTClient, CONNECT_FAILED\n"
                f"c = MQTTClient('127.0.0.1', {broker.port}, client_id='{USER}', username='{USER}', "
                "password='wrong', auto_reconnect=False)\nc.connect()\n"
                "for _ in range(200):\n"
                "    for ev in c.poll(wait_ms=20):\n"
                "        if ev[0] == CONNECT_FAILED:\n"
                "            print(ev[1]); sys.exit(0)\n"
                "print('no refusal')\n")
        env = dict(os.environ, MICROPYPATH=":".join([".frozen", *map(str, LIB_DIRS)]))
        proc = subprocess.run([mp, "-X", "heapsize=96K", "-c", code], capture_output=True, text=True, env=env,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "not_authorized" in proc.stdout or "bad_user" in proc.stdout, proc.stdout
