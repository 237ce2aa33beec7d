"""Ingest worker processes (`bureau ingest-worker`) for one bureau of a Stack: their keys, the
node's keys file, their broker logins, and what each says it took (its stats lines)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from bureau.crypto import load_or_create_key
from bureau.tools.mosquitto import free_port
from bureau.tools.stack import Stack

STATS = re.compile(r"worker (\S+): received (\d+) handed (\d+) refused (\d+) replies (\d+) dropped (\d+)")


class WorkerProcess:
    def __init__(self, stack: Stack, node_id: str, worker_id: str, node_address: str, key_file: Path) -> None:
        self.worker_id, self.log_path = worker_id, stack.root / f"{node_id}.{worker_id}.log"
        user, password = stack.broker.login_worker(node_id, worker_id)
        self.env = dict(os.environ) | {
            "BUREAU_NODE_ID": node_id, "BUREAU_GENESIS": str(stack.genesis_path),
            "BUREAU_DATA_DIR": str(key_file.parent), "BUREAU_MQTT_PORT": str(stack.broker.port),
            "BUREAU_MQTT_PASSWORD": password, "BUREAU_WORKER_ID": worker_id, "BUREAU_WORKER_NODE": node_address,
            "BUREAU_WORKER_KEY_FILE": str(key_file)}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "bureau.cli", "ingest-worker"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def stats(self) -> dict[str, int]:
        """The last counts the worker logged (received, handed, refused, replies, dropped)."""
        found = STATS.findall(self.log_path.read_text()) if self.log_path.exists() else []
        if not found:
            return dict.fromkeys(("received", "handed", "refused", "replies", "dropped"), 0)
        _, *counts = found[-1]
        return dict(zip(("received", "handed", "refused", "replies", "dropped"), map(int, counts)))


def worker_node_env(stack: Stack, node_id: str, worker_ids: list[str]) -> tuple[dict, dict[str, Path]]:
    """The node's BUREAU_WORKER_* (a listener on a free port, the keys file) and each worker's key
    file; call after `stack.prepare()` and launch the node with the env."""
    folder = stack.root / "workers" / node_id
    folder.mkdir(parents=True, exist_ok=True)
    keys = {w: folder / f"{w}.key" for w in worker_ids}
    lines = [f"{w} {load_or_create_key(path).verify_key.encode().hex()}\n" for w, path in keys.items()]
    (folder / "workers.keys").write_text("".join(lines))
    env = {"BUREAU_WORKER_LISTEN": f"127.0.0.1:{free_port()}", "BUREAU_WORKER_KEYS_FILE": str(folder / "workers.keys")}
    return env, keys
