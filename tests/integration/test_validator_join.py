"""A fifth bureau joins a running four-bureau network by the on-chain change_validators action
while receipts flow: it follows the chain from its peers, becomes a validator two blocks after
the deciding block, and its votes are then needed (one of the four is stopped: 4 of 5 is the
quorum). A certificate after the change verifies by following the change chain from the genesis
(the driver CLI's light-client code), and the audit replays the chain across the change.

The same join from a snapshot (`bureau join --from`): the fifth bureau loads the state at a
certified height H from one bureau, cross-checked with a second, holds no block up to H, catches
up from H + 1 and then takes part in committing; its audit starts from the snapshot."""

import json

import httpx
import pytest

from bureau.crypto import load_key, load_or_create_key
from bureau.ledger import valset
from bureau.ledger.audit import audit_chain
from bureau.ledger.certificate import CertificateError
from bureau.ledger.genesis import Genesis
from bureau.ledger.proof import certified_header, follow_validator_changes
from bureau.storage import Repository
from bureau.tools.httpclient import shared_client
from bureau.tools.mosquitto import free_port
from bureau.tools.stack import NodeProcess, Stack
from tests.support.fleet import Fleet, fleet_receipts, setup_actions
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def _wait(predicate, timeout, what):
    wait_for(predicate, f"timed out waiting for {what}", timeout, poll=0.2)


def _head(node: NodeProcess) -> int:
    try:
        return shared_client().get(node.url + "/v1/chain/head", timeout=5).json()["height"]
    except httpx.HTTPError:
        return -1


def _start_fifth(stack: Stack, http_port: int, peer_port: int, command: tuple[str, ...] = ("run",)) -> NodeProcess:
    data_dir = stack.root / "net" / "bureau-5"
    data_dir.mkdir(parents=True, exist_ok=True)
    load_or_create_key(data_dir / "node.key")
    user, password = stack.broker.login_bureau("bureau-5")
    env = dict(stack.nodes[0].env)
    env.update({"BUREAU_NODE_ID": "bureau-5", "BUREAU_DATA_DIR": str(data_dir), "BUREAU_HTTP_PORT": str(http_port),
                "BUREAU_MQTT_USERNAME": user, "BUREAU_MQTT_PASSWORD": password, "BUREAU_DB_URL": "",
                "BUREAU_PEER_LISTEN": f"127.0.0.1:{peer_port}"})
    node = NodeProcess("bureau-5", data_dir, http_port, env, stack.root / "bureau-5.log", command=command)
    stack.nodes.append(node)  # stopped with the stack
    return node


def _add_fifth(stack: Stack, http_port: int, peer_port: int) -> int:
    """The height of the block that decides bureau-5 into the set."""
    key5 = load_or_create_key(stack.root / "net" / "bureau-5" / "node.key")
    change = {"v": 1, "seq": 0, "changes": [{
        "op": "add", "id": "bureau-5", "public_key": key5.verify_key.encode().hex(), "power": 1,
        "address": f"127.0.0.1:{peer_port}", "api": f"http://127.0.0.1:{http_port}"}]}
    genesis = Genesis.load(stack.genesis_path)
    approvals = [valset.approve(load_key(stack.root / "net" / vid / "node.key"), vid, genesis.chain_id, change)
                 for vid in ("bureau-1", "bureau-2", "bureau-3")]
    (decided,) = stack.wait_committed([stack.submit("change_validators", {"change": change, "approvals": approvals})])
    return decided


