"""The local part of docs/runbook.md, followed as written: `bureau init-network` for four nodes,
mosquitto over TLS with the broker files it made, four `bureau run` processes each with nothing
but its generated bureau.env, all four ready (`/readyz` over HTTPS verified against the
network's CA), and an action sent with `bureau operator` committed and seen by every node."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bureau.tools.httpclient import shared_client
from bureau.tools.mosquitto import BrokerAccess, Mosquitto, free_port
from bureau.tools.network import NetworkLayout
from bureau.tools.pki import http_verify
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
NODES = 4


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def consecutive_free_ports(n: int) -> int:
    """A base port with the n ports from it free on loopback: nodes sharing a host count up."""
    while True:
        base = free_port()
        if base + n < 65536 and all(_bindable(base + i) for i in range(n)):
            return base


def bureau(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bureau.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def _wait(condition, what: str, timeout: float = 120.0):
    return wait_for(condition, what, timeout, poll=0.2)


@pytest.fixture
def network(tmp_path):
    net = tmp_path / "net"
    http, peer, mqtt = consecutive_free_ports(NODES), consecutive_free_ports(NODES), free_port()
    made = bureau("init-network", "--dir", str(net), "--nodes", str(NODES), "--http-port", str(http),
                  "--peer-port", str(peer), "--mqtt-port", str(mqtt))
    assert made.returncode == 0, made.stderr
    layout = NetworkLayout(net)
    conf = layout.broker_conf.read_text()
    assert f"listener {mqtt}" in conf and "allow_anonymous false" in conf and "certfile" in conf
    # the generated broker files, on loopback (the broker of a host listens on every interface)
    broker = Mosquitto(port=mqtt, workdir=tmp_path / "mosquitto", tls=layout.broker_tls)
    broker.access = BrokerAccess(layout.broker_access)
    broker.start()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("BUREAU_")}
    procs = []
    try:
        for i in range(1, NODES + 1):
            env = {**base_env, **env_file(net / f"bureau-{i}" / "bureau.env")}
            log = open(tmp_path / f"bureau-{i}.log", "wb")
            procs.append(subprocess.Popen([sys.executable, "-m", "bureau.cli", "run"], cwd=ROOT, env=env,
                                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        yield net, [f"https://127.0.0.1:{http + i}" for i in range(NODES)], procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        broker.stop()


def test_the_local_network_of_the_runbook_comes_up_and_commits_an_operator_action(network, tmp_path):
    net, urls, procs = network
    ca = str(net / "ca" / "ca.crt")
    verify = http_verify(Path(ca))

    def ready(url: str) -> bool:
        assert all(p.poll() is None for p in procs), "a node exited: " + " | ".join(
            (tmp_path / f"bureau-{i + 1}.log").read_text()[-500:] for i, p in enumerate(procs) if p.poll() is not None)
        try:
            return shared_client(verify).get(url + "/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    for url in urls:
        _wait(lambda: ready(url), f"{url}/readyz is not 200")
    sent = bureau("operator", "--node", urls[0], "--ca-file", ca, "--key", str(net / "operator.key"),
                  "--operator", "operator-1", "open_wallet", "wallet_id=W-RUNBOOK", "public_key=" + "ab" * 32)
    assert sent.returncode == 0, sent.stderr
    height = int(sent.stdout.split("committed at height ")[1].split()[0])
    for url in urls:  # every bureau has the block, and the wallet in its state
        _wait(lambda: shared_client(verify).get(url + "/v1/chain/head", timeout=5).json()["height"] >= height,
              f"{url} did not reach height {height}")

