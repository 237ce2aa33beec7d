"""`bureau broker-sync` as the systemd unit runs it, a process of its own beside a real node: once
a charger's enrollment commits, the charger is in the broker's registry with its derived login
and the broker is told to reload (SIGHUP to the pid in its pid file); SIGTERM ends it with 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from nacl.signing import SigningKey

from bureau.tools.mosquitto import BrokerAccess
from bureau.tools.stack import Stack
from tests.support.waiting import wait_for

# stands in for mosquitto: counts the SIGHUPs it gets in a file
RELOAD_COUNTER = """
import signal, sys, time
count = 0
def hup(*_):
    global count
    count += 1
    open(sys.argv[1], "w").write(str(count))
signal.signal(signal.SIGHUP, hup)
while True:
    time.sleep(0.1)
"""


def _wait(condition, what: str, timeout: float = 60.0):
    return wait_for(condition, what, timeout, poll=0.1)


def test_broker_sync_follows_the_registry_and_reloads_the_broker(tmp_path):
    stack = Stack(tmp_path / "stack", nodes_count=1, tls=True).start()
    hups = tmp_path / "hups"
    broker = subprocess.Popen([sys.executable, "-c", RELOAD_COUNTER, str(hups)])
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(f"{broker.pid}\n")
    net = stack.root / "net"
    sync = None
    try:
        sync = subprocess.Popen([sys.executable, "-m", "bureau.cli", "broker-sync", "--node", stack.nodes[0].url,
                                 "--ca-file", str(stack.ca_file), "--net", str(net), "--pid-file", str(pid_file),
                                 "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        key = SigningKey.generate()
        stack.operator([("enroll_charger", {"charger_id": "GZ-SYNC-1", "public_key": key.verify_key.encode().hex()})])
        access_dir = net / "broker" / "access"
        _wait(lambda: "GZ-SYNC-1" in BrokerAccess(access_dir).chargers and sync.poll() is None,
              "the enrolled charger never reached the broker's registry")
        _wait(lambda: hups.exists() and int(hups.read_text() or 0) >= 1, "the broker was never told to reload")
        assert "GZ-SYNC-1" in (access_dir / "passwd").read_text()
        sync.send_signal(signal.SIGTERM)
        out, _ = sync.communicate(timeout=30)
        assert sync.returncode == 0, out
        assert "Traceback" not in out, out
    finally:
        if sync is not None and sync.poll() is None:
            sync.kill()
        broker.kill()
        broker.wait()
        stack.stop()
