"""A TLS node and the shared HTTP client's kept-alive connections: the node still stops by
SIGTERM (not killed after the stop's deadline), and a request after its restart is answered;
nor can a client that holds a TLS connection and never answers the close hold the stop."""

from __future__ import annotations

import signal
import socket
from urllib.parse import urlsplit

from bureau.tools.httpclient import shared_client
from bureau.tools.stack import Stack


def test_a_tls_node_stops_and_restarts_under_the_shared_clients_connections(tmp_path):
    stack = Stack(tmp_path, nodes_count=1, tls=True, mqtt_tls=False).start()
    try:
        node = stack.nodes[0]
        http = shared_client(stack.verify)
        before = http.get(node.url + "/v1/chain/head", timeout=10).json()
        http.get(node.url + "/healthz", timeout=10)  # (one kept-alive connection, idle now)
        node.stop()
        assert node.proc.returncode != -signal.SIGKILL, "the node was killed: it did not stop in time"
        node.start()
        node.wait_healthy()
        after = http.get(node.url + "/v1/chain/head", timeout=10).json()
        assert after["genesis_hash"] == before["genesis_hash"]
    finally:
        stack.stop()


def test_an_idle_tls_client_that_never_answers_cannot_hold_a_node_s_stop(tmp_path):
    stack = Stack(tmp_path, nodes_count=1, tls=True, mqtt_tls=False).start()
    try:
        node = stack.nodes[0]
        url = urlsplit(node.url)
        raw = socket.create_connection((url.hostname, url.port), timeout=10)
        held = stack.verify.wrap_socket(raw, server_hostname=url.hostname)  # handshake done, then silence
        try:
            node.stop()  # SIGTERM; killed when it has not stopped within 10 s
            assert node.proc.returncode != -signal.SIGKILL, "the node was killed: the idle client held its stop"
        finally:
            held.close()
    finally:
        stack.stop()
