"""Create a new network: node keys, an operator key and the genesis naming them.

`bureau init-network --dir var/net --nodes 4` writes <dir>/genesis.json, <dir>/<node>/node.key
and <dir>/operator.key. Private keys stay in their files (mode 0600); the genesis holds only
public keys.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..crypto import load_or_create_key

DEFAULT_TARIFF = {
    "v": 1, "tariff_id": "GD-2026-A", "version": 1,
    "prices": [[0, 13500, 8000], [1, 11000, 8000], [2, 7000, 8000], [3, 3500, 8000]],
    "schedule": [[0, 3], [480, 2], [600, 1], [690, 2], [1080, 0], [1140, 1], [1380, 3]],
}


def init_network(directory: Path, nodes: int = 1, chain_id: str = "ev-bureau-dev", *, peer_base_port: int = 26600,
                 api_base_port: int = 8080, operator_id: str = "operator-1",
                 peer_ports: list[int] | None = None, api_ports: list[int] | None = None) -> dict:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    existing = directory / "genesis.json"
    if existing.exists():  # a network is made once; its genesis never changes
        return json.loads(existing.read_text())
    validators = []
    for i in range(1, nodes + 1):
        node_id = f"bureau-{i}"
        key = load_or_create_key(directory / node_id / "node.key")
        validators.append({"id": node_id, "public_key": key.verify_key.encode().hex(), "power": 1,
                           "address": f"127.0.0.1:{peer_ports[i - 1] if peer_ports else peer_base_port + i}", "api": f"http://127.0.0.1:{api_ports[i - 1] if api_ports else api_base_port + i}"})
    op_key = load_or_create_key(directory / "operator.key")
    genesis = {"v": 1, "chain_id": chain_id, "genesis_time_ms": int(time.time() * 1000), "validators": validators,
               "operators": [{"id": operator_id, "public_key": op_key.verify_key.encode().hex()}],
               "tariffs": [DEFAULT_TARIFF]}
    (directory / "genesis.json").write_text(json.dumps(genesis, indent=1) + "\n")
    return genesis
