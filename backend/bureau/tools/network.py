"""Create a new network: node keys, an operator key, the genesis naming them, a certificate
authority with the TLS certificates of the broker and of every node's API, and the secret the
chargers' broker passwords are derived from.

`bureau init-network --dir var/net --nodes 4 [--hosts h1,h2,h3,h4]` writes (docs/broker.md, "TLS"):

    genesis.json                   validators (peer and API addresses), operators, tariff
    operator.key                   the operator's Ed25519 seed
    ca/ca.crt, ca/ca.key           the network's root CA (ECDSA P-256)
    broker/server.crt, .key        the broker's TLS certificate (127.0.0.1, localhost, every host)
    broker/charger-secret          the key of the chargers' broker passwords (bureau.tools.broker_registry)
    broker/mosquitto.conf          the broker's configuration: TLS listener on --mqtt-port, no anonymous
    broker/access/                 its password file and ACL (credentials.json: the bureaus' logins)
    bureau-<i>/node.key            node i's Ed25519 seed
    bureau-<i>/api.crt, api.key    node i's API certificate (127.0.0.1, localhost, its host)
    bureau-<i>/bureau.env          node i's settings (BUREAU_*: addresses, TLS files, broker login)

Private keys and the secret are mode 0600; the genesis holds only public keys. Node i serves on
hosts[i-1] (127.0.0.1 without --hosts); nodes sharing a host take consecutive ports from the
base ports, nodes on hosts of their own all use the base ports. The broker runs on the first
host. bureau.env holds the node's broker password: it is 0600 too.

The paths in bureau.env and mosquitto.conf are where the files are: under `--dir`, or, with
`install_dir` (`--install-dir`), under the folder the network directory is copied to on every
host (e.g. /etc/bureau/net, deploy/systemd); `data_dir` (`--data-dir`) puts each node's
database and consensus journal in a folder of its own (e.g. /var/lib/bureau), its key staying
in the network directory (BUREAU_KEY_FILE).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from ..crypto import load_or_create_key
from .mosquitto import BrokerAccess, broker_config, bureau_username
from .pki import TlsFiles, issue_server_cert, make_ca

DEFAULT_TARIFF = {
    "v": 1, "tariff_id": "GD-2026-A", "version": 1,
    "prices": [[0, 13500, 8000], [1, 11000, 8000], [2, 7000, 8000], [3, 3500, 8000]],
    "schedule": [[0, 3], [480, 2], [600, 1], [690, 2], [1080, 0], [1140, 1], [1380, 3]],
}
LOOPBACK = ["127.0.0.1", "localhost"]
DEFAULT_HTTP_PORT = 8081
DEFAULT_PEER_PORT = 26601
DEFAULT_MQTT_PORT = 8883


class NetworkLayout:
    """Where init_network puts each file of a network directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.genesis = self.dir / "genesis.json"
        self.operator_key = self.dir / "operator.key"
        self.ca_cert = self.dir / "ca" / "ca.crt"
        self.ca_key = self.dir / "ca" / "ca.key"
        self.charger_secret = self.dir / "broker" / "charger-secret"
        self.broker_conf = self.dir / "broker" / "mosquitto.conf"
        self.broker_access = self.dir / "broker" / "access"
        self.broker_tls = TlsFiles(self.ca_cert, self.dir / "broker" / "server.crt", self.dir / "broker" / "server.key")

    def node_dir(self, node_id: str) -> Path:
        return self.dir / node_id

    def api_tls(self, node_id: str) -> TlsFiles:
        return TlsFiles(self.ca_cert, self.dir / node_id / "api.crt", self.dir / node_id / "api.key")


def node_addresses(nodes: int, hosts: list[str] | None, base_port: int,
                   ports: list[int] | None = None) -> list[tuple[str, int]]:
    """(host, port) of each node: `ports` when given, else the base port plus the number of
    earlier nodes on the same host."""
    hosts = hosts or ["127.0.0.1"] * nodes
    if len(hosts) != nodes:
        raise ValueError(f"{len(hosts)} hosts for {nodes} nodes: name one host per node")
    if ports is not None:
        return list(zip(hosts, ports))
    return [(h, base_port + hosts[:i].count(h)) for i, h in enumerate(hosts)]


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def load_or_create_secret(path: Path) -> bytes:
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return bytes.fromhex(path.read_text().strip())


