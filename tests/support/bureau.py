"""An in-process bureau node for integration tests, with its API behind Litestar's TestClient."""

from __future__ import annotations

import json
import queue
import secrets
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from litestar.testing import TestClient
from nacl.signing import SigningKey

from bureau.api.app import create_app
from bureau.api.auth import authorization_header
from bureau.config import Settings
from bureau.crypto import load_or_create_key
from bureau.ledger.tx import operator_action
from bureau.node import Node
from bureau.tools.mosquitto import Mosquitto
from bureau.tools.network import init_network


class TestBureau:
    __test__ = False

    def __init__(self, tmp: Path, broker: Mosquitto, db_url: str | None = None) -> None:
        net = tmp / "net"
        init_network(net, 1)
        self.operator_key = load_or_create_key(net / "operator.key")
        user, password = broker.login_bureau("bureau-1")
        self.operator_token = secrets.token_urlsafe(32)  # bearer of /metrics and the dashboard's login
        (net / "operator.token").write_text(self.operator_token + "\n")
        # (the test's own BUREAU_* variables, such as BUREAU_AUTHZ_*, apply as they do to a node)
        self.settings = Settings.from_env(node_id="bureau-1", data_dir=net / "bureau-1", genesis=net / "genesis.json",
                                          db_url=db_url or "", mqtt_port=broker.port, mqtt_username=user,
                                          mqtt_password=password, block_interval_ms=50, mqtt_tls=broker.tls is not None,
                                          mqtt_ca_file=broker.ca_file, http_operator_token_file=net / "operator.token")
        self.node = Node(self.settings)
        self.node.start()
        self.client = TestClient(create_app(self.node))
        self.client.__enter__()

    @property
    def genesis(self) -> dict:
        """The genesis document (GET /v1/genesis): what a charger is provisioned from."""
        return self.node.chain.genesis.doc

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.node.stop()

    def operator(self, action: str, args: dict, timeout: float = 10.0) -> dict:
        tx = operator_action(self.operator_key, "operator-1", action, args)
        resp = self.client.post("/v1/operator/actions", json={"tx": tx.hex()})
        assert resp.status_code == 202, resp.text
        h = resp.json()["tx_hash"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.operator_get(f"/v1/operator/actions/{h}").json()
            if status["status"] != "pending":
                return status
            time.sleep(0.02)
        raise TimeoutError(f"{action} not committed in {timeout}s")

    def operator_get(self, path: str):
        """GET an operator-only endpoint with a request signed by the genesis operator."""
        hdr = authorization_header(self.operator_key, "operator-1", "GET", path, node_id=self.settings.node_id,
                                   principal="operator")
        return self.client.get(path, headers={"Authorization": hdr})

    def driver_get(self, key: SigningKey, wallet_id: str, path: str):
        return self.client.get(path, headers={"Authorization": authorization_header(key, wallet_id, "GET", path, node_id=self.settings.node_id)})


class ReplyListener:
    """Subscribes to chargers' reply topics and collects the JSON replies; publishes as any
    charger would (a fleet login)."""

    def __init__(self, broker: Mosquitto, topic: str = "ev/v1/charger/+/reply", user: str = "test-listener",
                 role: str = "fleet") -> None:
        self.messages: queue.Queue = queue.Queue()
        user, password = broker.login(user, role)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user)
        self.client.username_pw_set(user, password)
        subscribed = queue.Queue()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, json.loads(m.payload)))
        self.client.on_subscribe = lambda *a: subscribed.put(True)
        if broker.ca_file is not None:  # a TLS-only broker
            self.client.tls_set(ca_certs=str(broker.ca_file))
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        subscribed.get(timeout=5)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def next(self, timeout: float = 10.0) -> tuple[str, dict]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
