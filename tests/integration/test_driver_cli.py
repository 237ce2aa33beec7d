"""`bureau driver` against a real node process: the wallet's history, its balance verified
with a state proof, a committed bill's proof checked and printed, that proof verified offline
(and refused once tampered with), a node of another chain refused; the node's HTTPS is checked
against the network's CA (`--ca`)."""

from __future__ import annotations

import json
import queue
import time

import paho.mqtt.client as mqtt
import pytest

from bureau.api.auth import authorization_header
from bureau.crypto import load_key
from bureau.tools.httpclient import shared_client
from bureau.tools.stack import Stack
from tests.integration.test_commands import bureau
from tests.support.fleet import WALLET, fleet_receipts
from tests.support.proofchain import genesis_doc


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("driver"), nodes_count=1, tls=True, mqtt_tls=False).start()
    yield s
    s.stop()


def _publish_until_committed(stack, cid: str, envelopes: list[bytes], driver_key) -> None:
    """Send the receipts as their charger does until the wallet's history shows each."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid)
    c.username_pw_set(*stack.broker_login(cid))
    connected: queue.Queue = queue.Queue()
    c.on_connect = lambda cl, u, f, rc, p: connected.put(rc)
    c.connect("127.0.0.1", stack.broker.port)
    c.loop_start()
    node = stack.nodes[0]
    path = f"/v1/wallets/{WALLET}/history?limit=50"
    try:
        assert not connected.get(timeout=10).is_failure
        deadline = time.monotonic() + 90
        while True:
            auth = authorization_header(driver_key, WALLET, "GET", path, node_id=node.node_id)
            resp = shared_client(stack.verify).get(node.url + path, headers={"Authorization": auth}, timeout=10)
            kinds = [e["kind"] for e in resp.json()["entries"]]
            if kinds.count("receipt") == len(envelopes):
                return
            assert time.monotonic() < deadline, f"receipts not committed: {kinds}"
            for env in envelopes:
                c.publish(f"ev/v1/charger/{cid}/receipt", env, qos=1)
            time.sleep(1)
    finally:
        c.loop_stop()
        c.disconnect()


def test_history_proof_and_verify_against_a_running_node(stack, tmp_path):
    key_file = tmp_path / "driver.key"
    p = bureau("driver", "keygen", "--key", str(key_file))
    assert p.returncode == 0, p.stderr
    driver = load_key(key_file)
    keys, receipts, _ = fleet_receipts(1, 2)
    (cid, ckey), = keys.items()
    stack.operator([("enroll_charger", {"charger_id": cid, "public_key": ckey.verify_key.encode().hex()}),
                    ("open_wallet", {"wallet_id": WALLET, "public_key": driver.verify_key.encode().hex()}),
                    ("top_up", {"wallet_id": WALLET, "amount_fen": 10**6, "reference": "bank:driver-cli"})])
    _publish_until_committed(stack, cid, [env for _, env in receipts], driver)
    node = stack.nodes[0].url
    assert node.startswith("https://")
    untrusted = bureau("driver", "history", "--key", str(key_file), "--node", node, "--wallet", WALLET,
                       "--genesis", str(stack.genesis_path))
    assert untrusted.returncode == 1 and untrusted.stderr.count("\n") == 1 and \
        untrusted.stderr.startswith(f"bureau driver: cannot reach the node at {node}: ") and \
        "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, untrusted.stderr
    common = ["--key", str(key_file), "--node", node, "--ca", str(stack.ca_file), "--wallet", WALLET,
              "--genesis", str(stack.genesis_path)]

    history = bureau("driver", "history", *common, "--limit", "10")
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert lines[0].startswith(f"wallet {WALLET}, newest first")
    assert [ln.split()[1] for ln in lines[1:]] == ["receipt", "receipt", "top_up", "open_wallet"]
    assert sorted(ln.split()[-3] for ln in lines[1:3]) == [f"{cid}#1", f"{cid}#2"]  # any order within a block

    balance = bureau("driver", "balance", *common)
    assert balance.returncode == 0, balance.stderr
    newest = lines[1].split("balance")[1].split()[0]  # the balance after the newest entry
    assert balance.stdout.startswith(f"valid: wallet {WALLET} balance {newest} fen ("), balance.stdout

    shown = bureau("driver", "proof", *common, "--charger", cid, "--seq", "2")
    assert shown.returncode == 0, shown.stderr
    proof = json.loads(shown.stdout)
    assert proof["receipt"]["seq"] == 2 and proof["receipt"]["charger_id"] == cid
    saved = tmp_path / "bill.json"
    saved.write_text(shown.stdout)
    ok = bureau("driver", "verify", str(saved), "--genesis", str(stack.genesis_path))
    assert ok.returncode == 0 and ok.stdout.startswith(f"valid: bill {cid}#2 of wallet {WALLET}: "), ok.stderr

    proof["audit_path"] = list(reversed(proof["audit_path"])) if len(proof["audit_path"]) > 1 else ["00" * 32]
    saved.write_text(json.dumps(proof))
    bad = bureau("driver", "verify", str(saved), "--genesis", str(stack.genesis_path))
    assert (bad.returncode, bad.stdout) == (1, "") and bad.stderr == "bureau driver: invalid: receipt is not in the block\n"

    missing = bureau("driver", "proof", *common, "--charger", cid, "--seq", "9")
    assert missing.returncode == 1 and missing.stderr.startswith("bureau driver: refused: no_receipt: "), missing.stderr

    other = tmp_path / "other-genesis.json"
    other.write_text(json.dumps(genesis_doc("ev-other")))
    foreign = bureau("driver", "history", *common[:-1], str(other))
    assert foreign.returncode == 1 and foreign.stderr.startswith(
        f"bureau driver: the node at {node} is on another chain (genesis "), foreign.stderr


def test_bind_with_the_operators_code_then_balance_from_the_pin(stack, tmp_path):
    url, ca = stack.nodes[0].url, str(stack.ca_file)
    op_key = str(stack.root / "net" / "operator.key")
    stack.operator([("open_wallet", {"wallet_id": "W-BOUND"}),
                    ("top_up", {"wallet_id": "W-BOUND", "amount_fen": 4321, "reference": "bank:bind"})])
    issued = bureau("operator", "--node", url, "--ca-file", ca, "--key", op_key, "--operator", "operator-1",
                    "issue-binding-code", "--wallet", "W-BOUND")
    assert issued.returncode == 0, issued.stderr
    code = issued.stdout.split("binding code for wallet W-BOUND: ")[1].split()[0]
    key = tmp_path / "phone.key"
    assert bureau("driver", "keygen", "--key", str(key)).returncode == 0

    other = tmp_path / "other-genesis.json"
    other.write_text(json.dumps(genesis_doc("ev-other")))
    foreign = bureau("driver", "bind", "--key", str(key), "--node", url, "--ca", ca, "--wallet", "W-BOUND",
                     "--code", code, "--genesis", str(other))
    assert foreign.returncode == 1 and "is on another chain" in foreign.stderr, foreign.stderr
    assert not (tmp_path / "phone.key.json").exists()

    typed = code.lower().replace("-", " ")  # as a person may type it
    bound = bureau("driver", "bind", "--key", str(key), "--node", url, "--ca", ca, "--wallet", "W-BOUND",
                   "--code", typed)
    assert bound.returncode == 0, bound.stderr
    assert bound.stdout.startswith("bound: wallet W-BOUND answers to this key") and "pinned in" in bound.stdout
    pin = json.loads((tmp_path / "phone.key.json").read_text())
    assert pin["wallet_id"] == "W-BOUND" and pin["genesis"] == stack.genesis

    balance = bureau("driver", "balance", "--key", str(key), "--node", url, "--ca", ca)  # wallet and chain: the pin
    assert balance.returncode == 0 and balance.stdout.startswith("valid: wallet W-BOUND balance 4321 fen"), balance

    again = bureau("driver", "bind", "--key", str(key), "--node", url, "--ca", ca, "--wallet", "W-BOUND",
                   "--code", code)  # a code binds once
    assert again.returncode == 1 and again.stderr.startswith("bureau driver: refused: no_binding_code"), again.stderr
    elsewhere = bureau("driver", "balance", "--key", str(key), "--node", url, "--ca", ca, "--wallet", "W-OTHER")
    assert elsewhere.returncode == 1 and "bound to wallet W-BOUND, not W-OTHER" in elsewhere.stderr
