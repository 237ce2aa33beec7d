"""`bureau` command: run a node, make keys and a genesis, sign operator actions, audit a chain,
migrate the node's database."""

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

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings.from_env(node_id=args.node_id, data_dir=args.data_dir and Path(args.data_dir),
                                 genesis=args.genesis and Path(args.genesis), db_url=args.db_url,
                                 mqtt_port=args.mqtt_port, http_port=args.http_port)
    tls = {}
    if settings.http_tls_cert_file or settings.http_tls_key_file:  # HTTPS only; both files or neither
        if not (settings.http_tls_cert_file and settings.http_tls_key_file):
            print("error: http_tls_cert_file and http_tls_key_file are set together", file=sys.stderr)
            return 2
        tls = {"ssl_certfile": str(settings.http_tls_cert_file), "ssl_keyfile": str(settings.http_tls_key_file)}
    node = Node(settings)
    node.start()
    try:
        uvicorn.run(create_app(node), host=settings.http_host, port=settings.http_port, log_level="warning",
                    access_log=False, **tls)
    finally:
        node.stop()
    return 0


def _keygen(args) -> int:
    from .crypto import load_or_create_key
    key = load_or_create_key(Path(args.out))
    print(key.verify_key.encode().hex())
    return 0


def _operator(args) -> int:
    import httpx

    from .crypto import load_or_create_key
    from .ledger.tx import operator_action
    from .tools.pki import http_verify
    key = load_or_create_key(Path(args.key))
    tx = operator_action(key, args.operator, args.action, json.loads(args.args))
    resp = httpx.post(f"{args.node.rstrip('/')}/v1/operator/actions", json={"tx": tx.hex()}, timeout=10,
                      verify=http_verify(args.ca_file and Path(args.ca_file)))
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


def _db(args) -> int:
    from .config import Settings
    from .storage import migrate
    from .storage.repository import make_engine
    engine = make_engine(args.db_url or Settings.from_env(data_dir=args.data_dir and Path(args.data_dir)).database_url)
    try:
        report = {"head": migrate.head()}
        if args.db_cmd == "upgrade":
            started = time.perf_counter()
            report["before"], report["current"] = migrate.upgrade(engine, args.to)
            report["seconds"] = round(time.perf_counter() - started, 3)
        else:
            report["current"] = migrate.current(engine)
    finally:
        engine.dispose()
    report["up_to_date"] = report["current"] == report["head"]
    print(json.dumps(report))
    return 0


def _init_network(args) -> int:
    from .tools.network import init_network
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()] if args.hosts else None
    try:
        genesis = init_network(Path(args.dir), args.nodes, args.chain_id, hosts=hosts, http_port=args.http_port,
                               peer_port=args.peer_port, mqtt_port=args.mqtt_port)
    except ValueError as e:
        print(f"error: bad_arguments: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"genesis": str(Path(args.dir) / "genesis.json"), "chain_id": genesis["chain_id"],
                      "validators": [{"id": v["id"], "address": v["address"], "api": v["api"]}
                                     for v in genesis["validators"]],
                      "ca": str(Path(args.dir) / "ca" / "ca.crt")}))
    return 0


def _broker_sync(args) -> int:
    import os
    import signal
    import threading

    from .tools.broker_registry import RegistryFollower
    from .tools.mosquitto import BrokerAccess
    from .tools.network import NetworkLayout, load_or_create_secret
    from .tools.pki import http_verify

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    layout = NetworkLayout(Path(args.net))
    if not layout.charger_secret.exists():
        print(f"error: no_secret: {layout.charger_secret} does not exist (bureau init-network)", file=sys.stderr)
        return 2

    def reload_broker() -> None:  # SIGHUP: mosquitto re-reads its password file and ACL
        os.kill(int(Path(args.pid_file).read_text().split()[0]), signal.SIGHUP)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    follower = RegistryFollower(args.node, BrokerAccess(layout.broker_access), load_or_create_secret(layout.charger_secret),
                                on_change=reload_broker, verify=http_verify(args.ca_file and Path(args.ca_file)),
                                interval_s=args.interval).start()
    done.wait()
    follower.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    from .ledger.tx import ACTIONS
    from .tools.network import DEFAULT_HTTP_PORT, DEFAULT_MQTT_PORT, DEFAULT_PEER_PORT
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
    o.add_argument("--ca-file", help="the network's CA certificate to verify the node's HTTPS against "
                                     "(default: the system's CAs)")
    o.add_argument("action", choices=sorted(ACTIONS))
    o.add_argument("args", help="JSON object of the action's arguments")
    o.set_defaults(fn=_operator)
    v = sub.add_parser("verify-chain", help="re-verify a stored chain from genesis; prints a JSON report")
    v.add_argument("--genesis", required=True)
    v.add_argument("--db-url", required=True)
    v.set_defaults(fn=_verify_chain)
    d = sub.add_parser("db", help="the node database's schema revision (current), or migrate it (upgrade); JSON")
    d.add_argument("db_cmd", choices=["current", "upgrade"])
    d.add_argument("--db-url", help="default: BUREAU_DB_URL, else the SQLite file in the data folder")
    d.add_argument("--data-dir")
    d.add_argument("--to", default="head", help="revision to upgrade to (default: head)")
    d.set_defaults(fn=_db)
    n = sub.add_parser("init-network", help="make node keys, an operator key and the genesis of a new network")
    n.add_argument("--dir", required=True)
    n.add_argument("--nodes", type=int, default=1)
    n.add_argument("--chain-id", default="ev-bureau-dev")
    n.add_argument("--hosts", help="h1,h2,...: the address (IP or DNS name) each node serves on, one per node "
                                   "(default: 127.0.0.1 for all); they go into the genesis and the certificates")
    n.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, help="API port (nodes sharing a host count up)")
    n.add_argument("--peer-port", type=int, default=DEFAULT_PEER_PORT, help="peer port (nodes sharing a host count up)")
    n.add_argument("--mqtt-port", type=int, default=DEFAULT_MQTT_PORT, help="the broker's TLS port")
    n.set_defaults(fn=_init_network)
    b = sub.add_parser("broker-sync", help="keep the broker's charger logins those of the committed registry "
                                           "(rewrites the password file and ACL, then SIGHUP to mosquitto)")
    b.add_argument("--node", required=True, help="a bureau node's API base URL")
    b.add_argument("--ca-file", help="the network's CA certificate to verify the node's HTTPS against")
    b.add_argument("--net", required=True, help="the network directory of init-network (broker/access, charger-secret)")
    b.add_argument("--pid-file", required=True, help="mosquitto's pid file")
    b.add_argument("--interval", type=float, default=1.0, help="seconds between looks at the node's head")
    b.set_defaults(fn=_broker_sync)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