def test_a_fifth_bureau_joins_by_the_change_action_and_counts_in_certificates(tmp_path):
    keys, receipts, _ = fleet_receipts(chargers=10, per_charger=12)
    stack = Stack(tmp_path, nodes_count=4).start()
    fleet = None
    try:
        stack.operator(setup_actions(keys))
        fleet = Fleet(stack.broker, receipts)
        fleet.pump(limit=40)
        http_port, peer_port = free_port(), free_port()
        genesis = Genesis.load(stack.genesis_path)
        decided = _add_fifth(stack, http_port, peer_port)
        fifth = _start_fifth(stack, http_port, peer_port)
        fifth.start()
        fifth.wait_healthy()
        fleet.pump(limit=40)
        _wait(lambda: _head(fifth) >= decided + 2, 60, "the fifth bureau to follow the chain past the change")
        stack.nodes[3].stop()  # 4 of 5 is the quorum now: no block commits without bureau-5's precommit
        assert fleet.drain(90), f"{len(fleet.unacked)} receipts never acked"
        top = _head(stack.nodes[0])
        _wait(lambda: _head(fifth) >= top, 60, "the fifth bureau to reach the head")
        block = httpx.get(f"{fifth.url}/v1/blocks/{top}", timeout=5).json()
        signers = [s["validator"] for s in json.loads(block["certificate"])["signatures"]]
        assert "bureau-5" in signers and "bureau-4" not in signers, signers
        # the light client: the genesis set, then the change certified by it, then the block
        served = httpx.get(f"{fifth.url}/v1/validators", timeout=5).json()
        assert [v["id"] for v in served["in_force"]["validators"]][-1] == "bureau-5"
        assert served["changes"][0]["height"] == decided
        schedule = follow_validator_changes(genesis, served["changes"])
        header = certified_header(block["header"]["encoded"], block["certificate"], genesis, schedule)
        assert header.height == top
        with pytest.raises(CertificateError):  # the genesis set alone does not know bureau-5
            certified_header(block["header"]["encoded"], block["certificate"], genesis)
    finally:
        if fleet:
            fleet.close()
        stack.stop()
    for node in (stack.nodes[0], stack.nodes[4]):
        repo = Repository(f"sqlite:///{node.data_dir / 'ledger.db'}")
        try:
            report = audit_chain(genesis, repo, to_height=top)
            assert report["chain_valid"] and report["height"] == top, (node.node_id, report)
        finally:
            repo.close()


def test_a_fifth_bureau_joins_from_a_snapshot_and_then_takes_part_in_committing(tmp_path):
    keys, receipts, _ = fleet_receipts(chargers=10, per_charger=12)
    stack = Stack(tmp_path, nodes_count=4).start()
    fleet = None
    try:
        stack.operator(setup_actions(keys))
        fleet = Fleet(stack.broker, receipts)
        fleet.pump(limit=40)
        http_port, peer_port = free_port(), free_port()
        genesis = Genesis.load(stack.genesis_path)
        decided = _add_fifth(stack, http_port, peer_port)
        fleet.pump(limit=30)  # receipts keep coming while the fifth bureau joins
        fifth = _start_fifth(stack, http_port, peer_port, command=(
            "join", "--from", stack.nodes[0].url, "--cross-check", stack.nodes[1].url))
        fifth.start()
        fifth.wait_healthy()
        fleet.pump(limit=40)
        repo = Repository(f"sqlite:///{fifth.data_dir / 'ledger.db'}", create=False)
        try:
            base = repo.snapshot_base()
            with repo.engine.connect() as conn:
                lowest_tx = conn.exec_driver_sql("SELECT min(height) FROM txs").scalar()
        finally:
            repo.close()
        assert base is not None and base >= decided, (base, decided)
        # nothing up to the snapshot's height was fetched: no transaction of those blocks is held
        assert lowest_tx is None or lowest_tx > base, (lowest_tx, base)
        old = httpx.get(f"{fifth.url}/v1/blocks/1", timeout=5)
        assert old.status_code == 410 and old.json()["error"] == "not_kept", old.text
        assert f"from {base + 1} on" in old.json()["detail"]
        _wait(lambda: _head(fifth) >= base + 2, 60, "the fifth bureau to catch up after its snapshot")
        stack.nodes[3].stop()  # 4 of 5 is the quorum now: no block commits without bureau-5's precommit
        assert fleet.drain(90), f"{len(fleet.unacked)} receipts never acked"
        top = _head(stack.nodes[0])
        _wait(lambda: _head(fifth) >= top, 60, "the fifth bureau to reach the head")
        block = httpx.get(f"{fifth.url}/v1/blocks/{top}", timeout=5).json()
        signers = [s["validator"] for s in json.loads(block["certificate"])["signatures"]]
        assert "bureau-5" in signers and "bureau-4" not in signers, signers
    finally:
        if fleet:
            fleet.close()
        stack.stop()
    reports = {}
    for node in (stack.nodes[0], stack.nodes[4]):
        repo = Repository(f"sqlite:///{node.data_dir / 'ledger.db'}")
        try:
            reports[node.node_id] = audit_chain(genesis, repo, to_height=top)
        finally:
            repo.close()
    full, joined = reports["bureau-1"], reports["bureau-5"]
    assert full["chain_valid"] and joined["chain_valid"], reports
    assert (full["from_height"], joined["from_height"]) == (1, base + 1), reports
    assert joined["state_root"] == full["state_root"] and joined["height"] == top