def init_network(directory: Path, nodes: int = 1, chain_id: str = "ev-bureau-dev", *,
                 hosts: list[str] | None = None, http_port: int = DEFAULT_HTTP_PORT,
                 peer_port: int = DEFAULT_PEER_PORT, mqtt_port: int = DEFAULT_MQTT_PORT,
                 operator_id: str = "operator-1",
                 peer_ports: list[int] | None = None, http_ports: list[int] | None = None,
                 install_dir: Path | None = None, data_dir: Path | None = None) -> dict:
    """Make the network in `directory` (see the module doc) and return its genesis. A network
    is made once: an existing genesis is returned as it is, and existing keys and certificates
    are kept."""
    layout = NetworkLayout(directory)
    layout.dir.mkdir(parents=True, exist_ok=True)
    if layout.genesis.exists():  # a network is made once; its genesis never changes
        return json.loads(layout.genesis.read_text())
    peers = node_addresses(nodes, hosts, peer_port, peer_ports)
    apis = node_addresses(nodes, hosts, http_port, http_ports)
    make_ca(layout.ca_cert, layout.ca_key, f"{chain_id} CA")
    broker = layout.broker_tls
    issue_server_cert(layout.ca_cert, layout.ca_key, broker.cert_file, broker.key_file, f"{chain_id} broker",
                      LOOPBACK + list(hosts or []))
    load_or_create_secret(layout.charger_secret)
    validators = []
    for i in range(1, nodes + 1):
        node_id = f"bureau-{i}"
        key = load_or_create_key(layout.node_dir(node_id) / "node.key")
        (peer_host, peer), (api_host, api) = peers[i - 1], apis[i - 1]
        tls = layout.api_tls(node_id)
        issue_server_cert(layout.ca_cert, layout.ca_key, tls.cert_file, tls.key_file, f"{chain_id} {node_id}",
                          LOOPBACK + [api_host])
        validators.append({"id": node_id, "public_key": key.verify_key.encode().hex(), "power": 1,
                           "address": _host_port(peer_host, peer), "api": f"https://{_host_port(api_host, api)}"})
    op_key = load_or_create_key(layout.operator_key)
    genesis = {"v": 1, "chain_id": chain_id, "genesis_time_ms": int(time.time() * 1000), "validators": validators,
               "operators": [{"id": operator_id, "public_key": op_key.verify_key.encode().hex()}],
               "tariffs": [DEFAULT_TARIFF]}
    placed = _Placement(layout.dir, install_dir, data_dir)
    _write_deployment(layout, placed, validators, apis, (hosts or ["127.0.0.1"])[0], mqtt_port)
    layout.genesis.write_text(json.dumps(genesis, indent=1) + "\n")
    return genesis


class _Placement:
    """Where a file of the network directory is on the hosts that run it."""

    def __init__(self, directory: Path, install_dir: Path | None, data_dir: Path | None) -> None:
        self.made = Path(directory).resolve()
        self.installed = Path(install_dir) if install_dir is not None else self.made
        self.data_dir = Path(data_dir) if data_dir is not None else None

    def __call__(self, path: Path) -> Path:
        return self.installed / Path(path).resolve().relative_to(self.made)


def _write_deployment(layout: NetworkLayout, placed: _Placement, validators: list[dict], apis: list[tuple[str, int]],
                      broker_host: str, mqtt_port: int) -> None:
    """The broker's configuration with a login per bureau, and each node's settings."""
    access = BrokerAccess(layout.broker_access)
    tls = layout.broker_tls
    layout.broker_conf.write_text(broker_config(mqtt_port, bind=None, passwd_file=placed(access.passwd_path),
                                                acl_file=placed(access.acl_path), run_as=None,
                                                tls=TlsFiles(*(placed(f) for f in (tls.ca_file, tls.cert_file,
                                                                                    tls.key_file)))))
    for v, (api_host, api_port) in zip(validators, apis):
        node_id = v["id"]
        (_, password), _ = access.add(bureau_username(node_id, "ingest"), "ingest")
        access.add(bureau_username(node_id, "authz"), "authz", password)
        api = layout.api_tls(node_id)
        node_dir = layout.node_dir(node_id)
        env = {"BUREAU_NODE_ID": node_id, "BUREAU_DATA_DIR": placed.data_dir or placed(node_dir),
               "BUREAU_KEY_FILE": placed(node_dir / "node.key"),
               "BUREAU_GENESIS": placed(layout.genesis), "BUREAU_HTTP_HOST": api_host,
               "BUREAU_HTTP_PORT": api_port, "BUREAU_HTTP_TLS_CERT_FILE": placed(api.cert_file),
               "BUREAU_HTTP_TLS_KEY_FILE": placed(api.key_file), "BUREAU_MQTT_HOST": broker_host,
               "BUREAU_MQTT_PORT": mqtt_port, "BUREAU_MQTT_TLS": "true", "BUREAU_MQTT_CA_FILE": placed(api.ca_file),
               "BUREAU_MQTT_USERNAME": node_id, "BUREAU_MQTT_PASSWORD": password}
        fd = os.open(layout.node_dir(node_id) / "bureau.env", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{k}={val}\n" for k, val in env.items()))
