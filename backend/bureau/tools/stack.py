"""Run a local stack as real processes: a mosquitto broker and bureau node processes on
loopback ports, each node with its own data directory. Used by `just demo`, `just up`, the
benchmarks and the multi-process tests.

With `tls` the broker's listener and every node's API speak TLS only, with the certificates of
the network's CA (bureau.tools.network); `verify` is what clients check them with. With
`registry_logins` the chargers' broker logins are the chargers of the committed registry
(bureau.tools.broker_registry): a charger logs in only once its enrollment commits."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from ..config import Settings
from ..crypto import load_key
from ..ledger.tx import operator_action
from .actions import Verify, operator_get, submit_action, wait_committed
from .mosquitto import Mosquitto, free_port
from .broker_registry import RegistryFollower, charger_password
from .httpclient import close_idle_connections, shared_client
from .network import NetworkLayout, init_network, load_or_create_secret
from .pki import http_verify

OPERATOR_ID = "operator-1"  # the operator init_network names in the genesis


@dataclass
class NodeProcess:
    node_id: str
    data_dir: Path
    http_port: int
    env: dict
    log_path: Path
    proc: subprocess.Popen | None = None
    tls: bool = False
    verify: Verify = True  # httpx's verify for this node's API
    command: tuple[str, ...] = ("run",)  # the `bureau` command and its flags (e.g. join --from URL)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.http_port}"

    @property
    def settings(self) -> Settings:
        """The settings the node reads from its environment (its database, ports...)."""
        return Settings.from_env(self.env)

    def start(self) -> None:
        # Its own process group: a Ctrl-C on the terminal reaches only the script running the
        # stack, which stops the nodes in order, and a stop reaches whatever a node started.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "bureau.cli", *self.command], env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_healthy(self, timeout: float = 120.0) -> dict:
        """The first /healthz answer. Ends at once when the process exits; the deadline is
        generous because a node starting beside busy peers on a loaded machine gets a small
        share of the CPU (about 1 s of CPU to start, 3 s idle, over 15 s seen under load)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"{self.node_id} exited with {self.proc.returncode}; log:\n"
                                   f"{self.log_path.read_text()[-3000:]}")
            try:
                return shared_client(self.verify).get(self.url + "/healthz", timeout=1.0).json()
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.node_id} not healthy after {timeout}s")
                time.sleep(0.1)

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:  # (already gone)
            pass

    def kill(self) -> None:
        """kill -9: no chance to flush or say goodbye."""
        if self.proc and self.proc.poll() is None:
            self._signal_group(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            close_idle_connections(self.url)  # (else a TLS node waits for them to answer its close)
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class StackInUse(RuntimeError):
    """Another running stack holds this data directory."""


@contextmanager
def signals_deferred():
    """Ctrl-C and SIGTERM arriving inside wait until the block is done, then take their usual
    course: an interrupted run still stops every process it started."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = {s: signal.signal(s, lambda n, _frame: caught.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in held.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if caught:
            signal.raise_signal(caught[0])


@dataclass
class Stack:
    root: Path
    nodes_count: int = 1
    broker: Mosquitto | None = None
    nodes: list[NodeProcess] = field(default_factory=list)
    db_urls: dict[str, str] = field(default_factory=dict)
    tls: bool = False
    mqtt_tls: bool | None = None  # the broker's TLS when it differs from the API's
    registry_logins: bool = False
    registry: "RegistryFollower | None" = None
    _lock: IO | None = field(default=None, init=False, repr=False)  # the flock on the data directory

    @property
    def layout(self) -> NetworkLayout:
        return NetworkLayout(self.root / "net")

    @property
    def ca_file(self) -> Path | None:
        return self.layout.ca_cert if self.tls else None

    @property
    def verify(self) -> Verify:
        """httpx's verify for the nodes' APIs: the network's CA under TLS."""
        return http_verify(self.ca_file)

    def start(self, extra_env: dict | None = None, node_env: dict[str, dict] | None = None) -> "Stack":
        return self.prepare().launch(extra_env, node_env)

    def prepare(self) -> "Stack":
        """Keys, genesis and the broker; nodes are launched by `launch`. The data directory is
        locked (flock on `stack.lock` in it) until `stop`: StackInUse if another stack has it."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._claim_root()
        init_network(self.root / "net", self.nodes_count, peer_ports=[free_port() for _ in range(self.nodes_count)],
                     http_ports=[free_port() for _ in range(self.nodes_count)])
        if not self.operator_token_path.exists():
            fd = os.open(self.operator_token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
        broker_tls = self.tls if self.mqtt_tls is None else self.mqtt_tls
        # (kept before it starts: `stop` must see it)
        self.broker = Mosquitto(workdir=self.root / "broker", tls=self.layout.broker_tls if broker_tls else None)
        self.broker.start()
        return self

    def _claim_root(self) -> None:
        if self._lock is not None:
            return
        lock = open(self.root / "stack.lock", "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise StackInUse(f"{self.root} is in use by {holder}; stop it first, or use another directory") from None
        lock.truncate(0)
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        self._lock = lock

    def broker_login(self, client_id: str, *, role: str = "charger") -> tuple[str, str]:
        """(username, password) for a charger (its charger id is its user name and client id),
        or with `role="fleet"` for a load generator speaking for many chargers. Made on first
        call and kept under the stack's root, so a restarted stack hands out the same; the
        running broker takes a new login without a restart. With `registry_logins` a charger's
        login is its derived password, which the broker takes only while the committed registry
        holds the charger."""
        if self.registry_logins and role == "charger":
            return client_id, charger_password(load_or_create_secret(self.layout.charger_secret), client_id)
        return self.broker.login(client_id, role)

    @property
    def genesis(self) -> dict:
        return json.loads(self.genesis_path.read_text())

    def launch(self, extra_env: dict | None = None, node_env: dict[str, dict] | None = None,
               healthy_timeout: float = 120.0) -> "Stack":
        net = self.root / "net"
        for v in self.genesis["validators"]:
            data_dir = net / v["id"]
            port = int(v["api"].rsplit(":", 1)[1])  # where the genesis says the node serves
            mqtt_user, mqtt_password = self.broker.login_bureau(v["id"])
            env = dict(os.environ)
            env.update({
                "BUREAU_NODE_ID": v["id"], "BUREAU_DATA_DIR": str(data_dir), "BUREAU_GENESIS": str(net / "genesis.json"),
                "BUREAU_MQTT_PORT": str(self.broker.port), "BUREAU_MQTT_USERNAME": mqtt_user,
                "BUREAU_MQTT_PASSWORD": mqtt_password, "BUREAU_HTTP_PORT": str(port),
                "BUREAU_DB_URL": self.db_urls.get(v["id"], ""),
                "BUREAU_HTTP_OPERATOR_TOKEN_FILE": str(self.operator_token_path),
            })
            api = self.layout.api_tls(v["id"])
            if self.broker.tls:
                env.update({"BUREAU_MQTT_TLS": "true", "BUREAU_MQTT_CA_FILE": str(api.ca_file)})
            if self.tls:
                env.update({"BUREAU_HTTP_TLS_CERT_FILE": str(api.cert_file), "BUREAU_HTTP_TLS_KEY_FILE": str(api.key_file),
                            "BUREAU_HTTP_CA_FILE": str(api.ca_file)})
            env.update(extra_env or {})
            env.update((node_env or {}).get(v["id"], {}))
            node = NodeProcess(v["id"], data_dir, port, env, self.root / f"{v['id']}.log", tls=self.tls,
                               verify=self.verify)
            Settings.from_env(env)  # a bad setting fails here, naming it, rather than in a node log
            node.start()
            self.nodes.append(node)
        try:
            for node in self.nodes:
                node.wait_healthy(healthy_timeout)
            if self.registry_logins and self.registry is None:
                self.registry = RegistryFollower(self.nodes[0].url, self.broker.access,
                                                 load_or_create_secret(self.layout.charger_secret),
                                                 on_change=self.broker.reload, verify=self.verify).start()
        except BaseException:  # the caller gets no stack to stop: leave no process behind
            self.stop()
            raise
        return self

    def heights(self) -> list[int | None]:
        out = []
        for n in self.nodes:
            try:
                out.append(shared_client(self.verify).get(n.url + "/v1/chain/head", timeout=5).json()["height"]
                           if n.alive else None)
            except httpx.HTTPError:
                out.append(None)
        return out

    @property
    def genesis_path(self) -> Path:
        return self.root / "net" / "genesis.json"

    @property
    def operator_token_path(self) -> Path:
        """The operator token every node of this stack takes (bearer for /metrics, the dashboard's login)."""
        return self.root / "net" / "operator.token"

    @property
    def operator_token(self) -> str:
        return self.operator_token_path.read_text().strip()

    @property
    def operator_key(self):
        return load_key(self.root / "net" / "operator.key")

    def submit(self, action: str, args: dict, node: int = 0) -> str:
        return submit_action(self.nodes[node].url, operator_action(self.operator_key, OPERATOR_ID, action, args),
                             self.verify)

    def wait_committed(self, tx_hashes: list[str], node: int = 0, timeout: float = 30.0) -> list[int]:
        n = self.nodes[node]
        return wait_committed(n.url, tx_hashes, timeout, self.verify, key=self.operator_key, operator_id=OPERATOR_ID,
                              node_id=n.node_id)

    def operator_get(self, path: str, node: int = 0) -> httpx.Response:
        """GET an operator-only endpoint (/metrics, action status, /dashboard/data), signed."""
        n = self.nodes[node]
        return operator_get(n.url, path, self.operator_key, OPERATOR_ID, n.node_id, self.verify)

    def operator(self, actions: list[tuple[str, dict]], node: int = 0) -> None:
        self.wait_committed([self.submit(a, args, node) for a, args in actions], node)

    def stop(self) -> None:
        """The registry follower, every node, the broker, then the lock on the data directory; a
        signal arriving meanwhile waits until all are stopped."""
        with signals_deferred():
            if self.registry:
                self.registry.stop()
                self.registry = None
            for node in self.nodes:
                node.stop()
            if self.broker:
                self.broker.close()
            if self._lock is not None:
                self._lock.close()  # (closing releases the flock)
                self._lock = None
