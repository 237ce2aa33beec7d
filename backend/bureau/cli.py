"""`bureau` command: run a node, make keys and a genesis, sign operator actions, audit a chain,
migrate the node's database; a driver's wallet and its verified bills (`bureau driver`).

An expected failure (a bad setting or argument, a missing key file or database, an unreachable
node, a refused action) is one line on stderr and exit code 1 (2 for a bad command line or
setting); anything else is a fault and shows its traceback."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .cliparse import CommandError, OneLineParser, int_range

OPERATOR_TIMEOUT_S = 30.0
GRACEFUL_STOP_S = 5  # a stopping node's wait for its HTTP connections (a stack's stop allows it 10 s)
ISSUE_BINDING_CODE = "issue-binding-code"  # makes the code here and signs issue_binding_code with its key
BINDING_VALID_MAX_H = 7 * 24 - 1  # the ledger takes at most 7 days after the block time; an hour spare for clocks


def _run(args) -> int:
    from .config import Settings
    settings = Settings.from_env(node_id=args.node_id, data_dir=args.data_dir, genesis=args.genesis,
                                 db_url=args.db_url, mqtt_port=args.mqtt_port, http_port=args.http_port)
    import uvicorn

    from .api.app import create_app
    from .logfmt import configure
    from .node import Node
    from .runtime import freeze_startup_heap, tune_for_serving
    from .supervisor import EXIT_FAILED

    tune_for_serving()
    configure(settings.log_format)
    http = settings.http
    tls = {"ssl_certfile": str(http.tls_cert_file), "ssl_keyfile": str(http.tls_key_file)} if http.tls_cert_file else {}
    node = Node(settings)
    app = create_app(node)
    configure(settings.log_format)  # again: making the app set Litestar's own format on the root logger
    # A stopping node waits at most GRACEFUL_STOP_S for its HTTP connections: an idle TLS client
    # that never answers the close would otherwise hold the stop for asyncio's 30 s.
    server = uvicorn.Server(uvicorn.Config(app, host=http.host, port=http.port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=GRACEFUL_STOP_S, **tls))
    node.supervisor.stop_after_failure(lambda: setattr(server, "should_exit", True))
    node.start()
    freeze_startup_heap()
    try:
        server.run()
    finally:
        node.stop()
    return EXIT_FAILED if node.supervisor.reason is not None else 0


def _join(args) -> int:
    """Load a verified snapshot into the node's empty database, then run the node."""
    from .config import Settings
    from .ledger.genesis import Genesis
    from .tools.join import join
    from .tools.pki import http_verify
    settings = Settings.from_env(node_id=args.node_id, data_dir=args.data_dir, genesis=args.genesis,
                                 db_url=args.db_url, mqtt_port=args.mqtt_port, http_port=args.http_port)
    token_file = args.token_file or settings.http.operator_token_file
    if token_file is None:
        raise CommandError("the snapshot is operator only: give --token-file (or BUREAU_HTTP_OPERATOR_TOKEN_FILE)", 2)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    join(Genesis.load(settings.genesis), settings.database_url, args.source, args.cross_check or [],
         Path(token_file).read_text().strip(), http_verify(args.ca_file) if args.ca_file else True)
    return _run(args)


