"""Validator-set changes by the change_validators action: approved by more than 2/3 of the power
in force, in force two blocks after the deciding block, one at a time; additions, removals, key
rotations; the v/set record and a light client following the changes from the genesis; and
equivocation evidence (kind 5) recorded once. Storage reads both back at restart."""

import json

import pytest
from nacl.signing import SigningKey

from bureau.consensus.types import Step, Vote, vote_sign_bytes
from bureau.ledger import canonical, evidence, merkle, valset
from bureau.ledger.block import Block, Header
from bureau.ledger.certificate import Certificate, precommit_bytes
from bureau.ledger.genesis import Genesis
from bureau.ledger.proof import NotCertified, certified_header, follow_validator_changes
from bureau.ledger.state import LedgerState
from bureau.ledger.tx import operator_action
from bureau.storage import Repository

OPERATOR = SigningKey(b"\x07" * 32)
KEYS = {f"bureau-{i}": SigningKey(bytes([i]) * 32) for i in range(1, 6)}
T0_MS = 1_760_000_000_000
CHAIN = "ev-test"


def _hex(key: SigningKey) -> str:
    return key.verify_key.encode().hex()


def _genesis() -> Genesis:
    return Genesis.from_doc({
        "v": 1, "chain_id": CHAIN, "genesis_time_ms": T0_MS - 1000,
        "validators": [{"id": vid, "public_key": _hex(KEYS[vid]), "address": f"127.0.0.1:{9000 + i}"}
                       for i, vid in enumerate(["bureau-1", "bureau-2", "bureau-3", "bureau-4"])],
        "operators": [{"id": "operator-1", "public_key": _hex(OPERATOR)}]})


