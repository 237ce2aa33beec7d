"""One of four bureaus replaced by a process holding that bureau's real key that lies: forged
receipt proposals (equivocating), double prevotes and a SyncRequest flood. The three honest
node processes never commit the forgery, keep committing honest receipts and hold one chain."""

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from bureau.ledger.tx import receipt_tx
from bureau.receipts.codec import decode, encode_body, seal
from bureau.storage import Repository
from bureau.tools.httpclient import shared_client
from bureau.tools.stack import Stack
from tests.support.fleet import Fleet, fleet_receipts, setup_actions

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _forged_receipt_tx(keys, receipts) -> bytes:
    """A receipt the charger signed, with its amount raised afterwards."""
    cid, env = receipts[0]
    r, _, _ = decode(env)
    signed = seal(replace(r, seq=999), keys[cid])
    return receipt_tx(encode_body(replace(r, seq=999, amount_fen=r.amount_fen + 10**6)) + signed[-64:])


def _block_hashes(node, height):
    return [shared_client().get(f"{node.url}/v1/blocks/{h}", timeout=5).json()["header"]["encoded"]
            for h in range(1, height + 1)]


def test_three_honest_bureaus_outlast_a_byzantine_fourth(tmp_path):
    keys, receipts, _ = fleet_receipts(chargers=10, per_charger=12)
    stack = Stack(tmp_path, nodes_count=4).start()
    honest, liar = stack.nodes[:3], stack.nodes[3]
    fleet = attacker = None
    try:
        stack.operator(setup_actions(keys))
        liar.kill()
        attacker = subprocess.Popen(
            [sys.executable, "-m", "tests.support.byzantine", "--net", str(stack.root / "net"), "--id", liar.node_id,
             "--forged-tx", _forged_receipt_tx(keys, receipts).hex(), "--run-s", "20", "--flood-at", "8",
             "--flood-s", "3"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        fleet = Fleet(stack.broker, receipts)
        while attacker.poll() is None:  # honest traffic all along: a block at nearly every height
            fleet.pump(limit=10)
            stack.submit("top_up", {"wallet_id": "W-FLEET", "amount_fen": 1, "reference": f"t{time.monotonic()}"})
            time.sleep(0.3)
        out, err = attacker.communicate()
        stats = json.loads(out.decode().strip().splitlines()[-1])
        assert stats.get("forged_proposals", 0) >= 2, (stats, err.decode()[-2000:])
        assert stats.get("equivocating_prevotes", 0) >= 2 and stats.get("flood_sent", 0) > 1000, stats
        assert fleet.drain(60), f"{len(fleet.unacked)} honest receipts never committed"
        deadline = time.monotonic() + 30
        while len(set(stack.heights()[:3])) != 1:
            assert time.monotonic() < deadline, "honest heights do not agree"
            time.sleep(0.2)
        height = stack.heights()[0]
        chains = [_block_hashes(n, height) for n in honest]
        assert chains[0] == chains[1] == chains[2], "honest bureaus hold different chains"
        logs = "".join((stack.root / f"{n.node_id}.log").read_text() for n in honest)
        assert "holds an invalid transaction" in logs, "no honest bureau ever saw the forged block"
        evidence = sum(float(line.rsplit(" ", 1)[1]) for i in range(len(honest))  # the first three
                       for line in stack.operator_get("/metrics", i).text.splitlines()
                       if line.startswith("bureau_equivocation_evidence_total"))
        assert evidence >= 1, "the double prevotes went unnoticed"
        for n in honest:
            assert shared_client().get(n.url + "/healthz", timeout=5).json()["ok"]
            repo = Repository(f"sqlite:///{n.data_dir / 'ledger.db'}")
            try:
                with repo.engine.connect() as conn:
                    assert conn.execute(sa.text("select count(*) from receipts where seq = 999")).scalar_one() == 0
                    assert conn.execute(sa.text("select count(*) from receipts")).scalar_one() == len(receipts)
            finally:
                repo.close()
    finally:
        if attacker and attacker.poll() is None:
            attacker.kill()
        if fleet:
            fleet.close()
        stack.stop()