def _ingest_worker(args) -> int:
    import signal

    from .config import Settings
    from .ingest.worker import IngestWorker
    from .logfmt import configure
    from .supervisor import EXIT_FAILED
    settings = Settings.from_env(node_id=args.node_id, genesis=args.genesis, mqtt_port=args.mqtt_port,
                                 worker_id=args.worker_id, worker_node=args.node)
    configure(settings.log_format)
    worker = IngestWorker(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    worker.run()
    return EXIT_FAILED if worker.supervisor.failed.is_set() else 0


def _keygen(args) -> int:
    from .crypto import load_or_create_key
    key = load_or_create_key(Path(args.out))
    print(key.verify_key.encode().hex())
    return 0


def action_args(action: str, words: list[str]) -> dict:
    """The arguments of `action` from the command line: one JSON object, or `key=value` words
    (a value is read as its argument's kind: an integer, a comma-separated list, a JSON object
    or `@file` holding one). CommandError for a key the action does not take or one it lacks."""
    from .ledger.tx import ACTIONS
    spec = ACTIONS[action]
    if len(words) == 1 and words[0].lstrip().startswith("{"):
        args = _json(words[0], "the arguments")
        if not isinstance(args, dict):
            raise CommandError("the arguments must be one JSON object", 2)
    else:
        args = {}
        for word in words:
            key, sep, value = word.partition("=")
            if not sep:
                raise CommandError(f"argument {word!r} is not key=value (or give one JSON object)", 2)
            if key in spec:
                args[key] = _typed(key, spec[key].kind, value)
            else:
                args[key] = value
    unknown = sorted(set(args) - set(spec))
    if unknown:
        raise CommandError(f"{action} takes {', '.join(spec)}; not {', '.join(unknown)}", 2)
    missing = [k for k, a in spec.items() if a.required and k not in args]
    if missing:
        raise CommandError(f"{action} needs {', '.join(missing)}", 2)
    return args


def _typed(key: str, kind: str, value: str):
    if kind == "integer":
        try:
            return int(value)
        except ValueError:
            raise CommandError(f"{key} must be an integer, not {value!r}", 2) from None
    if kind == "list":
        items = _json(value, key) if value.lstrip().startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(items, list):
            raise CommandError(f"{key} must be a list", 2)
        return items
    if kind == "object":
        if value.startswith("@"):
            try:
                value = Path(value[1:]).read_text()
            except OSError as e:
                raise CommandError(f"{key}: cannot read {value[1:]}: {e.strerror}", 2) from None
        obj = _json(value, key)
        if not isinstance(obj, dict):
            raise CommandError(f"{key} must be a JSON object", 2)
        return obj
    return value


def _json(text: str, what: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CommandError(f"invalid JSON in {what}: {e.msg} (line {e.lineno}, column {e.colno})", 2) from None


def _binding_code_action(args) -> tuple[str, dict, str]:
    """issue-binding-code: (action, its arguments, what to print once it commits)."""
    from datetime import datetime, timezone

    from .ledger import binding
    from .ledger.tx import ID_RE
    if args.args:
        raise CommandError(f"{ISSUE_BINDING_CODE} takes --wallet and --valid-hours, not {' '.join(args.args)}", 2)
    if not args.wallet or not ID_RE.match(args.wallet):
        raise CommandError(f"{ISSUE_BINDING_CODE} needs --wallet, a wallet id of 1-32 of A-Z a-z 0-9 . _ -", 2)
    code = binding.new_code()
    expires = int(time.time()) + args.valid_hours * 3600
    until = datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {"wallet_id": args.wallet, "binding_key": binding.binding_key(args.wallet, code).hex(), "expires": expires}
    return "issue_binding_code", fields, (f"binding code for wallet {args.wallet}: {binding.display(code)}\n"
                                          f"valid until {until} ({expires}); give it to the driver, it is not kept")


def _operator(args) -> int:
    import httpx

    from .crypto import load_key
    from .ledger.tx import operator_action
    from .tools.actions import submit_action, wait_committed
    from .tools.pki import http_verify
    shown = None
    if args.action == ISSUE_BINDING_CODE:
        action, fields, shown = _binding_code_action(args)
    else:
        action, fields = args.action, action_args(args.action, args.args)
    key = load_key(Path(args.key))
    tx = operator_action(key, args.operator, action, fields)
    verify = http_verify(args.ca_file and Path(args.ca_file))
    try:
        tx_hash = submit_action(args.node, tx, verify)
        (height,) = wait_committed(args.node, [tx_hash], args.timeout, verify, key=key, operator_id=args.operator)
    except (httpx.TransportError, httpx.InvalidURL) as e:
        raise CommandError(f"cannot reach the node at {args.node}: {e or type(e).__name__}") from None
    print(f"{action} committed at height {height} (tx {tx_hash})")
    if shown is not None:
        print(shown)
    return 0


def _approve_validators(args) -> int:
    """One validator's approval of a validator-set change, as change_validators' approvals list takes it."""
    from .crypto import load_key
    from .ledger.genesis import Genesis
    from .ledger.valset import approve
    change = _typed("change", "object", args.change)
    key = load_key(Path(args.key))
    print(json.dumps(approve(key, args.validator, Genesis.load(Path(args.genesis)).chain_id, change)))
    return 0


def _verify_chain(args) -> int:
    from .ledger.audit import audit_chain
    from .ledger.genesis import Genesis
    from .storage.existing import open_existing
    from .tools.progress import ProgressBar
    genesis = Genesis.load(Path(args.genesis))
    repo = open_existing(args.db)
    bar = ProgressBar()
    try:
        started = time.perf_counter()
        report = audit_chain(genesis, repo, jobs=args.jobs, progress=bar)
    finally:
        bar.close()
        repo.close()
    report["seconds"] = round(time.perf_counter() - started, 3)
    report["jobs"] = args.jobs
    print(json.dumps(report))
    return 0 if report["chain_valid"] else 1


def _db(args) -> int:
    from .config import Settings
    from .storage import migrate
    from .storage.repository import make_engine
    url = args.db_url or Settings.from_env(data_dir=args.data_dir and Path(args.data_dir)).database_url
    sqlite_path = url.removeprefix("sqlite:///").split("?", 1)[0] if url.startswith("sqlite:///") else None
    if sqlite_path is not None and not Path(sqlite_path).is_file():  # a mistyped path must not become a new database
        raise CommandError(f"database {sqlite_path} does not exist", 1)
    engine = make_engine(url)
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
                               peer_port=args.peer_port, mqtt_port=args.mqtt_port,
                               install_dir=args.install_dir and Path(args.install_dir),
                               data_dir=args.data_dir and Path(args.data_dir))
    except ValueError as e:
        raise CommandError(f"bad_arguments: {e}", 2) from None
    print(json.dumps({"genesis": str(Path(args.dir) / "genesis.json"), "chain_id": genesis["chain_id"],
                      "validators": [{"id": v["id"], "address": v["address"], "api": v["api"]}
                                     for v in genesis["validators"]],
                      "ca": str(Path(args.dir) / "ca" / "ca.crt")}))
    return 0


def _broker_sync(args) -> int:
    import logging
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
        raise CommandError(f"no_secret: {layout.charger_secret} does not exist (bureau init-network)", 2)

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


def _actions_help() -> str:
    from .ledger.tx import ACTIONS
    lines = ["actions and their arguments (key=value, or one JSON object):"]
    for action, spec in ACTIONS.items():
        lines.append(f"  {action}")
        for key, arg in spec.items():
            shape = {"integer": "N", "list": "A,B,...", "object": "JSON|@FILE"}.get(arg.kind, "TEXT")
            lines.append(f"    {key}={shape}{'' if arg.required else ' (optional)'}: {arg.help}")
    lines.append(f"  {ISSUE_BINDING_CODE} --wallet W [--valid-hours H]: a new binding code for the wallet's "
                 f"driver, printed once and never stored (its binding key goes on chain by issue_binding_code)")
    lines.append("example: bureau operator --node URL --key operator.key --operator operator-1 "
                 "top_up wallet_id=W-1001 amount_fen=5000 reference=bank:7731")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    from .ledger.tx import ACTIONS
    from .tools.network import DEFAULT_HTTP_PORT, DEFAULT_MQTT_PORT, DEFAULT_PEER_PORT
    p = OneLineParser(prog="bureau", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a bureau node (settings from BUREAU_* and these flags; docs/settings.md)")
    r.add_argument("--node-id")
    r.add_argument("--data-dir")
    r.add_argument("--genesis")
    r.add_argument("--db-url")
    r.add_argument("--mqtt-port", type=int_range(1, 65535))
    r.add_argument("--http-port", type=int_range(1, 65535))
    r.set_defaults(fn=_run)
    j = sub.add_parser("join", help="join from a snapshot of a running node's state, then run the node "
                                    "(docs/consensus.md, Joining from a snapshot)")
    for flag in ("--node-id", "--data-dir", "--genesis", "--db-url"):
        j.add_argument(flag)
    j.add_argument("--mqtt-port", type=int_range(1, 65535))
    j.add_argument("--http-port", type=int_range(1, 65535))
    j.add_argument("--from", dest="source", required=True, metavar="NODE_URL", help="the node whose snapshot to load")
    j.add_argument("--cross-check", action="append", metavar="NODE_URL",
                   help="another node whose history digest at the snapshot's height must be the same (repeatable)")
    j.add_argument("--token-file", help="the operator token (default: BUREAU_HTTP_OPERATOR_TOKEN_FILE)")
    j.add_argument("--ca-file", help="the network's CA certificate to verify the nodes' HTTPS against")
    j.set_defaults(fn=_join)
    w = sub.add_parser("ingest-worker", help="take a share of a bureau's receipts from the broker, verify them and "
                                             "hand them to the node (docs/ingest-workers.md)")
    w.add_argument("--node-id", help="the bureau the worker works for (BUREAU_NODE_ID)")
    w.add_argument("--genesis")
    w.add_argument("--worker-id", help="BUREAU_WORKER_ID")
    w.add_argument("--node", help="host:port of the node's worker link (BUREAU_WORKER_NODE)")
    w.add_argument("--mqtt-port", type=int_range(1, 65535))
    w.set_defaults(fn=_ingest_worker)
    k = sub.add_parser("keygen", help="make an Ed25519 key file (kept if it exists); prints the public key")
    k.add_argument("--out", required=True)
    k.set_defaults(fn=_keygen)
    o = sub.add_parser("operator", help="sign an operator action, submit it to a node and wait for its block",
                       description="Sign an operator action, submit it to a node, and wait until a block "
                                   "commits it (prints the height) or refuses it (prints the reason, exit 1).",
                       epilog=_actions_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--node", required=True, help="node API base URL")
    o.add_argument("--key", required=True, help="the operator's key file (must exist)")
    o.add_argument("--operator", required=True, help="the operator's id in the genesis")
    o.add_argument("--ca-file", help="the network's CA certificate to verify the node's HTTPS against "
                                     "(default: the system's CAs)")
    o.add_argument("--timeout", type=int_range(1, 3600), default=int(OPERATOR_TIMEOUT_S),
                   help="seconds to wait for the block (default %(default)s)")
    o.add_argument("--wallet", help="issue-binding-code: the wallet the code binds a phone to")
    o.add_argument("--valid-hours", type=int_range(1, BINDING_VALID_MAX_H), default=72,
                   help="issue-binding-code: hours the code is valid (default %(default)s)")
    o.add_argument("action", choices=[*ACTIONS, ISSUE_BINDING_CODE], metavar="ACTION",
                   help=", ".join([*ACTIONS, ISSUE_BINDING_CODE]))
    o.add_argument("args", nargs="*", metavar="ARG", help="key=value, or one JSON object")
    o.set_defaults(fn=_operator)
    a = sub.add_parser("approve-validators", help="sign a validator's approval of a validator-set change; prints "
                                                  "{validator, signature} for change_validators (docs/consensus.md)")
    a.add_argument("--key", required=True, help="the validator's node key file")
    a.add_argument("--validator", required=True, help="the validator's id in the set in force")
    a.add_argument("--genesis", required=True, help="the chain's genesis file")
    a.add_argument("--change", required=True, help="the change document: JSON, or @file holding it")
    a.set_defaults(fn=_approve_validators)
    v = sub.add_parser("verify-chain", help="re-verify a stored chain from genesis; prints a JSON report")
    v.add_argument("--genesis", required=True)
    v.add_argument("--db", "--db-url", dest="db", required=True, metavar="PATH_OR_URL",
                   help="a node's SQLite file (opened read-only) or a database URL")
    v.add_argument("--jobs", type=int_range(1, 1024), default=1,
                   help="processes checking signatures, each with its own database connection (default 1: "
                        "the state replay in this process is the bound, and on 2 cores more jobs measured slower)")
    v.set_defaults(fn=_verify_chain)
    d = sub.add_parser("db", help="the node database's schema revision (current), or migrate it (upgrade); JSON")
    d.add_argument("db_cmd", choices=["current", "upgrade"])
    d.add_argument("--db-url", help="default: BUREAU_DB_URL, else the SQLite file in the data folder")
    d.add_argument("--data-dir")
    d.add_argument("--to", default="head", help="revision to upgrade to (default: head)")
    d.set_defaults(fn=_db)
    n = sub.add_parser("init-network", help="make node keys, an operator key and the genesis of a new network")
    n.add_argument("--dir", required=True)
    n.add_argument("--nodes", type=int_range(1, 100), default=1)
    n.add_argument("--chain-id", default="ev-bureau-dev")
    n.add_argument("--hosts", help="h1,h2,...: the address (IP or DNS name) each node serves on, one per node "
                                   "(default: 127.0.0.1 for all); they go into the genesis and the certificates")
    n.add_argument("--http-port", type=int_range(1, 65535), default=DEFAULT_HTTP_PORT,
                   help="API port (nodes sharing a host count up)")
    n.add_argument("--peer-port", type=int_range(1, 65535), default=DEFAULT_PEER_PORT,
                   help="peer port (nodes sharing a host count up)")
    n.add_argument("--mqtt-port", type=int_range(1, 65535), default=DEFAULT_MQTT_PORT, help="the broker's TLS port")
    n.add_argument("--install-dir", help="the folder the network directory is copied to on the hosts (e.g. "
                                         "/etc/bureau/net): the paths bureau.env and mosquitto.conf name (default: --dir)")
    n.add_argument("--data-dir", help="each node's data folder on its host (e.g. /var/lib/bureau; default: its "
                                      "folder in the network directory)")
    n.set_defaults(fn=_init_network)
    b = sub.add_parser("broker-sync", help="keep the broker's charger logins those of the committed registry "
                                           "(rewrites the password file and ACL, then SIGHUP to mosquitto)")
    b.add_argument("--node", required=True, help="a bureau node's API base URL")
    b.add_argument("--ca-file", help="the network's CA certificate to verify the node's HTTPS against")
    b.add_argument("--net", required=True, help="the network directory of init-network (broker/access, charger-secret)")
    b.add_argument("--pid-file", required=True, help="mosquitto's pid file")
    b.add_argument("--interval", type=float, default=1.0, help="seconds between looks at the node's head")
    b.set_defaults(fn=_broker_sync)
    from .drivercli import add_parser as add_driver_parser
    add_driver_parser(sub)
    from .chargerqr import add_parser as add_charger_parser
    add_charger_parser(sub)
    from .ocpp.cli import add_parser as add_ocpp_parser
    add_ocpp_parser(sub)
    from .ocpi.cli import add_parser as add_ocpi_parser
    add_ocpi_parser(sub)
    return p


def _expected_failure(e: BaseException) -> tuple[str, int] | None:
    """(one line, exit code) for the failures an operator can fix; None for a fault."""
    from .config import SettingsError
    from .crypto import KeyFileError
    from .ledger.genesis import GenesisError
    from .node import NodeKeyMismatch
    from .storage.existing import NoChain
    from .storage.migrate import MigrationError
    from .storage.repository import StateRootMismatch
    from .tools.actions import ActionRefused
    from .ledger.snapshot import SnapshotError
    if isinstance(e, SnapshotError):
        return f"snapshot refused: {e.reason}: {e.detail}", 1
    if isinstance(e, CommandError):
        return str(e), e.code
    if isinstance(e, SettingsError):
        return str(e), 2
    if isinstance(e, ActionRefused):
        return f"refused: {e.reason}: {e.detail}", 1
    if isinstance(e, FileNotFoundError):
        return f"{e.filename}: no such file", 1
    if isinstance(e, KeyFileError):
        return e.detail, 1
    if isinstance(e, (GenesisError, NoChain, TimeoutError, MigrationError, NodeKeyMismatch,
                      StateRootMismatch)):
        return str(e), 1
    return None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except Exception as e:
        failure = _expected_failure(e)
        if failure is None:
            raise
        print(f"bureau {args.cmd}: {failure[0]}", file=sys.stderr)
        return failure[1]


if __name__ == "__main__":
    sys.exit(main())
