"""The shared HTTP client (bureau.tools.httpclient): one per verify setting, its keep-alive
connection reused, and a request after the server restarted still answered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bureau.tools import httpclient
from bureau.tools.httpclient import close_shared_clients, shared_client
from bureau.tools.mosquitto import free_port
from bureau.tools.pki import http_verify, issue_server_cert, make_ca

# An HTTP/1.1 keep-alive server that answers who asked: the client's port (the same port is the
# same connection), its own pid, and the Cookie header it got after setting one.
SERVER = r"""
import json, os, ssl, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({"client_port": self.client_address[1], "pid": os.getpid(),
                           "cookie": self.headers.get("Cookie")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "session=kept; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
if cert:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
"""


class Server:
    def __init__(self, port: int, cert: Path | None, key: Path | None) -> None:
        self.args = [sys.executable, "-c", SERVER, str(port), str(cert or ""), str(key or "")]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def fresh_clients(monkeypatch):
    """No shared client made before the test, none left after it; connections kept a minute, so
    that a slow machine does not expire the one the test looks at."""
    close_shared_clients()
    monkeypatch.setattr(httpclient, "KEEPALIVE_EXPIRY_S", 60.0)
    yield
    close_shared_clients()


def test_one_client_per_verify_setting(tmp_path, fresh_clients):
    make_ca(tmp_path / "ca.pem", tmp_path / "ca.key", "test CA")
    make_ca(tmp_path / "other.pem", tmp_path / "other.key", "other CA")
    network = shared_client(http_verify(tmp_path / "ca.pem"))
    assert shared_client() is shared_client(True)
    assert shared_client(False) is shared_client(False)
    assert network is shared_client(http_verify(tmp_path / "ca.pem"))  # one context per CA file
    clients = [shared_client(True), shared_client(False), network, shared_client(http_verify(tmp_path / "other.pem"))]
    assert len({id(c) for c in clients}) == 4
    with pytest.raises(TypeError, match="bool or an ssl.SSLContext"):
        shared_client(str(tmp_path / "ca.pem"))
    close_shared_clients()
    assert network.is_closed and shared_client(http_verify(tmp_path / "ca.pem")) is not network


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_connection_reused_and_server_restart_survived(tmp_path, fresh_clients, tls):
    cert = key = None
    verify = False
    if tls:
        make_ca(tmp_path / "ca.pem", tmp_path / "ca.key", "test CA")
        cert, key = tmp_path / "server.pem", tmp_path / "server.key"
        issue_server_cert(tmp_path / "ca.pem", tmp_path / "ca.key", cert, key, "server", ["127.0.0.1"])
        verify = http_verify(tmp_path / "ca.pem")
    port = free_port()
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
    server = Server(port, cert, key)
    server.start()
    try:
        first = shared_client(verify).get(url, timeout=10).json()
        second = shared_client(verify).get(url, timeout=10).json()
        assert second["client_port"] == first["client_port"]  # the kept-alive connection
        assert second["cookie"] is None  # each request stands alone, as a module-level httpx.get
        server.kill()  # its connection closed under the pooled client
        server.start()
        after = shared_client(verify).get(url, timeout=10).json()
        assert after["pid"] != first["pid"]
    finally:
        server.kill()
