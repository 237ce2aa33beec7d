"""RFC 6962 known answers (Certificate Transparency's reference tree) and inclusion proofs."""

import random

import pytest

from bureau.ledger.merkle import audit_path, leaf_hash, root, root_from_leaf_hashes, verify_inclusion

LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f")]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# Published audit paths of the same tree (0-based leaf index, tree size 8).
PATHS = {
    0: ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    5: ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
}


@pytest.mark.parametrize("n", range(9))
def test_root_of_reference_tree(n):
    assert root(LEAVES[:n]).hex() == ROOTS[n]


@pytest.mark.parametrize("index", sorted(PATHS))
def test_published_audit_paths(index):
    hashes = [leaf_hash(d) for d in LEAVES]
    path = audit_path(hashes, index)
    assert [p.hex() for p in path] == PATHS[index]
    assert verify_inclusion(hashes[index], index, 8, path, bytes.fromhex(ROOTS[8]))


def test_every_leaf_of_every_size_proves_and_tampering_fails():
    rng = random.Random(7)
    for size in range(1, 70):
        hashes = [leaf_hash(rng.randbytes(5)) for _ in range(size)]
        r = root_from_leaf_hashes(hashes)
        for i in range(size):
            path = audit_path(hashes, i)
            assert verify_inclusion(hashes[i], i, size, path, r)
            assert not verify_inclusion(hashes[i], i, i, path, r)  # index outside the tree
            if size > 1:
                assert not verify_inclusion(hashes[i], (i + 1) % size, size, path, r)
                bent = list(path)
                bent[0] = bytes(32)
                assert not verify_inclusion(hashes[i], i, size, bent, r)
            assert not verify_inclusion(leaf_hash(b"forged"), i, size, path, r)
