"""`just up`: run mosquitto and the bureau node(s) on loopback until interrupted (Ctrl-C or
SIGTERM), optionally with simulated chargers that run the charger firmware's own glue.

The network is secure by default (docs/broker.md, "TLS"): the API serves HTTPS with a
certificate of the network's CA (var/up/net/ca/ca.crt), the broker listens on TLS only and
takes no anonymous client, and a charger's broker login exists only while the committed
registry holds the charger.

With `--chargers N`, N simulated chargers (firmware/host/chargerhost) boot with bureau.json
made from GET /v1/genesis and the tariff in force and are enrolled with their keys by operator
actions before they connect (their broker login works only once that commits); they speak
MQTT over TLS with the network's CA pinned, through the firmware's own client; each gets a
driver with a card and a wallet (opened and topped up by operator actions). Then every charger runs sessions in a loop:
the card is tapped and authorized online by the bureau through the firmware's authorization
flow, the vehicle charges for a while in simulated time, the driver presses stop, the receipt
goes out. A progress line shows receipts sent, acked and pending and the chain's height.

Simulated time runs at most `--speed` times real time and starts a week back, so receipts never
carry times ahead of the real clock. Data stays in var/up/ between runs; remove that folder for
a fresh chain.

With `--db postgres` (or DB=postgres in the environment) the nodes keep their chains in a local
PostgreSQL cluster of their own, one database per node, kept in var/up/postgres and stopped on
exit; the default is one SQLite file per node in its data folder."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx

from bureau.api.auth import authorization_header
from bureau.cliparse import OneLineParser, int_range
from bureau.crypto import load_or_create_key
from bureau.tools.enroll import enrolled_key
from bureau.tools.httpclient import shared_client
from bureau.tools.postgres import PostgresCluster
from bureau.tools.stack import Stack, StackInUse

WEEK_S = 7 * 86400
TOP_UP_FEN = 10_000_000  # 100 000 CNY a run: the loop never runs a wallet dry
SESSION_MINUTES = (20, 35, 50)  # charging before the driver stops, by charger
PROGRESS_S = 1.0


class Driver:
    """One simulated charger with its driver's card and wallet, and where its loop stands."""

    def __init__(self, charger, index: int, root: Path, speed: float) -> None:
        self.charger = charger
        self.wallet = f"W-{charger.charger_id}"
        self.card = f"04{index + 1:012X}"
        self.key = load_or_create_key(root / "drivers" / f"{self.wallet}.key")  # the driver's phone key
        self.minutes = SESSION_MINUTES[index % len(SESSION_MINUTES)]
        self.speed = speed
        self.steps = 0
        self.refusals = 0
        self.sent = 0
        self._pace = (time.monotonic(), charger.clock.t)

    def wallet_exists(self, node) -> bool:
        path = f"/v1/wallets/{self.wallet}"
        auth = authorization_header(self.key, self.wallet, "GET", path, node_id=node.node_id)
        r = shared_client(node.verify).get(node.url + path, headers={"Authorization": auth}, timeout=10)
        return r.status_code == 200

    def ahead(self) -> bool:
        """Simulated time may not outrun `speed` times real time, nor the real clock."""
        real0, sim0 = self._pace
        allowed = sim0 + (time.monotonic() - real0) * self.speed
        return self.charger.clock.t > min(allowed, time.time() - 3600)

    def turn(self) -> None:
        """One move of the loop: start a session, or charge a simulated minute, or stop."""
        c = self.charger
        if self.ahead():
            return
        if not c.charging:
            decision = c.authorize_card(self.card)
            if decision.get("decision") != "accept":
                self.refusals += 1
                c.step()  # the driver walks off; try again a simulated minute later
            self.steps = 0
            return
        ended = c.step()
        self.steps += 1
        if ended is None and self.steps >= self.minutes:
            c.stop("L")
            ended = "L"
        if ended is not None:
            self.sent += 1


def start_chargers(stack: Stack, root: Path, count: int, speed: float) -> list[Driver]:
    import chargerhost  # noqa: F401  (the firmware library on sys.path)
    from chargerhost.simcharger import SimulatedCharger

    url, verify = stack.nodes[0].url, stack.verify
    genesis = httpx.get(url + "/v1/genesis", timeout=10, verify=verify).json()
    tariff_id = genesis["tariffs"][0]["tariff_id"]
    tariff = httpx.get(f"{url}/v1/tariffs/{tariff_id}", timeout=10, verify=verify).json()
    start = int(time.time()) - WEEK_S
    ca = stack.ca_file.read_bytes()  # the broker's certificate is the network CA's too
    drivers = []
    for i in range(count):
        cid = f"UP-CP-{i + 1:03d}"
        username, password = stack.broker_login(cid)
        c = SimulatedCharger(cid, root / "chargers" / cid, stack.broker.port, start_time=start + i * 3600,
                             power_w=(7000, 11000, 3500)[i % 3], tariff=tariff, step_s=60, genesis=genesis,
                             mqtt_username=username, mqtt_password=password, resend_ms=5000, broker_ca=ca)
        drivers.append(Driver(c, i, root, speed))

    actions = []
    for d in drivers:
        cid = d.charger.charger_id
        have = enrolled_key(url, cid, verify)
        if have is None:
            actions.append(("enroll_charger", {"charger_id": cid, "public_key": d.charger.core.public_key().hex()}))
        elif have != d.charger.core.public_key().hex():
            raise RuntimeError(f"{cid} is enrolled with another key: remove {root} for a fresh chain")
        if not d.wallet_exists(stack.nodes[0]):
            actions.append(("open_wallet", {"wallet_id": d.wallet, "public_key": d.key.verify_key.encode().hex(),
                                            "cards": [d.card]}))
        actions.append(("top_up", {"wallet_id": d.wallet, "amount_fen": TOP_UP_FEN,
                                   "reference": f"up:{d.wallet}:{time.time_ns()}"}))
    stack.operator(actions)
    for d in drivers:  # each login works once the registry the broker follows holds the charger
        deadline = time.monotonic() + 30
        while stack.broker.connack(*stack.broker_login(d.charger.charger_id)) != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the broker does not take {d.charger.charger_id}'s login after its enrollment")
            time.sleep(0.1)
        d.charger.connect()
    print(f"chargers: {', '.join(d.charger.charger_id for d in drivers)} enrolled with their keys, on MQTT over TLS; "
          f"wallets {', '.join(d.wallet for d in drivers)} topped up")
    return drivers


