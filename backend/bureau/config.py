"""Node settings: one typed dataclass, read once from the environment (BUREAU_*)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

# A node's connections to the MQTT broker. Each logs in as `<mqtt_username>.<link>`: with
# use_username_as_clientid on the broker that name is also its client id, so the links never
# take over each other's connection, and the ACL gives each only its own topics (docs/broker.md).
BROKER_LINKS = ("ingest", "authz")


@dataclass(frozen=True)
class Settings:
    node_id: str = "bureau-1"
    data_dir: Path = Path("var/bureau-1")
    genesis: Path = Path("var/genesis.json")
    key_file: Path | None = None  # default: <data_dir>/node.key
    db_url: str = ""  # default: SQLite file in data_dir
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str = ""  # the node's broker login; default: the node id (see BROKER_LINKS)
    mqtt_password: str | None = None  # one password for all of the node's links; None: no password
    mqtt_tls: bool = False  # TLS to the broker, its certificate verified (docs/broker.md, "TLS")
    mqtt_ca_file: Path | None = None  # the CA the broker's certificate must chain to; None: the system's
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    http_tls_cert_file: Path | None = None  # with the key file: the API serves HTTPS only
    http_tls_key_file: Path | None = None
    block_interval_ms: int = 200  # gathering time between blocks
    peer_listen: str = ""  # default: this node's address in the genesis
    peer_addresses: str = ""  # "id=host:port,..." to dial instead of the genesis addresses
    shared_subscription: bool = True  # bureaus sharing one broker split the receipts between them
    max_block_txs: int = 5000
    mempool_limit: int = 200_000
    auth_window_s: int = 120

    @property
    def peer_address_map(self) -> dict[str, str] | None:
        if not self.peer_addresses:
            return None
        return dict(item.split("=", 1) for item in self.peer_addresses.split(",") if item)

    def mqtt_login(self, link: str) -> tuple[str, str | None]:
        """(user name, password) of one of the node's broker links; the user name is its client id."""
        if link not in BROKER_LINKS:
            raise ValueError(f"unknown broker link {link!r}; links are {', '.join(BROKER_LINKS)}")
        return f"{self.mqtt_username or self.node_id}.{link}", self.mqtt_password

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'ledger.db'}"

    @property
    def node_key_file(self) -> Path:
        return self.key_file or self.data_dir / "node.key"

    @classmethod
    def from_env(cls, env=os.environ, **overrides) -> "Settings":
        values = {}
        for f in fields(cls):
            raw = env.get("BUREAU_" + f.name.upper())
            if raw is None:
                continue
            if f.type in ("int",):
                values[f.name] = int(raw)
            elif f.type == "bool":
                values[f.name] = raw.lower() in ("1", "true", "yes")
            elif "Path" in str(f.type):
                values[f.name] = Path(raw)
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
