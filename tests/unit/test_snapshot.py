"""State sync from a snapshot (ledger/snapshot.py): a snapshot taken from a node's storage goes
over the wire form, verifies against the certified header and loads into an empty database that
then carries on with the same state as the node it came from; a tampered record, records whose
root is not the certified one, and a certificate by another validator set are each refused with
one reason."""

import json
import os
import time

import pytest
from nacl.signing import SigningKey

from bureau.chain import Chain
from bureau.ledger import snapshot
from bureau.ledger.audit import audit_chain
from bureau.ledger.certificate import Certificate, precommit_bytes
from bureau.ledger.genesis import Genesis
from bureau.ledger.tx import operator_action
from bureau.storage import Repository
from tests.support.fleet import WALLET
from tests.support.proofchain import OPERATOR, certificate, proof_chain


def _wire(snap):
    """Through JSON text, as the API serves it."""
    manifest, chunks = snapshot.manifest_and_chunks(snap, per_chunk=3)
    return json.loads(json.dumps(manifest)), [json.loads(json.dumps(c)) for c in chunks]


@pytest.fixture
def served(tmp_path):
    chain, doc, cid = proof_chain(tmp_path)
    now = int(time.time())
    # a key rotation, so the snapshot carries a replaced key
    rotate = operator_action(OPERATOR, "operator-1", "rotate_charger_key",
                             {"charger_id": cid, "public_key": SigningKey(b"\x33" * 32).verify_key.encode().hex()},
                             now=now)
    block, ex = chain.build([rotate], "bureau-1", now * 1000 + 10)
    chain.commit(block, certificate(doc["chain_id"], block.height, block.hash), ex)
    yield chain, Genesis.from_doc(doc), cid
    chain.repo.close()


def test_a_snapshot_restores_the_state_and_a_node_carries_on_from_it(served, tmp_path):
    chain, genesis, cid = served
    snap = snapshot.from_wire(*_wire(chain.repo.take_snapshot(chain.state)))
    assert snap.height == chain.height == 3 and snap.old_keys and len(snap.receipts) == 5 and snap.decided
    state = snapshot.restore(genesis, snap)
    assert state.state_root == chain.state.state_root and state.wallets == chain.state.wallets
    joined = Repository(f"sqlite:///{tmp_path}/joined.sqlite")
    joined.load_snapshot(snap, state, "test")
    follower = Chain(genesis, joined)
    assert follower.height == 3 and follower.state.state_root == chain.state.state_root
    assert follower.state.seq_windows == chain.state.seq_windows
    assert follower.state.charger_old_keys == chain.state.charger_old_keys
    assert follower.state.operator_txs == chain.state.operator_txs
    assert joined.block(3) is None and joined.block(2) is None and joined.first_kept() == 4
    # the next block, run on both: the same refusals and the same root
    now = int(time.time())
    top_up = operator_action(OPERATOR, "operator-1", "top_up", {"wallet_id": WALLET, "amount_fen": 5,
                                                                "reference": "bank:after"}, now=now)
    block, ex = chain.build([top_up], "bureau-1", now * 1000 + 20)
    assert follower.check(block).state_root == ex.state_root
    cert = certificate(genesis.chain_id, block.height, block.hash)
    chain.commit(block, cert, ex)
    follower.commit(block, cert, follower.check(block))
    # the snapshot the joined node stored is the one it verified: its audit starts there
    again = joined.stored_snapshot(genesis)
    assert again.records == snap.records and again.history_digest() == snap.history_digest()
    assert snapshot.restore(genesis, again).height == 3
    report = audit_chain(genesis, joined)
    assert report["chain_valid"] and (report["from_height"], report["height"]) == (4, 4), report
    assert report["state_root"] == chain.state.state_root.hex()
    # and a joined node serves a snapshot of its own, equal to the full node's
    assert joined.take_snapshot(follower.state).history_digest() \
        == chain.repo.take_snapshot(chain.state).history_digest()
    joined.close()


def _refused(genesis, snap) -> str:
    with pytest.raises(snapshot.SnapshotError) as e:
        snapshot.restore(genesis, snap)
    assert "\n" not in str(e.value)
    return e.value.reason


def test_a_tampered_record_is_refused(served):
    chain, genesis, _ = served
    snap = chain.repo.take_snapshot(chain.state)
    record = json.loads(snap.records[f"w/{WALLET}"])
    record["balance_fen"] += 10**6
    snap.records[f"w/{WALLET}"] = json.dumps(record, separators=(",", ":"), sort_keys=True)
    assert _refused(genesis, snap) == "root_mismatch"


def test_records_of_another_height_are_refused(served):
    chain, genesis, _ = served
    snap = chain.repo.take_snapshot(chain.state)
    older = chain.repo.header(2)  # a real certified header, but not of these records
    snap.header, snap.certificate = older[0].encode().hex(), older[1].decode()
    snap.height = 2
    assert _refused(genesis, snap) == "root_mismatch"


def test_a_certificate_by_another_validator_set_is_refused(served):
    chain, genesis, _ = served
    snap = chain.repo.take_snapshot(chain.state)
    header = chain.repo.header(snap.height)[0]
    strangers = [SigningKey(bytes([0x60 + i]) * 32) for i in range(4)]
    sigs = tuple(sorted((f"bureau-{i + 1}", k.sign(precommit_bytes(genesis.chain_id, header.height, 0,
                                                                  header.hash)).signature)
                        for i, k in enumerate(strangers)))
    snap.certificate = Certificate(header.height, 0, header.hash, sigs).encode().decode()
    assert _refused(genesis, snap) == "not_certified"


def test_a_changed_chunk_or_history_does_not_pass_the_wire(served):
    chain, genesis, _ = served
    manifest, chunks = _wire(chain.repo.take_snapshot(chain.state))
    chunks[0]["items"][0][2] = chunks[0]["items"][0][2].replace("1", "2", 1)
    with pytest.raises(snapshot.SnapshotError, match="chunk 0 is not the one the manifest names"):
        snapshot.from_wire(manifest, chunks)


def test_bureau_join_says_in_one_line_why_it_did_not_join(tmp_path, capsys, monkeypatch):
    from bureau.cli import main
    from bureau.tools.mosquitto import free_port
    from tests.support.proofchain import genesis_doc
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps(genesis_doc()))
    token = tmp_path / "token"
    token.write_text("t" * 40)
    for name in [k for k in os.environ if k.startswith("BUREAU_")]:
        monkeypatch.delenv(name)
    code = main(["join", "--node-id", "bureau-1", "--data-dir", str(tmp_path / "data"), "--genesis", str(genesis),
                 "--from", f"http://127.0.0.1:{free_port()}", "--token-file", str(token)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and err.startswith("bureau join: snapshot refused: unreachable: "), err