def progress(stack: Stack, drivers: list[Driver]) -> str:
    try:
        height = httpx.get(stack.nodes[0].url + "/v1/chain/head", timeout=2, verify=stack.verify).json()["height"]
    except httpx.HTTPError:
        height = "?"
    sent = sum(d.sent for d in drivers)
    acked = sum(len(d.charger.acked) for d in drivers)
    pending = sum(len(d.charger.pending()) for d in drivers)
    refused = sum(d.refusals for d in drivers)
    line = f"receipts sent {sent}, acked {acked}, pending {pending}; height {height}"
    return line + (f"; authorizations refused {refused}" if refused else "")


def main() -> int:
    p = OneLineParser(prog="up", description=__doc__)
    p.add_argument("--nodes", type=int_range(1, 16), default=1, help="bureau nodes, 1..16 (default 1)")
    p.add_argument("--chargers", type=int_range(0, 200), default=0, help="simulated chargers running sessions in a loop")
    p.add_argument("--speed", type=int_range(1, 100_000), default=60, help="simulated seconds per real second, at most")
    p.add_argument("--dir", default="var/up", help="the data directory; one `just up` at a time may use it")
    p.add_argument("--db", choices=("sqlite", "postgres"), default=os.environ.get("DB") or "sqlite",
                   help="where the nodes keep their chains (default: $DB, else sqlite)")
    args = p.parse_args()
    root = Path(args.dir)
    stack = Stack(root, nodes_count=args.nodes, tls=True, registry_logins=True)
    cluster = PostgresCluster(root / "postgres") if args.db == "postgres" else None
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(signal.SIGTERM))
    signal.signal(signal.SIGINT, lambda *a: stopping.append(signal.SIGINT))
    drivers: list[Driver] = []
    tty = sys.stdout.isatty()
    try:
        try:
            stack.prepare()
        except StackInUse as e:
            print(f"up: {e}", file=sys.stderr)
            cluster = None  # (the running one's: not ours to stop)
            return 1
        if cluster:
            cluster.start()
            for v in stack.genesis["validators"]:
                stack.db_urls[v["id"]] = cluster.database(v["id"].replace("-", "_"))
            print(f"postgresql: 127.0.0.1:{cluster.port}, one database per node; cluster in {cluster.root}")
        stack.launch()
        print(f"mosquitto: 127.0.0.1:{stack.broker.port} (TLS only), no anonymous access; logins in "
              f"{stack.broker.access.credentials_path}, chargers from the registry (docs/broker.md)")
        print(f"CA: {stack.ca_file} (curl --cacert, bureau operator --ca-file)")
        for n in stack.nodes:
            print(f"{n.node_id}: API {n.url} (OpenAPI {n.url}/schema), log {n.log_path}, "
                  f"database {stack.db_urls.get(n.node_id) or n.data_dir / 'ledger.db'}")
        print(f"genesis: {stack.genesis_path}; operator key: {root / 'net' / 'operator.key'}")
        print(f"dashboard: {stack.nodes[0].url}/dashboard, signed in with the operator token in "
              f"{stack.operator_token_path} (also the bearer token of /metrics; docs/observability.md)")
        op = (f".venv/bin/bureau operator --node {stack.nodes[0].url} --ca-file {stack.ca_file} "
              f"--key {root / 'net' / 'operator.key'} --operator operator-1")
        print(f"drivers' phone page: {stack.nodes[0].url}/phone (every node serves it; docs/phone.md); a wallet and "
              f"the one-time code that binds a phone to it:\n  {op} open_wallet wallet_id=W-1\n"
              f"  {op} issue-binding-code --wallet W-1")
        if args.chargers and not stopping:
            drivers = start_chargers(stack, root, args.chargers, args.speed)
        print("running; Ctrl-C stops", flush=True)
        shown = 0.0
        while not stopping:
            for n in stack.nodes:
                if not n.alive:
                    print(f"\n{n.node_id} exited; see {n.log_path}", file=sys.stderr)
                    return 1
            for d in drivers:
                d.turn()
                d.charger.pump()
                if stopping:
                    break
            if drivers and time.monotonic() - shown >= PROGRESS_S:
                shown = time.monotonic()
                line = progress(stack, drivers)
                print(("\r" + line + "   ") if tty else line, end="" if tty else "\n", flush=True)
            time.sleep(0.005 if drivers else 0.5)
    finally:
        if drivers:
            print(("\n" if tty else "") + "stopping: " + progress(stack, drivers), flush=True)
        for d in drivers:
            d.charger.close()
        stack.stop()
        if cluster:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