def _change(seq: int, *changes: dict, approvers=("bureau-1", "bureau-2", "bureau-3"), keys=None, at_ms=T0_MS) -> bytes:
    change = {"v": 1, "seq": seq, "changes": list(changes)}
    keys = keys or KEYS
    approvals = [valset.approve(keys[vid], vid, CHAIN, change) for vid in sorted(approvers)]
    return operator_action(OPERATOR, "operator-1", "change_validators", {"change": change, "approvals": approvals},
                           now=at_ms // 1000)


ADD_5 = {"op": "add", "id": "bureau-5", "public_key": _hex(KEYS["bureau-5"]), "power": 1,
         "address": "127.0.0.1:9005", "api": "http://127.0.0.1:8005"}


class Chain:
    """Blocks applied in order and certified by the set in force at their height, as a node does."""

    def __init__(self, repo: Repository | None = None) -> None:
        self.state = LedgerState(_genesis())
        self.repo = repo
        self.certified: dict[int, tuple[Header, bytes]] = {}
        if repo is not None:
            repo.load_state(self.state)

    def block(self, txs: list[bytes], signers=None):
        s = self.state
        time_ms = T0_MS + 1000 * (s.height + 1)
        ex = s.execute(txs, time_ms)
        header = Header(CHAIN, s.height + 1, s.last_hash, time_ms, merkle.root(ex.txs), ex.state_root, "bureau-1",
                        len(ex.txs))
        block = Block(header, tuple(ex.txs))
        vals = s.validators_at(header.height)
        ids = signers or [v.id for v in vals][: vals.quorum_power]
        cert = Certificate(header.height, 0, block.hash, tuple(sorted(
            (vid, KEYS[vid].sign(precommit_bytes(CHAIN, header.height, 0, block.hash)).signature) for vid in ids))).encode()
        if self.repo is not None:
            self.repo.commit_block(block, cert, ex, s)
        s.apply(ex, header.height, block.hash, time_ms)
        self.certified[header.height] = (header, cert)
        return ex

    def change_entry(self, height: int, ex) -> dict:
        header, cert = self.certified[height]
        return {"height": height, "header": header.encode().hex(), "certificate": cert.decode(),
                "proof": ex.state_map.prove("v/set")}


def _outcome(ex):
    return [(e.kind, (e.detail or {}).get("reason")) for e in ex.effects] + [("dropped", r.reason) for r in ex.refused]


def test_a_change_approved_by_two_thirds_of_the_power_or_less_is_refused_in_its_block():
    chain = Chain()
    ex = chain.block([_change(0, ADD_5, approvers=("bureau-1", "bureau-2"))])  # 2 of 4: not more than 2/3
    assert _outcome(ex) == [("refused_action", "insufficient_approval")]
    assert chain.state.schedule.latest.seq == 0
    ex = chain.block([_change(0, ADD_5, approvers=("bureau-1", "bureau-2", "bureau-5"))])  # 5 is no validator yet
    assert _outcome(ex) == [("refused_action", "unknown_validator")]
    forged = _change(0, ADD_5, keys={**KEYS, "bureau-3": SigningKey(b"\x33" * 32)})
    assert _outcome(chain.block([forged])) == [("refused_action", "bad_approval")]


def test_a_decided_set_is_in_force_two_blocks_later_and_in_the_state_map():
    chain = Chain()
    chain.block([])
    ex = chain.block([_change(0, ADD_5)])  # decided at height 2
    assert _outcome(ex) == [("change_validators", None)]
    s = chain.state
    assert [v.id for v in s.validators_at(3)] == ["bureau-1", "bureau-2", "bureau-3", "bureau-4"]
    assert [v.id for v in s.validators_at(4)][-1] == "bureau-5" and s.validators_at(4).quorum_power == 4
    record = json.loads(s.state_map.get("v/set"))
    assert (record["seq"], record["from_height"]) == (1, 4)
    assert record["validators"][-1] == {"id": "bureau-5", "public_key": _hex(KEYS["bureau-5"]), "power": 1,
                                        "address": "127.0.0.1:9005", "api": "http://127.0.0.1:8005"}
    # one change at a time: the next waits until this one is in force
    assert _outcome(chain.block([_change(1, {"op": "remove", "id": "bureau-1"})])) == \
        [("refused_action", "change_pending")]


def test_removal_and_key_rotation_change_who_approves_the_next_change():
    chain = Chain()
    new_2 = SigningKey(b"\x22" * 32)
    ex = chain.block([_change(0, {"op": "remove", "id": "bureau-4"},
                              {"op": "update", "id": "bureau-2", "public_key": _hex(new_2), "power": 2})])
    assert _outcome(ex) == [("change_validators", None)]
    chain.block([])
    vals = chain.state.validators_at(3)
    assert [v.id for v in vals] == ["bureau-1", "bureau-2", "bureau-3"]
    assert vals.by_id("bureau-2").public_key == new_2.verify_key.encode() and vals.total_power == 4
    rotated = {**KEYS, "bureau-2": new_2}
    # the old key of bureau-2 no longer approves; bureau-4 is no validator; the replaced set's seq is stale
    assert _outcome(chain.block([_change(1, ADD_5, approvers=("bureau-1", "bureau-2", "bureau-3"))])) == \
        [("refused_action", "bad_approval")]
    assert _outcome(chain.block([_change(1, ADD_5, approvers=("bureau-1", "bureau-3", "bureau-4"),
                                         keys=rotated)])) == [("refused_action", "unknown_validator")]
    assert _outcome(chain.block([_change(0, ADD_5, keys=rotated)])) == [("refused_action", "wrong_seq")]
    # 1 + 2 of 4 = 3 > 8/3: enough; removing the last validators is refused
    assert _outcome(chain.block([_change(1, ADD_5, approvers=("bureau-1", "bureau-2"), keys=rotated)])) == \
        [("change_validators", None)]
    with pytest.raises(valset.TxError) as e:
        valset.apply_change(chain.state.validators_at(1), {"v": 1, "seq": 0, "changes": [
            {"op": "remove", "id": vid} for vid in ("bureau-1", "bureau-2", "bureau-3", "bureau-4")]})
    assert e.value.reason == "bad_validator_set"


def test_a_light_client_follows_the_changes_from_the_genesis():
    chain = Chain()
    ex = chain.block([_change(0, ADD_5, {"op": "remove", "id": "bureau-1"})])
    changes = [chain.change_entry(1, ex)]
    chain.block([])
    chain.block([], signers=["bureau-2", "bureau-3", "bureau-5"])  # height 3: the new set certifies
    header, cert = chain.certified[3]
    genesis = _genesis()
    schedule = follow_validator_changes(genesis, changes)
    assert certified_header(header.encode().hex(), cert.decode(), genesis, schedule).height == 3
    with pytest.raises(ValueError):  # by the genesis set alone bureau-5 is unknown
        certified_header(header.encode().hex(), cert.decode(), genesis)
    tampered = json.loads(json.dumps(changes))
    tampered[0]["proof"]["value"] = tampered[0]["proof"]["value"].replace('"seq":1', '"seq":2')
    with pytest.raises(NotCertified):
        follow_validator_changes(genesis, tampered)


def _vote(vid: str, index: int, block_hash: bytes, height=1, kind=Step.PREVOTE) -> Vote:
    sig = KEYS[vid].sign(vote_sign_bytes(CHAIN, kind, height, 0, block_hash)).signature
    return Vote(kind, height, 0, block_hash, index, sig)


def test_equivocation_evidence_is_recorded_once():
    chain = Chain()
    chain.block([])
    a, b = _vote("bureau-2", 1, b"\x01" * 32), _vote("bureau-2", 1, bytes(32))  # a block and nil
    tx = evidence.encode(a, b)
    ex = chain.block([tx])
    assert _outcome(ex) == [("evidence", None)]
    assert json.loads(chain.state.state_map.get("e/bureau-2/1/0/2")) == {"block_ids": sorted([bytes(32).hex(),
                                                                                             ("01" * 32)])}
    assert _outcome(chain.block([tx])) == [("dropped", "evidence_recorded")]
    wrong_signer = evidence.encode(_vote("bureau-3", 1, b"\x02" * 32), _vote("bureau-3", 1, b"\x03" * 32))
    same = bytes([5]) + 2 * evidence.encode(a, b)[1:115]
    assert _outcome(chain.block([wrong_signer, same])) == [("dropped", "bad_signature"), ("dropped", "malformed")]


def test_a_restarted_node_reads_back_the_sets_and_the_evidence(tmp_path):
    url = f"sqlite:///{tmp_path}/node.db"
    repo = Repository(url)
    chain = Chain(repo)
    chain.block([_change(0, ADD_5)])
    chain.block([evidence.encode(_vote("bureau-1", 0, b"\x04" * 32), _vote("bureau-1", 0, b"\x05" * 32))])
    root = chain.state.state_root
    repo.close()
    again = Chain(Repository(url))
    assert again.state.state_root == root
    assert again.state.validators_at(3).by_id("bureau-5") is not None
    assert again.repo.validator_changes()[0]["height"] == 1
    assert canonical.loads_canonical(again.repo.validator_changes()[0]["certificate"].encode())["height"] == 1


def test_the_approval_command_prints_what_the_rule_accepts(tmp_path):
    import subprocess
    import sys

    genesis_file = tmp_path / "genesis.json"
    genesis_file.write_text(json.dumps(_genesis().doc))
    change = {"v": 1, "seq": 0, "changes": [ADD_5]}
    (tmp_path / "change.json").write_text(json.dumps(change))
    approvals = []
    for vid in ("bureau-1", "bureau-2", "bureau-3"):
        key_file = tmp_path / f"{vid}.key"
        key_file.write_text(KEYS[vid].encode().hex() + "\n")  # the seed, as node key files hold it
        out = subprocess.run([sys.executable, "-m", "bureau.cli", "approve-validators", "--key", str(key_file),
                              "--validator", vid, "--genesis", str(genesis_file), "--change",
                              f"@{tmp_path / 'change.json'}"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        approvals.append(json.loads(out.stdout))
    tx = operator_action(OPERATOR, "operator-1", "change_validators", {"change": change, "approvals": approvals},
                         now=T0_MS // 1000)
    assert _outcome(Chain().block([tx])) == [("change_validators", None)]
