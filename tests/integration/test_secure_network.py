"""A network as `just up` runs it: the broker's listener and the node's API speak TLS only,
with certificates of the network's CA, and a charger's broker login exists exactly while the
committed registry holds the charger (bureau.tools.broker_registry): refused before its
enrollment commits, accepted after, refused again once it is retired. Over that TLS broker a
charger's receipt is committed and acked."""

import json
import queue
import socket
import ssl
import time

import httpx
import paho.mqtt.client as mqtt
import pytest
from cryptography import x509

from bureau.receipts.ack import verify_ack
from bureau.receipts.codec import receipt_id
from bureau.tools.stack import Stack
from tests.support.fleet import WALLET, fleet_receipts
from tests.support.waiting import wait_for

ACCEPTED = 0


def _wait(condition, what: str, timeout: float = 60.0):
    return wait_for(condition, what, timeout, poll=0.05)


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path, nodes_count=1, tls=True, registry_logins=True).start()
    yield s
    s.stop()


def test_api_serves_tls_that_verifies_against_the_network_ca(stack):
    node = stack.nodes[0]
    assert node.url.startswith("https://")
    assert httpx.get(node.url + "/healthz", verify=stack.verify, timeout=10).status_code == 200
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(node.url + "/healthz", timeout=10)  # the system's CAs do not know the network's CA
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"http://127.0.0.1:{node.http_port}/healthz", timeout=10)  # no plain HTTP
    ctx = ssl.create_default_context(cafile=str(stack.ca_file))
    with socket.create_connection(("127.0.0.1", node.http_port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert json.loads(stack.genesis_path.read_text())["validators"][0]["api"] == node.url


def test_charger_login_follows_the_registry_and_its_receipt_is_acked_over_tls(stack):
    keys, receipts, _ = fleet_receipts(1, 1)
    (cid, key), = keys.items()
    login = stack.broker_login(cid)
    broker = stack.broker
    assert broker.connack(*login) != ACCEPTED  # not enrolled: no login
    with pytest.raises(ssl.SSLError):  # only TLS, and only with a certificate the CA signed
        with socket.create_connection(("127.0.0.1", broker.port)) as raw:
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")

    stack.operator([("enroll_charger", {"charger_id": cid, "public_key": key.verify_key.encode().hex()}),
                    ("open_wallet", {"wallet_id": WALLET, "public_key": key.verify_key.encode().hex()}),
                    ("top_up", {"wallet_id": WALLET, "amount_fen": 10**6, "reference": "bank:tls"})])
    _wait(lambda: broker.connack(*login) == ACCEPTED, "the enrolled charger's login is not accepted")

    # the charger itself, over TLS: its receipt is committed and the node's signed ack comes back
    inbox: queue.Queue = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid)
    c.username_pw_set(*login)
    c.tls_set(ca_certs=str(stack.ca_file))
    connected: queue.Queue = queue.Queue()
    c.on_connect = lambda cl, u, f, rc, p: (connected.put(rc), cl.subscribe(f"ev/v1/charger/{cid}/reply", qos=1))
    c.on_message = lambda cl, u, m: inbox.put(m.payload)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        assert not connected.get(timeout=10).is_failure
        _, envelope = receipts[0]
        deadline = time.monotonic() + 60
        acked = None
        while acked is None:
            assert time.monotonic() < deadline, "no ack for the receipt"
            c.publish(f"ev/v1/charger/{cid}/receipt", envelope, qos=1)
            try:
                payload = inbox.get(timeout=2)
            except queue.Empty:
                continue
            genesis = stack.genesis
            acked = verify_ack(payload, genesis["chain_id"],
                               {v["id"]: bytes.fromhex(v["public_key"]) for v in genesis["validators"]})
        assert acked["receipt"] == receipt_id(envelope) and acked["charger"] == cid
    finally:
        c.loop_stop()
        c.disconnect()

    stack.operator([("retire_charger", {"charger_id": cid})])
    _wait(lambda: broker.connack(*login) != ACCEPTED, "the retired charger's login still works")
    charger = httpx.get(f"{stack.nodes[0].url}/v1/chargers/{cid}", verify=stack.verify, timeout=10).json()
    assert charger["retired"] is True
