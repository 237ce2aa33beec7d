"""Node settings: one typed dataclass, read once from the environment (BUREAU_*)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    node_id: str = "bureau-1"
    data_dir: Path = Path("var/bureau-1")
    genesis: Path = Path("var/genesis.json")
    key_file: Path | None = None  # default: <data_dir>/node.key
    db_url: str = ""  # default: SQLite file in data_dir
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 8080
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
