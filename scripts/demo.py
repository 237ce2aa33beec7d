"""`just demo`: a bureau network, a real mosquitto, and three simulated chargers running the
charger firmware against simulated Modbus meters. Drivers get wallets and top-ups, charge,
and check their balances and a bill's proof the way their phones do. Prints a summary and, as
its last line, one JSON object."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx
from nacl.signing import SigningKey

import chargerhost  # noqa: F401  (the firmware library on sys.path)
from chargerhost.simcharger import SimulatedCharger
from bureau.api.auth import authorization_header
from bureau.cliparse import OneLineParser, int_range
from bureau.ledger.audit import audit_chain
from bureau.ledger.genesis import Genesis
from bureau.ledger.proof import verify_receipt_proof
from bureau.storage import Repository
from bureau.tools.httpclient import shared_client
from bureau.tools.network import DEFAULT_TARIFF
from bureau.tools.stack import NodeProcess, Stack, signals_deferred

STOP_NAMES = {"L": "driver stopped", "Q": "prepaid limit", "U": "unplugged", "F": "fault", "P": "power failure",
              "R": "remote stop", "T": "time limit"}
KIND_NAMES = ("critical-peak", "peak", "flat", "valley")
DRIVERS = [("W-1001", "04A1B2C3D4E5F6", 30_000), ("W-1002", "04B7C8D9E0F1A2", 8_000), ("W-1003", "04C3D4E5F6A7B8", 50_000)]
# (driver index, authorized fen, charging steps before the driver stops; None = until the limit)
PLAN = [(0, 20_000, 40), (1, 1_500, None), (2, 20_000, 90), (0, 900, None), (1, 20_000, 25), (2, 3_000, None),
        (0, 20_000, 120), (1, 20_000, 60), (2, 20_000, 30)]


def yuan(fen: int) -> str:
    return f"¥{fen / 100:,.2f}"


def get_signed(node: NodeProcess, key: SigningKey, wallet: str, path: str) -> dict:
    """A driver's signed request, bound to the bureau it is sent to."""
    hdr = authorization_header(key, wallet, "GET", path, node_id=node.node_id)
    r = shared_client().get(node.url + path, headers={"Authorization": hdr}, timeout=10)
    r.raise_for_status()
    return r.json()


