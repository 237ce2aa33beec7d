"""`bureau` command: run a node, make keys and a genesis, sign operator actions, audit a chain."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path


def _run(args) -> int:
    import uvicorn

    from .api.app import create_app
    from .config import Settings
    from .node import Node
    from .supervisor import EXIT_FAILED

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings.from_env(node_id=args.node_id, data_dir=args.data_dir and Path(args.data_dir),
                                 genesis=args.genesis and Path(args.genesis), db_url=args.db_url,
                                 mqtt_port=args.mqtt_port, http_port=args.http_port)
    node = Node(settings)
    server = uvicorn.Server(uvicorn.Config(create_app(node), host=settings.http_host, port=settings.http_port,
                                           log_level="warning", access_log=False))
    node.supervisor.stop_after_failure(lambda: setattr(server, "should_exit", True))
    node.start()
    try:
        server.run()
    finally:
        node.stop()
    return EXIT_FAILED if node.supervisor.reason is not None else 0


def _keygen(args) -> int:
    from .crypto import load_or_create_key
    key = load_or_create_key(Path(args.out))
    print(key.verify_key.encode().hex())
    return 0


def _operator(args) -> int:
    import httpx

    from .crypto import load_or_create_key
    from .ledger.tx import operator_action
    key = load_or_create_key(Path(args.key))
    tx = operator_action(key, args.operator, args.action, json.loads(args.args))
    resp = httpx.post(f"{args.node.rstrip('/')}/v1/operator/actions", json={"tx": tx.hex()}, timeout=10)
    print(resp.text)
    return 0 if resp.status_code == 202 else 1


def _verify_chain(args) -> int:
    from .ledger.audit import audit_chain
    from .ledger.genesis import Genesis
    from .storage import Repository
    started = time.perf_counter()
    report = audit_chain(Genesis.load(Path(args.genesis)), Repository(args.db_url))
    report["seconds"] = round(time.perf_counter() - started, 3)
    print(json.dumps(report))
    return 0 if report["chain_valid"] else 1


def _init_network(args) -> int:
    from .tools.network import init_network
    genesis = init_network(Path(args.dir), args.nodes, args.chain_id)
    print(json.dumps({"genesis": str(Path(args.dir) / "genesis.json"), "chain_id": genesis["chain_id"],
                      "validators": [v["id"] for v in genesis["validators"]]}))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bureau", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a bureau node (settings from BUREAU_* and these flags)")
    r.add_argument("--node-id")
    r.add_argument("--data-dir")
    r.add_argument("--genesis")
    r.add_argument("--db-url")
    r.add_argument("--mqtt-port", type=int)
    r.add_argument("--http-port", type=int)
    r.set_defaults(fn=_run)
    k = sub.add_parser("keygen", help="make an Ed25519 key file (kept if it exists); prints the public key")
    k.add_argument("--out", required=True)
    k.set_defaults(fn=_keygen)
    o = sub.add_parser("operator", help="sign an operator action and submit it to a node")
    o.add_argument("--node", required=True, help="node API base URL")
    o.add_argument("--key", required=True)
    o.add_argument("--operator", required=True)
    o.add_argument("action", choices=["enroll_charger", "open_wallet", "top_up", "publish_tariff"])
    o.add_argument("args", help="JSON object of the action's arguments")
    o.set_defaults(fn=_operator)
    v = sub.add_parser("verify-chain", help="re-verify a stored chain from genesis; prints a JSON report")
    v.add_argument("--genesis", required=True)
    v.add_argument("--db-url", required=True)
    v.set_defaults(fn=_verify_chain)
    n = sub.add_parser("init-network", help="make node keys, an operator key and the genesis of a new network")
    n.add_argument("--dir", required=True)
    n.add_argument("--nodes", type=int, default=1)
    n.add_argument("--chain-id", default="ev-bureau-dev")
    n.set_defaults(fn=_init_network)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
