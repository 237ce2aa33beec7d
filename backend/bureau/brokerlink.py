"""A node's connection to the MQTT broker: a paho client with the node's settings, the worker
threads that serve it, and one start/stop path. Ingest and authorization each own one."""

from __future__ import annotations

import logging
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)


class BrokerLink:
    def __init__(self, *, host: str, port: int, client_id: str, username: str | None, password: str | None,
                 clean_session: bool, threads: list[threading.Thread], name: str, tls: bool = False,
                 ca_file: Path | None = None) -> None:
        self.host, self.port, self.name = host, port, name
        self._stop = threading.Event()
        self._threads = threads
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=clean_session)
        if username:
            self.client.username_pw_set(username, password)
        if tls:  # the broker's certificate must chain to the CA and name the host
            self.client.tls_set(ca_certs=str(ca_file) if ca_file else None, cert_reqs=ssl.CERT_REQUIRED,
                                tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.reconnect_delay_set(0.2, 5)
        self.client.on_disconnect = self._on_disconnect
        self.disconnects = 0  # connections lost since start (broker restart, network, takeover)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            self.disconnects += 1
            log.warning("%s lost its broker connection (%s); reconnecting", self.name, reason_code)

    def start(self, timeout: float = 10.0) -> None:
        for t in self._threads:
            t.start()
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise RuntimeError(f"{self.name} could not connect to the MQTT broker at {self.host}:{self.port}")

    def stop(self) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()
        for t in self._threads:
            t.join(2)
