"""Four bureau node processes and a real mosquitto under load: kill -9 of the proposer and of
a follower, restart from disk, a network partition and its healing (on SQLite and on
PostgreSQL). Every receipt must end up committed exactly once on every node, and the wallet
must hold the top-up minus the bills."""

import time

import pytest

from bureau.ledger.audit import audit_chain
from bureau.ledger.genesis import Genesis
from bureau.storage import Repository
from bureau.tools.httpclient import shared_client
from bureau.tools.stack import Stack
from tests.support.fleet import WALLET, Fleet, fleet_receipts, setup_actions
from bureau.tools.netproxy import LinkProxies
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def _wait(predicate, timeout, what):
    wait_for(predicate, f"timed out waiting for {what}", timeout, poll=0.2)


def _agreed_height(stack: Stack, timeout: float = 120) -> int:
    """A height every node reported at once. The nodes keep running: an idle network still
    commits an empty block every 30 s, so whatever is compared afterwards is compared at this
    height, not at each node's head."""
    deadline = time.monotonic() + timeout
    while True:
        heights = stack.heights()
        if None not in heights and len(set(heights)) == 1:
            return heights[0]
        assert time.monotonic() < deadline, f"heights never agreed: {heights}"
        time.sleep(0.2)


def _check_ledgers(stack: Stack, n_receipts: int, total_fen: int) -> None:
    height = _agreed_height(stack)
    genesis = Genesis.load(stack.genesis_path)
    roots = set()
    for node in stack.nodes:
        repo = Repository(node.env["BUREAU_DB_URL"] or f"sqlite:///{node.data_dir / 'ledger.db'}")
        try:
            report = audit_chain(genesis, repo, to_height=height)
            assert report["chain_valid"], (node.node_id, report["problem"])
            assert report["height"] == height, (node.node_id, report["height"], height)
            assert report["receipts"] == n_receipts, (node.node_id, report["receipts"], n_receipts)
            roots.add(report["state_root"])
            import sqlalchemy as sa
            with repo.engine.connect() as conn:
                balance = conn.execute(sa.text("select balance_fen from wallets where wallet_id = :w"),
                                       {"w": WALLET}).scalar_one()
                distinct = conn.execute(sa.text("select count(distinct receipt_id) from receipts")).scalar_one()
            assert distinct == n_receipts
            assert balance == 10**9 - total_fen, "wallet total differs from the sum of committed receipts"
        finally:
            repo.close()
    assert len(roots) == 1, "nodes disagree on the state"


def _check_certificates_with_genesis_only(stack: Stack) -> None:
    """Any block's commit certificate verifies with nothing but the genesis file."""
    import hashlib

    from bureau.ledger import certificate
    genesis = Genesis.load(stack.genesis_path)
    for height in range(1, stack.heights()[0] + 1):
        block = shared_client().get(f"{stack.nodes[height % 4].url}/v1/blocks/{height}", timeout=5).json()
        header = bytes.fromhex(block["header"]["encoded"])
        certificate.verify(genesis.validators, genesis.chain_id, height, hashlib.sha256(header).digest(),
                           block["certificate"].encode())
        doc = __import__("json").loads(block["certificate"])
        assert 3 * len(doc["signatures"]) > 2 * len(genesis.validators)


def _proposer_of_next_height(stack: Stack) -> int:
    vs = Genesis.load(stack.genesis_path).validators
    h = max(x for x in stack.heights() if x is not None) + 1
    return vs.proposer(h, 0)


def test_kill_proposer_and_follower_under_load(tmp_path):
    keys, receipts, total = fleet_receipts(chargers=40, per_charger=25)
    stack = Stack(tmp_path, nodes_count=4).start()
    fleet = None
    try:
        stack.operator(setup_actions(keys))
        fleet = Fleet(stack.broker, receipts)
        fleet.pump(limit=300)
        time.sleep(1.0)
        victim = stack.nodes[_proposer_of_next_height(stack)]
        victim.kill()  # kill -9 of the proposer of the next height
        fleet.pump(limit=300)
        time.sleep(2.0)
        victim.start()
        victim.wait_healthy()
        fleet.pump(limit=200)
        follower = next(n for i, n in enumerate(stack.nodes)
                        if n is not victim and i != _proposer_of_next_height(stack))
        follower.kill()
        fleet.pump()
        time.sleep(1.5)
        follower.start()
        follower.wait_healthy()
        assert fleet.drain(90), f"{len(fleet.unacked)} receipts never acked"
        assert not fleet.rejects, fleet.rejects[:3]
        _check_ledgers(stack, len(receipts), total)
        # a bureau that lost its whole ledger database syncs every block again from its peers
        lost = stack.nodes[2]
        lost.kill()
        for f in lost.data_dir.glob("ledger.db*"):
            f.unlink()
        lost.start()
        lost.wait_healthy()
        _check_ledgers(stack, len(receipts), total)
        _check_certificates_with_genesis_only(stack)
    finally:
        if fleet:
            fleet.close()
        stack.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_partition_and_heal(tmp_path, backend, request):
    keys, receipts, total = fleet_receipts(chargers=30, per_charger=20)
    stack = Stack(tmp_path, nodes_count=4).prepare()
    if backend == "postgresql":  # one database per node in one cluster, as `DB=postgres just up` runs them
        cluster = request.getfixturevalue("postgres_cluster")
        stack.db_urls = {v["id"]: cluster.database("partition_" + v["id"].replace("-", "_"))
                         for v in stack.genesis["validators"]}
    proxies = LinkProxies(stack.genesis)
    fleet = None
    try:
        stack.launch(node_env=proxies.node_env)
        stack.operator(setup_actions(keys))
        fleet = Fleet(stack.broker, receipts)
        fleet.pump(limit=200)
        _wait(lambda: fleet.acks >= 150, 60, "the first receipts to commit")
        proxies.isolate(proxies.ids[3])
        before, acks_before = stack.heights(), fleet.acks
        fleet.pump(limit=200)
        # chargers resend what is not acked: receipts that reached the cut-off bureau go again
        _wait(lambda: fleet.pump(limit=200) >= 0 and fleet.acks >= acks_before + 190, 60,
              "the majority side to keep committing")
        _wait(lambda: min(stack.heights()[:3]) > max(before[:3]), 30, "all three connected bureaus to move on")
        assert stack.heights()[3] <= before[3] + 1, "the isolated bureau committed without a quorum"
        proxies.heal()
        assert fleet.drain(90), f"{len(fleet.unacked)} receipts never acked"
        _check_ledgers(stack, len(receipts), total)
    finally:
        if fleet:
            fleet.close()
        stack.stop()
        proxies.close()
