"""The state map (docs/state.md): its root against a naive recomputation from all leaves, proofs
of present and absent keys under random update sequences, tampered proofs refused, the strict
verifier on malformed input, and the shared vectors the phone checks too."""

import hashlib
import json
import random
from pathlib import Path

from hypothesis import given, settings, strategies as st

from bureau.ledger.statemap import EMPTY, StateMap, key_path, leaf_hash, node_hash, value_hash
from bureau.ledger.stateproof import verify_state_proof
from tests.vectors import generate

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "statemap.json").read_text())

KEYS = st.sampled_from([f"w/W-{i}" for i in range(40)] + ["o/op-1", "k/04AA", "t/GD/1", "m/C-1/S/1", "p/x", ""])
VALUES = st.one_of(st.none(), st.text(max_size=12))
BATCHES = st.lists(st.dictionaries(KEYS, VALUES, max_size=12), min_size=1, max_size=6)


def naive_root(content: dict[str, str]) -> bytes:
    """The root straight from the definition: split the leaves by path bit, depth by depth."""
    def subtree(leaves: list[tuple[bytes, bytes]], depth: int) -> bytes:
        if not leaves:
            return EMPTY
        if len(leaves) == 1:
            return leaf_hash(*leaves[0])
        bit = lambda path: (path[depth // 8] >> (7 - depth % 8)) & 1  # noqa: E731
        return node_hash(subtree([lf for lf in leaves if not bit(lf[0])], depth + 1),
                         subtree([lf for lf in leaves if bit(lf[0])], depth + 1))
    return subtree([(key_path(k), value_hash(v)) for k, v in content.items()], 0)


def replay(batches: list[dict]) -> tuple[list[StateMap], list[dict]]:
    maps, models, m, model = [], [], StateMap(), {}
    for batch in batches:
        m = m.update(batch)
        for k, v in batch.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
        maps.append(m)
        models.append(dict(model))
    return maps, models


@settings(max_examples=150, deadline=None)
@given(BATCHES)
def test_the_root_is_the_naive_root_and_every_key_proves_its_value_or_absence(batches):
    maps, models = replay(batches)
    for m, model in zip(maps, models):  # the old maps stay valid after later updates
        assert m.root == naive_root(model)
        for k in ["w/W-%d" % i for i in range(40)] + ["o/op-1", "k/04AA", "", "never/set"]:
            proof = m.prove(k)
            assert proof["value"] == model.get(k) == m.get(k)
            assert verify_state_proof(m.root, proof) == (True, "")
            assert proof == json.loads(json.dumps(proof))  # plain JSON


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(KEYS, st.text(max_size=8), min_size=1), st.randoms())
def test_the_root_does_not_depend_on_the_order_of_updates(content, rnd):
    keys = list(content)
    rnd.shuffle(keys)
    one_by_one = StateMap()
    for k in keys:
        one_by_one = one_by_one.update({k: content[k]})
    with_extra = StateMap().update({**content, "x/extra": "1"}).update({"x/extra": None})
    assert one_by_one.root == StateMap().update(content).root == with_extra.root


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(KEYS, st.text(max_size=8), min_size=2), KEYS, st.data())
def test_a_tampered_proof_fails(content, probe, data):
    m = StateMap().update(content)
    proof = m.prove(probe)
    if proof["siblings"]:
        i = data.draw(st.integers(0, len(proof["siblings"]) - 1))
        flipped = list(proof["siblings"])
        flipped[i] = ("0" if flipped[i][0] != "0" else "1") + flipped[i][1:]
        assert not verify_state_proof(m.root, {**proof, "siblings": flipped})[0]
    assert not verify_state_proof(m.root, {**proof, "value": (proof["value"] or "") + "x"})[0]
    if proof["value"] is not None:
        assert not verify_state_proof(m.root, {**proof, "value": None})[0]
    other_key = data.draw(KEYS.filter(lambda k: content.get(k) != proof["value"]))
    assert not verify_state_proof(m.root, {**proof, "key": other_key})[0]
    assert not verify_state_proof(hashlib.sha256(m.root).digest(), proof)[0]


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=70)
                       | st.sampled_from(["00" * 32, "ab" * 32, "\ud800"]),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
                       max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"v": st.sampled_from([1, True, 1.0, "1", 2]), "key": JSONISH, "value": JSONISH,
                              "siblings": JSONISH, "other": JSONISH}) | JSONISH,
       st.sampled_from([EMPTY, b"\x01" * 32, b"", "00" * 32]))
def test_the_verifier_refuses_malformed_proofs_with_a_reason_and_never_raises(proof, root):
    ok, reason = verify_state_proof(root, proof)
    assert ok in (True, False) and (ok or reason)


def test_the_strict_checks_name_their_reason():
    m = StateMap().update({f"w/W-{i}": str(i) for i in range(50)})
    good = m.prove("w/W-7")
    absent = next(p for p in (m.prove(f"w/Z-{i}") for i in range(1000)) if p["other"] and p["siblings"])
    cases = {
        "not 32 bytes": (m.root[:31], good),
        "fields are": (m.root, {**good, "extra": 1}),
        "version": (m.root, {**good, "v": True}),
        "key is not a text": (m.root, {**good, "key": "\ud800"}),
        "value is neither": (m.root, {**good, "value": 7}),
        "siblings is not a list": (m.root, {**good, "siblings": "00"}),
        "more than the tree's depth": (m.root, {**good, "siblings": ["00" * 32] * 257}),
        "lowercase hex": (m.root, {**good, "siblings": [good["siblings"][0].upper()] + good["siblings"][1:]}),
        "has no other leaf": (m.root, {**good, "other": absent["other"]}),
        "other is not an object": (m.root, {**absent, "other": {"path": absent["other"]["path"]}}),
        "the key's own": (m.root, {**absent, "other": {**absent["other"], "path": key_path(absent["key"]).hex()}}),
        "does not share": (m.root, {**absent, "other": {**absent["other"], "path": "%064x" % (
            int(absent["other"]["path"], 16) ^ (1 << 255))}}),
        "does not lead to the root": (m.root, {**good, "value": "8"}),
    }
    for expected, (root, proof) in cases.items():
        ok, reason = verify_state_proof(root, proof)
        assert not ok and expected in reason, (expected, reason)


def test_a_large_map_keeps_proofs_near_log2_n():
    rnd = random.Random(7)
    m = StateMap().update({f"w/W-{rnd.getrandbits(64)}": "v" for _ in range(4096)})
    depths = [len(m.prove(f"w/W-probe-{i}")["siblings"]) for i in range(200)]
    assert 10 <= sum(depths) / len(depths) <= 16  # log2(4096) = 12


def test_the_committed_vectors_are_what_the_generator_makes_and_verify():
    assert json.loads(json.dumps(generate.statemap_vectors())) == VECTORS
    for case in VECTORS["maps"]:
        m = StateMap().update(case["records"])
        assert m.root.hex() == case["root"] == naive_root(case["records"]).hex()
        kinds = set()
        for proof in case["proofs"]:
            assert verify_state_proof(bytes.fromhex(case["root"]), proof) == (True, ""), proof
            kinds.add("present" if proof["value"] is not None else "other" if proof["other"] else "empty")
        if len(case["records"]) > 1:
            assert kinds == {"present", "other", "empty"}
    for case in VECTORS["bad"]:
        assert not verify_state_proof(bytes.fromhex(case["root"]), case["proof"])[0], case["label"]
