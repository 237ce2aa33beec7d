"""`just up` with simulated chargers (scripts/up.py as a process, with its own mosquitto and
bureau node, its API and its broker over TLS only, charger logins from the registry): the
chargers are enrolled with their keys and speak MQTT over TLS (the firmware's client on
chargerhost's `tls`), a plain MQTT client gets no CONNACK, sessions run in a loop, receipts
reach the chain, and the script stops cleanly on SIGINT and on SIGTERM; a second run on the
same data finds its chargers and wallets already there and carries on."""

from __future__ import annotations

import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bureau.api.auth import authorization_header
from bureau.crypto import load_or_create_key
from bureau.tools.httpclient import shared_client
from bureau.tools.mosquitto import connack_code
from bureau.tools.pki import http_verify

ROOT = Path(__file__).resolve().parents[2]
API = re.compile(r"bureau-1: API (https://127\.0\.0\.1:\d+)")
BROKER = re.compile(r"mosquitto: 127\.0\.0\.1:(\d+) \(TLS only\)")
PROGRESS = re.compile(r"receipts sent (\d+), acked (\d+), pending (\d+); height (\d+)")


def _bills(url: str, data: Path) -> int:
    """Receipts in the wallets' histories, read by their drivers through the API (HTTPS, its
    certificate verified against the network's CA)."""
    bills = 0
    verify = http_verify(data / "net" / "ca" / "ca.crt")
    node_id = httpx.get(url + "/healthz", timeout=10, verify=verify).json()["node_id"]  # requests are signed for one bureau
    for key_file in sorted((data / "drivers").glob("*.key")):
        wallet = key_file.stem
        key = load_or_create_key(key_file)
        path = f"/v1/wallets/{wallet}/history?limit=100"
        r = shared_client(verify).get(url + path, timeout=10, headers={
            "Authorization": authorization_header(key, wallet, "GET", path, node_id=node_id)})
        r.raise_for_status()
        bills += sum(1 for e in r.json()["entries"] if e["kind"] == "receipt")
    return bills


def _plain_mqtt_answered(port: int) -> bool:
    """Whether the broker answers a plain (not TLS) MQTT CONNECT."""
    try:
        connack_code(port, "plain-probe", "x", timeout=5)
    except (ConnectionError, OSError):
        return False
    return True


def _run_until_acked(data: Path, sig: int, db: str = "sqlite") -> tuple[list[str], int, int]:
    """Run up.py until a receipt is acked; count the committed bills; check that the broker
    does not speak plain MQTT; stop it with `sig`."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "up.py"), "--nodes", "1", "--chargers", "2",
                             "--speed", "5000", "--dir", str(data), "--db", db], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    seen: list[str] = []
    url = broker_port = None
    try:
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline, "no acked receipt in time:\n" + "".join(seen[-30:])
            assert proc.poll() is None, "up.py exited early:\n" + "".join(seen[-30:])
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            api = API.search(line)
            if api:
                url = api.group(1)
            broker = BROKER.search(line)
            if broker:
                broker_port = int(broker.group(1))
            m = PROGRESS.search(line)
            if m and int(m.group(2)) >= 1:
                break
        bills = _bills(url, data)
        assert broker_port is not None, "".join(seen[-30:])
        assert not _plain_mqtt_answered(broker_port)  # the chargers that acked spoke TLS
        proc.send_signal(sig)
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.2)
    while not lines.empty():
        seen.append(lines.get())
    return seen, rc, bills


def test_up_with_chargers_commits_receipts_and_stops_on_sigint_and_sigterm(tmp_path):
    data = tmp_path / "up"
    out, rc, bills = _run_until_acked(data, signal.SIGINT)
    assert rc == 0, "".join(out[-20:])
    assert bills >= 1  # acked means committed: the driver sees the bill
    assert any("enrolled with their keys, on MQTT over TLS" in x for x in out)
    assert any(x.startswith("stopping: ") for x in out)
    assert "Traceback" not in "".join(out)

    # again on the same data: enrolled chargers and open wallets are found, sessions go on
    out2, rc2, bills2 = _run_until_acked(data, signal.SIGTERM)
    assert rc2 == 0, "".join(out2[-20:])
    assert "Traceback" not in "".join(out2)
    assert len(list((data / "drivers").glob("*.key"))) == 2
    assert bills2 > bills


def test_up_on_postgres_keeps_the_chain_in_its_own_cluster_and_stops_it():
    # a folder the server's own user can reach when the tests run as root (tmp_path is 0700)
    data = Path(tempfile.mkdtemp(prefix="up-pg-"))
    data.chmod(0o755)
    try:
        _up_on_postgres(data)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _up_on_postgres(data: Path) -> None:
    out, rc, bills = _run_until_acked(data, signal.SIGTERM, db="postgres")
    assert rc == 0, "".join(out[-20:])
    assert bills >= 1 and "Traceback" not in "".join(out)
    assert any(x.startswith("postgresql: 127.0.0.1:") for x in out)
    assert any("database postgresql+psycopg://postgres@127.0.0.1:" in x and "/bureau_1" in x for x in out)
    assert (data / "postgres" / "data" / "PG_VERSION").exists()
    assert not (data / "postgres" / "data" / "postmaster.pid").exists(), "the cluster was left running"
    assert not list((data / "net" / "bureau-1").glob("ledger.db*"))

    out2, rc2, bills2 = _run_until_acked(data, signal.SIGTERM, db="postgres")  # the same cluster, the same chain
    assert rc2 == 0, "".join(out2[-20:])
    assert bills2 > bills