def _wait_heights_agree(stack: Stack, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        heights = [shared_client().get(n.url + "/v1/chain/head", timeout=5).json()["height"] for n in stack.nodes]
        if len(set(heights)) == 1 or time.monotonic() > deadline:
            return heights
        time.sleep(0.2)


def _duplicate_sessions(repo: Repository) -> int:
    """Receipts committed more than once for one charging session (must be 0)."""
    from bureau.ledger.tx import KIND_RECEIPT
    from bureau.receipts.codec import decode
    seen, dup = set(), 0
    for block, _ in repo.blocks(1):
        for tx in block.txs:
            if tx[0] == KIND_RECEIPT:
                r, _, _ = decode(tx[1:])
                key = (r.charger_id, r.session_id)
                dup += key in seen
                seen.add(key)
    return dup


def run(workdir: Path, nodes: int) -> dict:
    started = time.monotonic()
    stack = Stack(workdir, nodes_count=nodes)
    chargers = []
    try:
        stack.start()
        print(f"bureau network: {nodes} node(s) {', '.join(n.node_id for n in stack.nodes)}; "
              f"mosquitto on 127.0.0.1:{stack.broker.port}; APIs at {', '.join(n.url for n in stack.nodes)}")
        # each charger starts its day at a different local hour, so sessions cross tariff periods
        day0 = int(time.time()) // 86400 * 86400 - 86400 - 8 * 3600  # a past local midnight (UTC+8)
        # provisioned as a technician does: the bureau keys of GET /v1/genesis go to bureau.json, and
        # the chargers take only acks those keys signed
        genesis = httpx.get(stack.nodes[0].url + "/v1/genesis", timeout=10).json()
        for i, hour in enumerate((6, 10, 17)):
            charger_id = f"GZ-TH-000{i + 1}"
            user, password = stack.broker_login(charger_id)
            c = SimulatedCharger(charger_id, workdir / "chargers" / f"c{i + 1}", stack.broker.port,
                                 start_time=day0 + hour * 3600, power_w=(7000, 11000, 3500)[i], tariff=DEFAULT_TARIFF,
                                 resend_ms=3000, genesis=genesis, mqtt_username=user, mqtt_password=password)
            c.connect()
            chargers.append(c)
            print(f"charger {c.charger_id}: key made on first boot, public key {c.core.public_key().hex()[:16]}…")
        drivers = {w: SigningKey.generate() for w, _, _ in DRIVERS}
        actions = [("enroll_charger", {"charger_id": c.charger_id, "public_key": c.core.public_key().hex()})
                   for c in chargers]
        actions += [("open_wallet", {"wallet_id": w, "public_key": drivers[w].verify_key.encode().hex(), "cards": [card]})
                    for w, card, _ in DRIVERS]
        actions += [("top_up", {"wallet_id": w, "amount_fen": amount, "reference": f"bank-card:{w}"})
                    for w, _, amount in DRIVERS]
        stack.operator(actions)
        print(f"operator: enrolled {len(chargers)} chargers, opened {len(DRIVERS)} wallets with cards, topped up "
              + ", ".join(f"{w} {yuan(a)}" for w, _, a in DRIVERS) + " (each action signed and recorded on chain)")

        sessions = []
        victim, killed = (stack.nodes[1] if nodes > 1 else None), None
        for n, (driver, limit, steps) in enumerate(PLAN):
            if victim is not None and n == len(PLAN) // 3:
                victim.kill()
                killed = victim.node_id
                print(f"kill -9 {killed} mid-run (its receipts in flight are resent by the chargers)")
            if victim is not None and n == 2 * len(PLAN) // 3:
                victim.start()
                victim.wait_healthy()
                print(f"restarted {killed} from its disk; it catches up from its peers")
            c = chargers[n % len(chargers)]
            wallet, card, _ = DRIVERS[driver]
            c.plug_in_and_start(wallet, limit, id_token=card, method=1, auth_ref=f"demo:{n}")
            reason, k = None, 0
            while reason is None:
                reason = c.step()
                k += 1
                if reason is None and steps is not None and k >= steps:
                    c.stop("L")
                    reason = "L"
                c.pump()
            sessions.append((c, c.pending()[-1]))
        published = len(sessions)
        deadline = time.monotonic() + 60
        while any(c.pending() for c in chargers) and time.monotonic() < deadline:
            for c in chargers:
                c.pump(wait_ms=5)
        pending = sum(len(c.pending()) for c in chargers)
        acked = sum(len(c.acked) for c in chargers)
        heights = _wait_heights_agree(stack)

        print(f"\n{published} charging sessions; each receipt signed by its charger and kept in flash until acked:")
        import receipt as fw_receipt
        total_wh = total_fen = 0
        by_charger = {c.charger_id: c for c in chargers}
        node0 = stack.nodes[0]
        genesis = Genesis.load(stack.genesis_path)
        proofs_ok = 0
        for c, seq in sessions:
            wallet_key = None
            proof = None
            for w, key in drivers.items():
                try:
                    proof = get_signed(node0, key, w, f"/v1/receipts/{c.charger_id}/{seq}/proof")
                    wallet_key = w
                    break
                except httpx.HTTPStatusError:
                    continue
            if proof is None:
                print(f"  {c.charger_id} #{seq}: NOT committed")
                continue
            ok, why = verify_receipt_proof(proof, genesis)
            proofs_ok += ok
            r = proof["receipt"]
            split = ", ".join(f"{KIND_NAMES[k]} {wh / 1000:.2f}" for k, wh in r["periods"])
            total_wh += r["energy_wh"]
            total_fen += r["amount_fen"]
            print(f"  {c.charger_id} #{seq:<3} {wallet_key}  {r['energy_wh'] / 1000:6.2f} kWh ({split})"
                  f"  {yuan(r['amount_fen']):>8}  stop: {STOP_NAMES[r['stop_reason']]:<15} "
                  f"block {proof['header']['height']}, proof {'verified' if ok else 'FAILED: ' + why}")
        print(f"  total {total_wh / 1000:.2f} kWh, {yuan(total_fen)}")

        print("\nwallets, read by each driver with a signed request (a driver can read only their own):")
        balances_ok = True
        for w, _, top_up in DRIVERS:
            bal = get_signed(node0, drivers[w], w, f"/v1/wallets/{w}")["balance_fen"]
            hist = get_signed(node0, drivers[w], w, f"/v1/wallets/{w}/history?limit=100")["entries"]
            spent = -sum(e["delta_fen"] for e in hist if e["kind"] == "receipt")
            balances_ok &= bal == top_up - spent
            print(f"  {w}: topped up {yuan(top_up)}, {sum(1 for e in hist if e['kind'] == 'receipt')} bills "
                  f"{yuan(spent)}, balance {yuan(bal)}")
        head = httpx.get(node0.url + "/v1/chain/head", timeout=5).json()
    finally:
        with signals_deferred():
            for c in chargers:
                c.close()
            stack.stop()

    reports, duplicates = [], 0
    for node in stack.nodes:
        repo = Repository(node.settings.database_url)
        reports.append(audit_chain(genesis, repo))
        duplicates = max(duplicates, _duplicate_sessions(repo))
        repo.close()
    chain_valid = all(r["chain_valid"] for r in reports) and len({r["state_root"] for r in reports}) == 1
    print(f"\nchain: height {head['height']}, re-verified from genesis (every certificate, Merkle root, signature, "
          f"state replay): {'valid' if chain_valid else 'INVALID ' + str([r['problem'] for r in reports])}")
    if nodes > 1:
        print(f"bureaus: heights {heights}, {'in agreement' if len(set(heights)) == 1 else 'DISAGREE'}; "
              f"each block carries precommit signatures of 3 or more of the {nodes} bureaus")
    print(f"delivery: {published} receipts published, {reports[0]['receipts']} committed, {acked} acked, "
          f"{pending} left in chargers' flash; {proofs_ok} bill proofs verified like a phone")
    return {"nodes": nodes, "killed": killed, "receipts_published": published,
            "receipts_committed": reports[0]["receipts"], "duplicates": duplicates, "acked": acked,
            "heights_agree": len(set(heights)) == 1,
            "pending_in_flash": pending, "height": head["height"], "chain_valid": chain_valid,
            "proofs_verified": proofs_ok, "balances_consistent": bool(balances_ok),
            "energy_wh": total_wh, "amount_fen": total_fen, "seconds": round(time.monotonic() - started, 1)}


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    p = OneLineParser(prog="demo", description=__doc__)
    p.add_argument("--nodes", type=int_range(1, 16), default=1, help="bureau nodes, 1..16 (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases, flash)")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)  # as Ctrl-C: the run stops its processes and cleans up
    workdir = Path(tempfile.mkdtemp(prefix="evdemo-"))
    try:
        result = run(workdir, args.nodes)
    except KeyboardInterrupt as e:
        sig = signal.Signals[e.args[0]] if e.args else signal.SIGINT
        print(f"\ndemo: interrupted by {sig.name}; every process it started is stopped", file=sys.stderr)
        return 128 + sig
    finally:
        with signals_deferred():
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                print(f"work directory kept: {workdir}")
    print(json.dumps(result))
    ok = (result["chain_valid"] and result["pending_in_flash"] == 0 and result["duplicates"] == 0
          and result["receipts_committed"] == result["receipts_published"] and result["balances_consistent"]
          and result["heights_agree"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
